"""The pipeline's stages: each one a function of files, so that Snakemake can rerun any one alone.

==================  ====================================================================
stage               in → out
==================  ====================================================================
``initial_state``   initial potential (``advcg init``: :func:`advcg.ibi.initialise`) →
                    training state 0 with the configured initial dynamics
``simulate``        state k, AA trajectory → CG recording (per-step window paths)
``aa_features``     AA trajectory → per-bead window features of the AA windows (once)
``cg_features``     CG recording → per-bead window features of the CG windows
``discriminate``    AA + CG features, discriminator k−1 → discriminator k, training log
``update``          state k, recording, CG features, discriminator k, AA → state k+1 (the
                    significant gradient's Adam step plus the structure correction, checked
                    by the divergence guard's probe runs), update report
``evaluate``        state, AA observables → CG observables and metrics against AA
``finalise``        last state + its evaluation → ``results/final``: LAMMPS files, deck,
                    parameters, metrics
==================  ====================================================================

:func:`run_round` runs one whole round in one process (benchmarks, tests); the Snakefile keeps
one rule per stage. Every output is written atomically. Seeds derive from the configuration's
seed and the round index (:meth:`advcg.state.RoundProgress.round_seed`). Each stage takes the
configuration sections it uses.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advcg.config import Config, DynamicsSettings, EvaluationSettings, PotentialSettings, TrainingSettings
from advcg.discriminator import (
    Discriminator,
    DiscriminatorSettings,
    FeatureSpec,
    generator_losses,
    load_discriminator,
    save_discriminator,
    train_discriminator,
    window_features,
)
from advcg.engine import EngineError
from advcg.estimator import GradientEstimate, estimate_gradient
from advcg.export import export_model
from advcg.guard import GuardEvent, GuardSettings, ProbeResult, guarded_step
from advcg.io import atomic_path, read_json, write_json, write_text
from advcg.observables import (
    Observables,
    compare_observables,
    compute_observables,
    load_observables_json,
    msd_ratios_to_json,
    save_observables_json,
)
from advcg.potential import CGPotential
from advcg.recording import Recording
from advcg.simulation import CGSystem, RunPlan, build_engine, recording_trajectory, run_cg
from advcg.state import RoundProgress, TrainingState, load_state, save_state
from advcg.structure import recording_frames, structure_correction
from advcg.trajectory import CGTrajectory
from advcg.units import WATER_MASS, mass_density
from advcg.update_rule import significant_gradient
from advcg.windows import Windows, WindowSpec, slice_windows, windows_from_paths

logger = logging.getLogger(__name__)

SIMULATE, DISCRIMINATE, EVALUATE, PROBE = 1, 2, 3, 4   # stage numbers for the round seeds

#: Evaluation metrics copied into ``final/metrics.json``.
FINAL_METRICS = ("rdf_max_abs_diff", "rdf_r_range", "adf_total_variation", "msd_ratios",
                 "diffusion_ratio")


def ps_to_steps(ps: float, timestep: float) -> int:
    """The number of MD steps of ``timestep`` fs in ``ps`` picoseconds."""
    return int(round(ps * 1000.0 / timestep))


def run_model(state: TrainingState, aa: CGTrajectory, accelerator: str, model_dir: Path,
              plan: RunPlan, seed: int) -> Recording:
    """Export ``state``'s model to ``model_dir`` and run it with its dynamics and ``seed``, from
    the last frame of ``aa`` (its box and density)."""
    system = CGSystem.from_trajectory(aa, -1)
    density = mass_density(system.n_beads, float(np.prod(system.box)), system.mass)
    files = export_model(state.potential, model_dir, state.dynamics, n_beads=system.n_beads,
                         density=density, seed=seed)
    engine = build_engine(system, files, state.dynamics.temperature, state.dynamics.timestep,
                          velocity_seed=seed, accelerator=accelerator)
    try:
        return run_cg(engine, state.dynamics, seed, plan)
    finally:
        engine.close()


def _window_plan(n_windows: int, windows: WindowSpec, timestep: float, spacing_steps: int,
                 equilibration_ps: float, frame_every: int = 0,
                 record_forces: bool = False) -> tuple[RunPlan, int]:
    """The run plan of ``n_windows`` training windows (one every ``spacing_steps``, at least a
    window length apart) after ``equilibration_ps``, and the window lag in steps."""
    lag_steps = windows.lag_steps(timestep)
    window_steps = windows.n_lags * lag_steps
    plan = RunPlan.evenly_spaced_windows(
        n_windows=n_windows, window_steps=window_steps, spacing_steps=max(window_steps, spacing_steps),
        equilibration_steps=ps_to_steps(equilibration_ps, timestep), frame_every=frame_every,
        record_forces=record_forces)
    return plan, lag_steps


# -- state 0 -----------------------------------------------------------------------------------
def initial_state(potential_path: str | os.PathLike, outdir: str | os.PathLike, *,
                  potential: PotentialSettings, dynamics: DynamicsSettings, temperature: float,
                  timestep: float, seed: int) -> TrainingState:
    """Training state 0: the initial potential with the configured initial dynamics (at
    ``temperature``, ``timestep``, the water bead mass) and round 0 of ``seed``; no optimiser
    state yet.

    Raises
    ------
    ValueError
        The potential's three-body variant or pair range differ from ``potential``.
    """
    model = CGPotential.from_json(potential_path)
    if model.variant != potential.variant:
        raise ValueError(f"{potential_path}: three-body variant {model.variant!r} differs from "
                         f"potential.variant {potential.variant!r} of the configuration")
    if abs(model.r_cut - potential.r_cut) > 1e-9:
        raise ValueError(f"{potential_path}: pair cutoff {model.r_cut} Å differs from "
                         f"potential.r_cut {potential.r_cut} Å of the configuration")
    state = TrainingState(model, dynamics.initial(temperature=float(temperature), timestep=float(timestep),
                                                  mass=WATER_MASS),
                          RoundProgress(round=0, seed=int(seed)))
    save_state(outdir, state)
    logger.info("state 0 in %s: %d potential parameters, %s dynamics %s", outdir, model.n_parameters,
                state.dynamics.kind, state.dynamics.describe())
    return state


# -- simulate --------------------------------------------------------------------------------
def simulate(state_dir: Path, aa_trajectory: Path, outdir: Path, *, windows: WindowSpec,
             training: TrainingSettings, accelerator: str) -> Path:
    """Run round k's CG simulation; write ``recording.npz`` and the exported model in ``outdir``."""
    started = time.perf_counter()
    state = load_state(state_dir)
    aa = CGTrajectory.load(aa_trajectory)
    dt = state.dynamics.timestep
    plan, lag_steps = _window_plan(training.windows_per_round, windows, dt,
                                   ps_to_steps(training.window_spacing_ps, dt), training.equilibration_ps,
                                   record_forces=True)   # the estimator uses the forces LAMMPS had
    recording = run_model(state, aa, accelerator, Path(outdir) / "model", plan,
                          state.progress.round_seed(SIMULATE))
    recording.lag_steps = lag_steps
    path = recording.save(Path(outdir) / "recording.npz")
    logger.info("simulate: %d windows in %.1f s", len(recording.window_starts),
                time.perf_counter() - started)
    return path


def recording_windows(recording: Recording) -> Windows:
    """Discriminator windows of a CG recording (frames at the window lag)."""
    starts = recording.window_starts * recording.timestep
    return windows_from_paths(recording.paths, recording.box, recording.lag_steps, starts)


# -- features ---------------------------------------------------------------------------------
def aa_features(aa_trajectory: Path, output: Path, *, windows: WindowSpec) -> Path:
    """Features of all AA windows (computed once for the whole training)."""
    _save_tensor(output, window_features(slice_windows(CGTrajectory.load(aa_trajectory), windows),
                                         FeatureSpec()))
    return output


def cg_features(recording_path: Path, output: Path) -> Path:
    """Features of the CG windows of one round."""
    _save_tensor(output, window_features(recording_windows(Recording.load(recording_path)), FeatureSpec()))
    return output


def _save_tensor(path: Path, tensor: torch.Tensor) -> None:
    with atomic_path(path) as tmp:
        torch.save(tensor, tmp)


def load_features(path: Path) -> torch.Tensor:
    """A features file written by :func:`aa_features` or :func:`cg_features`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file {path} does not exist")
    try:
        features = torch.load(path, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise ValueError(f"feature file {path} is unreadable: {exc}") from exc
    if not isinstance(features, torch.Tensor) or features.ndim != 3:
        raise ValueError(f"feature file {path} does not hold (n_windows, n_beads, n_features) features")
    return features


# -- discriminator ----------------------------------------------------------------------------
def discriminate(aa_features_path: Path, cg_features_path: Path, previous: Path | None,
                 checkpoint: Path, log_path: Path, *, settings: DiscriminatorSettings, seed: int,
                 round_index: int) -> dict[str, Any]:
    """Train the discriminator of round k (warm-started from round k−1's when given)."""
    real, generated = load_features(aa_features_path), load_features(cg_features_path)
    seed = int(np.random.SeedSequence([seed, round_index, DISCRIMINATE]).generate_state(1)[0])
    torch.manual_seed(seed)
    if previous is not None:
        model, optimizer_state, _ = load_discriminator(previous)
    else:
        model, optimizer_state = Discriminator(real.shape[-1], settings.hidden), None
        model.set_standardisation(real)
    started = time.perf_counter()
    log, optimizer_state = train_discriminator(
        model, real, generated, n_steps=settings.steps, batch_size=settings.batch_size,
        lr=settings.learning_rate, seed=seed, optimizer_state=optimizer_state)
    save_discriminator(checkpoint, model, optimizer_state, {"round": round_index})
    report = {"round": round_index, "seconds": time.perf_counter() - started, **log.to_dict()}
    write_json(log_path, report)
    return report


# -- update ---------------------------------------------------------------------------------
def probe(candidate: TrainingState, aa: CGTrajectory, reference: Observables,
          discriminator: Discriminator, seed: int, *, windows: WindowSpec, guard: GuardSettings,
          equilibration_ps: float, accelerator: str) -> ProbeResult:
    """A short run of a model for the divergence guard (:mod:`advcg.guard`): does it run, how
    far is its RDF and ADF from AA, and how artificial do its windows look to the round's
    discriminator. LAMMPS failures (lost atoms, ...) are a result, not an exception."""
    started = time.perf_counter()
    dt = candidate.dynamics.timestep
    lag_steps = windows.lag_steps(dt)
    plan, _ = _window_plan(guard.probe_windows, windows, dt,
                           ps_to_steps(guard.probe_ps, dt) // guard.probe_windows, equilibration_ps,
                           frame_every=lag_steps)
    with tempfile.TemporaryDirectory(prefix="advcg-probe-") as workdir:
        try:
            recording = run_model(candidate, aa, accelerator, Path(workdir), plan, seed)
        except EngineError as exc:
            return ProbeResult(failure=str(exc).splitlines()[0], seconds=time.perf_counter() - started)
    if not (np.all(np.isfinite(recording.frames)) and np.all(np.isfinite(recording.paths))):
        return ProbeResult(failure="non-finite positions", seconds=time.perf_counter() - started)
    traj = recording_trajectory(recording, dt, candidate.dynamics.mass)
    r_max = float(reference.rdf.r[-1] + 0.5 * reference.rdf.bin_width)
    metrics = compare_observables(
        compute_observables(traj, r_max=r_max, rdf_bin_width=reference.rdf.bin_width), reference)
    recording.lag_steps = lag_steps
    losses = generator_losses(discriminator, window_features(recording_windows(recording), FeatureSpec()))
    return ProbeResult(rdf_max_abs_diff=float(metrics["rdf_max_abs_diff"]),
                       adf_total_variation=float(metrics["adf_total_variation"]),
                       generator_loss=float(np.mean(losses)), seconds=time.perf_counter() - started)


@dataclass
class UpdateResult:
    """The next state, the gradient estimate it came from, the step taken and the guard's events."""

    state: TrainingState
    estimate: GradientEstimate
    step: np.ndarray
    events: list[GuardEvent]


def update(state_dir: Path, recording_path: Path, cg_features_path: Path, discriminator: Path,
           aa_trajectory: Path, aa_observables: Path, out_state_dir: Path, report_path: Path, *,
           windows: WindowSpec, training: TrainingSettings, accelerator: str) -> UpdateResult:
    """Estimate ∇J from round k's windows and take one guarded Adam step: state k → state k+1."""
    started = time.perf_counter()
    state = load_state(state_dir)
    recording = Recording.load(recording_path)
    model, _, _ = load_discriminator(discriminator)
    losses = generator_losses(model, load_features(cg_features_path))
    estimate = estimate_gradient(state.potential, recording.paths, recording.box, losses,
                                 state.dynamics, training.estimator, recording.auxiliary,
                                 forces=recording.path_forces)
    estimated = time.perf_counter()
    aa, reference = CGTrajectory.load(aa_trajectory), load_observables_json(aa_observables)
    loaded = time.perf_counter()
    settings = training.structure_correction
    frames = recording_frames(recording.paths, recording.box, recording.window_starts,
                              recording.timestep, settings.frame_interval_fs, state.dynamics.mass)
    structure = structure_correction(state.potential, frames, reference.rdf,
                                     state.dynamics.temperature, settings)
    corrected = time.perf_counter()
    space = state.parameter_space()
    correction = np.zeros(space.size)
    correction[space.block("potential")][state.potential.pair_slice] = structure.delta
    seed = state.progress.round_seed(PROBE)   # the same random numbers for every probe of the round
    gradient = significant_gradient(estimate.gradient, estimate.standard_error,
                                    training.gradient_noise_threshold)

    def check(model_state: TrainingState) -> ProbeResult:
        return probe(model_state, aa, reference, model, seed, windows=windows, guard=training.guard,
                     equilibration_ps=training.equilibration_ps, accelerator=accelerator)

    new_state, baseline, events = guarded_step(
        state, estimate, gradient, correction, rates=training.learning_rates,
        momentum=training.momentum, settings=training.guard, check=check, last_good=str(state_dir))
    step = new_state.parameter_vector() - state.parameter_vector()
    save_state(out_state_dir, new_state)
    ess = estimate.effective_sample_size(step)
    report = {"round": state.progress.round, "seconds": time.perf_counter() - started,
              "estimator_seconds": estimated - started, "structure_seconds": corrected - loaded,
              "generator_loss": estimate.value,
              "generator_loss_se": estimate.value_standard_error, "effective_sample_size": ess,
              "n_windows": len(estimate.per_window), "dynamics": new_state.dynamics.to_dict(),
              "step_scales": dict(new_state.progress.step_scales),
              "rejections": new_state.progress.rejections,
              "structure_correction": structure.to_dict(), "guard_baseline": baseline.to_dict(),
              "guard": [event.to_dict() for event in events], "groups": space.groups,
              "step": step.tolist(), "step_gradient": gradient.tolist(), **estimate.summary()}
    write_json(report_path, report)
    logger.info("update: generator loss %.4f ± %.4f, gradient SNR %.2f, ESS %.1f of %d, dynamics %s",
                estimate.value, estimate.value_standard_error, estimate.global_snr, ess,
                len(estimate.per_window), new_state.dynamics.describe())
    return UpdateResult(new_state, estimate, step, events)


# -- evaluate -------------------------------------------------------------------------------
def evaluate(state_dir: Path, aa_trajectory: Path, aa_observables: Path, outdir: Path, *,
             evaluation: EvaluationSettings, equilibration_ps: float, accelerator: str,
             run_ps: float | None = None) -> dict[str, Any]:
    """A CG run of ``run_ps`` (default ``evaluation.run_ps``) after ``equilibration_ps``, with
    frames every ``evaluation.frame_interval_fs``: observables and metrics against AA, written to
    ``outdir``."""
    started = time.perf_counter()
    state = load_state(state_dir)
    aa = CGTrajectory.load(aa_trajectory)
    dt = state.dynamics.timestep
    frame_every = max(1, ps_to_steps(evaluation.frame_interval_fs / 1000.0, dt))
    run_ps = evaluation.run_ps if run_ps is None else run_ps
    if not run_ps > 0:
        raise ValueError(f"evaluation run length must be > 0 ps, got {run_ps}")
    n_steps = frame_every * math.ceil(ps_to_steps(run_ps, dt) / frame_every)
    plan = RunPlan(ps_to_steps(equilibration_ps, dt), n_steps, frame_every)
    recording = run_model(state, aa, accelerator, Path(outdir) / "model", plan,
                          state.progress.round_seed(EVALUATE))
    traj = recording_trajectory(recording, dt, state.dynamics.mass)
    traj.save(Path(outdir) / "trajectory.npz")
    reference = load_observables_json(aa_observables)
    r_max = float(reference.rdf.r[-1] + 0.5 * reference.rdf.bin_width)   # the AA bins
    observables = compute_observables(traj, r_max=r_max, rdf_bin_width=reference.rdf.bin_width)
    metrics = compare_observables(observables, reference)
    metrics.update({"round": state.progress.round, "dynamics": state.dynamics.to_dict(),
                    "seconds": time.perf_counter() - started})
    save_observables_json(Path(outdir) / "observables.json", observables, metrics, reference)
    # strict JSON: MSD ratios beyond the run's length are NaN, written as null
    write_json(Path(outdir) / "metrics.json", {**metrics, "msd_ratios": msd_ratios_to_json(metrics["msd_ratios"])})
    logger.info("evaluate round %d: RDF max|dg| %.3f, ADF TVD %.3f, D ratio %s",
                state.progress.round, metrics["rdf_max_abs_diff"], metrics["adf_total_variation"],
                metrics["diffusion_ratio"])
    return metrics


# -- final model -----------------------------------------------------------------------------
def finalise(state_dir: str | os.PathLike, aa_trajectory: str | os.PathLike,
             evaluation_metrics: str | os.PathLike, outdir: str | os.PathLike, *,
             seed: int) -> dict[str, Any]:
    """Export the final model and its metrics into ``outdir``.

    ``outdir`` receives ``pair.table``, ``threebody.sw`` (+ ``angle.table`` for
    ``sw/angle/table``), ``pair.in``, ``cg_water.in`` (box of the AA system's size and density,
    the learned dynamics, ``seed``; run ``cd outdir && lmp -in cg_water.in -var nsteps N -var
    seed S``), ``parameters.json`` (the potential), ``dynamics.json`` and ``metrics.json`` (the
    final evaluation against AA: RDF max |Δg|, ADF total variation, MSD ratios, D ratio).
    Everything is written into a temporary directory first and each file renamed into place,
    ``metrics.json`` last.
    """
    state = load_state(state_dir)
    aa = CGTrajectory.load(aa_trajectory)
    evaluation_metrics = Path(evaluation_metrics)
    evaluation = read_json(evaluation_metrics, "evaluation metrics")
    missing = [key for key in FINAL_METRICS if key not in evaluation]
    if missing:
        raise ValueError(f"{evaluation_metrics} lacks the metrics {missing}")
    n_beads = aa.n_beads
    density = mass_density(n_beads, float(np.prod(aa.box[-1])), aa.mass)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final.", dir=outdir.parent))
    try:
        files = export_model(state.potential, tmp, state.dynamics, n_beads=n_beads, density=density,
                             seed=int(seed))
        write_json(tmp / "dynamics.json", state.dynamics.to_dict())
        # the deck names its directory in its header: name the final one, not the temporary one
        write_text(files.deck, files.deck.read_text().replace(str(tmp), str(outdir)))
        metrics = {key: evaluation[key] for key in FINAL_METRICS}
        metrics.update({"round": state.progress.round, "dynamics": state.dynamics.to_dict(),
                        "variant": state.potential.variant, "n_beads": n_beads,
                        "density_g_cm3": density, "evaluation_seconds": evaluation.get("seconds")})
        write_json(tmp / "metrics.json", metrics)
        names = sorted(p.name for p in tmp.iterdir() if p.name != "metrics.json") + ["metrics.json"]
        for name in names:
            os.replace(tmp / name, outdir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("final %s model (round %d, %s dynamics %s) in %s: RDF max|dg| %.3f, ADF TVD %.3f, "
                "D ratio %s", state.potential.variant, state.progress.round, state.dynamics.kind,
                state.dynamics.describe(), outdir, metrics["rdf_max_abs_diff"],
                metrics["adf_total_variation"], metrics["diffusion_ratio"])
    return metrics


# -- one round in one process -------------------------------------------------------------------
@dataclass(frozen=True)
class RoundFiles:
    """The files of round k, laid out as the pipeline's ``results/rounds/round_k``."""

    recording: Path
    cg_features: Path
    discriminator: Path
    discriminator_log: Path
    next_state: Path
    update_report: Path

    @classmethod
    def at(cls, directory: Path) -> RoundFiles:
        """The files of the round directory ``directory``."""
        d = Path(directory)
        return cls(recording=d / "simulate" / "recording.npz", cg_features=d / "cg_features.pt",
                   discriminator=d / "discriminator.pt", discriminator_log=d / "discriminator.json",
                   next_state=d / "next_state", update_report=d / "update.json")


@dataclass
class RoundResult:
    """What :func:`prepare_round` / :func:`run_round` did: the files, the discriminator's log, the
    update (``None`` before it) and the wall time of each stage (s)."""

    files: RoundFiles
    discriminator: dict[str, Any]
    update: UpdateResult | None
    seconds: dict[str, float]


def prepare_round(state_dir: Path, round_dir: Path, aa_trajectory: Path, aa_features_path: Path,
                  config: Config, previous_discriminator: Path | None = None) -> RoundResult:
    """The stages of a round before its update: simulate, CG features, discriminator."""
    files = RoundFiles.at(round_dir)
    seconds: dict[str, float] = {}
    with _timed(seconds, "simulate"):
        simulate(state_dir, aa_trajectory, files.recording.parent, windows=config.windows,
                 training=config.training, accelerator=config.accelerator)
    with _timed(seconds, "cg_features"):
        cg_features(files.recording, files.cg_features)
    with _timed(seconds, "discriminate"):
        log = discriminate(aa_features_path, files.cg_features, previous_discriminator, files.discriminator,
                           files.discriminator_log, settings=config.training.discriminator,
                           seed=config.seed, round_index=load_state(state_dir).progress.round)
    return RoundResult(files, log, None, seconds)


def run_round(state_dir: Path, round_dir: Path, aa_trajectory: Path, aa_features_path: Path,
              aa_observables: Path, config: Config, previous_discriminator: Path | None = None) -> RoundResult:
    """One whole round in one process, with the pipeline's stages and file layout: simulate, CG
    features, discriminator, update (state k → ``round_dir/next_state``)."""
    result = prepare_round(state_dir, round_dir, aa_trajectory, aa_features_path, config,
                           previous_discriminator)
    files = result.files
    with _timed(result.seconds, "update"):
        result.update = update(state_dir, files.recording, files.cg_features, files.discriminator,
                               aa_trajectory, aa_observables, files.next_state, files.update_report,
                               windows=config.windows, training=config.training,
                               accelerator=config.accelerator)
    return result


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Store the wall time of the ``with`` block in ``seconds[name]``."""
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started
