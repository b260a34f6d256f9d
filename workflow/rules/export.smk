# The final model in results/final: LAMMPS pair table, three-body files, a deck for plain lmp,
# parameters, dynamics and the final evaluation's metrics.


rule finalise:
    input:
        state=state_dir(ROUNDS),
        beads=rules.map.output.beads,
        metrics=f"results/evaluate/state_{ROUNDS}/metrics.json",
    output:
        **final_files(),
    params:
        config=config_file,
        outdir=parent("metrics"),
        settings=settings("seed"),
    log:
        log_file("finalise"),
    benchmark:
        benchmark_file("finalise")
    message:
        "Exporting the final model (state {ROUNDS}) to {params.outdir}"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "advcg finalise --config {params.config} --threads {threads} --state {input.state}"
        " --aa-trajectory {input.beads} --metrics {input.metrics} --outdir {params.outdir}"
        " > {log} 2>&1"
