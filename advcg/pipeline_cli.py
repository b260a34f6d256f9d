"""``advcg`` subcommands of the pipeline stages (registered in :mod:`advcg.cli`).

Every subcommand takes ``--config`` (the YAML file the pipeline resolved, or any file in the
``config/config.yaml`` layout), explicit input and output paths and ``--threads`` (default: the
configuration's ``threads``); it loads the configuration, sets torch's and LAMMPS's thread counts
and calls one function of :mod:`advcg.stages` or :mod:`advcg.report` with the configuration
sections it uses.

================  =========================================================================
subcommand        library function
================  =========================================================================
``state-init``    :func:`advcg.stages.initial_state`
``simulate``      :func:`advcg.stages.simulate`
``features``      :func:`advcg.stages.aa_features` / :func:`advcg.stages.cg_features`
``discriminate``  :func:`advcg.stages.discriminate`
``update``        :func:`advcg.stages.update`
``evaluate``      :func:`advcg.stages.evaluate`
``finalise``      :func:`advcg.stages.finalise`
``report``        :func:`advcg.report.write_report`
================  =========================================================================
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from advcg.config import Config

logger = logging.getLogger("advcg")


def _config(args: argparse.Namespace) -> Config:
    """Load and validate ``--config``; set the thread counts of torch and LAMMPS (OpenMP)."""
    from advcg.config import load_config
    from advcg.threads import use_threads

    config = load_config(args.config)
    threads = args.threads if args.threads is not None else config.threads
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    config = replace(config, threads=threads)
    use_threads(threads)
    return config


def check_accelerator(config: Config, args: argparse.Namespace) -> None:
    """Resolve the configured LAMMPS accelerator before a stage writes anything: an accelerator
    that this LAMMPS lacks (``kokkos`` without a Kokkos GPU build) stops the stage naming the key."""
    from advcg.engine import EngineError, choose_accelerator

    try:
        choose_accelerator(config.accelerator, config.threads)
    except EngineError as exc:
        raise EngineError(f"{args.config}: {exc}") from exc


def _naming(path: str, exc: ValueError) -> ValueError:
    """``exc`` with ``path`` in its message (when it does not name it already)."""
    return exc if str(path) in str(exc) else ValueError(f"{path}: {exc}")


def _common(p: argparse.ArgumentParser) -> None:
    from advcg.cli import config_bounds, number

    p.add_argument("--config", required=True, help="configuration YAML (the pipeline's resolved config)")
    p.add_argument("--threads", type=number(int, **config_bounds("threads")), default=None,
                   help="torch and LAMMPS threads (default: config threads)")


def _output(kind: str = "file", **checks: bool) -> Any:
    """:func:`advcg.cli.output_path` (imported late: :mod:`advcg.cli` imports this module)."""
    from advcg.cli import output_path

    return output_path(kind, **checks)


# -- state 0 -----------------------------------------------------------------------------------
def _cmd_state_init(args: argparse.Namespace) -> None:
    from advcg.stages import initial_state

    config = _config(args)
    initial_state(args.potential, args.outdir, potential=config.potential, dynamics=config.dynamics,
                  temperature=config.temperature, timestep=config.timestep, seed=config.seed)


def _register_state_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("state-init", help="training state 0 from the initial potential",
                       description="Writes a training state directory (potential.json, "
                                   "dynamics.json) from the initial potential with the "
                                   "configuration's dynamics (its kind and initial values), "
                                   "temperature, timestep and seed.")
    _common(p)
    p.add_argument("--potential", required=True, help="initial potential JSON (advcg init)")
    p.add_argument("--outdir", required=True, type=_output("directory", replaced=True),
                   help="state directory to write (replaced whole)")
    p.set_defaults(func=_cmd_state_init)


# -- training stages ----------------------------------------------------------------------------
def _cmd_simulate(args: argparse.Namespace) -> None:
    from advcg.stages import simulate

    config = _config(args)
    check_accelerator(config, args)
    simulate(Path(args.state), Path(args.aa_trajectory), Path(args.outdir), windows=config.windows,
             training=config.training, accelerator=config.accelerator)


def _register_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="CG run of one round: recording.npz with every-step window paths",
                       description="Runs the round's CG Langevin simulation in LAMMPS from the last "
                                   "frame of the mapped AA trajectory; writes OUTDIR/recording.npz "
                                   "and the exported model OUTDIR/model/.")
    _common(p)
    p.add_argument("--state", required=True, help="training state directory of the round")
    p.add_argument("--aa-trajectory", required=True, help="mapped AA trajectory .npz (start frame, box)")
    p.add_argument("--outdir", required=True, type=_output("directory", lammps=True), help="output directory")
    p.set_defaults(func=_cmd_simulate)


def _cmd_features(args: argparse.Namespace) -> None:
    from advcg.stages import aa_features, cg_features

    config = _config(args)
    try:
        if args.kind == "aa":
            aa_features(Path(args.input), Path(args.output), windows=config.windows)
        else:
            cg_features(Path(args.input), Path(args.output))
    except ValueError as exc:   # e.g. a trajectory shorter than one window: name the file
        raise _naming(args.input, exc) from exc
    logger.info("%s window features of %s written to %s", args.kind.upper(), args.input, args.output)


def _register_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="per-bead discriminator features of AA or CG windows",
                       description="aa: slices windows from the mapped AA trajectory .npz; cg: takes "
                                   "the windows of a round's recording.npz. Writes a torch tensor "
                                   "(n_windows, n_beads, n_features).")
    _common(p)
    p.add_argument("kind", choices=("aa", "cg"), help="AA trajectory or CG recording")
    p.add_argument("--input", required=True, help="mapped AA trajectory .npz (aa) or recording.npz (cg)")
    p.add_argument("--output", required=True, type=_output(), help="features file (.pt)")
    p.set_defaults(func=_cmd_features)


def _cmd_discriminate(args: argparse.Namespace) -> None:
    from advcg.stages import discriminate

    config = _config(args)
    report = discriminate(Path(args.aa_features), Path(args.cg_features),
                          Path(args.previous) if args.previous else None, Path(args.checkpoint),
                          Path(args.log_json), settings=config.training.discriminator,
                          seed=config.seed, round_index=args.round)
    logger.info("round %d discriminator: held-out accuracy %.3f", args.round, report["val_accuracy"])


def _register_discriminate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discriminate", help="train round k's discriminator (warm start from round k-1's)")
    _common(p)
    from advcg.cli import number, upper_bound

    p.add_argument("--round", type=number(int, at_least=0, **upper_bound("training.rounds")), required=True,
                   help="round index k (seeds)")
    p.add_argument("--aa-features", required=True, help="AA features (.pt)")
    p.add_argument("--cg-features", required=True, help="CG features of round k (.pt)")
    p.add_argument("--previous", default=None, help="checkpoint of round k-1 (none: a fresh network)")
    p.add_argument("--checkpoint", required=True, type=_output(), help="output checkpoint (.pt)")
    p.add_argument("--log-json", required=True, type=_output(), help="output training log (.json)")
    p.set_defaults(func=_cmd_discriminate)


def _cmd_update(args: argparse.Namespace) -> None:
    from advcg.stages import update

    config = _config(args)
    check_accelerator(config, args)   # the guard's probe runs LAMMPS
    update(Path(args.state), Path(args.recording), Path(args.cg_features), Path(args.discriminator),
           Path(args.aa_trajectory), Path(args.aa_observables), Path(args.out_state),
           Path(args.report), windows=config.windows, training=config.training,
           accelerator=config.accelerator)


def _register_update(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("update", help="gradient estimate and guarded Adam step: state k -> state k+1",
                       description="Estimates the generator gradient from round k's windows, proposes "
                                   "an Adam step and checks it with a probe run (training.guard); "
                                   "exits non-zero after training.guard.max_rejections rejections.")
    _common(p)
    p.add_argument("--state", required=True, help="training state directory of round k")
    p.add_argument("--recording", required=True, help="round k's recording.npz")
    p.add_argument("--cg-features", required=True, help="round k's CG features (.pt)")
    p.add_argument("--discriminator", required=True, help="round k's discriminator checkpoint")
    p.add_argument("--aa-trajectory", required=True, help="mapped AA trajectory .npz (probe start)")
    p.add_argument("--aa-observables", required=True, help="AA observables JSON (probe checks)")
    p.add_argument("--out-state", required=True, type=_output("directory", replaced=True),
                   help="state directory k+1 to write (replaced whole)")
    p.add_argument("--report", required=True, type=_output(), help="output update report (.json)")
    p.set_defaults(func=_cmd_update)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from advcg.stages import evaluate

    config = _config(args)
    check_accelerator(config, args)
    evaluate(Path(args.state), Path(args.aa_trajectory), Path(args.aa_observables), Path(args.outdir),
             evaluation=config.evaluation, equilibration_ps=config.training.equilibration_ps,
             accelerator=config.accelerator, run_ps=args.run_ps)


def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    from advcg.cli import config_bounds, number

    p = sub.add_parser("evaluate", help="evaluation run of a state: observables and metrics vs AA",
                       description="Writes OUTDIR/metrics.json, observables.json, trajectory.npz "
                                   "and the exported model OUTDIR/model/.")
    _common(p)
    p.add_argument("--state", required=True, help="training state directory")
    p.add_argument("--aa-trajectory", required=True, help="mapped AA trajectory .npz")
    p.add_argument("--aa-observables", required=True, help="AA observables JSON (advcg observables)")
    p.add_argument("--outdir", required=True, type=_output("directory", lammps=True), help="output directory")
    p.add_argument("--run-ps", type=number(**config_bounds("evaluation.run_ps"), unit="ps"), default=None,
                   help="length of the CG run, ps (default: the configuration's evaluation.run_ps)")
    p.set_defaults(func=_cmd_evaluate)


# -- final model and report --------------------------------------------------------------------
def _cmd_finalise(args: argparse.Namespace) -> None:
    from advcg.stages import finalise

    finalise(Path(args.state), Path(args.aa_trajectory), Path(args.metrics), Path(args.outdir),
             seed=_config(args).seed)


def _register_finalise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finalise", help="export the final state: LAMMPS files, deck, parameters, metrics",
                       description="Writes pair.table, threebody.sw (+ angle.table), pair.in, "
                                   "cg_water.in, parameters.json, dynamics.json and metrics.json "
                                   "into OUTDIR.")
    _common(p)
    p.add_argument("--state", required=True, help="final training state directory")
    p.add_argument("--aa-trajectory", required=True, help="mapped AA trajectory .npz (box size of the deck)")
    p.add_argument("--metrics", required=True, help="evaluation metrics.json of the final state")
    p.add_argument("--outdir", required=True, type=_output("directory"), help="output directory")
    p.set_defaults(func=_cmd_finalise)


def _cmd_report(args: argparse.Namespace) -> None:
    from advcg.report import write_report

    index = write_report(args.outdir, args.aa_observables, args.evaluations, args.discriminator_logs,
                         args.update_reports, args.benchmarks, config=_config(args).to_dict())
    logger.info("report: %s", index)


def _register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML report with plots of a pipeline run")
    _common(p)
    p.add_argument("--aa-observables", required=True, help="AA observables JSON")
    p.add_argument("--evaluations", nargs="+", required=True,
                   help="evaluation directories of states 0..R (in order)")
    p.add_argument("--discriminator-logs", nargs="*", default=[], help="discriminator logs of rounds 0..R-1")
    p.add_argument("--update-reports", nargs="*", default=[], help="update reports of rounds 0..R-1")
    p.add_argument("--benchmarks", nargs="*", default=[], help="Snakemake benchmark TSV files")
    p.add_argument("--outdir", required=True, type=_output("directory"), help="output directory")
    p.set_defaults(func=_cmd_report)


#: Appended to :data:`advcg.cli._REGISTRY`.
REGISTER: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_state_init, _register_simulate, _register_features,
    _register_discriminate, _register_update, _register_evaluate, _register_finalise,
    _register_report,
]
