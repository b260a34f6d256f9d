# Structural initialisation (docs/method.md §6): Boltzmann inversion of the AA RDF, then IBI.


rule init:
    input:
        beads=rules.map.output.beads,
    output:
        potential=f"{INIT_DIR}/potential.json",
        report=f"{INIT_DIR}/init_report.json",
    params:
        config=config_file,
        outdir=parent("potential"),
        settings=settings("temperature", "seed", "accelerator", "timestep", "potential", "init"),
    log:
        log_file("init"),
    benchmark:
        benchmark_file("init")
    message:
        "Initial potential: Boltzmann inversion + {params.settings[init][ibi_iterations]} IBI step(s)"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} advcg init --config {params.config} --aa-trajectory {input.beads}"
        " --outdir {params.outdir} --overwrite > {log} 2>&1"
