# ... mapped to one bead per molecule at the centre of mass, unwrapped (docs/method.md §1). The input is
# the generated reference or the user's topology + trajectory (aa.source: file). With --config the
# job refuses a trajectory whose frame spacing or length the configured windows cannot use, so a
# user's file stops the pipeline here, before the initialisation and the evaluation runs.


rule map:
    input:
        **aa_inputs(),
    output:
        beads=AA_BEADS,
    params:
        config=config_file,
        options=map_options(),
        settings=settings("aa/source", "aa/format", "aa/dt_ps"),
    log:
        log_file("map"),
    benchmark:
        benchmark_file("map")
    message:
        "Mapping {input.trajectory} to one bead per molecule"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "advcg map --config {params.config} --topology {input.topology} --trajectory {input.trajectory}"
        " {params.options} --output {output.beads} > {log} 2>&1"
