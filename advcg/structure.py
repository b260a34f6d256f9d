r"""Structure correction: keep the CG RDF on the AA RDF while the adversarial steps move the model.

The adversarial gradient moves every parameter, and some of its moves change the equilibrium
structure: on water, the learned three-body angle (cos θ0 −1/3 → −0.28 over eight rounds) and
strength shift the first shells and the RDF drifts away from AA although nothing in the
discriminator's loss asks for it (measured: max |Δg| 0.125 → 0.23 over eight rounds without this
correction). The pair term can absorb such shifts, as it does at initialisation. So each update
adds to the adversarial step one damped inverse-Monte-Carlo (Newton) step of the pair
coefficients towards the AA RDF (:func:`advcg.imc.imc_update`),

.. math::

    \delta c = \alpha\, \arg\min_\delta \big\|\langle g\rangle_\theta - g_\mathrm{AA}
        + J\delta\big\|^2 + \lambda\big(\|D_2\delta\|^2 + \|\delta\|^2\big),
    \qquad J_{ik} = -\beta\,\mathrm{Cov}\big(g_i, \partial U/\partial c_k\big),

estimated from frames of the round's own CG recording (the window paths, one frame every
``frame_interval_fs``): no extra simulation. The target is the AA RDF, a structural, not a kinetic,
quantity, so this does not put a predefined dynamical target into the generator (docs/method.md §4);
the friction and every non-pair parameter are moved by the adversarial gradient alone.
``damping`` α = 0 turns the correction off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from advcg.imc import IMC_MIN_FRAMES as MIN_FRAMES
from advcg.imc import frame_rdfs, imc_jacobian, imc_newton_step
from advcg.observables import RDF, rdf_max_abs_diff
from advcg.potential import CGPotential
from advcg.trajectory import CGTrajectory

__all__ = ["MIN_FRAMES", "StructureSettings", "StructureCorrection", "recording_frames", "structure_correction"]


@dataclass(frozen=True)
class StructureSettings:
    """``training.structure_correction`` of the configuration (defaults: the schema)."""

    damping: float              # α of the IMC step (0: no correction)
    frame_interval_fs: float    # time between the recording frames used, fs

    def __post_init__(self) -> None:
        if not 0 <= self.damping <= 1:
            raise ValueError(f"training.structure_correction.damping must be in [0, 1], got {self.damping}")
        if not self.frame_interval_fs > 0:
            raise ValueError("training.structure_correction.frame_interval_fs must be > 0, got "
                             f"{self.frame_interval_fs}")


@dataclass(frozen=True)
class StructureCorrection:
    """The pair-coefficient change of one update (``delta``, kcal/mol, zero when off) and what it
    was computed from: the RDF deviation of the round's frames from AA and the deviation the
    linearised step predicts after it."""

    delta: np.ndarray
    n_frames: int
    rdf_max_abs_diff: float
    predicted_rdf_max_abs_diff: float

    def to_dict(self) -> dict[str, Any]:
        return {"n_frames": self.n_frames, "rdf_max_abs_diff": self.rdf_max_abs_diff,
                "predicted_rdf_max_abs_diff": self.predicted_rdf_max_abs_diff,
                "max_abs_delta": float(np.abs(self.delta).max()) if self.delta.size else 0.0}


def recording_frames(paths: np.ndarray, box: np.ndarray, window_starts: np.ndarray,
                     timestep: float, frame_interval_fs: float, mass: float) -> CGTrajectory:
    """Frames every ``frame_interval_fs`` (rounded to whole steps) of every recorded window path
    ``(n_windows, n_steps + 1, n_beads, 3)`` as one trajectory (times from the window starts).

    Windows that touch (spacing = window length) share their boundary frame; it is taken once,
    from the earlier window."""
    paths = np.asarray(paths)
    every = max(1, int(round(frame_interval_fs / timestep)))
    offsets = np.arange(0, paths.shape[1], every)
    positions = paths[:, offsets].reshape(-1, *paths.shape[2:])
    times = (np.asarray(window_starts)[:, None] + offsets[None, :]).reshape(-1) * timestep
    times, first = np.unique(times, return_index=True)   # sorted; first occurrence of each time
    return CGTrajectory(positions=positions[first], box=np.broadcast_to(box, (len(times), 3)),
                        times=times.astype(float), mass=mass)


def structure_correction(potential: CGPotential, frames: CGTrajectory, target: RDF,
                         temperature: float, settings: StructureSettings) -> StructureCorrection:
    """One damped IMC step of ``potential``'s pair coefficients from ``frames`` (a run of
    ``potential``) towards the ``target`` RDF; the change is returned, ``potential`` is unchanged.
    Each coefficient moves at most :data:`advcg.imc.DEFAULT_MAX_STEP` before damping."""
    if frames.n_frames < MIN_FRAMES:
        raise ValueError(f"training.structure_correction: the round's recording gives {frames.n_frames} "
                         f"frames at frame_interval_fs, the IMC step needs at least {MIN_FRAMES}: lower "
                         "frame_interval_fs, record more or longer windows, or set damping to 0")
    per_frame = frame_rdfs(frames, target)
    mean = per_frame.mean(axis=0)
    now = rdf_max_abs_diff(mean, target.g, target.r)
    if settings.damping == 0:
        return StructureCorrection(np.zeros(potential.pair.coefficients.numel()), frames.n_frames, now, now)
    jacobian = imc_jacobian(potential.pair, per_frame, target, temperature, n_beads=frames.n_beads,
                            volume=float(np.prod(frames.box[0])))
    delta = settings.damping * imc_newton_step(jacobian, mean, target)
    predicted = rdf_max_abs_diff(mean + jacobian @ delta, target.g, target.r)
    return StructureCorrection(delta, frames.n_frames, now, predicted)
