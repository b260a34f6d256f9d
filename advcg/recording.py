"""What a CG run keeps: subsampled frames and, for training, every MD step of each window.

:class:`RecordPlan` says which steps to keep; a dynamics' integrator
(:meth:`advcg.dynamics.Dynamics.integrator`) fills a :class:`Recording`. The estimator needs every
step of a window in double precision, unwrapped, from one step before its start (the first
position recurrence needs two earlier positions), plus whatever auxiliary state the dynamics
carries (none for Langevin). :meth:`Recording.save` writes a versioned ``.npz``;
:meth:`Recording.load` refuses files of another version or with missing or unknown arrays.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advcg.io import save_npz

#: Version of the ``.npz`` layout written by :meth:`Recording.save`.
FORMAT_VERSION = 1
_ARRAYS = ("frame_steps", "frames", "window_starts", "paths", "box")
_FORCES = "path_forces"
_AUX_PREFIX = "auxiliary."


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
        Also keep LAMMPS's conservative forces at every window step: the estimator then uses
        the forces the dynamics actually had instead of recomputing them.
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

    def window_slots(self) -> dict[int, list[tuple[int, int]]]:
        """Step offset (from the run's first step) → ``(window index, slot)`` pairs to fill."""
        slots: dict[int, list[tuple[int, int]]] = {}
        for w, start in enumerate(self.window_starts):
            for k in range(self.window_steps + 2):
                slots.setdefault(start - 1 + k, []).append((w, k))
        return slots


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
    timestep : fs
    lag_steps : the training windows' lag in steps (0 for a run without windows)
    auxiliary : name → (n_windows, window_steps + 2, n_beads, ...) float64, the dynamics' own
        state at every window step (e.g. a GLE's auxiliary momenta); empty for Langevin
    """

    frame_steps: np.ndarray
    frames: np.ndarray
    window_starts: np.ndarray
    paths: np.ndarray
    path_forces: np.ndarray | None
    box: np.ndarray
    timestep: float = 0.0
    lag_steps: int = 0
    auxiliary: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the recording (with ``path_forces`` when it was recorded) to a versioned ``.npz``."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        if self.path_forces is not None:
            arrays[_FORCES] = self.path_forces
        arrays.update({_AUX_PREFIX + name: value for name, value in self.auxiliary.items()})
        save_npz(path, format_version=np.int64(FORMAT_VERSION), timestep=np.float64(self.timestep),
                 lag_steps=np.int64(self.lag_steps), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recording:
        """Read a file written by :meth:`save`; errors name the file and what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CG recording {path} does not exist")
        try:
            with np.load(path) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise ValueError(f"CG recording {path} is unreadable (truncated or corrupt?): {exc}") from exc
        version = arrays.pop("format_version", None)
        if version is None or int(version) != FORMAT_VERSION:
            raise ValueError(f"CG recording {path} has format version {version}, this advcg reads "
                             f"version {FORMAT_VERSION}: rerun the simulate stage")
        required = set(_ARRAYS) | {"timestep", "lag_steps"}
        missing = sorted(required - set(arrays))
        unknown = sorted(k for k in set(arrays) - required - {_FORCES} if not k.startswith(_AUX_PREFIX))
        if missing or unknown:
            raise ValueError(f"CG recording {path}: missing arrays {missing}, unknown arrays {unknown}")
        auxiliary = {k[len(_AUX_PREFIX):]: arrays.pop(k) for k in list(arrays) if k.startswith(_AUX_PREFIX)}
        return cls(frame_steps=arrays["frame_steps"], frames=arrays["frames"],
                   window_starts=arrays["window_starts"], paths=arrays["paths"],
                   path_forces=arrays.get(_FORCES),
                   box=arrays["box"], timestep=float(arrays["timestep"]),
                   lag_steps=int(arrays["lag_steps"]), auxiliary=auxiliary)
