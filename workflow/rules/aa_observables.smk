# RDF, ADF, MSD and D of the mapped AA trajectory: the reference of every evaluation (docs/method.md §7).


rule aa_observables:
    input:
        beads=rules.map.output.beads,
    output:
        json=AA_OBSERVABLES,
        png="results/aa/observables.png",
    params:
        r_max=config["evaluation"]["rdf_r_max"],
    log:
        log_file("aa_observables"),
    benchmark:
        benchmark_file("aa_observables")
    message:
        "AA observables (RDF up to {params.r_max} A, ADF, MSD, D) of {input.beads}"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "advcg observables --trajectory {input.beads} --r-max {params.r_max}"
        " --output-json {output.json} --output-png {output.png} > {log} 2>&1"
