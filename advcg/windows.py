r"""Trajectory windows: the samples that the discriminator classifies.

A window is :math:`w = (X_{t_0}, X_{t_0+\Delta}, \dots, X_{t_0+K\Delta})`, K + 1 frames at lag Δ of
all beads. Windows of the CG-mapped AA trajectory ("real") are sliced with MDAnalysis from a
:class:`~advcg.trajectory.CGTrajectory`; windows of CG runs ("generated") come from the per-step
paths that the dynamics' integrators record (:mod:`advcg.dynamics`), subsampled at the same lag, so the
estimator can use every MD step of the same window.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from advcg.trajectory import CGTrajectory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSpec:
    """Shape of the training windows.

    Parameters
    ----------
    n_lags
        K: a window has K + 1 frames.
    lag
        Δ, fs between consecutive frames of a window.
    stride
        fs between the starts of consecutive windows sliced from a trajectory.
    """

    n_lags: int
    lag: float
    stride: float

    def __post_init__(self) -> None:
        if not (isinstance(self.n_lags, (int, np.integer)) and self.n_lags >= 1):
            raise ValueError(f"windows: n_lags must be an integer >= 1, got {self.n_lags!r}")
        for name in ("lag", "stride"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"windows: {name} must be a positive number of fs, got {value!r}")

    @property
    def duration(self) -> float:
        """Window length KΔ, fs."""
        return self.n_lags * self.lag

    def lag_steps(self, timestep: float) -> int:
        """Δ in MD steps of ``timestep`` fs; raises unless Δ is a whole number of steps."""
        steps = self.lag / timestep
        if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(f"windows: lag {self.lag} fs is not a whole number of "
                             f"{timestep} fs time steps")
        return int(round(steps))


@dataclass(frozen=True)
class Windows:
    """A batch of windows.

    Attributes
    ----------
    positions : (n_windows, n_lags + 1, n_beads, 3) float64
        Unwrapped bead positions, Å.
    box : (n_windows, 3) float64
        Orthogonal box edges at the window start, Å.
    start_times : (n_windows,) float64
        Time of each window's first frame, fs.
    """

    positions: np.ndarray
    box: np.ndarray
    start_times: np.ndarray

    def __post_init__(self) -> None:
        if self.positions.ndim != 4 or self.positions.shape[-1] != 3:
            raise ValueError(f"windows: positions must be (n_windows, K+1, n_beads, 3), "
                             f"got {self.positions.shape}")
        if self.box.shape != (len(self.positions), 3):
            raise ValueError(f"windows: box must be ({len(self.positions)}, 3), got {self.box.shape}")
        if not np.all(np.isfinite(self.positions)):
            raise ValueError("windows: positions contain NaN or inf")

    @property
    def n_windows(self) -> int:
        return self.positions.shape[0]

    @property
    def n_beads(self) -> int:
        return self.positions.shape[2]


#: The configuration keys of the :class:`WindowSpec` fields (:func:`advcg.config.build_config`).
CONFIG_KEYS = {"n_lags": "windows.n_lags", "lag": "windows.lag_fs", "stride": "windows.stride_fs"}


def _frames(interval: float, frame_dt: float) -> int | None:
    """``interval`` in frames of ``frame_dt``; ``None`` unless a whole number >= 1."""
    ratio = interval / frame_dt
    return int(round(ratio)) if abs(ratio - round(ratio)) <= 1e-6 and round(ratio) >= 1 else None


def check_frame_spacing(spec: WindowSpec, frame_dt: float | None, n_frames: int) -> None:
    """Refuse a trajectory of ``n_frames`` frames ``frame_dt`` fs apart (``None`` for a single
    frame) that windows of ``spec`` cannot be sliced from: frames coarser than the lag, a lag or
    stride that is not a whole number of frames, fewer frames than one window. Messages give the numbers and the
    configuration key to change (:data:`CONFIG_KEYS`).

    Raises
    ------
    ValueError
        Naming the key, its value, the frame spacing and the nearest values that would do.
    """
    n_lags, lag = CONFIG_KEYS["n_lags"], CONFIG_KEYS["lag"]
    if n_frames < spec.n_lags + 1:
        raise ValueError(f"windows: a window has n_lags + 1 = {spec.n_lags + 1} frames "
                         f"({spec.duration} fs at lag {spec.lag} fs); the trajectory has "
                         f"{n_frames} frame{'s' if n_frames != 1 else ''}")
    if frame_dt > spec.lag * (1 + 1e-9):
        raise ValueError(f"windows: the trajectory's frames are {frame_dt} fs apart, coarser than "
                         f"the window lag {lag} = {spec.lag} fs: the windows need frames at most "
                         f"{spec.lag} fs apart (set {lag} to a multiple of {frame_dt} fs, or give "
                         f"a trajectory with frames closer together)")
    for field in ("lag", "stride"):
        value = getattr(spec, field)
        if _frames(value, frame_dt) is None:
            below = math.floor(value / frame_dt) * frame_dt
            nearest = " or ".join(f"{v:g}" for v in (below, below + frame_dt) if v > 0)
            raise ValueError(f"windows: {field} {value} fs is not a whole number of the "
                             f"trajectory's {frame_dt} fs frame spacing ({value / frame_dt:.4g} "
                             f"frames): set {CONFIG_KEYS[field]} to a multiple of {frame_dt} fs "
                             f"(e.g. {nearest})")
    span = spec.n_lags * _frames(spec.lag, frame_dt)
    if span >= n_frames:
        raise ValueError(f"windows: a window of {spec.duration} fs is longer than the trajectory "
                         f"({round((n_frames - 1) * frame_dt, 6)} fs, {n_frames} frames): lower {n_lags} "
                         f"or {lag}, or give a longer trajectory")


def slice_windows(traj: CGTrajectory, spec: WindowSpec) -> Windows:
    """Slice ``traj`` into windows by slicing its MDAnalysis trajectory reader.

    Raises
    ------
    ValueError
        See :func:`check_frame_spacing`.
    """
    check_frame_spacing(spec, traj.timestep if traj.n_frames > 1 else None, traj.n_frames)
    frame_dt = traj.timestep
    lag_frames, stride_frames = _frames(spec.lag, frame_dt), _frames(spec.stride, frame_dt)
    span = spec.n_lags * lag_frames
    starts = np.arange(0, traj.n_frames - span, stride_frames)
    reader = traj.to_universe().trajectory
    # MDAnalysis holds coordinates in float32: ample for discriminator input (the estimator
    # reads float64 CG paths, never AA windows).
    positions = np.stack([[ts.positions.copy() for ts in reader[s:s + span + 1:lag_frames]]
                          for s in starts]).astype(np.float64)
    logger.info("sliced %d windows of %d frames (lag %.0f fs) from %d frames",
                len(starts), spec.n_lags + 1, spec.lag, traj.n_frames)
    return Windows(positions=positions, box=traj.box[starts].astype(np.float64),
                   start_times=traj.times[starts].astype(np.float64))


def windows_from_paths(paths: np.ndarray, box: np.ndarray, lag_steps: int, start_times: np.ndarray,
                       ) -> Windows:
    """Windows from per-step CG paths ``(n_windows, n_steps + 2, n_beads, 3)`` starting one step
    before the window (as :class:`~advcg.recording.Recording` keeps them): frames 1, 1 + lag, ...."""
    n_steps = paths.shape[1] - 2
    if n_steps % lag_steps:
        raise ValueError(f"windows: {n_steps} steps are not a whole number of lags of {lag_steps}")
    frames = paths[:, 1:n_steps + 2:lag_steps]
    return Windows(positions=np.ascontiguousarray(frames),
                   box=np.broadcast_to(np.asarray(box, dtype=float), (len(paths), 3)).copy(),
                   start_times=np.asarray(start_times, dtype=float))
