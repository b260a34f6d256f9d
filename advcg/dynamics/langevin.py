r"""Langevin dynamics: velocity Verlet with a Gaussian Langevin force, and its exact path law.

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
constant, so it drops out of every score. The scores (:meth:`LangevinDynamics.path_terms`):

.. math::

    \frac{\partial \log p}{\partial F^n} = \frac{R^n}{\sigma_R^2},\qquad
    \frac{\partial \log p}{\partial \log\gamma} = \sum_n \Big(-\frac{\gamma R^n m v^n}{C\sigma_R^2}
        + \frac{(R^n)^2}{2\sigma_R^2} - \frac12\Big)\ \text{per component},
    \quad v^n = \frac{x^n - x^{n-1}}{\Delta t}.

This is the same recurrence as LAMMPS's ``fix nve`` + ``fix langevin`` (whose noise is uniform with
the same variance); the exported deck uses that, so production runs (and Kokkos ``langevin/kk``)
have the dynamics that training used, with noise that differs only in its higher moments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from advcg.dynamics.base import CallbackIntegrator, DeckLines, Dynamics, PathTerms, _check_positive
from advcg.engine import Engine
from advcg.parameters import Parameter
from advcg.units import FTM2V


def noise_variance(gamma: float, mass: float, kT: float, timestep: float) -> float:
    r""":math:`\sigma_R^2 = 2\gamma m k_BT / (C\,\Delta t)` in (kcal/(mol Å))²."""
    return 2.0 * gamma * mass * kT / (FTM2V * timestep)


@dataclass(frozen=True)
class LangevinDynamics(Dynamics):
    """Langevin dynamics with one friction (module docstring).

    Parameters
    ----------
    temperature
        Bath temperature, K.
    timestep
        MD time step Δt, fs.
    mass
        Bead mass, g/mol.
    damp
        Damping time 1/γ, fs (LAMMPS ``fix langevin`` ``damp``), learned as log γ.
    """

    kind: ClassVar[str] = "langevin"
    temperature: float
    timestep: float
    mass: float
    damp: float

    def __post_init__(self) -> None:
        self._check_common()
        _check_positive("langevin dynamics", "damp", self.damp)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, temperature: float, timestep: float,
                      mass: float) -> LangevinDynamics:
        """The initial dynamics from the configuration's ``dynamics.langevin`` section."""
        return cls(temperature=temperature, timestep=timestep, mass=mass, damp=float(settings["damp_fs"]))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LangevinDynamics:
        return cls(temperature=data["temperature"], timestep=data["timestep"], mass=data["mass"],
                   damp=data["damp"])

    @property
    def gamma(self) -> float:
        """Friction rate γ = 1/damp, 1/fs."""
        return 1.0 / self.damp

    @property
    def noise_variance(self) -> float:
        """Variance σ_R² of each Cartesian random-force component, (kcal/(mol Å))²."""
        return noise_variance(self.gamma, self.mass, self.kT, self.timestep)

    def parameters(self) -> tuple[Parameter, ...]:
        return (Parameter("log_gamma", "log_gamma"),)

    def parameter_values(self) -> np.ndarray:
        return np.array([-math.log(self.damp)])

    def with_parameter_values(self, values: np.ndarray) -> LangevinDynamics:
        (log_gamma,) = np.asarray(values, dtype=float)
        return replace(self, damp=float(math.exp(-log_gamma)))

    def describe(self) -> dict[str, float]:
        return {"damp_fs": self.damp}

    def own_settings(self) -> dict[str, float]:
        return {"damp": float(self.damp)}

    def integrator(self, engine: Engine, seed: int) -> LangevinIntegrator:
        return LangevinIntegrator(engine, self, seed)

    def path_terms(self, positions: torch.Tensor, forces: torch.Tensor,
                   auxiliary: Mapping[str, torch.Tensor]) -> PathTerms:
        x, dt, mass, gamma = positions, self.timestep, self.mass, self.gamma
        var = self.noise_variance
        accel = mass / (FTM2V * dt**2) * (x[2:] - 2 * x[1:-1] + x[:-2])
        velocity_term = mass / (FTM2V * dt) * (x[1:-1] - x[:-2])
        noise = accel - forces + gamma * velocity_term
        log_gamma = (-gamma * noise * velocity_term / var + noise**2 / (2 * var) - 0.5).sum(dim=(0, 2))
        return PathTerms(force_weights=noise / var, bead_scores=log_gamma[None, :])

    def deck_lines(self) -> DeckLines:
        return DeckLines(
            variables={"damp": float(self.damp)},
            commands=("fix             integrate all nve",
                      "fix             thermostat all langevin ${temperature} ${temperature} ${damp} ${seed}"),
            kokkos=True, gpu_note="nve/kk, langevin/kk")


class LangevinIntegrator(CallbackIntegrator):
    """Velocity-Verlet Gaussian Langevin dynamics attached to an :class:`Engine`."""

    def __init__(self, engine: Engine, dynamics: LangevinDynamics, seed: int) -> None:
        super().__init__(engine, dynamics, seed)
        self._friction = dynamics.gamma * dynamics.mass / FTM2V
        self._sigma = math.sqrt(dynamics.noise_variance)

    def external_forces(self, index: np.ndarray, velocities: np.ndarray) -> np.ndarray:
        force = self.step_noise()[index]
        force *= self._sigma
        force -= self._friction * velocities
        return force


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
