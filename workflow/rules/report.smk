# The report: RDF/ADF/MSD of the initial and final models vs AA, metrics per state, training
# curves per round and time per stage (from the jobs' benchmark files).


rule report:
    input:
        aa_observables=rules.aa_observables.output.json,
        metrics=expand("results/evaluate/state_{state}/metrics.json", state=range(ROUNDS + 1)),
        observables=expand("results/evaluate/state_{state}/observables.json", state=range(ROUNDS + 1)),
        discriminator_logs=expand("results/rounds/round_{round}/discriminator.json", round=range(ROUNDS)),
        update_reports=expand("results/rounds/round_{round}/update.json", round=range(ROUNDS)),
        final=rules.finalise.output.metrics,
        benchmarks=benchmark_files(),
    output:
        html="results/report/index.html",
        figures=expand("results/report/{figure}", figure=("observables.png", "metrics.png",
                                                           "training.png", "timing.png")),
        summary="results/report/summary.json",
    params:
        config=config_file,
        outdir=parent("html"),
        evaluations=expand("results/evaluate/state_{state}", state=range(ROUNDS + 1)),
    log:
        log_file("report"),
    message:
        "Writing the report {output.html}"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        "advcg report --config {params.config} --threads {threads}"
        " --aa-observables {input.aa_observables} --evaluations {params.evaluations}"
        " --discriminator-logs {input.discriminator_logs} --update-reports {input.update_reports}"
        " --benchmarks {input.benchmarks} --outdir {params.outdir} > {log} 2>&1"
