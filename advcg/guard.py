"""The divergence guard: accept or reject a proposed update before it becomes the next state.

An update of round k proposes ϑ_{k+1} from state k. Before it is accepted, a short *probe* run of
the proposed model (:func:`advcg.stages.probe`) is compared with a probe run of the current
parameters (same seed, same start):

* the gradient it came from is finite;
* the probe run finishes (LAMMPS loses no atom, positions stay finite);
* its RDF stays within ``max_rdf_deviation`` of AA (max |Δg| over 2–12 Å), or, for a model that
  started further away, within ``rdf_tolerance`` of where it started (:func:`rdf_bound`, fixed at
  the first update and kept in the training state, so accepted steps cannot drift away);
* the round's discriminator does not find its windows more artificial than the current model's by
  more than ``max_generator_loss_increase`` (the generator loss must not degrade).

A rejected proposal is retried from the same, last good parameters with the learning rates
multiplied by ``step_shrink``; the reduced scales (one per parameter block,
:class:`advcg.parameters.ParameterSpace`) are kept for the following rounds. When the RDF alone
was at fault only the potential block's steps shrink (the dynamics does not change the
equilibrium structure), and after ``max_rejections`` such rejections the proposal moves the
dynamics block alone. A non-finite gradient cannot be retried with a smaller step: the next state
keeps the last good parameters, so the next round is redone from them with fresh random numbers.
After ``max_rejections`` consecutive rejections for a failed run, a rising loss or a non-finite
gradient the update stops with :class:`DivergenceError`, naming the round, the reasons and the
last good state. Every attempt is logged and kept in the update report (:func:`guarded_step`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from advcg.estimator import GradientEstimate
from advcg.state import TrainingState
from advcg.update_rule import adam_step

logger = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """Too many consecutive updates were rejected: training stops."""


@dataclass(frozen=True)
class GuardSettings:
    """``training.guard`` of the configuration (keys, defaults and units: ``config/config.schema.yaml``)."""

    max_rejections: int          # consecutive rejections that stop training (>= 1)
    step_shrink: float
    max_rdf_deviation: float
    rdf_tolerance: float
    max_generator_loss_increase: float
    probe_ps: float
    probe_windows: int

    def __post_init__(self) -> None:
        if self.max_rejections < 1:
            raise ValueError(f"training.guard.max_rejections must be >= 1, got {self.max_rejections}")
        if not 0 < self.step_shrink < 1:
            raise ValueError(f"training.guard.step_shrink must be in (0, 1), got {self.step_shrink}")
        for name in ("max_rdf_deviation", "rdf_tolerance", "max_generator_loss_increase", "probe_ps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"training.guard.{name} must be > 0, got {getattr(self, name)}")
        if self.probe_windows < 1:
            raise ValueError(f"training.guard.probe_windows must be >= 1, got {self.probe_windows}")


@dataclass
class ProbeResult:
    """What the probe run of a proposed model measured (``failure``: why it could not finish)."""

    failure: str | None = None
    rdf_max_abs_diff: float = math.nan
    adf_total_variation: float = math.nan
    generator_loss: float = math.nan
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (NaN as None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


@dataclass
class GuardEvent:
    """One proposal (its learning-rate scale per parameter block) and the guard's decision on it."""

    attempt: int
    step_scales: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    probe: ProbeResult | None = None

    @property
    def accepted(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "step_scales": dict(self.step_scales),
                "reasons": list(self.reasons), "accepted": self.accepted,
                "probe": None if self.probe is None else self.probe.to_dict()}


def gradient_problems(gradient: np.ndarray, names: Sequence[str]) -> list[str]:
    """Reasons to reject a gradient estimate: its non-finite components, by name."""
    bad = [name for name, value in zip(names, np.asarray(gradient, dtype=float)) if not math.isfinite(value)]
    if not bad:
        return []
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return [f"non-finite gradient for {shown}"]


def rdf_bound(baseline: ProbeResult, settings: GuardSettings) -> float:
    """The largest probe RDF max|Δg| a proposal may have: ``max_rdf_deviation``, or for a model
    that starts further from AA, its first probe's value plus ``rdf_tolerance``. Set once, at the
    first update, and kept in the training state, so that small accepted steps cannot add up to
    a drift away from AA."""
    if math.isfinite(baseline.rdf_max_abs_diff):
        return max(settings.max_rdf_deviation, baseline.rdf_max_abs_diff + settings.rdf_tolerance)
    return settings.max_rdf_deviation


def dynamics_problems(probe: ProbeResult, baseline: ProbeResult, settings: GuardSettings) -> list[str]:
    """Reasons to reject a proposal that concern the whole model: the probe run failed, or the
    round's discriminator finds its windows more artificial than ``baseline``'s (the probe of the
    current parameters, same seed) by more than ``max_generator_loss_increase``."""
    if probe.failure is not None:
        return [f"probe run failed: {probe.failure}"]
    increase = probe.generator_loss - baseline.generator_loss
    if math.isfinite(baseline.generator_loss) and not increase <= settings.max_generator_loss_increase:
        return [f"generator loss rose by {increase:.3f} ({baseline.generator_loss:.3f} -> "
                f"{probe.generator_loss:.3f}) > max_generator_loss_increase "
                f"{settings.max_generator_loss_increase}"]
    return []


def structure_problems(probe: ProbeResult, bound: float, settings: GuardSettings) -> list[str]:
    """Reasons to reject a proposal for its structure: the probe's RDF max|Δg| above ``bound``
    (:func:`rdf_bound`). The dynamics cannot cause them (it leaves the Boltzmann distribution as
    it is), so only the potential's steps are shrunk for them."""
    if probe.failure is None and not probe.rdf_max_abs_diff <= bound:
        return [f"RDF max|dg| {probe.rdf_max_abs_diff:.3f} > {bound:.3f} (max_rdf_deviation "
                f"{settings.max_rdf_deviation}, or the first probe's + rdf_tolerance "
                f"{settings.rdf_tolerance})"]
    return []


def stop_message(round_index: int, rejections: int, events: Sequence[GuardEvent], last_good: str,
                 settings: GuardSettings) -> str:
    """The :class:`DivergenceError` message: round, this round's rejections, what to do."""
    lines = [f"round {round_index}: {rejections} consecutive updates rejected "
             f"(training.guard.max_rejections = {settings.max_rejections}); training stops."]
    lines += [f"  attempt {e.attempt} (step scales {_scales(e.step_scales)}): {'; '.join(e.reasons)}"
              for e in events]
    lines.append(f"The last good parameters are in {last_good}. Lower training.learning_rates, "
                 f"or widen the training.guard bounds, and run again.")
    return "\n".join(lines)


def _scales(scales: Mapping[str, float]) -> str:
    return ", ".join(f"{block} {scale:.3g}" for block, scale in scales.items())


def guarded_step(state: TrainingState, estimate: GradientEstimate, gradient: np.ndarray,
                 correction: np.ndarray, *, rates: Mapping[str, float], momentum: float,
                 settings: GuardSettings, check: Callable[[TrainingState], ProbeResult],
                 last_good: str) -> tuple[TrainingState, ProbeResult, list[GuardEvent]]:
    """Propose Adam steps along ``gradient`` (the significant part of ``estimate``'s) from
    ``state`` plus the structure ``correction`` of ϑ (:mod:`advcg.structure`), shrinking the
    steps after each rejection, until the guard accepts one (module docstring).

    Parameters
    ----------
    state
        The current (last good) state; its progress holds the step scales and rejections so far.
    estimate, gradient
        The gradient estimate and the gradient the step follows (:mod:`advcg.update_rule`).
    correction
        A change of ϑ added to every proposal that moves the potential.
    rates, momentum
        Adam step size per learning-rate group (``training.learning_rates``) and β1.
    settings
        ``training.guard``.
    check
        Runs the probe of a model (:func:`advcg.stages.probe`).
    last_good
        Where the last good parameters are (for the stop message).

    Returns
    -------
    The next state, the probe of the current parameters and one event per proposal.

    Raises
    ------
    DivergenceError
        ``max_rejections`` consecutive rejections for a failed run, a rising generator loss or a
        non-finite gradient.
    """
    progress = state.progress
    next_round = progress.round + 1
    scales = dict(progress.step_scales)
    rejections, structural_rejections, events = progress.rejections, 0, []
    space = state.parameter_space()
    start = state.parameter_vector()
    baseline = check(state) if np.all(np.isfinite(estimate.gradient)) else ProbeResult()
    bound = progress.rdf_bound if progress.rdf_bound > 0 else rdf_bound(baseline, settings)
    while True:
        proposal = {"potential": 0.0 if structural_rejections >= settings.max_rejections
                    else scales["potential"], "dynamics": scales["dynamics"]}
        event = GuardEvent(attempt=len(events), step_scales=proposal,
                           reasons=gradient_problems(estimate.gradient, estimate.names))
        structural_only = False
        if event.accepted:
            vector, optimizer_state = adam_step(start, state.optimizer, gradient,
                                                space.learning_rates(rates, proposal), momentum)
            if proposal["potential"] > 0:
                vector = vector + correction
            candidate = state.with_parameters(space.project(vector), round=next_round,
                                              step_scales=dict(scales), rejections=0, rdf_bound=bound)
            candidate.optimizer = optimizer_state
            event.probe = check(candidate)
            dynamic = dynamics_problems(event.probe, baseline, settings)
            structural = (structure_problems(event.probe, bound, settings)
                          if proposal["potential"] > 0 else [])
            event.reasons = dynamic + structural
            structural_only = not dynamic
        events.append(event)
        logger.log(logging.INFO if event.accepted else logging.WARNING,
                   "guard: round %d, attempt %d, step scales %s: %s", progress.round, event.attempt,
                   _scales(proposal), "accepted" if event.accepted else "; ".join(event.reasons))
        if event.accepted:
            return candidate, baseline, events
        scales["potential"] *= settings.step_shrink
        if structural_only:
            structural_rejections += 1
            continue
        rejections += 1
        scales["dynamics"] *= settings.step_shrink
        if rejections >= settings.max_rejections:
            raise DivergenceError(stop_message(progress.round, rejections, events, last_good, settings))
        if not np.all(np.isfinite(estimate.gradient)):   # no smaller step helps: redo the round
            kept = replace(progress, round=next_round, step_scales=dict(scales), rejections=rejections)
            return TrainingState(state.potential, state.dynamics, kept, state.optimizer), baseline, events
