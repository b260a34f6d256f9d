# Training state 0: the initial potential with the initial damping, temperature, time step, seed.


rule state0:
    input:
        potential=rules.init.output.potential,
    output:
        state=directory(state_dir(0)),
    params:
        config=config_file,
        settings=settings("dynamics", "temperature", "timestep", "seed", "potential/variant",
                          "potential/r_cut"),
    log:
        log_file("state0"),
    benchmark:
        benchmark_file("state0")
    message:
        "Training state 0 from {input.potential}"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        "advcg state-init --config {params.config} --threads {threads} --potential {input.potential}"
        " --outdir {output.state} > {log} 2>&1"
