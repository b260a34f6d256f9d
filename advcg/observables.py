"""Structural and dynamical diagnostics of a bead trajectory, and the metrics that compare them.

Radial distribution function, over all distinct bead pairs, averaged over frames:

.. math::

    g(r) = \\frac{\\langle V \\rangle}{N (N - 1)}
           \\frac{\\langle \\sum_{i \\ne j} \\delta(r - r_{ij}) \\rangle}{4 \\pi r^2}

(histogram form: pair counts per shell divided by the shell volume and the pair density,
as MDAnalysis's ``InterRDF`` with self-exclusion and LAMMPS's ``compute rdf`` do).

Angular distribution function: the angle θ_jik at bead i between every unordered pair of
distinct neighbours j, k with r_ij, r_ik < cutoff, as a probability density over degrees
(:math:`\\sum_b p_b \\Delta\\theta = 1`).

Mean-squared displacement, over all time origins (FFT, :func:`tidynamics.msd`), after removing
the drift of the system's centre of mass from every frame:

.. math::

    \\mathrm{MSD}(\\tau) = \\frac{1}{N} \\sum_i \\langle |\\tilde r_i(t + \\tau)
    - \\tilde r_i(t)|^2 \\rangle_t, \\quad \\tilde r_i = r_i - R_\\mathrm{com}

and the diffusion coefficient D = slope / 6 of a straight-line fit over a time range.

Comparison metrics (the evaluation of the method): :func:`rdf_max_abs_diff`,
:func:`adf_total_variation`, :func:`msd_ratios`.

Units: Å, fs (D in Å²/fs, and m²/s via :func:`advcg.units.diffusion_to_si`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advcg import units
from advcg.io import atomic_path, write_json
from advcg.trajectory import CGTrajectory

logger = logging.getLogger(__name__)

#: Times (ps) at which MSD ratios are reported.
MSD_RATIO_TIMES_PS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
#: Default time range (fs) of the straight-line fit for D.
DIFFUSION_FIT_RANGE = (10000.0, 50000.0)


def _frozen(array: Any) -> np.ndarray:
    out = np.array(array, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


def _n_bins(span: float, width: float, what: str) -> int:
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"{what} must be > 0; got {width}")
    n = round(span / width)
    if n < 1 or abs(n * width - span) > 1e-9 * span:
        raise ValueError(f"{what} = {width} must divide {span} into a whole number of bins")
    return int(n)


def _frame_range(traj: CGTrajectory, step: int) -> range:
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"step must be a positive integer; got {step!r}")
    return range(0, traj.n_frames, int(step))


# -- results --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RDF:
    """Radial distribution function: ``g`` at bin centres ``r`` (Å), both ``(n_bins,)``."""

    r: np.ndarray
    g: np.ndarray
    bin_width: float
    n_frames: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "r", _frozen(self.r))
        object.__setattr__(self, "g", _frozen(self.g))


@dataclass(frozen=True, eq=False)
class ADF:
    """Angular distribution: probability ``density`` (1/degree) at bin centres ``theta`` (degrees)."""

    theta: np.ndarray
    density: np.ndarray
    bin_width: float
    cutoff: float
    n_angles: int
    n_frames: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "theta", _frozen(self.theta))
        object.__setattr__(self, "density", _frozen(self.density))


@dataclass(frozen=True, eq=False)
class MSD:
    """Mean-squared displacement ``msd`` (Å²) at lag ``times`` (fs), both ``(n_lags,)``."""

    times: np.ndarray
    msd: np.ndarray
    com_removed: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", _frozen(self.times))
        object.__setattr__(self, "msd", _frozen(self.msd))


@dataclass(frozen=True)
class Diffusion:
    """Diffusion coefficient from the MSD slope: ``coefficient`` in Å²/fs, ``coefficient_si`` in m²/s."""

    coefficient: float
    coefficient_si: float
    fit_range_fs: tuple[float, float]
    n_points: int


@dataclass(frozen=True, eq=False)
class Observables:
    """RDF, ADF, MSD and (when the trajectory is long enough) D of one trajectory."""

    rdf: RDF
    adf: ADF
    msd: MSD | None
    diffusion: Diffusion | None


# -- RDF --------------------------------------------------------------------------------------
def rdf(traj: CGTrajectory, r_max: float = 12.0, bin_width: float = 0.05, step: int = 1) -> RDF:
    """Bead-bead radial distribution function over frames ``::step``.

    Parameters
    ----------
    traj
        Bead trajectory (at least two beads).
    r_max
        Largest distance, Å; at most half the smallest box edge.
    bin_width
        Bin width, Å (must divide ``r_max``).
    step
        Use every ``step``-th frame.

    Returns
    -------
    RDF

    Raises
    ------
    ValueError
        Fewer than two beads, ``r_max`` beyond half the box, or bins that do not fit.

    Notes
    -----
    The estimator of MDAnalysis's ``InterRDF(ag, ag, exclusion_block=(1, 1))`` and of LAMMPS's
    ``compute rdf`` (tested against both), computed here from all minimum-image pair distances
    in double precision, vectorised per frame: at r_max ≈ L/2 nearly all pairs count, so a
    neighbour search saves nothing, and this is ≈3× faster than ``InterRDF`` and agrees with
    LAMMPS to round-off (MDAnalysis computes distances in single precision).
    """
    n_bins = _n_bins(r_max, bin_width, "bin_width")
    frames = _frame_range(traj, step)
    n = traj.n_beads
    if n < 2:
        raise ValueError("an RDF needs at least two beads")
    half_box = 0.5 * float(traj.box[frames.start::frames.step].min())
    if r_max > half_box + 1e-9:
        raise ValueError(f"r_max = {r_max} Å exceeds half the smallest box edge ({half_box:.3f} Å)")
    first, second = np.triu_indices(n, k=1)
    counts = np.zeros(n_bins, dtype=np.int64)
    r2 = np.empty(len(first))
    for f in frames:
        r2[:] = 0.0
        for axis in range(3):  # one coordinate at a time: contiguous, double precision
            coord = np.ascontiguousarray(traj.positions[f, :, axis])
            edge = traj.box[f, axis]
            delta = coord[second] - coord[first]
            delta -= edge * np.rint(delta / edge)
            r2 += delta * delta
        np.sqrt(r2, out=r2)
        r2 *= 1.0 / bin_width
        # Distances beyond r_max land in bins >= n_bins, which are dropped.
        counts += np.bincount(r2.astype(np.intp), minlength=n_bins)[:n_bins]
    edges = np.arange(n_bins + 1) * bin_width
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    volume = float(np.prod(traj.box[frames.start::frames.step], axis=1).mean())
    pair_density = n * (n - 1) / volume  # ordered pairs per volume
    g = 2.0 * counts / len(frames) / (pair_density * shell)
    return RDF(r=0.5 * (edges[1:] + edges[:-1]), g=g, bin_width=float(bin_width), n_frames=len(frames))


# -- ADF --------------------------------------------------------------------------------------
def _frame_angles(x: np.ndarray, box: np.ndarray, cutoff: float) -> np.ndarray:
    """Cosines of all angles j-i-k (j < k neighbours of i within ``cutoff``) in one frame."""
    from MDAnalysis.lib.distances import self_capped_distance

    # Candidate pairs (i < j) from MDAnalysis's grid search, which works in single precision:
    # search with a margin, then apply the cutoff exactly here.
    dims = np.concatenate([box, [90.0, 90.0, 90.0]])
    pairs = self_capped_distance(x, cutoff * (1 + 1e-4) + 1e-4, box=dims, return_distances=False)
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    d = x[j] - x[i]
    d -= box * np.round(d / box)
    r2 = np.einsum("pk,pk->p", d, d)
    keep = (r2 < cutoff * cutoff) & (r2 > 0.0)
    i, d, r2 = i[keep], d[keep], r2[keep]
    if len(i) == 0:
        return np.empty(0)
    order = np.argsort(i, kind="stable")
    i, unit = i[order], d[order] / np.sqrt(r2[order])[:, None]
    n_nb = np.bincount(i, minlength=len(x))
    max_nb = int(n_nb.max())
    if max_nb < 2:
        return np.empty(0)
    slot = np.arange(len(i)) - (np.cumsum(n_nb) - n_nb)[i]
    padded = np.zeros((len(x), max_nb, 3))
    present = np.zeros((len(x), max_nb), dtype=bool)
    padded[i, slot] = unit
    present[i, slot] = True
    a, b = np.triu_indices(max_nb, k=1)
    gram = np.matmul(padded, padded.transpose(0, 2, 1))  # cosines between neighbour directions
    return gram[:, a, b][present[:, a] & present[:, b]]


def adf(traj: CGTrajectory, cutoff: float = 3.3, bin_width_deg: float = 2.0, step: int = 1) -> ADF:
    """Angular distribution of neighbour triplets j-i-k within ``cutoff`` of i, over frames ``::step``.

    Parameters
    ----------
    traj
        Bead trajectory.
    cutoff
        Neighbour distance, Å (less than half the smallest box edge).
    bin_width_deg
        Bin width, degrees (must divide 180).
    step
        Use every ``step``-th frame.

    Returns
    -------
    ADF
        Probability density over degrees (all zero if no triplet was found).
    """
    n_bins = _n_bins(180.0, bin_width_deg, "bin_width_deg")
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be > 0 Å; got {cutoff}")
    frames = _frame_range(traj, step)
    half_box = 0.5 * float(traj.box.min())
    if cutoff >= half_box:
        raise ValueError(f"cutoff = {cutoff} Å must be below half the smallest box edge ({half_box:.3f} Å)")
    wrapped = traj.wrapped_positions()
    counts = np.zeros(n_bins, dtype=np.int64)
    for f in frames:
        cos = _frame_angles(wrapped[f], traj.box[f], cutoff)
        theta = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        counts += np.bincount(np.minimum((theta / bin_width_deg).astype(np.int64), n_bins - 1),
                              minlength=n_bins)
    total = int(counts.sum())
    density = counts / (total * bin_width_deg) if total else np.zeros(n_bins)
    if not total:
        logger.warning("no bead triplet within %.2f Å in %d frames: ADF is zero", cutoff, len(frames))
    theta = (np.arange(n_bins) + 0.5) * bin_width_deg
    return ADF(theta=theta, density=density, bin_width=float(bin_width_deg), cutoff=float(cutoff),
               n_angles=total, n_frames=len(frames))


# -- MSD and D --------------------------------------------------------------------------------
def msd(traj: CGTrajectory, remove_com_drift: bool = True, max_lag_fs: float | None = None) -> MSD:
    """Mean-squared displacement over all time origins (FFT).

    Parameters
    ----------
    traj
        Unwrapped bead trajectory with equally spaced frames (at least two).
    remove_com_drift
        Subtract the system's centre of mass from every frame first.
    max_lag_fs
        Keep lags up to this time (default: all).

    Returns
    -------
    MSD
        Lag times from 0 (fs) and MSD (Å²).

    Raises
    ------
    ValueError
        A single frame, or frames not equally spaced.
    """
    import tidynamics

    if traj.n_frames < 2:
        raise ValueError("an MSD needs at least two frames; the trajectory has one")
    dt = traj.timestep  # raises for non-uniform frames
    x = traj.positions
    if remove_com_drift:
        x = x - x.mean(axis=1, keepdims=True)  # all beads have the same mass
    total = np.zeros(traj.n_frames)
    for bead in range(traj.n_beads):  # tidynamics takes one particle at a time
        total += tidynamics.msd(x[:, bead, :])
    times = np.arange(traj.n_frames) * dt
    values = total / traj.n_beads
    if max_lag_fs is not None:
        keep = times <= max_lag_fs + 1e-9 * dt
        times, values = times[keep], values[keep]
    return MSD(times=times, msd=values, com_removed=bool(remove_com_drift))


def diffusion_coefficient(times: np.ndarray, msd: np.ndarray,
                          fit_range_fs: tuple[float, float] = DIFFUSION_FIT_RANGE) -> Diffusion:
    """D = slope / 6 of a least-squares line through the MSD over ``fit_range_fs``.

    Parameters
    ----------
    times : ndarray, shape (n_lags,)
        Lag times, fs.
    msd : ndarray, shape (n_lags,)
        MSD, Å².
    fit_range_fs
        Inclusive time range of the fit, fs.

    Raises
    ------
    ValueError
        Mismatched arrays, a bad range, or fewer than two points in range (trajectory too short).
    """
    times = np.asarray(times, dtype=np.float64)
    msd = np.asarray(msd, dtype=np.float64)
    if times.shape != msd.shape or times.ndim != 1:
        raise ValueError(f"times and msd must be 1-d arrays of one length; got {times.shape}, {msd.shape}")
    lo, hi = (float(v) for v in fit_range_fs)
    if not 0 <= lo < hi:
        raise ValueError(f"fit_range_fs must be (lo, hi) with 0 <= lo < hi; got {fit_range_fs}")
    inside = (times >= lo) & (times <= hi)
    if inside.sum() < 2 or times[-1] < hi - 1e-9 * hi:
        raise ValueError(f"the MSD reaches {times[-1]:.0f} fs; fitting D over {lo:.0f}-{hi:.0f} fs "
                         "needs a longer trajectory (or a shorter fit range)")
    slope = float(np.polyfit(times[inside], msd[inside], 1)[0])
    coefficient = slope / 6.0
    return Diffusion(coefficient=coefficient, coefficient_si=units.diffusion_to_si(coefficient),
                     fit_range_fs=(lo, hi), n_points=int(inside.sum()))


# -- comparison metrics -----------------------------------------------------------------------
#: Range of the RDF metric max |Δg|, Å (docs/method.md §7).
RDF_RANGE = (2.0, 12.0)


def rdf_max_abs_diff(g1: np.ndarray, g2: np.ndarray, r: np.ndarray,
                     r_range: tuple[float, float] = RDF_RANGE) -> float:
    """max |g1 − g2| over bins with ``r_range[0] <= r <= r_range[1]`` (same bins for both)."""
    g1, g2, r = (np.asarray(a, dtype=np.float64) for a in (g1, g2, r))
    if not g1.shape == g2.shape == r.shape:
        raise ValueError(f"g1, g2 and r must have one shape; got {g1.shape}, {g2.shape}, {r.shape}")
    inside = (r >= r_range[0]) & (r <= r_range[1])
    if not inside.any():
        raise ValueError(f"no bin in r_range {r_range} (r spans {r.min()}..{r.max()} Å)")
    return float(np.max(np.abs(g1[inside] - g2[inside])))


def adf_total_variation(p1: np.ndarray, p2: np.ndarray, bin_width: float) -> float:
    """Total variation distance ½ ∫ |p1 − p2| dθ between two ADF densities on the same bins."""
    p1, p2 = np.asarray(p1, dtype=np.float64), np.asarray(p2, dtype=np.float64)
    if p1.shape != p2.shape:
        raise ValueError(f"p1 and p2 must have one shape; got {p1.shape}, {p2.shape}")
    return float(0.5 * np.sum(np.abs(p1 - p2)) * bin_width)


def _at_times(t: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values(t)`` at ``at``; NaN outside ``[t[0], t[-1]]``."""
    out = np.interp(at, t, values)
    out[(at < t[0]) | (at > t[-1] * (1 + 1e-12))] = np.nan
    return out


def msd_ratios(t: np.ndarray, msd_cg: np.ndarray, msd_aa: np.ndarray,
               at_ps: Sequence[float] = MSD_RATIO_TIMES_PS, *,
               t_aa: np.ndarray | None = None) -> dict[float, float]:
    """MSD_CG(t) / MSD_AA(t) at times ``at_ps`` (ps), linearly interpolated.

    Parameters
    ----------
    t
        Lag times of ``msd_cg`` (and of ``msd_aa`` unless ``t_aa`` is given), fs.
    msd_cg, msd_aa
        MSDs, Å².
    at_ps
        Times of the ratios, ps.
    t_aa
        Lag times of ``msd_aa`` when they differ from ``t``, fs.

    Returns
    -------
    dict
        ``{time_ps: ratio}``, NaN where either trajectory is too short.
    """
    t = np.asarray(t, dtype=np.float64)
    t_aa = t if t_aa is None else np.asarray(t_aa, dtype=np.float64)
    msd_cg, msd_aa = np.asarray(msd_cg, dtype=np.float64), np.asarray(msd_aa, dtype=np.float64)
    if t.shape != msd_cg.shape or t_aa.shape != msd_aa.shape:
        raise ValueError("each MSD must have the shape of its times")
    at_fs = np.asarray(at_ps, dtype=np.float64) * units.FS_PER_PS
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _at_times(t, msd_cg, at_fs) / _at_times(t_aa, msd_aa, at_fs)
    return {float(p): float(v) for p, v in zip(at_ps, ratio)}


def msd_ratios_to_json(ratios: Mapping[float, float]) -> list[list[float | None]]:
    """``{lag_ps: ratio}`` as JSON: ``[[lag_ps, ratio], ...]`` in increasing lag, NaN as null
    (lags stay numbers; a JSON object could only key them by strings)."""
    return [[float(lag), _json_float(ratios[lag])] for lag in sorted(ratios, key=float)]


def msd_ratios_from_json(pairs: Any) -> dict[float, float]:
    """The inverse of :func:`msd_ratios_to_json` (null back to NaN)."""
    try:
        return {float(lag): math.nan if ratio is None else float(ratio) for lag, ratio in pairs}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"MSD ratios must be [[lag_ps, ratio], ...], got {pairs!r}") from exc


# -- all together, JSON and plots -------------------------------------------------------------
def compute_observables(traj: CGTrajectory, *, r_max: float = 12.0, rdf_bin_width: float = 0.05,
                        adf_cutoff: float = 3.3, adf_bin_width: float = 2.0,
                        fit_range_fs: tuple[float, float] = DIFFUSION_FIT_RANGE,
                        step: int = 1) -> Observables:
    """RDF and ADF (frames ``::step``), MSD (all frames) and D of one trajectory.

    The MSD is ``None`` for a single frame and D is ``None`` when the trajectory is shorter
    than the fit range (both logged).
    """
    result_rdf = rdf(traj, r_max=r_max, bin_width=rdf_bin_width, step=step)
    result_adf = adf(traj, cutoff=adf_cutoff, bin_width_deg=adf_bin_width, step=step)
    result_msd = diffusion = None
    if traj.n_frames < 2:
        logger.warning("single-frame trajectory: no MSD")
    else:
        result_msd = msd(traj)
        try:
            diffusion = diffusion_coefficient(result_msd.times, result_msd.msd, fit_range_fs)
        except ValueError as exc:
            logger.warning("no diffusion coefficient: %s", exc)
    return Observables(rdf=result_rdf, adf=result_adf, msd=result_msd, diffusion=diffusion)


def compare_observables(obs: Observables, reference: Observables,
                        r_range: tuple[float, float] = RDF_RANGE,
                        at_ps: Sequence[float] = MSD_RATIO_TIMES_PS) -> dict[str, Any]:
    """The evaluation metrics of ``obs`` against ``reference`` (e.g. CG against AA).

    Returns
    -------
    dict
        ``rdf_max_abs_diff``, ``adf_total_variation``, ``msd_ratios`` (``{ps: ratio}``, NaN
        where too short; empty without MSDs) and ``diffusion_ratio`` (or ``None``).

    Raises
    ------
    ValueError
        The RDFs or ADFs were computed on different bins.
    """
    if obs.rdf.r.shape != reference.rdf.r.shape or not np.allclose(obs.rdf.r, reference.rdf.r):
        raise ValueError("RDFs on different bins: use the same r_max and bin width for both")
    if (obs.adf.theta.shape != reference.adf.theta.shape
            or not np.allclose(obs.adf.theta, reference.adf.theta)):
        raise ValueError("ADFs on different bins: use the same bin width for both")
    if not math.isclose(obs.adf.cutoff, reference.adf.cutoff):
        logger.warning("ADFs with different cutoffs (%.3f, %.3f Å)", obs.adf.cutoff, reference.adf.cutoff)
    metrics: dict[str, Any] = {
        "rdf_max_abs_diff": rdf_max_abs_diff(obs.rdf.g, reference.rdf.g, obs.rdf.r, r_range),
        "rdf_r_range": list(r_range),
        "adf_total_variation": adf_total_variation(obs.adf.density, reference.adf.density,
                                                   obs.adf.bin_width),
        "msd_ratios": {},
        "diffusion_ratio": None,
    }
    if obs.msd is not None and reference.msd is not None:
        metrics["msd_ratios"] = msd_ratios(obs.msd.times, obs.msd.msd, reference.msd.msd, at_ps,
                                           t_aa=reference.msd.times)
    if obs.diffusion is not None and reference.diffusion is not None:
        metrics["diffusion_ratio"] = obs.diffusion.coefficient / reference.diffusion.coefficient
    return metrics


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def observables_to_json(obs: Observables) -> dict[str, Any]:
    """A JSON-ready dict of ``obs`` (arrays as lists; units in the key names' docs above)."""
    out: dict[str, Any] = {
        "units": {"r": "angstrom", "theta": "degree", "adf_density": "1/degree", "time": "fs",
                  "msd": "angstrom^2", "D": "angstrom^2/fs", "D_si": "m^2/s"},
        "rdf": {"r": obs.rdf.r.tolist(), "g": obs.rdf.g.tolist(), "bin_width": obs.rdf.bin_width,
                "n_frames": obs.rdf.n_frames},
        "adf": {"theta": obs.adf.theta.tolist(), "density": obs.adf.density.tolist(),
                "bin_width": obs.adf.bin_width, "cutoff": obs.adf.cutoff,
                "n_angles": obs.adf.n_angles, "n_frames": obs.adf.n_frames},
        "msd": None,
        "diffusion": None,
    }
    if obs.msd is not None:
        out["msd"] = {"times": obs.msd.times.tolist(), "msd": obs.msd.msd.tolist(),
                      "com_removed": obs.msd.com_removed}
    if obs.diffusion is not None:
        d = obs.diffusion
        out["diffusion"] = {"D": d.coefficient, "D_si": d.coefficient_si,
                            "fit_range_fs": list(d.fit_range_fs), "n_points": d.n_points}
    return out


def observables_from_json(data: Mapping[str, Any]) -> Observables:
    """Rebuild :class:`Observables` from :func:`observables_to_json` output.

    Raises
    ------
    ValueError
        Entries are missing or malformed.
    """
    try:
        r, a = data["rdf"], data["adf"]
        result_rdf = RDF(r=r["r"], g=r["g"], bin_width=float(r["bin_width"]), n_frames=int(r["n_frames"]))
        result_adf = ADF(theta=a["theta"], density=a["density"], bin_width=float(a["bin_width"]),
                         cutoff=float(a["cutoff"]), n_angles=int(a["n_angles"]),
                         n_frames=int(a["n_frames"]))
        m, d = data.get("msd"), data.get("diffusion")
        result_msd = None if m is None else MSD(times=m["times"], msd=m["msd"],
                                                com_removed=bool(m["com_removed"]))
        diffusion = None if d is None else Diffusion(
            coefficient=float(d["D"]), coefficient_si=float(d["D_si"]),
            fit_range_fs=tuple(float(v) for v in d["fit_range_fs"]), n_points=int(d["n_points"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an advcg observables record: {exc!r}") from exc
    return Observables(rdf=result_rdf, adf=result_adf, msd=result_msd, diffusion=diffusion)


def save_observables_json(path: str | os.PathLike, obs: Observables,
                          comparison: Mapping[str, Any] | None = None,
                          reference: Observables | None = None) -> Path:
    """Write ``{"observables": ..., ["reference": ..., "comparison": ...]}`` to ``path`` atomically.

    NaN metrics are written as ``null``.
    """
    record: dict[str, Any] = {"observables": observables_to_json(obs)}
    if reference is not None:
        record["reference"] = observables_to_json(reference)
    if comparison is not None:
        clean = dict(comparison)
        clean["msd_ratios"] = msd_ratios_to_json(comparison.get("msd_ratios", {}))
        for key in ("rdf_max_abs_diff", "adf_total_variation", "diffusion_ratio"):
            if key in clean:
                clean[key] = _json_float(clean[key])
        record["comparison"] = clean
    write_json(path, record)
    return Path(path)


def load_observables_json(path: str | os.PathLike) -> Observables:
    """Read the ``observables`` entry of a file written by :func:`save_observables_json`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observables file {path} does not exist")
    try:
        record = json.loads(path.read_text())
        return observables_from_json(record["observables"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not an advcg observables file ({exc})") from exc


def plot_observables(path: str | os.PathLike, obs: Observables, reference: Observables | None = None,
                     labels: tuple[str, str] = ("CG", "AA")) -> Path:
    """Plot RDF, ADF and MSD (log-log) side by side into a PNG at ``path``, atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas for PNG

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    series = [(obs, labels[0], "-")] + ([(reference, labels[1], "--")] if reference is not None else [])
    for item, label, style in series:
        axes[0].plot(item.rdf.r, item.rdf.g, style, label=label)
        axes[1].plot(item.adf.theta, item.adf.density, style, label=label)
        if item.msd is not None and len(item.msd.times) > 1:
            axes[2].loglog(item.msd.times[1:] / units.FS_PER_PS, item.msd.msd[1:], style, label=label)
    axes[0].set(xlabel="r (Å)", ylabel="g(r)", title="RDF")
    axes[1].set(xlabel="θ (degrees)", ylabel="p(θ) (1/degree)", title=f"ADF, cutoff {obs.adf.cutoff} Å")
    axes[2].set(xlabel="t (ps)", ylabel="MSD (Å²)", title="MSD")
    for ax in axes:
        ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return Path(path)
