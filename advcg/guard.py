"""The divergence guard: accept or reject a proposed update before it becomes the next state.

An update of round k proposes ϑ_{k+1} from state k. Before it is accepted, a short *probe* run of
the proposed model (:func:`advcg.training.probe`) is compared with a probe run of the current
parameters (same seed, same start):

* the gradient it came from is finite;
* the probe run finishes (LAMMPS loses no atom, positions stay finite);
* its RDF stays within ``max_rdf_deviation`` of AA (max |Δg| over 2–12 Å), or, for a model that
  started further away, within ``rdf_tolerance`` of where it started (:func:`rdf_bound`, fixed at
  the first update and kept in the training state, so accepted steps cannot drift away);
* the round's discriminator does not find its windows more artificial than the current model's by
  more than ``max_generator_loss_increase`` (the generator loss must not degrade).

A rejected proposal is retried from the same, last good parameters with the learning rates
multiplied by ``step_shrink``; the reduced scales are kept for the following rounds. When the RDF
alone was at fault only the potential's steps shrink (the friction does not change the
structure), and after ``max_rejections`` such rejections the proposal moves the friction alone. A non-finite
gradient cannot be retried with a smaller step: the next state keeps the last good parameters, so
the next round is redone from them with fresh random numbers. After ``max_rejections``
consecutive rejections for a failed run, a rising loss or a non-finite gradient the update stops
with :class:`DivergenceError`, naming the round, the reasons and the last good state. Every attempt is logged and kept in the update report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np


class DivergenceError(RuntimeError):
    """Too many consecutive updates were rejected: training stops."""


@dataclass(frozen=True)
class GuardSettings:
    """``training.guard`` of the configuration (see ``config/config.schema.yaml``)."""

    max_rejections: int = 3          # consecutive rejections that stop training (>= 1)
    step_shrink: float = 0.5
    max_rdf_deviation: float = 0.15
    rdf_tolerance: float = 0.05
    max_generator_loss_increase: float = 0.1
    probe_ps: float = 10.0
    probe_windows: int = 8

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

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "GuardSettings":
        return cls(**config["training"]["guard"])


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
    """One proposal and the guard's decision on it."""

    attempt: int
    step_scale: float
    friction_step_scale: float = 1.0
    reasons: list[str] = field(default_factory=list)
    probe: ProbeResult | None = None

    @property
    def accepted(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "step_scale": self.step_scale,
                "friction_step_scale": self.friction_step_scale, "reasons": list(self.reasons),
                "accepted": self.accepted, "probe": None if self.probe is None else self.probe.to_dict()}


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
    (:func:`rdf_bound`). The friction cannot cause them (it leaves the Boltzmann distribution as
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
    lines += [f"  attempt {e.attempt} (step scales {e.step_scale:.3g}, friction {e.friction_step_scale:.3g}): "
              f"{'; '.join(e.reasons)}"
              for e in events]
    lines.append(f"The last good parameters are in {last_good}. Lower the training.learning_rate* "
                 f"keys, or widen the training.guard bounds, and run again.")
    return "\n".join(lines)
