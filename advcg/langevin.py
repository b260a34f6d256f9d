r"""The generator's dynamics: velocity-Verlet Langevin with Gaussian noise, and its exact path law.

LAMMPS integrates every CG run used in training with ``fix nve`` plus a ``fix external``
callback that adds, at each step :math:`n`, the friction and a Gaussian random force

.. math::

    f^n = F_\theta(x^n) - \frac{\gamma m}{C}\, v^{n-1/2} + R^n,\qquad
    R^n \sim \mathcal N\!\left(0,\ \sigma_R^2 = \frac{2\gamma m k_B T}{C\,\Delta t}\right)

(:math:`C` = :data:`advcg.units.FTM2V`, :math:`v^{n-1/2}` the half-step velocity that LAMMPS
holds at ``post_force``). Velocity Verlet then gives the position recurrence

.. math::

    x^{n+1} - 2x^n + x^{n-1} = \frac{C\,\Delta t^2}{m}\left[F_\theta(x^n)
        - \frac{\gamma m}{C}\frac{x^n - x^{n-1}}{\Delta t} + R^n\right],

so every noise :math:`R^n` is reconstructed exactly from three consecutive positions
(:func:`reconstruct_noise`), and the path log-likelihood given :math:`(x^{-1}, x^0)` is a sum of
independent Gaussian terms (:func:`path_log_likelihood`). The Jacobian of :math:`R \mapsto x` is
constant, so it drops out of every score.

This is the same recurrence as LAMMPS's ``fix nve`` + ``fix langevin`` (whose noise is uniform with
the same variance); the exported deck uses that, so production runs (and Kokkos ``langevin/kk``)
have the dynamics that training used, with noise that differs only in its higher moments.

The random numbers come from numpy's PCG64 seeded by :attr:`LangevinSpec.seed` and are drawn in
atom-id order, so runs are reproducible whatever LAMMPS's atom sorting does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from advcg.engine import Engine, decode_images
from advcg.units import BOLTZMANN, FTM2V

logger = logging.getLogger(__name__)

_FIX_ID = "advcg_langevin"


@dataclass(frozen=True)
class LangevinSpec:
    """Parameters of the Langevin dynamics.

    Parameters
    ----------
    temperature
        Bath temperature, K.
    damp
        Damping time 1/γ, fs (LAMMPS ``fix langevin`` ``damp``).
    timestep
        MD time step Δt, fs.
    mass
        Bead mass, g/mol.
    seed
        Seed of the random forces (positive int).
    """

    temperature: float
    damp: float
    timestep: float
    mass: float
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("temperature", "damp", "timestep", "mass"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Langevin {name} must be a positive finite number, got {value!r}")
        if not (isinstance(self.seed, (int, np.integer)) and self.seed > 0):
            raise ValueError(f"Langevin seed must be a positive integer, got {self.seed!r}")

    @property
    def gamma(self) -> float:
        """Friction rate γ = 1/damp, 1/fs."""
        return 1.0 / self.damp

    @property
    def kT(self) -> float:
        """k_B T, kcal/mol."""
        return BOLTZMANN * self.temperature

    @property
    def noise_variance(self) -> float:
        """Variance σ_R² of each Cartesian random-force component, (kcal/(mol Å))²."""
        return noise_variance(self.gamma, self.mass, self.kT, self.timestep)


def noise_variance(gamma: float, mass: float, kT: float, timestep: float) -> float:
    r""":math:`\sigma_R^2 = 2\gamma m k_BT / (C\,\Delta t)` in (kcal/(mol Å))²."""
    return 2.0 * gamma * mass * kT / (FTM2V * timestep)


@dataclass
class RecordPlan:
    """Which steps of a run to keep.

    Parameters
    ----------
    frame_every
        Keep a subsampled frame every this many steps (0: none). Frames are taken at steps that are
        multiples of ``frame_every`` counted from the run's first step.
    window_starts
        Steps (counted from the run's first step) at which training windows start.
    window_steps
        Number of MD steps in each window; every step from ``start - 1`` to
        ``start + window_steps`` is kept (``window_steps + 2`` positions).
    record_forces
        Also keep LAMMPS's conservative forces at every window step (diagnostics and tests).
    """

    frame_every: int = 0
    window_starts: tuple[int, ...] = ()
    window_steps: int = 0
    record_forces: bool = False

    def __post_init__(self) -> None:
        if self.frame_every < 0 or self.window_steps < 0:
            raise ValueError("frame_every and window_steps must be >= 0")
        starts = tuple(int(s) for s in self.window_starts)
        if starts and (self.window_steps < 1 or min(starts) < 2):
            raise ValueError("windows need window_steps >= 1 and starts >= 2 "
                             "(the run's first step has no half-step velocity)")
        self.window_starts = tuple(sorted(starts))


@dataclass
class Recording:
    """What a run kept.

    Attributes
    ----------
    frame_steps : (n_frames,) int
    frames : (n_frames, n_beads, 3) float64, unwrapped Å
    window_starts : (n_windows,) int
    paths : (n_windows, window_steps + 2, n_beads, 3) float64, unwrapped Å, from ``start - 1``
    path_forces : (n_windows, window_steps + 2, n_beads, 3) float64 or None, kcal/(mol Å)
    box : (3,) Å
    """

    frame_steps: np.ndarray
    frames: np.ndarray
    window_starts: np.ndarray
    paths: np.ndarray
    path_forces: np.ndarray | None
    box: np.ndarray


@dataclass
class GaussianLangevin:
    """Attach velocity-Verlet Gaussian Langevin dynamics to an :class:`Engine` and run it.

    The engine must hold a complete system (atoms, pair styles, ``timestep`` equal to
    ``spec.timestep``); :meth:`run` adds ``fix nve`` and the ``fix external`` callback for the run
    and removes them afterwards, so several runs can follow each other. Each :meth:`run` is one
    LAMMPS ``run`` command: windows never straddle two runs (a new run's setup applies an extra
    half kick that breaks the recurrence at its first step).
    """

    engine: Engine
    spec: LangevinSpec
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.spec.seed)
        masses = self.engine.lmp.numpy.extract_atom("mass")
        if masses is not None:
            lammps_mass = np.asarray(masses)[1:]
            if not np.allclose(lammps_mass, self.spec.mass, rtol=1e-12):
                raise ValueError(f"LAMMPS type masses {lammps_mass} differ from the Langevin mass "
                                 f"{self.spec.mass}")

    def run(self, n_steps: int, plan: RecordPlan | None = None) -> Recording:
        """Run ``n_steps`` MD steps, keeping what ``plan`` asks for."""
        plan = plan or RecordPlan()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if plan.window_starts and plan.window_starts[-1] + plan.window_steps > n_steps:
            raise ValueError(f"a window ends after the run: last start {plan.window_starts[-1]} + "
                             f"{plan.window_steps} steps > {n_steps}")
        engine, spec = self.engine, self.spec
        lmp = engine.lmp
        n_atoms = engine.n_atoms
        box = engine.box()
        first_step = int(lmp.extract_global("ntimestep"))

        n_frames = n_steps // plan.frame_every + 1 if plan.frame_every else 0
        frames = np.empty((n_frames, n_atoms, 3))
        frame_steps = np.empty(n_frames, dtype=np.int64)
        path_len = plan.window_steps + 2
        paths = np.empty((len(plan.window_starts), path_len, n_atoms, 3))
        forces = np.empty_like(paths) if plan.record_forces else None
        # step offset (from the first step) -> list of (window index, slot)
        slots: dict[int, list[tuple[int, int]]] = {}
        for w, start in enumerate(plan.window_starts):
            for k in range(path_len):
                slots.setdefault(start - 1 + k, []).append((w, k))

        friction = spec.gamma * spec.mass / FTM2V
        sigma = math.sqrt(spec.noise_variance)
        rng = self._rng
        n_frames_done = 0

        def callback(_caller: object, step: int, nlocal: int, tag: np.ndarray,
                     x: np.ndarray, fexternal: np.ndarray) -> None:
            nonlocal n_frames_done
            index = np.asarray(tag[:nlocal], dtype=np.int64) - 1
            v = lmp.numpy.extract_atom("v", nelem=nlocal)
            noise = rng.standard_normal((n_atoms, 3))
            fexternal[:nlocal] = -friction * v[:nlocal] + sigma * noise[index]
            offset = step - first_step
            keep_frame = plan.frame_every and offset % plan.frame_every == 0
            window_slots = slots.get(offset)
            if not (keep_frame or window_slots):
                return
            image = lmp.numpy.extract_atom("image", nelem=nlocal)
            unwrapped = np.empty((n_atoms, 3))
            unwrapped[index] = x[:nlocal] + decode_images(image[:nlocal]) * box
            if keep_frame:
                frames[n_frames_done] = unwrapped
                frame_steps[n_frames_done] = step
                n_frames_done += 1
            if window_slots:
                if forces is not None:
                    f = lmp.numpy.extract_atom("f", nelem=nlocal)
                    conservative = np.empty((n_atoms, 3))
                    conservative[index] = f[:nlocal]
                for w, k in window_slots:
                    paths[w, k] = unwrapped
                    if forces is not None:
                        forces[w, k] = conservative

        engine.commands([f"fix {_FIX_ID}_nve all nve",
                         f"fix {_FIX_ID} all external pf/callback 1 1"])
        lmp.set_fix_external_callback(_FIX_ID, callback, None)
        try:
            engine.command(f"run {n_steps}")
        finally:
            engine.commands([f"unfix {_FIX_ID}", f"unfix {_FIX_ID}_nve"])
        if n_frames_done != n_frames:
            raise RuntimeError(f"recorded {n_frames_done} frames, expected {n_frames}")
        if not np.all(np.isfinite(frames)) or not np.all(np.isfinite(paths)):
            raise FloatingPointError("the CG run produced non-finite positions (it blew up)")
        return Recording(frame_steps=frame_steps, frames=frames,
                         window_starts=np.asarray(plan.window_starts, dtype=np.int64),
                         paths=paths, path_forces=forces, box=box)


def reconstruct_noise(path: np.ndarray, forces: np.ndarray, gamma: float, mass: float,
                      timestep: float) -> np.ndarray:
    r"""Random forces :math:`R^n` that produced ``path``, exactly (module docstring).

    Parameters
    ----------
    path : (..., n_steps + 2, n_beads, 3)
        Unwrapped positions at consecutive steps, Å.
    forces : (..., n_steps + 2, n_beads, 3) or (..., n_steps, n_beads, 3)
        Conservative forces at those steps (only steps 1..n_steps are used if given for all).
    gamma, mass, timestep
        Friction 1/fs, bead mass g/mol, Δt fs.

    Returns
    -------
    (..., n_steps, n_beads, 3) array of :math:`R^n`, kcal/(mol Å), for the inner steps.
    """
    accel = mass / (FTM2V * timestep**2) * (path[..., 2:, :, :] - 2 * path[..., 1:-1, :, :]
                                             + path[..., :-2, :, :])
    drag = gamma * mass / (FTM2V * timestep) * (path[..., 1:-1, :, :] - path[..., :-2, :, :])
    if forces.shape[-3] == path.shape[-3]:
        forces = forces[..., 1:-1, :, :]
    return accel - forces + drag


def path_log_likelihood(noise: np.ndarray, gamma: float, mass: float, kT: float,
                        timestep: float) -> float:
    r"""Log-density of the reconstructed noise, :math:`\sum -|R|^2/2\sigma_R^2 - \tfrac12\log 2\pi\sigma_R^2`
    per component (the constant Jacobian of the map to positions is left out)."""
    var = noise_variance(gamma, mass, kT, timestep)
    return float(-0.5 * np.sum(noise**2) / var - 0.5 * noise.size * math.log(2 * math.pi * var))
