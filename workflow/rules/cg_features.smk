# Round k, step 2: discriminator features of the round's CG windows ("generated").


rule cg_features:
    input:
        recording=rules.simulate.output.recording,
    output:
        features="results/rounds/round_{round}/cg_features.pt",
    params:
        config=config_file,
    log:
        log_file("cg_features", "round"),
    benchmark:
        benchmark_file("cg_features", "round")
    message:
        "Round {wildcards.round}: discriminator features of the CG windows"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "advcg features cg --config {params.config} --threads {threads}"
        " --input {input.recording} --output {output.features} > {log} 2>&1"
