# Round k, step 1: the CG Langevin run of state k in LAMMPS, recording every MD step of the
# training windows in float64 (docs/method.md §5). The recording is large and temporary: it is deleted
# once cg_features and update of the round have read it.


rule simulate:
    input:
        state=round_state,
        beads=rules.map.output.beads,
    output:
        recording=temp("results/rounds/round_{round}/simulate/recording.npz"),
        model=directory("results/rounds/round_{round}/simulate/model"),
    params:
        config=config_file,
        outdir=parent("recording"),
        settings=settings("accelerator", "windows/n_lags", "windows/lag_fs",
                          "training/windows_per_round", "training/window_spacing_ps",
                          "training/equilibration_ps"),
    log:
        log_file("simulate", "round"),
    benchmark:
        benchmark_file("simulate", "round")
    message:
        "Round {wildcards.round}: CG simulation of {input.state}"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "advcg simulate --config {params.config} --threads {threads} --state {input.state}"
        " --aa-trajectory {input.beads} --outdir {params.outdir} > {log} 2>&1"
