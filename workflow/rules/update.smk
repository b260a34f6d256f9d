# Round k, step 4: the reweighting estimate of the generator gradient and one Adam step on
# (theta, log gamma): state k -> state k + 1 (docs/method.md §5), checked by the divergence guard's probe
# run (advcg.guard); after training.guard.max_rejections rejections the job fails and says why.


rule update:
    input:
        state=round_state,
        recording=rules.simulate.output.recording,
        cg_features=rules.cg_features.output.features,
        discriminator=rules.discriminate.output.checkpoint,
        beads=rules.map.output.beads,
        aa_observables=rules.aa_observables.output.json,
    output:
        state=directory("results/rounds/round_{round}/next_state"),
        report="results/rounds/round_{round}/update.json",
    params:
        config=config_file,
        settings=settings("training/localisation_radius", "training/dynamics_localisation_radius",
                          "training/learning_rates", "training/momentum",
                          "training/gradient_noise_threshold", "training/structure_correction",
                          "training/guard",
                          "training/equilibration_ps"),
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
        " --discriminator {input.discriminator} --aa-trajectory {input.beads}"
        " --aa-observables {input.aa_observables} --out-state {output.state}"
        " --report {output.report} > {log} 2>&1"
