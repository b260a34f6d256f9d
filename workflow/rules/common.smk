"""Shared by the rule files --- configuration validation, the results layout, the round input
functions and the lists of files the final targets need. Nothing here computes science.

Every job reads the resolved configuration .snakemake/advcg/config-<hash>.yaml (see
write_resolved_config). Results layout (R = training.rounds)::

    results/aa/reference/                        generated AA reference (aa.source: generate)
    results/aa/beads.npz                         mapped AA trajectory (one bead per molecule)
    results/aa/observables.{json,png}            AA RDF, ADF, MSD, D
    results/aa/features.pt                       discriminator features of the AA windows
    results/init/                                Boltzmann inversion + IBI (potential.json, ...)
    results/init/state/                          training state 0
    results/rounds/round_{k}/simulate/           CG run of round k (recording.npz is temporary)
    results/rounds/round_{k}/cg_features.pt      its discriminator features
    results/rounds/round_{k}/discriminator.{pt,json}
    results/rounds/round_{k}/update.json         gradient estimate and step of round k
    results/rounds/round_{k}/next_state/         training state k + 1
    results/evaluate/state_{k}/                  evaluation of state k = 0 (initial) .. R (final)
    results/final/                               LAMMPS files, deck, parameters, metrics.json
    results/report/index.html                    report with plots
    results/logs/, results/benchmarks/           one log and one benchmark file per job
"""

import hashlib
import os
import tempfile
from pathlib import Path

import yaml
from snakemake.utils import validate


# -- configuration -----------------------------------------------------------------------------
# An unknown key or a wrong value stops the workflow here, before any job, with the key's path in
# the message. advcg's own check (same schema, plus rules across keys; one line per error, e.g.
# "training.rounds: 'many' is not of type 'integer'") runs first where Snakemake runs in the advcg
# environment; from a bare Snakemake (--use-conda) the first job repeats it.
try:
    from advcg.config import ConfigError, validate_config
except ImportError:
    validate_config = None
if validate_config is not None:
    try:
        validate_config(config, "config")
    except ConfigError as exc:
        raise WorkflowError(str(exc))

# fills in the schema's defaults (and checks the schema where advcg is not importable)
validate(config, "../../config/config.schema.yaml")


#: The conda environment of every job (path relative to the rule files).
CONDA_ENV = "../../envs/advcg.yaml"


def write_resolved_config(config, directory=".snakemake/advcg"):
    """Write the validated configuration (defaults filled in) as YAML under a name made of its
    content hash, once, and return the path: the ``--config`` of every advcg job.

    Not a job: a job writing it would sit upstream of every other job, and any config change
    would make Snakemake skip the per-rule ``params.settings`` checks downstream of it. The name
    changes with the content, so runs with different configurations never share the file, and a
    job (here or on a cluster node, which parses the workflow again) always reads the
    configuration it was scheduled with. Jobs rerun when the settings they depend on change
    (``params.settings``), not when any key changes.
    """
    text = yaml.safe_dump(config, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(directory) / f"config-{digest}.yaml"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w") as stream:
            stream.write(f"# advcg configuration resolved by the pipeline (schema defaults filled in)\n{text}")
        os.replace(tmp, path)
    return str(path)


#: The resolved configuration that every advcg job reads.
ADVCG_CONFIG = write_resolved_config(config)


def config_file(wildcards, input):
    """``params.config`` of every advcg job: the resolved configuration's path.

    A function of ``input``, so Snakemake counts it as derived and leaves it out of its params
    rerun trigger (the path changes with any key); what a job depends on is its
    ``params.settings``.
    """
    return ADVCG_CONFIG
ROUNDS = int(config["training"]["rounds"])
THREADS = int(config["threads"])

AA_REFERENCE_DIR = "results/aa/reference"
AA_BEADS = "results/aa/beads.npz"
AA_OBSERVABLES = "results/aa/observables.json"
AA_FEATURES = "results/aa/features.pt"
INIT_DIR = "results/init"
FINAL_DIR = "results/final"

wildcard_constraints:
    round=r"\d+",
    state=r"\d+",


def settings(*keys):
    """The configuration values at ``keys`` ("section/name" paths) as a dict: a rule's
    ``params.settings``, so that changing one of them reruns the rule (and what follows)."""
    values = {}
    for key in keys:
        value = config
        for part in key.split("/"):
            value = value[part]
        values[key] = value
    return values


# -- the rounds --------------------------------------------------------------------------------
def state_dir(k):
    """Directory of training state k: state 0 from the initialisation, state k >= 1 written by
    the update of round k - 1."""
    k = int(k)
    if k < 0 or k > ROUNDS:
        raise WorkflowError(f"training state {k} is outside 0..{ROUNDS} (training.rounds = {ROUNDS})")
    return f"{INIT_DIR}/state" if k == 0 else f"results/rounds/round_{k - 1}/next_state"


def round_dir(k):
    """Directory of training round k."""
    return f"results/rounds/round_{int(k)}"


def round_state(wildcards):
    """The state that round ``wildcards.round`` starts from (round k uses state k)."""
    return state_dir(wildcards.round)


def evaluated_state(wildcards):
    """The state that evaluation ``wildcards.state`` runs."""
    return state_dir(wildcards.state)


def evaluation_run_ps(wildcards):
    """Length of evaluation ``wildcards.state``'s run: evaluation.run_ps for the initial and the
    final state, evaluation.intermediate_run_ps in between."""
    k = int(wildcards.state)
    ev = config["evaluation"]
    return ev["run_ps"] if k in (0, ROUNDS) else ev["intermediate_run_ps"]


def previous_discriminator(wildcards):
    """Round k's discriminator warm-starts from round k - 1's checkpoint (none for round 0)."""
    k = int(wildcards.round)
    return [] if k == 0 else f"{round_dir(k - 1)}/discriminator.pt"


# -- inputs of the AA mapping --------------------------------------------------------------------
def aa_inputs():
    """Topology and trajectory of the AA system: the generated reference or the user's files."""
    if config["aa"]["source"] == "generate":
        return {"topology": f"{AA_REFERENCE_DIR}/aa.data", "trajectory": f"{AA_REFERENCE_DIR}/aa.dcd"}
    return {"topology": config["aa"]["topology"], "trajectory": config["aa"]["trajectory"]}


def map_options():
    """``advcg map`` options for the user's AA files (format, frame spacing)."""
    aa = config["aa"]
    options = []
    if aa["source"] == "file" and aa["format"]:
        options.append(f"--format {aa['format']}")
    if aa["source"] == "file" and aa["dt_ps"]:
        options.append(f"--dt-ps {aa['dt_ps']}")
    return " ".join(options)


# -- final targets ---------------------------------------------------------------------------------
def final_files():
    """The files of ``results/final`` (the angle table only for the sw/angle/table variant)."""
    files = {"pair_table": f"{FINAL_DIR}/pair.table", "threebody": f"{FINAL_DIR}/threebody.sw",
             "pair_include": f"{FINAL_DIR}/pair.in", "deck": f"{FINAL_DIR}/cg_water.in",
             "parameters": f"{FINAL_DIR}/parameters.json", "dynamics": f"{FINAL_DIR}/dynamics.json",
             "metrics": f"{FINAL_DIR}/metrics.json"}
    if config["potential"]["variant"] == "sw/angle/table":
        files["angle_table"] = f"{FINAL_DIR}/angle.table"
    return files


def parent(name):
    """A ``params`` function: the directory of output ``name`` (a stage's output directory)."""
    return lambda wildcards, output: os.path.dirname(output[name])


def log_file(name, k=None):
    """The log file of a rule (per round/state when ``k`` is a wildcard name)."""
    return f"results/logs/{name}.log" if k is None else f"results/logs/{name}/{k}_{{{k}}}.log"


def benchmark_file(name, k=None):
    """The benchmark file of a rule, like :func:`log_file`."""
    return f"results/benchmarks/{name}.tsv" if k is None else f"results/benchmarks/{name}/{k}_{{{k}}}.tsv"


def benchmark_files():
    """Every job's benchmark file except the report's: the report's time per stage."""
    files = [benchmark_file(name) for name in ("map", "aa_observables", "aa_features", "init", "state0", "finalise")]
    if config["aa"]["source"] == "generate":
        files.append(benchmark_file("aa_reference"))
    for k in range(ROUNDS):
        files += [benchmark_file(name, "round").format(round=k)
                  for name in ("simulate", "cg_features", "discriminate", "update")]
    files += [benchmark_file("evaluate", "state").format(state=k) for k in range(ROUNDS + 1)]
    return files
