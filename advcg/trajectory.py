"""The coarse-grained trajectory shared by all of advcg: one bead per molecule, unwrapped.

A :class:`CGTrajectory` holds bead positions (unwrapped: no jumps across periodic boundaries),
orthogonal box edge lengths and times for every frame, in LAMMPS ``real`` units (Å, fs), and
the bead mass (g/mol). It is produced from AA trajectories by :mod:`advcg.mapping` and from CG
LAMMPS runs, and consumed by :mod:`advcg.observables`, window slicing and training.

File layout (``.npz``, written by :meth:`CGTrajectory.save`):

============= =========================== ===================================
key           shape, dtype                meaning
============= =========================== ===================================
``format``    (), str                     ``"advcg.CGTrajectory"``
``version``   (), int                     layout version, currently 1
``positions`` (n_frames, n_beads, 3), f8  unwrapped bead positions, Å
``box``       (n_frames, 3), f8           orthogonal box edge lengths, Å
``times``     (n_frames,), f8             time of each frame, fs
``mass``      (), f8                      bead mass, g/mol
============= =========================== ===================================
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advcg import units
from advcg.io import save_npz

logger = logging.getLogger(__name__)

#: Value of the ``format`` entry of a CGTrajectory ``.npz`` file.
FILE_FORMAT = "advcg.CGTrajectory"
#: Current layout version of the ``.npz`` file.
FILE_VERSION = 1
_KEYS = ("positions", "box", "times", "mass")

# Relative tolerance on frame spacing for a trajectory to count as uniformly sampled (times
# read from single-precision files carry round-off).
_UNIFORM_RTOL = 1e-4


def _frozen_float_array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"CGTrajectory.{name} must be numeric: {exc}") from exc
    if not np.all(np.isfinite(array)):
        raise ValueError(f"CGTrajectory.{name} contains NaN or inf")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class CGTrajectory:
    """Unwrapped bead trajectory in LAMMPS real units.

    Parameters
    ----------
    positions
        ``(n_frames, n_beads, 3)`` unwrapped bead positions, Å (stored as float64).
    box
        ``(n_frames, 3)`` orthogonal box edge lengths, Å.
    times
        ``(n_frames,)`` frame times, fs, strictly increasing.
    mass
        Bead mass, g/mol.

    Raises
    ------
    ValueError
        Wrong shapes, NaN/inf, non-positive box edges or mass, or times not strictly increasing.

    Notes
    -----
    The arrays are read-only copies. Instances compare by identity (``eq=False``).
    """

    positions: np.ndarray
    box: np.ndarray
    times: np.ndarray
    mass: float = units.WATER_MASS

    def __post_init__(self) -> None:
        positions = _frozen_float_array(self.positions, "positions")
        box = _frozen_float_array(self.box, "box")
        times = _frozen_float_array(self.times, "times")
        if positions.ndim != 3 or positions.shape[2] != 3 or 0 in positions.shape:
            raise ValueError("CGTrajectory.positions must have shape (n_frames, n_beads, 3) with "
                             f"n_frames, n_beads >= 1; got {positions.shape}")
        n_frames = positions.shape[0]
        if box.shape != (n_frames, 3):
            raise ValueError(f"CGTrajectory.box must have shape ({n_frames}, 3); got {box.shape}")
        if np.any(box <= 0.0):
            raise ValueError("CGTrajectory.box edge lengths must be > 0")
        if times.shape != (n_frames,):
            raise ValueError(f"CGTrajectory.times must have shape ({n_frames},); got {times.shape}")
        if n_frames > 1 and np.any(np.diff(times) <= 0.0):
            bad = int(np.argmax(np.diff(times) <= 0.0))
            raise ValueError("CGTrajectory.times must be strictly increasing; frame "
                             f"{bad + 1} has t = {times[bad + 1]} fs after {times[bad]} fs")
        mass = float(self.mass)
        if not np.isfinite(mass) or mass <= 0.0:
            raise ValueError(f"CGTrajectory.mass must be a positive bead mass in g/mol; got {self.mass}")
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "mass", mass)

    # -- shape and sampling ----------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.positions.shape[0])

    @property
    def n_beads(self) -> int:
        """Number of beads."""
        return int(self.positions.shape[1])

    @property
    def duration(self) -> float:
        """Time from the first to the last frame, fs."""
        return float(self.times[-1] - self.times[0])

    @property
    def is_uniform(self) -> bool:
        """Whether frames are equally spaced in time (always true for one or two frames)."""
        if self.n_frames < 3:
            return True
        steps = np.diff(self.times)
        return bool(np.allclose(steps, steps.mean(), rtol=_UNIFORM_RTOL, atol=0.0))

    @property
    def timestep(self) -> float:
        """Time between consecutive frames, fs.

        Raises
        ------
        ValueError
            Only one frame, or frames not equally spaced.
        """
        if self.n_frames < 2:
            raise ValueError("a single-frame trajectory has no timestep")
        if not self.is_uniform:
            steps = np.diff(self.times)
            raise ValueError("frames are not equally spaced in time "
                             f"(spacing {steps.min()}..{steps.max()} fs)")
        return float((self.times[-1] - self.times[0]) / (self.n_frames - 1))

    def slice(self, start: int | None = None, stop: int | None = None,
              step: int | None = None) -> CGTrajectory:
        """Frames ``start:stop:step`` as a new trajectory (Python slice semantics).

        Raises
        ------
        ValueError
            The slice selects no frame, or ``step`` is not positive.
        """
        if step is not None and step < 1:
            raise ValueError(f"step must be a positive integer; got {step}")
        sel = slice(start, stop, step)
        if len(range(*sel.indices(self.n_frames))) == 0:
            raise ValueError(f"frames [{start}:{stop}:{step}] select nothing out of {self.n_frames}")
        return CGTrajectory(self.positions[sel], self.box[sel], self.times[sel], self.mass)

    def wrapped_positions(self) -> np.ndarray:
        """Positions ``(n_frames, n_beads, 3)`` wrapped into ``[0, box)``, Å."""
        box = self.box[:, None, :]
        return self.positions - np.floor(self.positions / box) * box

    # -- I/O ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trajectory to ``path`` (``.npz``, layout in the module docstring), atomically.

        Returns
        -------
        Path
            The path written.
        """
        path = Path(path)
        save_npz(path, format=np.array(FILE_FORMAT), version=np.array(FILE_VERSION),
                 positions=self.positions, box=self.box, times=self.times,
                 mass=np.array(self.mass))
        logger.info("wrote %d frames x %d beads to %s", self.n_frames, self.n_beads, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CGTrajectory:
        """Read a trajectory written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist.
        ValueError
            ``path`` is not a readable ``.npz`` (e.g. truncated), is not a CGTrajectory file, or
            holds invalid arrays.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CG trajectory file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable .npz file (truncated or corrupt?): {exc}") from exc
        if "format" not in contents or str(contents["format"]) != FILE_FORMAT:
            raise ValueError(f"{path} is not an advcg CG trajectory (.npz with format="
                             f"{FILE_FORMAT!r}); it has keys {sorted(contents)}")
        missing = [k for k in _KEYS if k not in contents]
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing} of a CG trajectory")
        version = int(contents["version"]) if "version" in contents else None
        if version != FILE_VERSION:
            raise ValueError(f"{path} has CG trajectory layout version {version}; this advcg "
                             f"reads version {FILE_VERSION}")
        arrays = {k: contents[k] for k in _KEYS}
        try:
            return cls(arrays["positions"], arrays["box"], arrays["times"], float(arrays["mass"]))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    # -- MDAnalysis --------------------------------------------------------------------------
    def to_universe(self) -> Any:
        """An MDAnalysis Universe with one atom per bead, in memory.

        Atoms are named and typed ``W``, one residue each, with the bead mass; frames carry the
        box (orthogonal) and times (``time_offset`` = first frame). Coordinates are float32
        there (MDAnalysis's :class:`~MDAnalysis.coordinates.memory.MemoryReader`); analyses
        that need double precision should use :attr:`positions`.

        Raises
        ------
        ValueError
            Frames are not equally spaced (MemoryReader has one ``dt``).
        """
        import MDAnalysis as mda
        from MDAnalysis.coordinates.memory import MemoryReader

        n = self.n_beads
        universe = mda.Universe.empty(n, n_residues=n, atom_resindex=np.arange(n), trajectory=False)
        universe.add_TopologyAttr("names", ["W"] * n)
        universe.add_TopologyAttr("types", ["W"] * n)
        universe.add_TopologyAttr("resnames", ["W"] * n)
        universe.add_TopologyAttr("resids", np.arange(1, n + 1))
        universe.add_TopologyAttr("masses", np.full(n, self.mass))
        dimensions = np.zeros((self.n_frames, 6))
        dimensions[:, :3] = self.box
        dimensions[:, 3:] = 90.0
        dt_ps = self.timestep / units.FS_PER_PS if self.n_frames > 1 else 1.0
        universe.load_new(self.positions, format=MemoryReader, order="fac", dimensions=dimensions,
                          dt=dt_ps, time_offset=self.times[0] / units.FS_PER_PS)
        return universe
