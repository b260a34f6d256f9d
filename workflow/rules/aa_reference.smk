# The all-atom reference (docs/method.md §1): a generated water run (aa.source: generate) ...


rule aa_reference:
    input:
    output:
        topology=f"{AA_REFERENCE_DIR}/aa.data",
        trajectory=f"{AA_REFERENCE_DIR}/aa.dcd",
        metadata=f"{AA_REFERENCE_DIR}/reference.json",
        lammps_log=f"{AA_REFERENCE_DIR}/log.lammps",
    params:
        outdir=parent("metadata"),
        aa=config["aa"],
        temperature=config["temperature"],
        seed=config["seed"],
        accelerator=config["accelerator"],
    log:
        log_file("aa_reference"),
    benchmark:
        benchmark_file("aa_reference")
    message:
        "AA reference: {params.aa[model]} water, {params.aa[n_molecules]} molecules, "
        "{params.aa[equilibration_ps]} + {params.aa[production_ps]} ps at {params.temperature} K"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=720,
    conda:
        CONDA_ENV
    shell:
        "advcg aa-reference --outdir {params.outdir} --overwrite --quiet"
        " --model {params.aa[model]} --n-molecules {params.aa[n_molecules]}"
        " --temperature {params.temperature} --density {params.aa[density]}"
        " --equilibration-ps {params.aa[equilibration_ps]} --production-ps {params.aa[production_ps]}"
        " --dump-interval-fs {params.aa[dump_interval_fs]} --seed {params.seed}"
        " --accelerator {params.accelerator} --threads {threads} > {log} 2>&1"
