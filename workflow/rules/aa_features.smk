# Discriminator features of the AA windows ("real"), computed once for all rounds (docs/method.md §4).


rule aa_features:
    input:
        beads=rules.map.output.beads,
    output:
        features=AA_FEATURES,
    params:
        config=config_file,
        settings=settings("windows"),
    log:
        log_file("aa_features"),
    benchmark:
        benchmark_file("aa_features")
    message:
        "Discriminator features of the AA windows of {input.beads}"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "advcg features aa --config {params.config} --threads {threads}"
        " --input {input.beads} --output {output.features} > {log} 2>&1"
