"""One adversarial round, as stages that each read and write files (METHOD §6).

==================  ====================================================================
stage               in → out
==================  ====================================================================
``simulate``        state k, AA trajectory → CG recording (frames + per-step window paths)
``cg_features``     CG recording → per-bead window features of the CG windows
``aa_features``     AA trajectory → per-bead window features of the AA windows (once)
``discriminate``    AA + CG features, discriminator k−1 → discriminator k, training log
``update``          state k, recording, CG features, discriminator k, AA → state k+1 (Adam
                    step on the significant gradient + structure correction, checked by the
                    divergence guard's probe run), gradient report
``evaluate``        state, AA observables → CG observables and metrics against AA
==================  ====================================================================

Each stage is a function of files so that the pipeline (Snakemake) can rerun any one alone; all
outputs are written atomically. Seeds derive from the configuration's seed and the round index.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from advcg.discriminator import (Discriminator, FeatureSpec, generator_losses, load_discriminator,
                                 save_discriminator, train_discriminator, window_features)
from advcg.engine import EngineError
from advcg.estimator import EstimatorSpec, GradientEstimate, estimate_gradient
from advcg.export import ExportedModel, export_model
from advcg.guard import (DivergenceError, GuardEvent, GuardSettings, ProbeResult, dynamics_problems,
                         gradient_problems, rdf_bound, stop_message, structure_problems)
from advcg.io import atomic_path, save_npz, write_json
from advcg.langevin import Recording
from advcg.observables import (Observables, compare_observables, compute_observables,
                               load_observables_json, save_observables_json)
from advcg.units import AVOGADRO
from advcg.simulation import CGSystem, RunPlan, build_engine, recording_trajectory, run_cg
from advcg.state import TrainingState, load_state, save_state
from advcg.structure import StructureSettings, recording_frames, structure_correction
from advcg.trajectory import CGTrajectory
from advcg.windows import WindowSpec, Windows, slice_windows, windows_from_paths

logger = logging.getLogger(__name__)

SIMULATE, DISCRIMINATE, EVALUATE, PROBE = 1, 2, 3, 4   # stage numbers for the round seeds


def window_spec(config: dict[str, Any]) -> WindowSpec:
    w = config["windows"]
    return WindowSpec(n_lags=w["n_lags"], lag=w["lag_fs"], stride=w["stride_fs"])


def ps_to_steps(ps: float, timestep: float) -> int:
    """The number of MD steps of ``timestep`` fs in ``ps`` picoseconds."""
    return int(round(ps * 1000.0 / timestep))


def _export(state: TrainingState, outdir: Path, system: CGSystem, config: dict[str, Any],
            seed: int) -> ExportedModel:
    density = system.n_beads * system.mass / AVOGADRO / (np.prod(system.box) * 1e-24)  # g/cm³
    return export_model(state.potential, outdir, n_beads=system.n_beads, density=float(density),
                        temperature=state.dynamics.temperature, damp_fs=state.dynamics.damp,
                        seed=seed, timestep=state.dynamics.timestep)


def run_state(state: TrainingState, aa: CGTrajectory, config: dict[str, Any], model_dir: Path,
              plan: RunPlan, stage: int, seed: int | None = None) -> Recording:
    """Run ``state``'s model (exported to ``model_dir``) from the last frame of ``aa`` with the
    state's dynamics and ``seed`` (default: the seed of ``stage`` of the state's round)."""
    system = CGSystem.from_trajectory(aa, -1)
    seed = state.dynamics.round_seed(stage) if seed is None else seed
    files = _export(state, model_dir, system, config, seed)
    engine = build_engine(system, files, state.dynamics.temperature, state.dynamics.timestep,
                          velocity_seed=seed, accelerator=config["accelerator"])
    try:
        return run_cg(engine, state.dynamics.langevin(seed), plan)
    finally:
        engine.close()


# -- simulate --------------------------------------------------------------------------------
def simulate(state_dir: Path, aa_trajectory: Path, config: dict[str, Any], outdir: Path) -> Path:
    """Run round k's CG simulation; write ``recording.npz`` and the exported model in ``outdir``."""
    started = time.perf_counter()
    state = load_state(state_dir)
    aa = CGTrajectory.load(aa_trajectory)
    spec = window_spec(config)
    dt = state.dynamics.timestep
    training = config["training"]
    window_steps = spec.n_lags * spec.lag_steps(dt)
    plan = RunPlan.evenly_spaced_windows(
        n_windows=training["windows_per_round"], window_steps=window_steps,
        spacing_steps=ps_to_steps(training["window_spacing_ps"], dt),
        equilibration_steps=ps_to_steps(training["equilibration_ps"], dt))
    recording = run_state(state, aa, config, Path(outdir) / "model", plan, SIMULATE)
    path = Path(outdir) / "recording.npz"
    save_npz(path, paths=recording.paths, box=recording.box, window_starts=recording.window_starts,
             timestep=np.float64(dt), lag_steps=np.int64(spec.lag_steps(dt)))
    logger.info("simulate: %d windows in %.1f s", len(recording.window_starts),
                time.perf_counter() - started)
    return path


def load_recording(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``recording.npz`` written by :func:`simulate`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CG recording {path} does not exist")
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"CG recording {path} is unreadable (truncated or corrupt?): {exc}") from exc


def recording_windows(recording: dict[str, np.ndarray]) -> Windows:
    """Discriminator windows of a CG recording (frames at the window lag)."""
    starts = recording["window_starts"] * float(recording["timestep"])
    return windows_from_paths(recording["paths"], recording["box"], int(recording["lag_steps"]), starts)


# -- features ---------------------------------------------------------------------------------
def aa_features(aa_trajectory: Path, config: dict[str, Any], output: Path) -> Path:
    """Features of all AA windows (computed once for the whole training)."""
    windows = slice_windows(CGTrajectory.load(aa_trajectory), window_spec(config))
    _save_tensor(output, window_features(windows, FeatureSpec()))
    return output


def cg_features(recording_path: Path, output: Path) -> Path:
    """Features of the CG windows of one round."""
    _save_tensor(output, window_features(recording_windows(load_recording(recording_path)), FeatureSpec()))
    return output


def _save_tensor(path: Path, tensor: torch.Tensor) -> None:
    with atomic_path(path) as tmp:
        torch.save(tensor, tmp)


def load_features(path: Path) -> torch.Tensor:
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
                 config: dict[str, Any], round_index: int, checkpoint: Path, log_path: Path) -> dict:
    """Train the discriminator of round k (warm-started from round k−1's when given)."""
    real, generated = load_features(aa_features_path), load_features(cg_features_path)
    settings = config["training"]["discriminator"]
    seed = int(np.random.SeedSequence([config["seed"], round_index, DISCRIMINATE]).generate_state(1)[0])
    torch.manual_seed(seed)
    if previous is not None:
        model, optimizer_state, _ = load_discriminator(previous)
    else:
        model, optimizer_state = Discriminator(real.shape[-1], tuple(settings["hidden"])), None
        model.set_standardisation(real)
    started = time.perf_counter()
    log, optimizer_state = train_discriminator(
        model, real, generated, n_steps=settings["steps"], batch_size=settings["batch_size"],
        lr=settings["learning_rate"], seed=seed, optimizer_state=optimizer_state)
    save_discriminator(checkpoint, model, optimizer_state, {"round": round_index})
    report = {"round": round_index, "seconds": time.perf_counter() - started, **log.to_dict()}
    write_json(log_path, report)
    return report


# -- update ---------------------------------------------------------------------------------
def _learning_rates(state: TrainingState, config: dict[str, Any]) -> np.ndarray:
    """The configured learning rates of ϑ = (θ, log γ), before the guard's step scale."""
    t = config["training"]
    pot = state.potential
    rates = np.empty(pot.n_parameters + 1)
    rates[pot.pair_slice] = t["learning_rate"]
    rates[pot.threebody_slice] = t["learning_rate_threebody"]
    names = pot.parameter_names()
    if "threebody.lambda" in names:   # sw: λ is O(10), cos θ0 is O(0.1)
        rates[names.index("threebody.lambda")] = t["learning_rate_lambda"]
    rates[-1] = t["learning_rate_log_gamma"]
    return rates


def significant_gradient(gradient: np.ndarray, standard_error: np.ndarray, threshold: float) -> np.ndarray:
    """The gradient soft-thresholded at ``threshold`` standard errors: each component shrunk
    towards 0 by ``threshold`` × its standard error, and 0 where it is within that or where its
    standard error is not finite; ``threshold`` 0 returns the gradient as it is. Adam's first step
    is ±rate whatever the gradient's size, so without this a component that is pure noise moves
    as far as one that is not."""
    gradient, standard_error = np.asarray(gradient, float), np.asarray(standard_error, float)
    if threshold == 0:
        return gradient
    with np.errstate(invalid="ignore"):
        shrunk = np.sign(gradient) * np.maximum(np.abs(gradient) - threshold * standard_error, 0.0)
    return np.where(np.isfinite(standard_error), shrunk, 0.0)


def adam_step(state: TrainingState, gradient: np.ndarray, rates: np.ndarray,
              momentum: float = 0.0) -> tuple[np.ndarray, dict]:
    """One Adam step on ϑ = (θ, log γ) with per-parameter step sizes ``rates`` and first-moment
    decay ``momentum`` (β1); returns the new ϑ and the optimiser state (torch's Adam, resumed
    from ``state.optimizer``)."""
    # per-parameter rates: optimise u = ϑ / rate with lr = 1, so each Adam step moves ϑ_p by ~rate_p;
    # a zero rate keeps ϑ_p as it is (its Adam moments still see the gradient)
    rates = np.asarray(rates, dtype=float)
    frozen = rates == 0
    scale = torch.as_tensor(np.where(frozen, 1.0, rates))
    start = state.parameter_vector()
    u = torch.nn.Parameter(torch.as_tensor(start) / scale)
    optimizer = torch.optim.Adam([u], lr=1.0)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    for group in optimizer.param_groups:   # the configured β1, not the one saved with the state
        group["betas"] = (momentum, group["betas"][1])
    u.grad = torch.as_tensor(gradient) * scale
    optimizer.step()
    return np.where(frozen, start, (u.detach() * scale).numpy()), optimizer.state_dict()


#: Bounds that LAMMPS imposes on parameters (``sw`` requires λ >= 0); Adam steps are projected.
PARAMETER_BOUNDS = {"threebody.lambda": (0.0, math.inf)}


def project_to_bounds(vector: np.ndarray, names: list[str]) -> np.ndarray:
    """Clip the entries of ϑ named in :data:`PARAMETER_BOUNDS` into their bounds."""
    vector = np.array(vector, dtype=float)
    for name, (lo, hi) in PARAMETER_BOUNDS.items():
        if name in names:
            k = names.index(name)
            vector[k] = min(max(vector[k], lo), hi)
    return vector


def probe(candidate: TrainingState, aa: CGTrajectory, reference: Observables,
          discriminator: Discriminator, config: dict[str, Any], seed: int) -> ProbeResult:
    """A short run of a model for the divergence guard (:mod:`advcg.guard`): does it run, how
    far is its RDF and ADF from AA, and how artificial do its windows look to the round's
    discriminator. LAMMPS failures (lost atoms, ...) are a result, not an exception."""
    started = time.perf_counter()
    settings = GuardSettings.from_config(config)
    spec = window_spec(config)
    dt = candidate.dynamics.timestep
    lag_steps = spec.lag_steps(dt)
    window_steps = spec.n_lags * lag_steps
    plan = RunPlan.evenly_spaced_windows(
        n_windows=settings.probe_windows, window_steps=window_steps,
        spacing_steps=max(window_steps, ps_to_steps(settings.probe_ps, dt) // settings.probe_windows),
        equilibration_steps=ps_to_steps(config["training"]["equilibration_ps"], dt), frame_every=lag_steps)
    with tempfile.TemporaryDirectory(prefix="advcg-probe-") as workdir:
        try:
            recording = run_state(candidate, aa, config, Path(workdir), plan, PROBE, seed=seed)
        except EngineError as exc:
            return ProbeResult(failure=str(exc).splitlines()[0], seconds=time.perf_counter() - started)
    if not (np.all(np.isfinite(recording.frames)) and np.all(np.isfinite(recording.paths))):
        return ProbeResult(failure="non-finite positions", seconds=time.perf_counter() - started)
    traj = recording_trajectory(recording, dt, candidate.dynamics.mass)
    r_max = float(reference.rdf.r[-1] + 0.5 * reference.rdf.bin_width)
    metrics = compare_observables(
        compute_observables(traj, r_max=r_max, rdf_bin_width=reference.rdf.bin_width), reference)
    windows = windows_from_paths(recording.paths, recording.box, lag_steps, recording.window_starts * dt)
    losses = generator_losses(discriminator, window_features(windows, FeatureSpec()))
    return ProbeResult(rdf_max_abs_diff=float(metrics["rdf_max_abs_diff"]),
                       adf_total_variation=float(metrics["adf_total_variation"]),
                       generator_loss=float(np.mean(losses)), seconds=time.perf_counter() - started)


@dataclass
class UpdateResult:
    state: TrainingState
    estimate: GradientEstimate
    step: np.ndarray
    events: list[GuardEvent]


def _guarded_step(state: TrainingState, estimate: GradientEstimate, gradient: np.ndarray,
                  correction: np.ndarray, config: dict[str, Any],
                  check: Callable[[TrainingState], ProbeResult],
                  last_good: str) -> tuple[TrainingState, ProbeResult, list[GuardEvent]]:
    """Propose Adam steps along ``gradient`` (the significant part of ``estimate``'s) from
    ``state`` plus the structure ``correction`` of ϑ
    (:mod:`advcg.structure`), shrinking the rates after each rejection, until the guard accepts
    one; a non-finite gradient keeps the parameters (the next round redoes this one).

    A rejection for the RDF alone shrinks the potential's steps only (the friction does not change
    the equilibrium structure), and after ``max_rejections`` of them the proposal moves the
    friction alone, which cannot change the structure. Rejections for a failed run, a rising
    generator loss or a non-finite gradient shrink every step, and ``max_rejections`` consecutive
    ones raise :class:`DivergenceError`. Returns the next state, the probe of the current
    parameters and one event per proposal."""
    settings = GuardSettings.from_config(config)
    dyn = state.dynamics
    next_round = dyn.round + 1
    scale, friction_scale = dyn.step_scale, dyn.friction_step_scale
    rejections, structural_rejections, events = dyn.rejections, 0, []
    baseline = check(state) if np.all(np.isfinite(estimate.gradient)) else ProbeResult()
    bound = dyn.rdf_bound if dyn.rdf_bound > 0 else rdf_bound(baseline, settings)
    while True:
        potential_scale = 0.0 if structural_rejections >= settings.max_rejections else scale
        event = GuardEvent(attempt=len(events), step_scale=potential_scale,
                           friction_step_scale=friction_scale,
                           reasons=gradient_problems(estimate.gradient, estimate.names))
        structural_only = False
        if event.accepted:
            rates = _learning_rates(state, config) * np.append(
                np.full(state.potential.n_parameters, potential_scale), friction_scale)
            vector, optimizer_state = adam_step(state, gradient, rates, config["training"]["momentum"])
            if potential_scale > 0:
                vector = vector + correction
            vector = project_to_bounds(vector, state.parameter_names())
            candidate = state.with_parameters(vector, round=next_round, step_scale=scale,
                                              friction_step_scale=friction_scale, rejections=0,
                                              rdf_bound=bound)
            candidate.optimizer = optimizer_state
            event.probe = check(candidate)
            dynamic = dynamics_problems(event.probe, baseline, settings)
            structural = structure_problems(event.probe, bound, settings) if potential_scale > 0 else []
            event.reasons = dynamic + structural
            structural_only = not dynamic
        events.append(event)
        logger.log(logging.INFO if event.accepted else logging.WARNING,
                   "guard: round %d, attempt %d, step scales %.3g (potential), %.3g (friction): %s",
                   dyn.round, event.attempt, potential_scale, friction_scale,
                   "accepted" if event.accepted else "; ".join(event.reasons))
        if event.accepted:
            return candidate, baseline, events
        scale *= settings.step_shrink
        if structural_only:
            structural_rejections += 1
            continue
        rejections += 1
        friction_scale *= settings.step_shrink
        if rejections >= settings.max_rejections:
            raise DivergenceError(stop_message(dyn.round, rejections, events, last_good, settings))
        if not np.all(np.isfinite(estimate.gradient)):   # no smaller step helps: redo the round
            kept = replace(dyn, round=next_round, step_scale=scale, friction_step_scale=friction_scale,
                           rejections=rejections)
            return TrainingState(state.potential, kept, state.optimizer), baseline, events


def update(state_dir: Path, recording_path: Path, cg_features_path: Path, discriminator: Path,
           aa_trajectory: Path, aa_observables: Path, config: dict[str, Any], out_state_dir: Path,
           report_path: Path) -> UpdateResult:
    """Estimate ∇J from round k's windows and take one guarded Adam step: state k → state k+1."""
    started = time.perf_counter()
    state = load_state(state_dir)
    recording = load_recording(recording_path)
    model, _, _ = load_discriminator(discriminator)
    losses = generator_losses(model, load_features(cg_features_path))
    dynamics = state.dynamics.langevin(state.dynamics.round_seed(SIMULATE))
    estimate = estimate_gradient(
        state.potential, recording["paths"], recording["box"], losses, dynamics,
        EstimatorSpec(localisation_radius=config["training"]["localisation_radius"],
                      friction_localisation_radius=config["training"]["friction_localisation_radius"]))
    estimated = time.perf_counter()
    aa, reference = CGTrajectory.load(aa_trajectory), load_observables_json(aa_observables)
    loaded = time.perf_counter()
    settings = StructureSettings.from_config(config)
    frames = recording_frames(recording["paths"], recording["box"], recording["window_starts"],
                              float(recording["timestep"]), settings.frame_interval_fs,
                              state.dynamics.mass)
    structure = structure_correction(state.potential, frames, reference.rdf,
                                     state.dynamics.temperature, settings)
    corrected = time.perf_counter()
    correction = np.zeros(state.potential.n_parameters + 1)
    correction[state.potential.pair_slice] = structure.delta
    seed = state.dynamics.round_seed(PROBE)   # the same random numbers for every probe of the round
    gradient = significant_gradient(estimate.gradient, estimate.standard_error,
                                    config["training"]["gradient_noise_threshold"])
    new_state, baseline, events = _guarded_step(
        state, estimate, gradient, correction, config,
        lambda model_state: probe(model_state, aa, reference, model, config, seed), last_good=str(state_dir))
    step = new_state.parameter_vector() - state.parameter_vector()
    save_state(out_state_dir, new_state)
    ess = estimate.effective_sample_size(step)
    report = {"round": state.dynamics.round, "seconds": time.perf_counter() - started,
              "estimator_seconds": estimated - started, "structure_seconds": corrected - loaded,
              "generator_loss": estimate.value,
              "generator_loss_se": estimate.value_standard_error, "effective_sample_size": ess,
              "n_windows": len(estimate.per_window), "damp_fs": new_state.dynamics.damp,
              "step_scale": new_state.dynamics.step_scale,
              "friction_step_scale": new_state.dynamics.friction_step_scale,
              "rejections": new_state.dynamics.rejections,
              "structure_correction": structure.to_dict(), "guard_baseline": baseline.to_dict(),
              "guard": [event.to_dict() for event in events], "step": step.tolist(),
              "step_gradient": gradient.tolist(), **estimate.summary()}
    write_json(report_path, report)
    logger.info("update: generator loss %.4f ± %.4f, gradient SNR %.2f, ESS %.1f of %d, damp %.1f fs",
                estimate.value, estimate.value_standard_error, estimate.global_snr, ess,
                len(estimate.per_window), new_state.dynamics.damp)
    return UpdateResult(new_state, estimate, step, events)


# -- evaluate -------------------------------------------------------------------------------
def evaluate(state_dir: Path, aa_trajectory: Path, aa_observables: Path, config: dict[str, Any],
             outdir: Path, run_ps: float | None = None) -> dict:
    """A CG run of ``run_ps`` (default ``evaluation.run_ps``) with frames every
    ``evaluation.frame_interval_fs``: observables and metrics against AA, written to ``outdir``."""
    started = time.perf_counter()
    state = load_state(state_dir)
    aa = CGTrajectory.load(aa_trajectory)
    dt = state.dynamics.timestep
    ev = config["evaluation"]
    frame_every = max(1, ps_to_steps(ev["frame_interval_fs"] / 1000.0, dt))
    run_ps = ev["run_ps"] if run_ps is None else run_ps
    if not run_ps > 0:
        raise ValueError(f"evaluation run length must be > 0 ps, got {run_ps}")
    n_steps = frame_every * math.ceil(ps_to_steps(run_ps, dt) / frame_every)
    plan = RunPlan(ps_to_steps(config["training"]["equilibration_ps"], dt), n_steps, frame_every)
    recording = run_state(state, aa, config, Path(outdir) / "model", plan, EVALUATE)
    traj = recording_trajectory(recording, dt, state.dynamics.mass)
    traj.save(Path(outdir) / "trajectory.npz")
    reference = load_observables_json(aa_observables)
    r_max = float(reference.rdf.r[-1] + 0.5 * reference.rdf.bin_width)   # the AA bins
    observables = compute_observables(traj, r_max=r_max, rdf_bin_width=reference.rdf.bin_width)
    metrics = compare_observables(observables, reference)
    metrics.update({"round": state.dynamics.round, "damp_fs": state.dynamics.damp,
                    "seconds": time.perf_counter() - started})
    save_observables_json(Path(outdir) / "observables.json", observables, metrics, reference)
    # strict JSON: MSD ratios beyond the run's length are NaN, written as null
    ratios = {str(k): (float(v) if math.isfinite(v) else None) for k, v in metrics["msd_ratios"].items()}
    write_json(Path(outdir) / "metrics.json", {**metrics, "msd_ratios": ratios})
    logger.info("evaluate round %d: RDF max|dg| %.3f, ADF TVD %.3f, D ratio %s",
                state.dynamics.round, metrics["rdf_max_abs_diff"], metrics["adf_total_variation"],
                metrics["diffusion_ratio"])
    return metrics
