# advcg pipeline: AA reference -> mapping -> BI/IBI initialisation -> adversarial rounds -> final
# model and report. Every rule calls one `advcg` subcommand; the rules are in workflow/rules/,
# the results layout is described in workflow/rules/common.smk.
#
#   snakemake --cores 2                                        # default config/config.yaml
#   snakemake --cores 2 --configfile config/test.yaml          # the small test configuration
#   snakemake --workflow-profile workflow/profiles/local       # local profile
#   snakemake --workflow-profile workflow/profiles/slurm --profile CLUSTER  # SLURM: docs/cluster.md

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/aa_reference.smk"
include: "workflow/rules/map.smk"
include: "workflow/rules/aa_observables.smk"
include: "workflow/rules/aa_features.smk"
include: "workflow/rules/init.smk"
include: "workflow/rules/state0.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/cg_features.smk"
include: "workflow/rules/discriminate.smk"
include: "workflow/rules/update.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        **rules.finalise.output,
        report=rules.report.output.html,
    default_target: True
