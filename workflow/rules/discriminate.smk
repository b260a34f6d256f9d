# Round k, step 3: train the discriminator on AA vs CG windows, warm-started from round k - 1's.


rule discriminate:
    input:
        aa_features=rules.aa_features.output.features,
        cg_features=rules.cg_features.output.features,
        previous=previous_discriminator,
    output:
        checkpoint="results/rounds/round_{round}/discriminator.pt",
        log_json="results/rounds/round_{round}/discriminator.json",
    params:
        config=config_file,
        previous=lambda wildcards, input: f"--previous {input.previous}" if input.previous else "",
        settings=settings("seed", "training/discriminator"),
    log:
        log_file("discriminate", "round"),
    benchmark:
        benchmark_file("discriminate", "round")
    message:
        "Round {wildcards.round}: training the discriminator"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "advcg discriminate --config {params.config} --threads {threads} --round {wildcards.round}"
        " --aa-features {input.aa_features} --cg-features {input.cg_features} {params.previous}"
        " --checkpoint {output.checkpoint} --log-json {output.log_json} > {log} 2>&1"
