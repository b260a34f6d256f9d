"""The ``advcg`` command line: parse, load, call one library function, save.

Each subcommand is a ``_cmd_<name>(args)`` function registered in :func:`build_parser`.
Errors in user input (:class:`ValueError`, :class:`FileNotFoundError`, :class:`advcg.engine.EngineError`)
print one clear line and exit with status 2; nothing is left half-written because every writer in
advcg writes to a temporary file and renames it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from advcg.pipeline_cli import REGISTER as PIPELINE_COMMANDS

if TYPE_CHECKING:
    from advcg.observables import Observables

logger = logging.getLogger("advcg")

#: What ``advcg --help`` says first.
DESCRIPTION = """\
advcg: adversarial, dynamics-consistent coarse-graining of water around LAMMPS.

Every step of the pipeline is a command: make or map an all-atom reference (aa-reference, map,
observables), build the initial CG model (init, state-init), run the adversarial rounds (simulate,
features, discriminate, update, evaluate) and export the result (finalise, export, report). The
Snakemake pipeline (snakemake --cores 2) runs them all; 'advcg COMMAND --help' describes one.
Units: Å, fs, kcal/mol, g/mol, K; options ending in -ps are in picoseconds."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="advcg", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    # the data commands here, then the pipeline stages (simulate, update, ...: advcg.pipeline_cli)
    for register in [*_REGISTRY, *PIPELINE_COMMANDS]:
        register(sub)
    return parser


# Each entry adds one subparser and sets ``func``; modules' commands are appended below.
_REGISTRY: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``advcg`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    from advcg.engine import EngineError
    from advcg.guard import DivergenceError

    try:
        args.func(args)
    except (ValueError, FileNotFoundError, EngineError) as exc:
        logger.error("%s", exc)
        return 2
    except DivergenceError as exc:
        logger.error("divergence guard: %s", exc)
        return 3
    return 0


# -- AA reference, mapping, observables ------------------------------------------------------
def _cmd_aa_reference(args: argparse.Namespace) -> None:
    from advcg.reference import run_aa_reference

    ref = run_aa_reference(args.outdir, model=args.model, n_molecules=args.n_molecules,
                           temperature=args.temperature, density=args.density,
                           equilibration_ps=args.equilibration_ps, production_ps=args.production_ps,
                           dump_interval_fs=args.dump_interval_fs, seed=args.seed,
                           accelerator=args.accelerator, n_threads=args.threads,
                           screen=not args.quiet, overwrite=args.overwrite)
    logger.info("AA reference in %s: %.2f ns/day, %.0f s wall; topology %s, trajectory %s",
                ref.outdir, ref.ns_per_day, ref.wall_time_s, ref.topology, ref.trajectory)


def _register_aa_reference(sub: argparse._SubParsersAction) -> None:
    from advcg.engine import ACCELERATORS
    from advcg.reference import MODELS

    p = sub.add_parser("aa-reference", help="run the all-atom water reference in LAMMPS",
                       description="Rigid SPC/E or TIP4P/2005 water in NVT: writes aa.data "
                                   "(topology), aa.dcd (unwrapped trajectory), log.lammps and "
                                   "reference.json into OUTDIR, atomically.")
    p.add_argument("--outdir", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--model", choices=MODELS, default="spce", help="water model (default spce)")
    p.add_argument("--n-molecules", type=int, default=512, help="number of molecules (default 512)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--density", type=float, default=1.0, help="g/cm^3 (default 1.0)")
    p.add_argument("--equilibration-ps", type=float, default=20.0, help="ps (default 20)")
    p.add_argument("--production-ps", type=float, default=100.0, help="ps (default 100)")
    p.add_argument("--dump-interval-fs", type=float, default=20.0, help="fs between frames (default 20)")
    p.add_argument("--seed", type=int, default=4928459, help="random seed (default 4928459)")
    p.add_argument("--accelerator", choices=ACCELERATORS, default="auto", help="LAMMPS accelerator")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads (default OMP_NUM_THREADS or 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR when done")
    p.add_argument("--quiet", action="store_true", help="hide LAMMPS's output (thermo progress lines)")
    p.set_defaults(func=_cmd_aa_reference)


def _cmd_map(args: argparse.Namespace) -> None:
    from advcg.mapping import map_to_beads

    traj = map_to_beads(args.topology, args.trajectory or None, format=args.format,
                        topology_format=args.topology_format, dt_ps=args.dt_ps, start=args.start,
                        stop=args.stop, step=args.step, water_only=not args.any_liquid,
                        check_density=not args.any_density)
    traj.save(args.output)


def _register_map(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="map an AA trajectory to one bead per molecule (COM, unwrapped)",
                       description="Reads any trajectory MDAnalysis reads with a topology that "
                                   "defines molecules; writes a CG trajectory .npz (Å, fs).")
    p.add_argument("--topology", required=True, help="LAMMPS data, TPR, GRO, PSF, PDB, ...")
    p.add_argument("--trajectory", nargs="*", default=[], help="trajectory file(s); none: the topology's frame")
    p.add_argument("--format", default=None, help="MDAnalysis trajectory format (e.g. LAMMPS, LAMMPSDUMP, XTC)")
    p.add_argument("--topology-format", default=None, help="MDAnalysis topology format")
    p.add_argument("--dt-ps", type=float, default=None,
                   help="ps: MD timestep for LAMMPS dumps (required there), else frame spacing override")
    p.add_argument("--start", type=int, default=None, help="first frame")
    p.add_argument("--stop", type=int, default=None, help="stop before this frame")
    p.add_argument("--step", type=int, default=None, help="frame stride")
    p.add_argument("--any-liquid", action="store_true", help="accept molecules that are not water")
    p.add_argument("--any-density", action="store_true",
                   help="accept water far from 1 g/cm^3 (default: refuse outside 0.5-1.5 g/cm^3)")
    p.add_argument("--output", required=True, help="output .npz")
    p.set_defaults(func=_cmd_map)


def _load_observables(path: str, args: argparse.Namespace) -> Observables:
    """Observables of a CG trajectory .npz, or as saved in an observables JSON file."""
    from pathlib import Path

    from advcg.io import read_json
    from advcg.observables import compute_observables, observables_from_json
    from advcg.trajectory import CGTrajectory

    file = Path(path)
    if file.suffix.lower() == ".json":
        data = read_json(file, "observables file")
        try:
            return observables_from_json(data.get("observables", data))
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{file}: {exc}") from exc
    traj = CGTrajectory.load(file)
    if traj.n_frames < 2 and not args.allow_single_frame:
        raise ValueError(f"{file} has a single frame: the MSD and D need at least two frames "
                         "(pass --allow-single-frame for the RDF and ADF alone)")
    try:
        return compute_observables(traj, r_max=args.r_max, rdf_bin_width=args.rdf_bin_width,
                                   adf_cutoff=args.adf_cutoff, adf_bin_width=args.adf_bin_width,
                                   fit_range_fs=tuple(args.fit_range_fs), step=args.step)
    except ValueError as exc:   # e.g. a box smaller than 2 r_max: name the file
        raise ValueError(f"{file}: {exc}") from exc


def _cmd_observables(args: argparse.Namespace) -> None:
    from advcg.observables import compare_observables, plot_observables, save_observables_json

    if not (args.output_json or args.output_png):
        raise ValueError("give --output-json and/or --output-png")
    obs = _load_observables(args.trajectory, args)
    reference = _load_observables(args.reference, args) if args.reference else None
    comparison = compare_observables(obs, reference) if reference is not None else None
    if comparison is not None:
        logger.info("max |dg| = %.4f, ADF TV = %.4f, MSD ratios %s", comparison["rdf_max_abs_diff"],
                    comparison["adf_total_variation"],
                    {k: round(v, 3) for k, v in comparison["msd_ratios"].items()})
    if obs.diffusion is not None:
        logger.info("D = %.4g m^2/s", obs.diffusion.coefficient_si)
    if args.output_json:
        save_observables_json(args.output_json, obs, comparison, reference)
    if args.output_png:
        plot_observables(args.output_png, obs, reference)


def _register_observables(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("observables", help="RDF, ADF, MSD and D of a CG trajectory (and metrics vs a reference)")
    p.add_argument("--trajectory", required=True, help="CG trajectory .npz (or an observables .json)")
    p.add_argument("--reference", default=None, help="reference CG trajectory .npz or observables .json")
    p.add_argument("--output-json", default=None, help="observables (and comparison) JSON")
    p.add_argument("--output-png", default=None, help="plot of RDF, ADF, MSD")
    p.add_argument("--r-max", type=float, default=12.0, help="RDF range, Å (default 12)")
    p.add_argument("--rdf-bin-width", type=float, default=0.05, help="Å (default 0.05)")
    p.add_argument("--adf-cutoff", type=float, default=3.3, help="neighbour cutoff, Å (default 3.3)")
    p.add_argument("--adf-bin-width", type=float, default=2.0, help="degrees (default 2)")
    p.add_argument("--fit-range-fs", type=float, nargs=2, default=[10000.0, 50000.0],
                   metavar=("LO", "HI"), help="fs range of the MSD fit for D (default 10000 50000)")
    p.add_argument("--step", type=int, default=1, help="use every STEP-th frame for RDF and ADF")
    p.add_argument("--allow-single-frame", action="store_true",
                   help="accept a one-frame trajectory (RDF and ADF only; no MSD, no D)")
    p.set_defaults(func=_cmd_observables)


_REGISTRY += [_register_aa_reference, _register_map, _register_observables]


# -- structural initialisation: Boltzmann inversion + IBI ----------------------------------------
def _cmd_init(args: argparse.Namespace) -> None:
    from advcg.config import load_config
    from advcg.ibi import initialise
    from advcg.pipeline_cli import check_accelerator
    from advcg.threads import use_threads
    from advcg.trajectory import CGTrajectory

    config = load_config(args.config)
    use_threads(config.threads)
    check_accelerator(config, args)
    traj = CGTrajectory.load(args.aa_trajectory)
    result = initialise(traj, config, args.outdir, pair_only=args.pair_only, method=args.method,
                        overwrite=args.overwrite)
    logger.info("initial potential %s: max |dg| = %.4f after %d IBI step(s); report %s",
                result.potential_path, result.ibi.best_rdf_max_abs_diff, result.ibi.best_iteration,
                result.report_path)


def _register_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="initial CG potential: Boltzmann inversion of the AA RDF, then IBI",
                       description="Writes target_rdf.npz, bi_potential.json, potential.json (the "
                                   "initial model: best IBI iterate), init_report.json and ibi/ "
                                   "(one directory per iteration) into OUTDIR, atomically. Uses the "
                                   "configuration's temperature, seed, accelerator, threads, "
                                   "timestep, potential.* and init.*.")
    p.add_argument("--aa-trajectory", required=True, help="mapped AA bead trajectory (.npz, advcg map)")
    p.add_argument("--config", required=True, help="configuration YAML (config/config.yaml layout)")
    p.add_argument("--outdir", required=True, help="output directory")
    p.add_argument("--pair-only", action="store_true",
                   help="three-body strength 0 (the pair-only IBI baseline)")
    p.add_argument("--method", choices=("imc", "ibi"), default="imc",
                   help="update rule: imc (Newton / inverse Monte Carlo, default) or ibi (plain IBI)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing initialisation in OUTDIR")
    p.set_defaults(func=_cmd_init)


_REGISTRY.append(_register_init)


# -- export of the CG force field to LAMMPS ------------------------------------------------------
def _cmd_export(args: argparse.Namespace) -> None:
    from advcg.dynamics import LangevinDynamics, dynamics_from_dict
    from advcg.export import export_model
    from advcg.io import read_json
    from advcg.potential import CGPotential
    from advcg.units import WATER_MASS

    potential = CGPotential.from_json(args.parameters)
    if args.dynamics:
        dynamics = dynamics_from_dict(read_json(args.dynamics, "dynamics file"), args.dynamics)
    else:
        dynamics = LangevinDynamics(temperature=args.temperature, timestep=args.timestep,
                                    mass=WATER_MASS, damp=args.damp)
    files = export_model(potential, args.outdir, dynamics, n_beads=args.n_beads, density=args.density,
                         seed=args.seed, n_table=args.table_points)
    logger.info("exported %s model to %s: deck %s (pair table %d rows)", files.variant,
                files.directory, files.deck, files.pair_table.n_points)


def _register_export(sub: argparse._SubParsersAction) -> None:
    from advcg.export import DEFAULT_TABLE_POINTS

    p = sub.add_parser("export", help="write LAMMPS tables, .sw file and an input deck for a CG potential",
                       description="Reads a CG potential parameter file (JSON) and writes pair.table, "
                                   "threebody.sw (+ angle.table), pair.in, parameters.json and "
                                   "cg_water.in (run: cd OUTDIR && lmp -in cg_water.in -var nsteps N "
                                   "-var seed S) into OUTDIR, atomically.")
    p.add_argument("--parameters", required=True, help="CG potential parameters (JSON)")
    p.add_argument("--outdir", required=True, help="output directory")
    p.add_argument("--n-beads", type=int, default=512, help="beads in the deck's box (default 512)")
    p.add_argument("--density", type=float, default=0.997, help="g/cm^3 (default 0.997)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--damp", type=float, default=100.0, help="Langevin damping time 1/gamma, fs (default 100)")
    p.add_argument("--seed", type=int, default=12345, help="default LAMMPS seed of the deck (default 12345)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs (default 2)")
    p.add_argument("--dynamics", default=None,
                   help="the model's dynamics.json (a training state's, or results/final's): its "
                        "kind, temperature, time step and learned values replace --temperature, "
                        "--damp and --timestep")
    p.add_argument("--table-points", type=int, default=DEFAULT_TABLE_POINTS,
                   help=f"pair-table rows (default {DEFAULT_TABLE_POINTS})")
    p.set_defaults(func=_cmd_export)


_REGISTRY.append(_register_export)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
