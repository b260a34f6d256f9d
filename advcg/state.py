"""The training state of one round: what must be on disk so that any round can be rerun or resumed.

A state directory holds

=================== ==================================================================
``potential.json``  the CG potential θ (:class:`advcg.potential.CGPotential` file)
``dynamics.json``   damping time 1/γ (fs), temperature, time step, bead mass, round index,
                    the divergence guard's step-size scale and rejection count, and the seed
``optimizer.pt``    the Adam state over ϑ = (θ, log γ) (absent before the first update)
=================== ==================================================================

Every file is written atomically, and :func:`save_state` writes into a temporary directory that
is renamed into place, so a state directory is complete or absent.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from advcg.io import atomic_path, write_json
from advcg.langevin import LangevinSpec
from advcg.potential import CGPotential

logger = logging.getLogger(__name__)

POTENTIAL_FILE = "potential.json"
DYNAMICS_FILE = "dynamics.json"
OPTIMIZER_FILE = "optimizer.pt"


@dataclass(frozen=True)
class DynamicsParameters:
    """The non-potential part of the model and the round bookkeeping.

    Parameters
    ----------
    damp
        1/γ, fs (learned through log γ).
    temperature
        K.
    timestep
        fs.
    mass
        Bead mass, g/mol.
    round
        Index of the round that produced this state (0: initialisation).
    step_scale, friction_step_scale
        Multipliers of the learning rates of the potential and of log γ, reduced by the divergence
        guard after a rejected update.
    rejections
        Consecutive updates rejected by the divergence guard up to this state (:mod:`advcg.guard`).
    rdf_bound
        The guard's bound on the probe RDF max|Δg| (:func:`advcg.guard.rdf_bound`; 0: not set yet).
    seed
        Base seed of the round's random numbers.
    """

    damp: float
    temperature: float
    timestep: float
    mass: float
    round: int = 0
    step_scale: float = 1.0
    friction_step_scale: float = 1.0
    rejections: int = 0
    rdf_bound: float = 0.0
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("damp", "temperature", "timestep", "mass", "step_scale", "friction_step_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"dynamics: {name} must be a positive finite number, got {value!r}")
        if not (math.isfinite(self.rdf_bound) and self.rdf_bound >= 0):
            raise ValueError(f"dynamics: rdf_bound must be a finite number >= 0, got {self.rdf_bound!r}")
        if self.round < 0 or self.rejections < 0 or self.seed < 1:
            raise ValueError("dynamics: round and rejections must be >= 0 and seed >= 1, got "
                             f"{self.round}, {self.rejections}, {self.seed}")

    @property
    def log_gamma(self) -> float:
        return -math.log(self.damp)

    def langevin(self, seed: int) -> LangevinSpec:
        """The Langevin dynamics of this model with random-force seed ``seed``."""
        return LangevinSpec(self.temperature, self.damp, self.timestep, self.mass, seed=seed)

    def round_seed(self, stage: int) -> int:
        """A distinct, reproducible seed for stage ``stage`` of this round."""
        return int(np.random.SeedSequence([self.seed, self.round, stage]).generate_state(1)[0] % (2**31 - 2)) + 1


@dataclass
class TrainingState:
    """Potential, dynamics and optimiser state of one round."""

    potential: CGPotential
    dynamics: DynamicsParameters
    optimizer: dict | None = None

    def parameter_vector(self) -> np.ndarray:
        """ϑ = (θ, log γ)."""
        return np.concatenate([self.potential.theta.numpy(), [self.dynamics.log_gamma]])

    def parameter_names(self) -> list[str]:
        return self.potential.parameter_names() + ["log_gamma"]

    def with_parameters(self, vector: np.ndarray, **changes) -> "TrainingState":
        """A copy with ϑ = ``vector`` (and dynamics fields ``changes``)."""
        vector = np.asarray(vector, dtype=float)
        if not np.all(np.isfinite(vector)):
            raise ValueError("training state: non-finite parameters")
        potential = CGPotential.from_dict(self.potential.to_dict())
        potential.set_theta(vector[:-1])
        dynamics = replace(self.dynamics, damp=float(math.exp(-vector[-1])), **changes)
        return TrainingState(potential, dynamics, self.optimizer)


def save_state(directory: str | os.PathLike, state: TrainingState) -> Path:
    """Write ``state`` to ``directory`` (replaced whole, atomically)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a state directory should not be
    try:
        state.potential.to_json(tmp / POTENTIAL_FILE)
        write_json(tmp / DYNAMICS_FILE, asdict(state.dynamics))
        if state.optimizer is not None:
            with atomic_path(tmp / OPTIMIZER_FILE) as path:
                torch.save(state.optimizer, path)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return directory


def load_state(directory: str | os.PathLike) -> TrainingState:
    """Read a state directory written by :func:`save_state`; errors name the file at fault."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"training state directory {directory} does not exist")
    potential = CGPotential.from_json(directory / POTENTIAL_FILE)
    dyn_path = directory / DYNAMICS_FILE
    if not dyn_path.is_file():
        raise FileNotFoundError(f"{dyn_path} is missing")
    try:
        dynamics = DynamicsParameters(**json.loads(dyn_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{dyn_path}: not a valid dynamics file ({exc})") from exc
    opt_path = directory / OPTIMIZER_FILE
    try:
        optimizer = torch.load(opt_path, weights_only=True) if opt_path.is_file() else None
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise ValueError(f"{opt_path}: not a readable optimiser state ({exc})") from exc
    return TrainingState(potential, dynamics, optimizer)
