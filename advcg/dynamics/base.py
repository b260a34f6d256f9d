r"""The generator's dynamics as a family: one class per integrator (docs/method.md §3, §8).

A :class:`Dynamics` is the non-potential part of the CG model: bath temperature, time step, bead
mass and its own learned parameters (Langevin: log γ). It owns everything that depends on the
integrator, so the rest of advcg never re-derives it:

* its parameters (:meth:`~Dynamics.parameters`: names, learning-rate groups, bounds) and their
  values (:meth:`~Dynamics.parameter_values`, :meth:`~Dynamics.with_parameter_values`);
* attaching itself to a LAMMPS run (:meth:`~Dynamics.integrator`: ``fix nve`` plus a
  ``fix external`` callback that adds its forces, recording windows and any auxiliary state);
* its exact path law (:meth:`~Dynamics.path_terms`: what the estimator needs from each window);
* the lines it contributes to the plain-LAMMPS deck (:meth:`~Dynamics.deck_lines`);
* its serialisation (:meth:`~Dynamics.to_dict`, :func:`advcg.dynamics.dynamics_from_dict`).

The path law enters the estimator through two per-step quantities (:class:`PathTerms`): the
weight :math:`w^n = \partial \log p / \partial F^n` of the conservative force at step n (the θ
score is :math:`\sum_n w^n\cdot\partial_\theta F_\theta(x^n)`), and each own parameter's score
per bead.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from advcg.engine import Engine, decode_images
from advcg.parameters import Parameter
from advcg.recording import Recording, RecordPlan
from advcg.units import BOLTZMANN


@dataclass(frozen=True)
class PathTerms:
    """What the estimator needs from a chunk of n steps of one window.

    Attributes
    ----------
    force_weights : (n, n_beads, 3)
        ∂ log p_path / ∂F at each step, (kcal/(mol Å))⁻¹: the θ score is
        Σ_n force_weights · ∂F_θ(x^n)/∂θ.
    bead_scores : (n_own, n_beads)
        ∂ log p_path / ∂(own parameter), summed over the chunk's steps and the Cartesian
        components, per bead, in :meth:`Dynamics.parameters` order.
    """

    force_weights: torch.Tensor
    bead_scores: torch.Tensor


@dataclass(frozen=True)
class DeckLines:
    """What a dynamics adds to the plain-LAMMPS deck: index ``variables`` (overridable with
    ``-var``), the ``commands`` that integrate, and whether and how they run on a GPU."""

    variables: Mapping[str, float]
    commands: tuple[str, ...]
    kokkos: bool
    gpu_note: str


#: Physical ranges (exclusive lower, inclusive upper bound) of the values a dynamics holds: a
#: value outside is a typo or a corrupt file, not a model (the configuration schema's bounds).
RANGES = {"temperature": (0.0, 1000.0),     # K
          "timestep": (0.0, 50.0),          # fs
          "mass": (0.0, 1.0e4),             # g/mol
          "damp": (0.0, 1.0e6)}             # fs


def _check_positive(owner: str, name: str, value: Any) -> None:
    """``value`` is a finite number in :data:`RANGES` ``[name]`` (or > 0 if not listed)."""
    lower, upper = RANGES.get(name, (0.0, math.inf))
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
            or not (math.isfinite(value) and lower < value <= upper)):
        raise ValueError(f"{owner}: {name} must be a finite number in ({lower:g}, {upper:g}], got {value!r}")


class Dynamics(ABC):
    """Base of the dynamics family (module docstring). Subclasses are frozen dataclasses with the
    fields ``temperature`` (K), ``timestep`` (fs), ``mass`` (g/mol) and their own parameters."""

    #: Name in the configuration (``dynamics.kind``) and in ``dynamics.json``.
    kind: ClassVar[str]
    temperature: float
    timestep: float
    mass: float

    def _check_common(self) -> None:
        for name in ("temperature", "timestep", "mass"):
            _check_positive(f"{self.kind} dynamics", name, getattr(self, name))

    @property
    def kT(self) -> float:
        """k_B T, kcal/mol."""
        return BOLTZMANN * self.temperature

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Mapping[str, Any], *, temperature: float, timestep: float,
                      mass: float) -> Dynamics:
        """The initial dynamics from its configuration section ``dynamics.<kind>``."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dynamics:
        """The dynamics saved by :meth:`to_dict` (keys checked by the caller)."""

    # -- parameters -------------------------------------------------------------------------
    @abstractmethod
    def parameters(self) -> tuple[Parameter, ...]:
        """The learned parameters (block ``dynamics`` of :class:`advcg.parameters.ParameterSpace`)."""

    @abstractmethod
    def parameter_values(self) -> np.ndarray:
        """Their current values, in :meth:`parameters` order."""

    @abstractmethod
    def with_parameter_values(self, values: np.ndarray) -> Dynamics:
        """A copy with the learned parameters set to ``values``."""

    @abstractmethod
    def describe(self) -> dict[str, float]:
        """Physical values for reports and logs (e.g. ``{"damp_fs": 100.0}``)."""

    # -- running ------------------------------------------------------------------------------
    @abstractmethod
    def integrator(self, engine: Engine, seed: int) -> CallbackIntegrator:
        """Attach this dynamics to ``engine`` (a complete system) with random seed ``seed``."""

    # -- path law -----------------------------------------------------------------------------
    @abstractmethod
    def path_terms(self, positions: torch.Tensor, forces: torch.Tensor,
                   auxiliary: Mapping[str, torch.Tensor]) -> PathTerms:
        """The path-law terms of a chunk: ``positions`` ``(n + 2, n_beads, 3)`` at steps
        ``lo − 1 … hi``, the conservative ``forces`` ``(n, n_beads, 3)`` at steps ``lo … hi − 1``,
        and the recorded auxiliary state at the same ``n + 2`` steps."""

    # -- export and files ---------------------------------------------------------------------
    @abstractmethod
    def deck_lines(self) -> DeckLines:
        """The lines of the plain-LAMMPS deck that run this dynamics."""

    @abstractmethod
    def own_settings(self) -> dict[str, float]:
        """The fields beyond temperature, time step and mass, as saved in ``dynamics.json``."""

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., "temperature": ..., "timestep": ..., "mass": ..., <own>}``."""
        return {"kind": self.kind, "temperature": float(self.temperature),
                "timestep": float(self.timestep), "mass": float(self.mass), **self.own_settings()}


class CallbackIntegrator(ABC):
    """Runs a :class:`Dynamics` in LAMMPS: ``fix nve`` plus a ``fix external`` callback that
    adds :meth:`external_forces` at every step, and keeps what a :class:`RecordPlan` asks for.

    The engine must hold a complete system (atoms, pair styles, ``timestep`` equal to the
    dynamics' one); :meth:`run` adds the fixes for the run and removes them afterwards, so several
    runs can follow each other. Each :meth:`run` is one LAMMPS ``run`` command: windows never
    straddle two runs (a new run's setup applies an extra half kick that breaks the recurrence at
    its first step). Random numbers are drawn in atom-id order, so runs are reproducible whatever
    LAMMPS's atom sorting does.
    """

    _FIX_ID = "advcg_dynamics"
    #: Steps of Gaussian noise drawn at once by :meth:`step_noise` (the stream is the same as
    #: one draw per step; a block saves the per-step call and allocation).
    NOISE_BLOCK = 64

    def __init__(self, engine: Engine, dynamics: Dynamics, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 1:
            raise ValueError(f"{dynamics.kind} dynamics: seed must be a positive integer, got {seed!r}")
        self.engine = engine
        self.dynamics = dynamics
        self.n_atoms = engine.n_atoms
        self.rng = np.random.default_rng(int(seed))
        self._noise = np.empty((0,))
        self._noise_next = 0
        masses = engine.lmp.numpy.extract_atom("mass")
        if masses is not None:
            lammps_mass = np.asarray(masses)[1:]
            if not np.allclose(lammps_mass, dynamics.mass, rtol=1e-12):
                raise ValueError(f"LAMMPS type masses {lammps_mass} differ from the dynamics' mass "
                                 f"{dynamics.mass}")

    def noise_shape(self) -> tuple[int, ...]:
        """Shape of one step's standard normal draws, by atom id first (default ``(n_atoms, 3)``)."""
        return (self.n_atoms, 3)

    def step_noise(self) -> np.ndarray:
        """This step's standard normal numbers, :meth:`noise_shape`, drawn by atom id: the same
        numbers as one ``rng.standard_normal(shape)`` per step."""
        if self._noise_next == len(self._noise):
            self._noise = self.rng.standard_normal((self.NOISE_BLOCK, *self.noise_shape()))
            self._noise_next = 0
        self._noise_next += 1
        return self._noise[self._noise_next - 1]

    @abstractmethod
    def external_forces(self, index: np.ndarray, velocities: np.ndarray) -> np.ndarray:
        """The forces ``(nlocal, 3)`` the dynamics adds at this step, for the local atoms of
        0-based ids ``index`` with half-step ``velocities`` ``(nlocal, 3)``."""

    def auxiliary_state(self) -> dict[str, np.ndarray]:
        """The dynamics' own per-atom state (by atom id) recorded with the window paths."""
        return {}

    def run(self, n_steps: int, plan: RecordPlan | None = None) -> Recording:
        """Run ``n_steps`` MD steps, keeping what ``plan`` asks for."""
        plan = plan or RecordPlan()
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if plan.window_starts and plan.window_starts[-1] + plan.window_steps > n_steps:
            raise ValueError(f"a window ends after the run: last start {plan.window_starts[-1]} + "
                             f"{plan.window_steps} steps > {n_steps}")
        engine = self.engine
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
        auxiliary = {name: np.empty((len(plan.window_starts), path_len, *value.shape))
                     for name, value in self.auxiliary_state().items()} if plan.window_starts else {}
        slots = plan.window_slots()
        n_frames_done = 0

        def callback(_caller: object, step: int, nlocal: int, tag: np.ndarray,
                     x: np.ndarray, fexternal: np.ndarray) -> None:
            nonlocal n_frames_done
            index = np.asarray(tag[:nlocal], dtype=np.int64) - 1
            v = lmp.numpy.extract_atom("v", nelem=nlocal)
            fexternal[:nlocal] = self.external_forces(index, v[:nlocal])
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
                state = self.auxiliary_state() if auxiliary else {}
                for w, k in window_slots:
                    paths[w, k] = unwrapped
                    if forces is not None:
                        forces[w, k] = conservative
                    for name, value in state.items():
                        auxiliary[name][w, k] = value

        engine.commands([f"fix {self._FIX_ID}_nve all nve",
                         f"fix {self._FIX_ID} all external pf/callback 1 1"])
        lmp.set_fix_external_callback(self._FIX_ID, callback, None)
        try:
            engine.command(f"run {n_steps}")
        finally:
            engine.commands([f"unfix {self._FIX_ID}", f"unfix {self._FIX_ID}_nve"])
        if n_frames_done != n_frames:
            raise RuntimeError(f"recorded {n_frames_done} frames, expected {n_frames}")
        if not np.all(np.isfinite(frames)) or not np.all(np.isfinite(paths)):
            raise FloatingPointError("the CG run produced non-finite positions (it blew up)")
        return Recording(frame_steps=frame_steps, frames=frames,
                         window_starts=np.asarray(plan.window_starts, dtype=np.int64),
                         paths=paths, path_forces=forces, box=box,
                         timestep=float(self.dynamics.timestep), auxiliary=auxiliary)
