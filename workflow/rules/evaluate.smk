# Evaluation of training state k (0 = initial, training.rounds = final): a CG run and its RDF,
# ADF, MSD and D against AA (docs/method.md §7). Runs beside the next round, which does not need it.
# The initial and final states run evaluation.run_ps, the others evaluation.intermediate_run_ps.


rule evaluate:
    input:
        state=evaluated_state,
        beads=rules.map.output.beads,
        aa_observables=rules.aa_observables.output.json,
    output:
        metrics="results/evaluate/state_{state}/metrics.json",
        observables="results/evaluate/state_{state}/observables.json",
        trajectory=temp("results/evaluate/state_{state}/trajectory.npz"),
        model=directory("results/evaluate/state_{state}/model"),
    params:
        config=config_file,
        outdir=parent("metrics"),
        run_ps=evaluation_run_ps,
        settings=settings("accelerator", "evaluation/frame_interval_fs", "training/equilibration_ps"),
    log:
        log_file("evaluate", "state"),
    benchmark:
        benchmark_file("evaluate", "state")
    message:
        "Evaluating state {wildcards.state} ({input.state}) against AA"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "advcg evaluate --config {params.config} --threads {threads} --state {input.state}"
        " --aa-trajectory {input.beads} --aa-observables {input.aa_observables}"
        " --outdir {params.outdir} --run-ps {params.run_ps} > {log} 2>&1"
