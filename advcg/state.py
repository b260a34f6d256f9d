"""The training state of one round: what must be on disk so that any round can be rerun or resumed.

A state directory holds

=================== ==================================================================
``potential.json``  the CG potential θ (:class:`advcg.potential.CGPotential` file)
``dynamics.json``   the model's dynamics (:mod:`advcg.dynamics`: kind, temperature, time
                    step, bead mass and its learned parameters)
``progress.json``   the round bookkeeping (:class:`RoundProgress`): round index, seed, the
                    divergence guard's step scales, rejection count and RDF bound
``optimizer.pt``    the Adam state over ϑ (absent before the first update)
=================== ==================================================================

The model (potential and dynamics) and the bookkeeping live apart. Every file is written
atomically, and :func:`save_state` writes into a temporary directory that is renamed into place,
so a state directory is complete or absent. :func:`load_state` is as strict as the configuration:
unknown or missing keys and values out of range are refused, naming the file and the key.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advcg.dynamics import Dynamics, dynamics_from_dict
from advcg.io import atomic_path, write_json
from advcg.parameters import BLOCKS, ParameterSpace, potential_parameters
from advcg.potential import CGPotential

logger = logging.getLogger(__name__)

POTENTIAL_FILE = "potential.json"
DYNAMICS_FILE = "dynamics.json"
PROGRESS_FILE = "progress.json"
OPTIMIZER_FILE = "optimizer.pt"


def _unit_scales() -> dict[str, float]:
    return {block: 1.0 for block in BLOCKS}


@dataclass(frozen=True)
class RoundProgress:
    """The round bookkeeping of a training state (not part of the model).

    Parameters
    ----------
    round
        Index of the round that produced this state (0: initialisation).
    seed
        Base seed of the round's random numbers.
    step_scales
        Multiplier of the learning rates of each parameter block (``potential``, ``dynamics``),
        reduced by the divergence guard after a rejected update.
    rejections
        Consecutive updates rejected by the divergence guard up to this state (:mod:`advcg.guard`).
    rdf_bound
        The guard's bound on the probe RDF max|Δg| (:func:`advcg.guard.rdf_bound`; 0: not set yet).
    """

    round: int = 0
    seed: int = 1
    step_scales: dict[str, float] = field(default_factory=_unit_scales)
    rejections: int = 0
    rdf_bound: float = 0.0

    def __post_init__(self) -> None:
        for name in ("round", "seed", "rejections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"progress: {name} must be an integer, got {value!r}")
        if self.round < 0 or self.rejections < 0 or self.seed < 1:
            raise ValueError("progress: round and rejections must be >= 0 and seed >= 1, got "
                             f"{self.round}, {self.rejections}, {self.seed}")
        if not isinstance(self.step_scales, dict) or set(self.step_scales) != set(BLOCKS):
            raise ValueError(f"progress: step_scales must name the blocks {list(BLOCKS)}, got "
                             f"{self.step_scales!r}")
        for block, scale in self.step_scales.items():
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                    math.isfinite(scale) and 0 <= scale <= 1):
                raise ValueError(f"progress: step_scales.{block} must be a number in [0, 1], got {scale!r}")
        if not (isinstance(self.rdf_bound, (int, float)) and math.isfinite(self.rdf_bound)
                and self.rdf_bound >= 0):
            raise ValueError(f"progress: rdf_bound must be a finite number >= 0, got {self.rdf_bound!r}")

    def round_seed(self, stage: int) -> int:
        """A distinct, reproducible seed for stage ``stage`` of this round."""
        return int(np.random.SeedSequence([self.seed, self.round, stage]).generate_state(1)[0] % (2**31 - 2)) + 1


@dataclass
class TrainingState:
    """Potential, dynamics, round bookkeeping and optimiser state of one round."""

    potential: CGPotential
    dynamics: Dynamics
    progress: RoundProgress = field(default_factory=RoundProgress)
    optimizer: dict | None = None

    def parameter_space(self) -> ParameterSpace:
        """Names, blocks, learning-rate groups and bounds of ϑ."""
        return ParameterSpace({"potential": potential_parameters(self.potential.parameter_names()),
                               "dynamics": self.dynamics.parameters()})

    def parameter_vector(self) -> np.ndarray:
        """ϑ = (θ, the dynamics' own parameters)."""
        return np.concatenate([self.potential.theta.numpy(), self.dynamics.parameter_values()])

    def with_parameters(self, vector: np.ndarray, **progress: Any) -> TrainingState:
        """A copy with ϑ = ``vector`` (and the bookkeeping fields ``progress`` changed)."""
        vector = np.asarray(vector, dtype=float)
        if not np.all(np.isfinite(vector)):
            raise ValueError("training state: non-finite parameters")
        space = self.parameter_space()
        potential = CGPotential.from_dict(self.potential.to_dict())
        potential.set_theta(vector[space.block("potential")])
        dynamics = self.dynamics.with_parameter_values(vector[space.block("dynamics")])
        return TrainingState(potential, dynamics, replace(self.progress, **progress), self.optimizer)


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
        write_json(tmp / DYNAMICS_FILE, state.dynamics.to_dict())
        write_json(tmp / PROGRESS_FILE, asdict(state.progress))
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


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _progress(data: Any, path: Path) -> RoundProgress:
    known = {f.name for f in fields(RoundProgress)}
    if not isinstance(data, dict) or set(data) - known:
        extra = sorted(set(data) - known) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: unknown keys {extra}; a progress file has {sorted(known)}")
    try:
        return RoundProgress(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def load_state(directory: str | os.PathLike) -> TrainingState:
    """Read a state directory written by :func:`save_state`; errors name the file at fault."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"training state directory {directory} does not exist")
    potential = CGPotential.from_json(directory / POTENTIAL_FILE)
    dynamics_path = directory / DYNAMICS_FILE
    dynamics = dynamics_from_dict(_read_json(dynamics_path), str(dynamics_path))
    progress_path = directory / PROGRESS_FILE
    progress = _progress(_read_json(progress_path), progress_path)
    opt_path = directory / OPTIMIZER_FILE
    try:
        optimizer = torch.load(opt_path, weights_only=True) if opt_path.is_file() else None
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise ValueError(f"{opt_path}: not a readable optimiser state ({exc})") from exc
    return TrainingState(potential, dynamics, progress, optimizer)
