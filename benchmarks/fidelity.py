"""Fidelity of CG water models against the AA reference (docs/method.md §7), measured in one run.

For every model, a CG run started from the last frame of the mapped AA trajectory (same box and
beads) is compared with AA: RDF max |Δg| over 2–12 Å, ADF total-variation distance (neighbours
within 3.3 Å), MSD_CG/MSD_AA at 0.1 … 50 ps and D_CG/D_AA (D from the 10–50 ps MSD slope), all
from :func:`advcg.observables.compute_observables` / :func:`~advcg.observables.compare_observables`.

Models:

* ``--model NAME=DIR``: a trained advcg model, DIR a training state directory (``potential.json``
  + ``dynamics.json``) or the pipeline's ``results/final`` (``parameters.json`` +
  ``dynamics.json``); run with its own learned Langevin damping, time step and temperature;
* the baselines of docs/method.md §7, built from an IBI pair-only potential ``--ibi``:
  "IBI pair-only, NVE" (Langevin equilibration, then production without any thermostat, plain
  velocity Verlet) and "IBI pair-only + Langevin fitted to D" (the damping time whose D matches
  D_AA, found by a secant root find in log damp on short runs, then evaluated like every model).

Usage (the pair-only IBI potential from ``advcg init --pair-only ... --outdir results/ibi_pair_only``)::

    python benchmarks/fidelity.py --aa-beads results/aa/beads.npz \\
        --ibi results/ibi_pair_only/potential.json --model adversarial=results/final --threads 2
    python benchmarks/fidelity.py --aa-beads ... --ibi ... --quick      # smoke run (10 ps runs)

Writes the Markdown table to ``--out`` (default ``benchmarks/results/fidelity.md``), the numbers
to the ``.json`` beside it, and overlay plots ``<out>_observables.png`` (RDF, ADF, MSD of every
model against AA) and ``<out>_msd_ratio.png`` (MSD_CG/MSD_AA against time); ``--update-readme``
puts the table between ``<!-- fidelity:begin -->`` and ``<!-- fidelity:end -->`` in benchmarks/README.md
(``--readme-section NAME``: between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``, e.g. for a
second AA reference such as TIP4P/2005, titled with ``--case``).
Every number printed is measured in that run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from advcg import units
from advcg.config import load_config
from advcg.dynamics import LangevinDynamics, dynamics_from_dict
from advcg.engine import Accelerator, choose_accelerator, lammps_module
from advcg.io import atomic_path, replace_marked_section, write_json, write_text
from advcg.observables import (
    MSD_RATIO_TIMES_PS,
    Observables,
    compare_observables,
    compute_observables,
    diffusion_coefficient,
    load_observables_json,
    msd,
    msd_ratios_to_json,
)
from advcg.potential import CGPotential
from advcg.simulation import NVERecording, RunPlan, recording_trajectory
from advcg.stages import EVALUATE, ps_to_steps, run_model
from advcg.state import DYNAMICS_FILE, POTENTIAL_FILE, RoundProgress, TrainingState, load_state
from advcg.trajectory import CGTrajectory

from machine import machine_summary

logger = logging.getLogger("fidelity")

ROOT = Path(__file__).resolve().parent.parent
#: The project's fidelity goals (docs/method.md §7 metrics).
RDF_GOAL = 0.05
ADF_GOAL = 0.03
MSD_GOAL = (0.95, 1.05)
MSD_GOAL_TIMES_PS = tuple(t for t in MSD_RATIO_TIMES_PS if 0.2 <= t <= 50.0)
ADF_CUTOFF = 3.3            # Å, the cutoff of the method's ADF
FINAL_PARAMETERS_FILE = "parameters.json"   # results/final: the potential (advcg.pipeline.finalise)
README_SECTION = "fidelity"   # README markers <!-- fidelity:begin --> ... <!-- fidelity:end -->
NVE_NAME = "IBI pair-only, NVE"
FITTED_NAME = "IBI pair-only + Langevin fitted to D"
MAX_DAMP = 1e6              # fs: beyond this the friction no longer changes D measurably


# -- models ---------------------------------------------------------------------------------------
def load_model(directory: Path) -> TrainingState:
    """A trained model from a training state directory or from the pipeline's ``results/final``."""
    directory = Path(directory)
    if (directory / POTENTIAL_FILE).is_file():
        return load_state(directory)
    parameters, dynamics = directory / FINAL_PARAMETERS_FILE, directory / DYNAMICS_FILE
    if not (parameters.is_file() and dynamics.is_file()):
        raise FileNotFoundError(f"{directory}: neither a training state ({POTENTIAL_FILE} + "
                                f"{DYNAMICS_FILE}) nor a final model ({FINAL_PARAMETERS_FILE} + "
                                f"{DYNAMICS_FILE})")
    try:
        fields = json.loads(dynamics.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{dynamics}: not a valid dynamics file ({exc})") from exc
    return TrainingState(CGPotential.from_json(parameters), dynamics_from_dict(fields, str(dynamics)))


def threebody_strength(potential: CGPotential) -> float:
    """Largest |parameter| of the three-body term (0 for a pair-only potential)."""
    values = potential.threebody.parameter_vector().detach().numpy()
    term = potential.to_dict()["threebody"]
    if "lambda" in term:   # sw: only the strength λ switches the term on
        return abs(float(term["lambda"]))
    return float(np.max(np.abs(values))) if values.size else 0.0


# -- runs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """Lengths of the CG runs and where they run."""

    run_ps: float
    equilibration_ps: float
    frame_fs: float
    accelerator: Accelerator
    workdir: Path
    observable_step: int = 1

    def plan(self, timestep: float, run_ps: float | None = None, nve: bool = False) -> RunPlan:
        """Equilibration, then ``run_ps`` (default :attr:`run_ps`) with a frame every ``frame_fs``."""
        frame_every = max(1, ps_to_steps(self.frame_fs / units.FS_PER_PS, timestep))
        n_steps = frame_every * math.ceil(ps_to_steps(run_ps or self.run_ps, timestep) / frame_every)
        return RunPlan(ps_to_steps(self.equilibration_ps, timestep), n_steps, frame_every,
                       nve_production=nve)


@dataclass
class Run:
    """One CG run of one model: its trajectory, observables and metrics against AA."""

    name: str
    state: TrainingState
    nve: bool
    observables: Observables
    metrics: dict[str, Any]
    seconds: float
    n_frames: int
    duration_ps: float
    nve_temperature: float | None = None     # K, mean over the NVE production
    nve_energy_drift: float | None = None    # k_BT per bead over the NVE production
    notes: list[str] = field(default_factory=list)


def simulate(state: TrainingState, aa: CGTrajectory, settings: RunSettings, label: str,
             run_ps: float | None = None, nve: bool = False) -> tuple[CGTrajectory, NVERecording | None]:
    """A CG run of ``state`` from the last AA frame (the evaluate stage's run, :func:`advcg.stages.run_model`)."""
    plan = settings.plan(state.dynamics.timestep, run_ps, nve)
    model_dir = settings.workdir / re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
    recording = run_model(state, aa, settings.accelerator, model_dir, plan,
                          state.progress.round_seed(EVALUATE))
    traj = recording_trajectory(recording, state.dynamics.timestep, state.dynamics.mass)
    return traj, recording if isinstance(recording, NVERecording) else None


def observables_like(traj: CGTrajectory, reference: Observables, step: int = 1) -> Observables:
    """Observables of ``traj`` on the reference's RDF and ADF bins."""
    r_max = float(reference.rdf.r[-1] + 0.5 * reference.rdf.bin_width)
    return compute_observables(traj, r_max=r_max, rdf_bin_width=reference.rdf.bin_width,
                               adf_cutoff=reference.adf.cutoff, adf_bin_width=reference.adf.bin_width,
                               step=step)


def evaluate(name: str, state: TrainingState, aa: CGTrajectory, reference: Observables,
             settings: RunSettings, nve: bool = False) -> Run:
    """Run ``state`` for ``settings.run_ps`` and compare it with AA."""
    started = time.perf_counter()
    traj, nve_recording = simulate(state, aa, settings, name, nve=nve)
    observables = observables_like(traj, reference, settings.observable_step)
    metrics = compare_observables(observables, reference)
    run = Run(name=name, state=state, nve=nve, observables=observables, metrics=metrics,
              seconds=time.perf_counter() - started, n_frames=traj.n_frames,
              duration_ps=float(traj.times[-1] / units.FS_PER_PS))
    if nve_recording is not None:
        run.nve_temperature = float(np.mean(nve_recording.temperature))
        drift = nve_recording.total_energy[-1] - nve_recording.total_energy[0]
        run.nve_energy_drift = float(drift / (traj.n_beads * units.kT(run.nve_temperature)))
    logger.info("%s: RDF %.4f, ADF %.4f, D ratio %s (%.0f s)", name, metrics["rdf_max_abs_diff"],
                metrics["adf_total_variation"], metrics["diffusion_ratio"], run.seconds)
    return run


# -- friction fitted to D -------------------------------------------------------------------------
@dataclass(frozen=True)
class FitPoint:
    """One short Langevin run of the friction fit."""

    damp: float        # fs
    diffusion: float   # Å²/fs
    ratio: float       # D / D_AA
    seconds: float


@dataclass
class FrictionFit:
    """The damping time whose D matches D_AA, and the runs that found it."""

    damp: float
    target: float                          # D_AA, Å²/fs
    fit_range_ps: tuple[float, float]
    points: list[FitPoint]
    converged: bool
    message: str


def secant_in_log(points: Sequence[FitPoint], assumed_slope: float = 0.5,
                  max_factor: float = 10.0) -> float:
    """Next damp of the root find of log(D/D_AA) in u = log damp.

    With a bracket (one trial too fast, one too slow) the regula falsi step between the
    bracketing pair closest to the root; otherwise the secant through the last two points
    (falling back to ``assumed_slope`` = d log D / d log damp when it is not positive); the step
    is capped at a factor ``max_factor`` in damp.
    """
    u = np.log([p.damp for p in points])
    f = np.log([p.ratio for p in points])
    above, below = np.flatnonzero(f > 0), np.flatnonzero(f < 0)
    if above.size and below.size:   # bracketed: interpolate between the closest pair around 0
        a = above[np.argmin(f[above])]
        b = below[np.argmax(f[below])]
        return float(np.exp(u[a] - f[a] * (u[b] - u[a]) / (f[b] - f[a])))
    slope = assumed_slope
    if len(points) >= 2 and u[-1] != u[-2]:
        measured = (f[-1] - f[-2]) / (u[-1] - u[-2])
        if measured > 0.05:
            slope = measured
    step = float(np.clip(-f[-1] / slope, -math.log(max_factor), math.log(max_factor)))
    return float(min(math.exp(u[-1] + step), MAX_DAMP))


def fit_friction(base: TrainingState, aa: CGTrajectory, target: float, settings: RunSettings,
                 start_damp: float, run_ps: float, fit_range_ps: tuple[float, float],
                 max_runs: int, tolerance: float) -> FrictionFit:
    """Find the damping time of ``base``'s Langevin dynamics whose D matches ``target`` (D_AA).

    Each trial is a run of ``run_ps`` (after the usual equilibration, same seed for every trial:
    common random numbers) with D from the MSD slope over ``fit_range_ps``. The search stops once
    |D/D_AA − 1| <= ``tolerance`` or after ``max_runs`` trials; the fitted damp is then the trial
    within tolerance, or else the next secant estimate (untested until the evaluation run).
    """
    points: list[FitPoint] = []
    damp = float(start_damp)
    lo, hi = (t * units.FS_PER_PS for t in fit_range_ps)
    for k in range(max_runs):
        started = time.perf_counter()
        state = TrainingState(base.potential, replace(base.dynamics, damp=damp), base.progress)
        traj, _ = simulate(state, aa, settings, f"fit_{k}", run_ps=run_ps)
        m = msd(traj)
        d = diffusion_coefficient(m.times, m.msd, (lo, hi)).coefficient
        points.append(FitPoint(damp, d, d / target, time.perf_counter() - started))
        logger.info("friction fit %d: damp %.4g fs -> D/D_AA %.3f", k, damp, d / target)
        if abs(d / target - 1.0) <= tolerance:
            return FrictionFit(damp, target, fit_range_ps, points, True,
                               f"|D/D_AA - 1| <= {tolerance:g} after {k + 1} runs")
        damp = secant_in_log(points)
        if damp >= MAX_DAMP and points[-1].ratio < 1.0:
            return FrictionFit(MAX_DAMP, target, fit_range_ps, points, False,
                               "even the weakest friction diffuses slower than AA")
    return FrictionFit(damp, target, fit_range_ps, points, False,
                       f"not within {tolerance:g} after {max_runs} runs: next secant estimate used")


# -- output ---------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def goals_met(metrics: dict[str, Any]) -> dict[str, bool | None]:
    """Whether each goal is met (``None``: the MSD ratios do not all exist for this run length)."""
    ratios = [metrics["msd_ratios"].get(t, float("nan")) for t in MSD_GOAL_TIMES_PS]
    msd_ok = None if not all(math.isfinite(r) for r in ratios) else all(
        MSD_GOAL[0] <= r <= MSD_GOAL[1] for r in ratios)
    return {"RDF": metrics["rdf_max_abs_diff"] <= RDF_GOAL,
            "ADF": metrics["adf_total_variation"] <= ADF_GOAL, "MSD": msd_ok}


def _damp_text(run: Run) -> str:
    return "∞ (NVE)" if run.nve else f"{run.state.dynamics.damp:.4g}"


def markdown_table(runs: Sequence[Run]) -> str:
    """The Markdown table: one row per model and a goals row."""
    times = " | ".join([f"MSD ratio {MSD_RATIO_TIMES_PS[0]:g} ps"]
                       + [f"{t:g} ps" for t in MSD_RATIO_TIMES_PS[1:]])
    lines = [f"| model | damp (fs) | RDF max\\|Δg\\| | ADF TVD | {times} | D ratio | goals met |",
             "|---|---:|---:|---:|" + "---:|" * len(MSD_RATIO_TIMES_PS) + "---:|---|",
             f"| *goal* | | ≤ {RDF_GOAL:g} | ≤ {ADF_GOAL:g} | "
             + " | ".join("" if t not in MSD_GOAL_TIMES_PS else f"{MSD_GOAL[0]:g}–{MSD_GOAL[1]:g}"
                          for t in MSD_RATIO_TIMES_PS) + " | | |"]
    for run in runs:
        m = run.metrics
        met = goals_met(m)
        goals = ", ".join(f"{k} {'✓' if v else ('✗' if v is False else 'n/a')}" for k, v in met.items())
        ratios = " | ".join(_fmt(m["msd_ratios"].get(t)) for t in MSD_RATIO_TIMES_PS)
        lines.append(f"| {run.name} | {_damp_text(run)} | {_fmt(m['rdf_max_abs_diff'], 4)} | "
                     f"{_fmt(m['adf_total_variation'], 4)} | {ratios} | {_fmt(m['diffusion_ratio'])} "
                     f"| {goals} |")
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def machine_text(accelerator: Accelerator, threads: int) -> str:
    """Host, CPU model and core count, and how LAMMPS ran."""
    return (f"{machine_summary()}; LAMMPS {lammps_module().__version__} {accelerator.describe()}, "
            f"torch {threads} thread(s)")


def report_markdown(runs: Sequence[Run], fit: FrictionFit | None, reference: Observables,
                    aa: CGTrajectory, settings: RunSettings, args: argparse.Namespace,
                    started: datetime.datetime, plots: Sequence[Path]) -> str:
    """The whole Markdown block: header, table, notes."""
    d_aa = reference.diffusion
    case = f" ({args.case})" if args.case else ""
    out = [f"**Fidelity against AA{case}** — measured {started.strftime('%Y-%m-%d %H:%M %Z').strip()} on "
           f"{machine_text(settings.accelerator, args.threads)}"
           + (" — **quick smoke run, not the benchmark**" if args.quick else "") + ".",
           "",
           f"AA: `{args.aa_beads}` ({aa.n_beads} beads, {aa.duration / units.FS_PER_PS:g} ps, "
           + (f"D_AA = {d_aa.coefficient_si:.3e} m²/s" if d_aa else "no D_AA") + "). "
           f"Each CG run starts from the last AA frame, equilibrates {settings.equilibration_ps:g} ps "
           f"with Langevin dynamics and records {settings.run_ps:g} ps, a frame every "
           f"{settings.frame_fs:g} fs. RDF over 2–12 Å; ADF neighbours within "
           f"{reference.adf.cutoff:g} Å; MSD with the centre-of-mass drift removed (ratios at lags "
           f"beyond half a run, > {settings.run_ps / 2:g} ps, average over few time origins); D from "
           "the 10–50 ps MSD slope (n/a: run too short).",
           "",
           markdown_table(runs),
           ""]
    notes = []
    for run in runs:
        extra = [f"{run.duration_ps:g} ps, {run.n_frames} frames, {run.seconds:.0f} s"]
        if run.nve:
            extra.append(f"Langevin equilibration with damp {run.state.dynamics.damp:g} fs, then "
                         f"`fix nve` only: mean T = {_fmt(run.nve_temperature, 1)} K, total-energy "
                         f"drift {run.nve_energy_drift:.2g} k_BT per bead")
        if run.observables.diffusion is not None:
            extra.append(f"D = {run.observables.diffusion.coefficient_si:.3e} m²/s")
        extra += run.notes
        notes.append(f"- {run.name}: " + "; ".join(extra) + ".")
    if fit is not None:
        trials = ", ".join(f"{p.damp:.4g} fs → {p.ratio:.3f}" for p in fit.points)
        notes.append(f"- Friction fit: D/D_AA from {len(fit.points)} runs of {args.fit_run_ps:g} ps "
                     f"(D from the {fit.fit_range_ps[0]:g}–{fit.fit_range_ps[1]:g} ps slope; "
                     f"target D_AA from 10–50 ps): {trials}; fitted damp **{fit.damp:.4g} fs** "
                     f"({fit.message}).")
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    notes.append(f"- Plots: {', '.join(f'`{_shown(p)}`' for p in plots)}. Command: `python {command}`.")
    return "\n".join(out + notes) + "\n"


def save_plots(runs: Sequence[Run], reference: Observables, out: Path) -> list[Path]:
    """RDF/ADF/MSD overlays of every model and AA, and MSD_CG/MSD_AA against time (PNG)."""
    from matplotlib.figure import Figure  # no pyplot: Agg canvas, no global state
    from matplotlib.ticker import FormatStrFormatter

    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    series = [("AA", reference, "k", "--")] + [(r.name, r.observables, f"C{k}", "-")
                                             for k, r in enumerate(runs)]
    for label, obs, colour, style in series:
        axes[0].plot(obs.rdf.r, obs.rdf.g, style, color=colour, label=label, lw=1.2)
        axes[1].plot(obs.adf.theta, obs.adf.density, style, color=colour, label=label, lw=1.2)
        if obs.msd is not None and len(obs.msd.times) > 1:
            axes[2].loglog(obs.msd.times[1:] / units.FS_PER_PS, obs.msd.msd[1:], style,
                           color=colour, label=label, lw=1.2)
    axes[0].set(xlabel="r (Å)", ylabel="g(r)", title="RDF")
    axes[1].set(xlabel="θ (degrees)", ylabel="p(θ) (1/degree)",
                title=f"ADF, neighbours within {reference.adf.cutoff:g} Å")
    axes[2].set(xlabel="t (ps)", ylabel="MSD (Å²)", title="MSD (COM drift removed)")
    axes[0].legend(fontsize=8)
    observables_png = out.with_name(f"{out.stem}_observables.png")
    with atomic_path(observables_png) as tmp:
        fig.savefig(tmp, dpi=120)

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.axhspan(*MSD_GOAL, color="0.85", label=f"goal {MSD_GOAL[0]:g}–{MSD_GOAL[1]:g}")
    ax.axhline(1.0, color="k", lw=0.8)
    for k, run in enumerate(runs):
        cg = run.observables.msd
        if cg is None or reference.msd is None:
            continue
        t = cg.times[1:]
        inside = t <= reference.msd.times[-1]
        ratio = cg.msd[1:][inside] / np.interp(t[inside], reference.msd.times, reference.msd.msd)
        ax.loglog(t[inside] / units.FS_PER_PS, ratio, color=f"C{k}", lw=1.2, label=run.name)
        marks = run.metrics["msd_ratios"]
        ax.loglog(list(marks), list(marks.values()), "o", color=f"C{k}", ms=4)
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set(xlabel="t (ps)", ylabel="MSD_CG / MSD_AA", title="MSD ratio (dots: reported times)")
    ax.legend(fontsize=8)
    ratio_png = out.with_name(f"{out.stem}_msd_ratio.png")
    with atomic_path(ratio_png) as tmp:
        fig.savefig(tmp, dpi=120)
    return [observables_png, ratio_png]


def results_json(runs: Sequence[Run], fit: FrictionFit | None) -> dict[str, Any]:
    """The measured numbers as strict JSON (NaN as null)."""
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    models = []
    for run in runs:
        m = run.metrics
        models.append({
            "name": run.name, "nve": run.nve, "damp_fs": None if run.nve else run.state.dynamics.damp,
            "rdf_max_abs_diff": m["rdf_max_abs_diff"], "adf_total_variation": m["adf_total_variation"],
            "msd_ratios": msd_ratios_to_json(m["msd_ratios"]),
            "diffusion_ratio": m["diffusion_ratio"], "goals_met": goals_met(m),
            "run_ps": run.duration_ps, "seconds": run.seconds,
            "nve_temperature": run.nve_temperature, "nve_energy_drift_kT_per_bead": run.nve_energy_drift})
    out: dict[str, Any] = {"models": models, "goals": {"rdf": RDF_GOAL, "adf": ADF_GOAL,
                                                       "msd": list(MSD_GOAL)}}
    if fit is not None:
        out["friction_fit"] = {"damp_fs": fit.damp, "converged": fit.converged, "message": fit.message,
                               "target_D": fit.target, "fit_range_ps": list(fit.fit_range_ps),
                               "runs": [vars(p) for p in fit.points]}
    return out


def _model_argument(text: str) -> tuple[str, Path]:
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"--model takes NAME=DIR, got {text!r}")
    return name, Path(directory)


def parse_args(argv: Sequence[str] | None, config: dict[str, Any]) -> argparse.Namespace:
    """Command line; defaults from the configuration where it has them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--aa-beads", type=Path, required=True, help="mapped AA trajectory (.npz)")
    parser.add_argument("--aa-observables", type=Path, default=None,
                        help="AA observables JSON (default: computed from --aa-beads)")
    parser.add_argument("--model", type=_model_argument, action="append", default=[],
                        metavar="NAME=DIR", help="trained model: state directory or results/final")
    parser.add_argument("--ibi", type=Path, default=None,
                        help="IBI pair-only potential JSON for the two baselines")
    parser.add_argument("--run-ps", type=float, default=config.evaluation.run_ps,
                        help="recorded length of every evaluation run, ps")
    parser.add_argument("--equilibration-ps", type=float, default=config.training.equilibration_ps)
    parser.add_argument("--frame-fs", type=float, default=config.evaluation.frame_interval_fs)
    parser.add_argument("--temperature", type=float, default=config.temperature, help="baselines, K")
    parser.add_argument("--timestep", type=float, default=config.timestep, help="baselines, fs")
    parser.add_argument("--seed", type=int, default=config.seed, help="baselines' seed")
    parser.add_argument("--nve-equilibration-damp", type=float, default=config.dynamics.sections["langevin"]["damp_fs"],
                        help="damping of the NVE baseline's Langevin equilibration, fs")
    parser.add_argument("--fit-start-damp", type=float, default=config.dynamics.sections["langevin"]["damp_fs"],
                        help="first damping time of the friction fit, fs")
    parser.add_argument("--fit-run-ps", type=float, default=40.0, help="length of each fit run, ps")
    parser.add_argument("--fit-range-ps", type=float, nargs=2, default=(2.0, 20.0), metavar=("LO", "HI"),
                        help="MSD slope range of a fit run's D, ps")
    parser.add_argument("--fit-runs", type=int, default=6, help="most fit runs")
    parser.add_argument("--fit-tolerance", type=float, default=0.02, help="stop at |D/D_AA - 1| <= this")
    parser.add_argument("--observable-step", type=int, default=1, help="RDF/ADF on every n-th frame")
    parser.add_argument("--accelerator", default=config.accelerator)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="exported models (default: temporary)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fidelity.md")
    parser.add_argument("--update-readme", action="store_true",
                        help="put the table between the --readme-section markers of --readme")
    parser.add_argument("--readme-section", default=README_SECTION,
                        help="README markers <!-- NAME:begin --> ... <!-- NAME:end --> (default %(default)s)")
    parser.add_argument("--case", default="", help="name of the AA reference in the table's title")
    parser.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 10 ps runs, 2 ps equilibration, 3 fit runs of 10 ps (2-5 ps slope)")
    args = parser.parse_args(argv)
    if args.quick:
        args.run_ps, args.equilibration_ps = 10.0, 2.0
        args.fit_run_ps, args.fit_range_ps, args.fit_runs = 10.0, (2.0, 5.0), 3
    if not args.model and args.ibi is None:
        parser.error("nothing to compare: give --model NAME=DIR and/or --ibi PATH")
    if args.fit_range_ps[1] > args.fit_run_ps or args.fit_range_ps[0] >= args.fit_range_ps[1]:
        parser.error("--fit-range-ps must be LO < HI <= --fit-run-ps")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every model, print the table and write the outputs."""
    config = load_config()
    args = parse_args(argv, config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("advcg.export", "advcg.engine", "advcg.potential"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    torch.set_num_threads(args.threads)
    started = datetime.datetime.now().astimezone()

    aa = CGTrajectory.load(args.aa_beads)
    if args.aa_observables is not None:
        reference = load_observables_json(args.aa_observables)
    else:
        reference = compute_observables(aa, r_max=config.evaluation.rdf_r_max,
                                        adf_cutoff=ADF_CUTOFF, step=args.observable_step)
    if not math.isclose(reference.adf.cutoff, ADF_CUTOFF):
        logger.warning("the AA ADF has cutoff %.3f Å, not %.1f Å", reference.adf.cutoff, ADF_CUTOFF)
    accelerator = choose_accelerator(args.accelerator, args.threads)
    models = [(name, load_model(directory)) for name, directory in args.model]
    ibi = None
    if args.ibi is not None:
        ibi = CGPotential.from_json(args.ibi)
        if threebody_strength(ibi) > 0:
            raise ValueError(f"{args.ibi} has a non-zero three-body term: the baselines need a "
                             "pair-only IBI potential (advcg init --pair-only)")

    with tempfile.TemporaryDirectory(prefix="advcg-fidelity-") as tmp:
        settings = RunSettings(args.run_ps, args.equilibration_ps, args.frame_fs, accelerator,
                               Path(args.workdir or tmp), args.observable_step)
        runs: list[Run] = []
        for name, state in models:
            runs.append(evaluate(name, state, aa, reference, settings))
            runs[-1].notes.append(f"round {state.progress.round}")
        fit = None
        if ibi is not None:
            base = LangevinDynamics(damp=args.nve_equilibration_damp, temperature=args.temperature,
                                    timestep=args.timestep, mass=aa.mass)
            progress = RoundProgress(seed=args.seed)
            runs.append(evaluate(NVE_NAME, TrainingState(ibi, base, progress), aa, reference, settings,
                                 nve=True))
            if reference.diffusion is None:
                raise ValueError("the AA reference has no D (shorter than 50 ps): cannot fit friction")
            fit = fit_friction(TrainingState(ibi, base, progress), aa, reference.diffusion.coefficient, settings,
                               args.fit_start_damp, args.fit_run_ps, tuple(args.fit_range_ps),
                               args.fit_runs, args.fit_tolerance)
            fitted = TrainingState(ibi, replace(base, damp=fit.damp), progress)
            runs.append(evaluate(FITTED_NAME, fitted, aa, reference, settings))

    plots = save_plots(runs, reference, args.out)
    block = report_markdown(runs, fit, reference, aa, settings, args, started, plots)
    print(block)
    write_text(args.out, block)
    write_json(args.out.with_suffix(".json"), results_json(runs, fit))
    print(f"wrote {args.out}, {args.out.with_suffix('.json').name} and "
          f"{', '.join(p.name for p in plots)}")
    if args.update_readme:
        replace_marked_section(args.readme, args.readme_section, block)
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
