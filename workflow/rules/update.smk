# Round k, step 4: the reweighting estimate of the generator gradient and one Adam step on
# (theta, log gamma): state k -> state k + 1 (METHOD §5).


rule update:
    input:
        state=round_state,
        recording=rules.simulate.output.recording,
        cg_features=rules.cg_features.output.features,
        discriminator=rules.discriminate.output.checkpoint,
    output:
        state=directory("results/rounds/round_{round}/next_state"),
        report="results/rounds/round_{round}/update.json",
    params:
        config=config_file,
        settings=settings("training/localisation_radius", "training/learning_rate",
                          "training/learning_rate_threebody", "training/learning_rate_log_gamma"),
    log:
        log_file("update", "round"),
    benchmark:
        benchmark_file("update", "round")
    message:
        "Round {wildcards.round}: gradient estimate and update of {input.state}"
    threads: THREADS
    resources:
        mem_mb=16000,
        runtime=240,
    conda:
        CONDA_ENV
    shell:
        "advcg update --config {params.config} --threads {threads} --state {input.state}"
        " --recording {input.recording} --cg-features {input.cg_features}"
        " --discriminator {input.discriminator} --out-state {output.state}"
        " --report {output.report} > {log} 2>&1"
