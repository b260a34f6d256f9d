r"""Structural initialisation: Boltzmann inversion (BI) and iterative Boltzmann inversion (IBI).

.. math::

    \phi_0(r) = -k_BT \ln g_\mathrm{AA}(r),\qquad
    \phi_{k+1}(r) = \phi_k(r) + \alpha\, k_BT \ln\frac{g_k(r)}{g_\mathrm{AA}(r)}

with :math:`g_k` the RDF of a CG run of :math:`\phi_k` (docs/method.md §6, first stage; it is also the
structural baseline of §7: IBI pair-only is IBI with the three-body strength λ = 0).

Two update rules share the loop (``method``): ``ibi``, the update above, and ``imc``, a Newton
step whose Jacobian is the canonical fluctuation formula estimated from the same CG frames
(inverse Monte Carlo, :func:`advcg.imc.imc_update`). Both stop only when the CG RDF matches the target.
Measured on the mapped SPC/E reference (512 beads, 100 ps; 0.2 Å knots; pair only; runs of
5 + 40 ps): BI gives max |Δg| = 0.95; plain IBI (α = 1) reaches 0.39 after one update and then
crawls (0.22 after 15: the whole first peak stays too high, a collective mode of the dense liquid
that the IBI update under-corrects), while IMC reaches 0.038 after 4 updates. :func:`initialise`
therefore uses ``imc`` by default. With the default ``sw`` three-body term (λ = 10) IMC levels
off at max |Δg| ≈ 0.09 (its linearised step predicts no better): the 0.2 Å pair spline cannot
quite cancel the three-body term's structure near its 3.7 Å cutoff.

Choices (each a keyword argument with the default given here):

Boltzmann inversion (:func:`boltzmann_inversion`), on the RDF bins with
:math:`r_\mathrm{min} \le r < r_c`:

* unsampled bins (:math:`g = 0`) are dropped; the fixed quadratic wall of
  :class:`~advcg.potential.PairSpline` covers :math:`r < r_\mathrm{min}`;
* the repulsive core: below the first bin with :math:`g \ge g_\mathrm{edge}` (0.01), where bins
  hold a handful of pair counts, :math:`\phi` is replaced by a straight line through the next
  ``edge_bins`` (3) bins, continued down to :math:`r_\mathrm{min}`; its slope is made at least
  :math:`k_BT` per Å repulsive, so the core is never flat;
* the tail: :math:`\phi` is shifted by its mean over :math:`[r_c - w, r_c)` and multiplied by
  :math:`S(r) = \tfrac12[1 + \cos(\pi (r - r_c + w)/w)]` on that range (:math:`w` =
  ``taper_width``, 1 Å), so the target goes smoothly to 0 at :math:`r_c` (the spline itself has
  :math:`\phi = \phi' = \phi'' = 0` at :math:`r_c` by construction);
* weights :math:`w_i = g_i / (g_i + g_\mathrm{edge})` (≈ 1 where :math:`g \gg 0.01`, small for the
  noisy few-count bins), 1 for the extrapolated core; a second-difference penalty of weight
  ``smoothing`` (1e-3, i.e. negligible where there are data) keeps the least squares well posed.

IBI (:func:`iterative_boltzmann_inversion`):

* each iteration exports the current model, starts LAMMPS from a frame of the mapped AA trajectory
  (same box), runs Langevin dynamics (:class:`advcg.dynamics.LangevinDynamics`) for ``equilibration_ps`` (5 ps) and
  ``run_ps``, and computes the CG RDF on the target's bins;
* the update is regularised where :math:`g` is small or noisy:
  :math:`\Delta\phi_i = \alpha k_BT\,\mathrm{clip}\big(\ln\frac{g_{k,i} + \varepsilon}
  {g_{\mathrm{AA},i} + \varepsilon}, \pm L\big)` with :math:`\varepsilon` = 0.001 (so bins where both
  RDFs vanish, the core, are left alone, and a CG run that enters the AA core is pushed out) and
  :math:`L` = 1 (at most :math:`\alpha k_BT` per iteration);
* :math:`\Delta\phi` is fitted into the spline (weights :math:`g_\mathrm{AA} + 0.1` on every bin
  in :math:`[r_\mathrm{min}, r_c)`, so the fit favours the bins that dominate the absolute RDF
  error; second-difference penalty ``update_smoothing`` = 0.01: the 0.2 Å knots average ~4 bins
  of 0.05 Å) and added to the coefficients; the three-body term is kept as
  given, so with λ > 0 the pair term absorbs the three-body term's effect on the RDF and IBI
  still targets the AA RDF;
* α (``damping_factor``) defaults to 1 (the plain IBI update; 0.5 converged more slowly on water
  and 1 did not diverge); for ``imc`` it scales the Newton step, each coefficient change being
  clipped at ``max_step`` (0.3 kcal/mol) first;
* every iteration records max :math:`|g_k - g_\mathrm{AA}|` over 2–12 Å and its times; IBI stops
  once that is at most ``tolerance`` (0.05) and returns the best iterate.

Files (all atomic) under ``workdir``: ``iter_NNN/model/`` (the exported model, with
``parameters.json``), ``iter_NNN/rdf.npz`` (CG RDF, target and the RDF of every frame),
``iter_NNN/metrics.json``, ``iter_NNN/log.lammps``,
and ``ibi_report.json``. :func:`initialise` (the pipeline's ``advcg init``) adds the AA RDF, the
BI potential, the initial potential and a report in its ``outdir``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from advcg import io
from advcg.dynamics import LangevinDynamics
from advcg.engine import Accelerator, choose_accelerator
from advcg.export import export_model
from advcg.imc import DEFAULT_MAX_STEP, DEFAULT_REGULARISATION, frame_rdfs, imc_update
from advcg.observables import RDF, RDF_RANGE, rdf, rdf_max_abs_diff
from advcg.potential import (
    DEFAULT_KAPPA,
    DEFAULT_LAMBDA,
    AngleTableThreeBody,
    CGPotential,
    PairSpline,
    SWThreeBody,
    ThreeBody,
)
from advcg.simulation import CGSystem, RunPlan, build_engine, recording_trajectory, run_cg
from advcg.trajectory import CGTrajectory
from advcg.units import FS_PER_PS, mass_density
from advcg.units import kT as thermal_energy

if TYPE_CHECKING:
    from advcg.config import Config

logger = logging.getLogger(__name__)

__all__ = ["boltzmann_inversion", "ibi_update", "iterative_boltzmann_inversion",
           "initialise", "METHODS",
           "target_rdf", "IBIIteration", "IBIResult", "Initialisation", "DEFAULT_DAMPING_FACTOR",
           "DEFAULT_TOLERANCE", "DEFAULT_EQUILIBRATION_PS", "RDF_BIN_WIDTH",
           "RDF_R_MAX"]

#: IBI damping factor α (dimensionless).
DEFAULT_DAMPING_FACTOR = 1.0
#: IBI stops when max |g_CG − g_AA| over :data:`RDF_RANGE` is at most this.
DEFAULT_TOLERANCE = 0.05
#: RDF bin width, Å (docs/method.md §7).
RDF_BIN_WIDTH = 0.05
#: Largest RDF distance, Å (smaller in boxes under 24 Å).
RDF_R_MAX = 12.0
#: CG equilibration before each IBI run, ps.
DEFAULT_EQUILIBRATION_PS = 5.0
#: Time between the CG frames an IBI RDF uses, fs.
DEFAULT_FRAME_INTERVAL = 100.0
#: BI: bins below the first with g >= this are extrapolated; weight scale of small g.
DEFAULT_G_EDGE = 0.01
#: BI: bins that fix the slope of the core extrapolation.
DEFAULT_EDGE_BINS = 3
#: BI: width of the tail taper, Å.
DEFAULT_TAPER_WIDTH = 1.0
#: BI: second-difference penalty of the spline fit.
DEFAULT_SMOOTHING = 1e-3
#: IBI: regulariser ε of ln((g_CG + ε)/(g_AA + ε)).
DEFAULT_RDF_EPSILON = 1e-3
#: IBI: |ln ratio| is clipped at this (at most α k_BT per iteration).
DEFAULT_LOG_CLIP = 1.0
#: IBI: weights of the update fit are g_AA + this.
DEFAULT_WEIGHT_FLOOR = 0.1
#: IBI: second-difference penalty of the update fit.
DEFAULT_UPDATE_SMOOTHING = 1e-2
#: Update rules of :func:`iterative_boltzmann_inversion`.
METHODS = ("ibi", "imc")

_ITER_DIR = re.compile(r"^iter_\d{3,}$")


# -- Boltzmann inversion -----------------------------------------------------------------------
def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def _rdf_r_max(target: RDF) -> float:
    return float(target.r[-1] + 0.5 * target.bin_width)


def _check_rdf(target: RDF, r_cut: float) -> None:
    if not isinstance(target, RDF):
        raise TypeError(f"expected an observables.RDF, got {type(target).__name__}")
    if not np.all(np.isfinite(target.g)) or np.any(target.g < 0):
        raise ValueError("the RDF has negative or non-finite values")
    if _rdf_r_max(target) < r_cut - 1e-9:
        raise ValueError(f"the RDF ends at {_rdf_r_max(target):.3f} Å, before r_cut = {r_cut} Å: "
                         "compute it up to at least r_cut (and r_cut at most half the box)")


def boltzmann_inversion(target: RDF, temperature: float, *, r_min: float, r_cut: float,
                        spacing: float, kappa: float = DEFAULT_KAPPA,
                        g_edge: float = DEFAULT_G_EDGE, edge_bins: int = DEFAULT_EDGE_BINS,
                        taper_width: float = DEFAULT_TAPER_WIDTH,
                        smoothing: float = DEFAULT_SMOOTHING) -> PairSpline:
    r"""Pair spline fitted to the potential of mean force of an RDF.

    .. math::

        \phi(r) = -k_BT \ln g(r)

    on the sampled bins of ``[r_min, r_c)``, with a linear repulsive core below the first bin
    with :math:`g \ge g_\mathrm{edge}`, shifted and tapered to 0 over the last ``taper_width``
    before :math:`r_c`, fitted with weights :math:`g/(g + g_\mathrm{edge})` (module docstring).

    Parameters
    ----------
    target
        The RDF (e.g. :func:`advcg.observables.rdf` of the mapped AA trajectory); must reach
        ``r_cut``.
    temperature
        K.
    r_min, r_cut, spacing, kappa
        Spline range, knot spacing (Å) and wall curvature (kcal/(mol Å²)), as for
        :class:`~advcg.potential.PairSpline`.
    g_edge
        Bins below the first with ``g >= g_edge`` are replaced by the linear core; also the
        scale of the weights.
    edge_bins
        Number of bins from that first bin on whose line fixes the core's slope (>= 2).
    taper_width
        Width ``w`` of the tail shift and taper, Å (``0 < w < r_cut - r_min``).
    smoothing
        Second-difference penalty of :meth:`PairSpline.fit`.

    Returns
    -------
    PairSpline

    Raises
    ------
    ValueError
        No sampled bin (``g >= g_edge``) in ``[r_min, r_cut)``, an RDF that does not reach
        ``r_cut``, or bad numbers.
    """
    kT = thermal_energy(_check_positive("temperature", temperature))
    r_min, r_cut = _check_positive("r_min", r_min), _check_positive("r_cut", r_cut)
    _check_rdf(target, r_cut)
    g_edge = _check_positive("g_edge", g_edge)
    taper_width = _check_positive("taper_width", taper_width)
    if taper_width >= r_cut - r_min:
        raise ValueError(f"taper_width = {taper_width} Å must be shorter than r_cut - r_min")
    if int(edge_bins) != edge_bins or edge_bins < 2:
        raise ValueError(f"edge_bins must be an integer >= 2, got {edge_bins}")
    inside = (target.r >= r_min) & (target.r < r_cut)
    r, g = target.r[inside], target.g[inside]
    sampled = np.nonzero(g >= g_edge)[0]
    if sampled.size == 0:
        raise ValueError(f"the RDF has no sampled bin (g >= {g_edge}) between r_min = {r_min} and "
                         f"r_cut = {r_cut} Å: nothing to invert")
    below = target.g[target.r < r_min]
    if below.size and below.max() >= 0.1:
        logger.warning("the RDF reaches g = %.2f below r_min = %.2f Å, where the fixed wall "
                       "replaces the spline: choose a smaller r_min", below.max(), r_min)
    edge = int(sampled[0])
    if edge + edge_bins > g.size:
        raise ValueError(f"the RDF has fewer than {edge_bins} bins between its repulsive edge "
                         f"({r[edge]:.3f} Å) and r_cut = {r_cut} Å")
    phi = np.full_like(r, np.nan)
    positive = g > 0
    phi[positive] = -kT * np.log(g[positive])
    # repulsive core: a straight line through the first reliable bins, at least kT/Å steep
    line = slice(edge, edge + int(edge_bins))
    slope = min(float(np.polyfit(r[line], phi[line], 1)[0]), -kT)
    anchor = float(np.polyval(np.polyfit(r[line], phi[line], 1), r[edge]))
    phi[:edge] = anchor + slope * (r[:edge] - r[edge])
    weights = np.where(positive, g / (g + g_edge), 0.0)
    weights[:edge] = 1.0
    keep = np.isfinite(phi)
    # tail: shift by the mean over [r_c - w, r_c), then a cosine taper to 0 at r_c
    on = r_cut - taper_width
    tail = keep & (r >= on)
    if weights[tail].sum() > 0:
        phi[keep] -= np.average(phi[tail], weights=weights[tail])
    taper = np.where(r < on, 1.0, 0.5 * (1.0 + np.cos(np.pi * np.clip(r - on, 0.0, taper_width) / taper_width)))
    phi = phi * taper
    logger.info("Boltzmann inversion at %.1f K: %d bins in [%.2f, %.2f) Å, core below %.3f Å "
                "(slope %.2f kcal/(mol Å)), tail taper from %.2f Å", temperature, int(keep.sum()),
                r_min, r_cut, r[edge], slope, on)
    return PairSpline.fit(r[keep], phi[keep], r_min=r_min, r_cut=r_cut, spacing=spacing,
                          kappa=kappa, weights=weights[keep], smoothing=smoothing)


# -- IBI ----------------------------------------------------------------------------------------
def ibi_update(pair: PairSpline, g_cg: RDF, target: RDF, temperature: float, *,
               damping_factor: float = DEFAULT_DAMPING_FACTOR,
               epsilon: float = DEFAULT_RDF_EPSILON, log_clip: float = DEFAULT_LOG_CLIP,
               smoothing: float = DEFAULT_UPDATE_SMOOTHING,
               weight_floor: float = DEFAULT_WEIGHT_FLOOR) -> PairSpline:
    r"""One IBI step of the pair term: a new :class:`PairSpline` with

    .. math::

        c \leftarrow c + \arg\min_{\delta} \sum_i w_i\Big(\Phi(r_i)\delta - \alpha k_BT\,
        \mathrm{clip}\Big(\ln\frac{g_{\mathrm{CG},i} + \varepsilon}{g_{\mathrm{AA},i} + \varepsilon},
        \pm L\Big)\Big)^2 + s\,\|D_2\delta\|^2

    over the bins :math:`r_\mathrm{min} \le r_i < r_c`, :math:`w_i = g_{\mathrm{AA},i} + w_0`
    (module docstring).

    Parameters
    ----------
    pair
        The current pair term (not changed).
    g_cg, target
        CG and target RDFs on the same bins.
    temperature
        K.
    damping_factor, epsilon, log_clip, smoothing, weight_floor
        α, ε, L, s and :math:`w_0`.

    Returns
    -------
    PairSpline
    """
    kT = thermal_energy(_check_positive("temperature", temperature))
    alpha = _check_positive("damping_factor", damping_factor)
    if g_cg.r.shape != target.r.shape or not np.allclose(g_cg.r, target.r):
        raise ValueError("the CG and target RDFs are on different bins")
    inside = (target.r >= pair.r_min) & (target.r < pair.r_cut)
    ratio = np.log((g_cg.g[inside] + epsilon) / (target.g[inside] + epsilon))
    delta = alpha * kT * np.clip(ratio, -log_clip, log_clip)
    weights = target.g[inside] + weight_floor
    step = PairSpline.fit(target.r[inside], delta, r_min=pair.r_min, r_cut=pair.r_cut,
                          spacing=pair.spacing, kappa=pair.kappa, weights=weights,
                          smoothing=smoothing)
    with torch.no_grad():
        coefficients = pair.coefficients.detach() + step.coefficients.detach()
    return PairSpline(r_min=pair.r_min, r_cut=pair.r_cut, spacing=pair.spacing, kappa=pair.kappa,
                      coefficients=coefficients)


@dataclass(frozen=True)
class IBIIteration:
    """One IBI iteration: the model ``parameters`` (JSON) was run and gave ``rdf_max_abs_diff``.

    Times in seconds: ``run_time_s`` the LAMMPS run (equilibration + production),
    ``wall_time_s`` the whole iteration (export, run, RDF, update). ``coefficient_change`` is
    the largest change of a pair coefficient made after this run (kcal/mol; 0 for the last).
    """

    iteration: int
    rdf_max_abs_diff: float
    wall_time_s: float
    run_time_s: float
    steps_per_s: float
    n_frames: int
    parameters: Path
    coefficient_change: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "rdf_max_abs_diff": self.rdf_max_abs_diff,
                "wall_time_s": self.wall_time_s, "run_time_s": self.run_time_s,
                "steps_per_s": self.steps_per_s, "n_frames": self.n_frames,
                "parameters": str(self.parameters), "coefficient_change": self.coefficient_change}


@dataclass(frozen=True, eq=False)
class IBIResult:
    """What :func:`iterative_boltzmann_inversion` found.

    Attributes
    ----------
    potential
        The best iterate (lowest RDF deviation).
    best_iteration
        Its index (0: the starting potential).
    iterations
        Every iteration run, in order.
    rdfs
        The CG RDF of each iteration (on the target's bins).
    target
        The target RDF.
    converged
        Whether the tolerance was reached.
    stop_reason
        ``converged``, ``max_iterations`` or ``unstable`` (a CG run failed; earlier iterates kept).
    settings
        The IBI settings (JSON-ready).
    """

    potential: CGPotential
    best_iteration: int
    iterations: tuple[IBIIteration, ...]
    rdfs: tuple[RDF, ...]
    target: RDF
    converged: bool
    stop_reason: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def best_rdf_max_abs_diff(self) -> float:
        return self.iterations[self.best_iteration].rdf_max_abs_diff

    @property
    def total_time_s(self) -> float:
        return float(sum(it.wall_time_s for it in self.iterations))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (no arrays)."""
        return {"best_iteration": self.best_iteration,
                "best_rdf_max_abs_diff": self.best_rdf_max_abs_diff,
                "converged": self.converged, "stop_reason": self.stop_reason,
                "n_iterations_run": len(self.iterations), "total_time_s": self.total_time_s,
                "iterations": [it.to_dict() for it in self.iterations],
                "settings": self.settings}


def _resolve_accelerator(accelerator: Accelerator | str, n_threads: int | None) -> Accelerator:
    return accelerator if isinstance(accelerator, Accelerator) else choose_accelerator(accelerator, n_threads)


def _prepare_workdir(workdir: Path, overwrite: bool) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    old = [p for p in workdir.iterdir() if p.is_dir() and _ITER_DIR.match(p.name)]
    if old and not overwrite:
        raise ValueError(f"{workdir} already holds IBI iterations ({len(old)}): choose another "
                         "directory or pass overwrite=True")
    for path in old:  # only the iteration directories this function writes
        shutil.rmtree(path)


def _run_iteration(potential: CGPotential, system: CGSystem, target: RDF, directory: Path, *,
                   temperature: float, damp: float, timestep: float, plan: RunPlan, seed: int,
                   accelerator: Accelerator) -> tuple[RDF, np.ndarray, float, float]:
    """Export, run, RDF: returns the CG RDF, the RDF of every frame ``(n_frames, n_bins)``, the
    run time (s) and steps/s."""
    density = mass_density(system.n_beads, float(np.prod(system.box)), system.mass)
    dynamics = LangevinDynamics(temperature=temperature, timestep=timestep, mass=system.mass, damp=damp)
    model = export_model(potential, directory / "model", dynamics, n_beads=system.n_beads,
                         density=density, seed=seed)
    with io.atomic_path(directory / "log.lammps") as log:
        engine = build_engine(system, model, temperature, timestep, velocity_seed=seed,
                              accelerator=accelerator, log_file=str(log))
        try:
            start = time.perf_counter()
            recording = run_cg(engine, dynamics, seed, plan)
            run_time = time.perf_counter() - start
        finally:
            engine.close()
    traj = recording_trajectory(recording, timestep, system.mass)
    frames = frame_rdfs(traj, target)
    # the box is fixed, so the frame average is the RDF of the whole run
    g = RDF(r=target.r, g=frames.mean(axis=0), bin_width=target.bin_width, n_frames=traj.n_frames)
    steps = plan.equilibration_steps + plan.production_steps
    return g, frames, run_time, steps / run_time


def iterative_boltzmann_inversion(
        potential: CGPotential, target: RDF, aa_trajectory_for_start: CGTrajectory, *,
        temperature: float, damp: float, timestep: float, n_iterations: int, run_ps: float,
        equilibration_ps: float = DEFAULT_EQUILIBRATION_PS, seed: int,
        accelerator: Accelerator | str = "auto", workdir: str | os.PathLike,
        damping_factor: float = DEFAULT_DAMPING_FACTOR, tolerance: float = DEFAULT_TOLERANCE,
        r_range: tuple[float, float] = RDF_RANGE, frame_interval: float = DEFAULT_FRAME_INTERVAL,
        start_frame: int = -1, n_threads: int | None = None, method: str = "ibi",
        epsilon: float = DEFAULT_RDF_EPSILON, log_clip: float = DEFAULT_LOG_CLIP,
        update_smoothing: float = DEFAULT_UPDATE_SMOOTHING,
        weight_floor: float = DEFAULT_WEIGHT_FLOOR, regularisation: float = DEFAULT_REGULARISATION,
        max_step: float = DEFAULT_MAX_STEP, overwrite: bool = False) -> IBIResult:
    r"""Iterative Boltzmann inversion of the pair term against a target RDF.

    .. math::

        \phi_{k+1}(r) = \phi_k(r) + \alpha\, k_BT \ln\frac{g_k(r)}{g_\mathrm{AA}(r)}

    (regularised and fitted as in :func:`ibi_update`), or the Newton step of :func:`imc_update`
    (``method="imc"``); the three-body term stays as given.
    Iteration ``k`` (0 = the given potential) exports :math:`\phi_k`, runs LAMMPS Langevin
    dynamics from frame ``start_frame`` of ``aa_trajectory_for_start`` (its box) for
    ``equilibration_ps`` + ``run_ps``, and measures
    :math:`\max |g_k - g_\mathrm{AA}|` over ``r_range``; it stops at the first ``k`` where that is
    at most ``tolerance``, or after ``n_iterations`` updates (``n_iterations + 1`` runs).

    Parameters
    ----------
    potential
        Starting model (e.g. the :func:`boltzmann_inversion` pair plus a three-body term); not
        changed.
    target
        Target RDF (bins up to at least ``r_cut``, at most half the box).
    aa_trajectory_for_start
        Mapped AA trajectory: the starting positions and box of every CG run.
    temperature, damp, timestep
        K, Langevin damping time 1/γ (fs), MD time step (fs).
    n_iterations
        Maximum number of updates (>= 0).
    run_ps, equilibration_ps
        Production and equilibration of each CG run, ps.
    seed
        Positive integer; iteration ``k`` uses ``seed + k`` for velocities and Langevin forces.
    accelerator, n_threads
        LAMMPS accelerator (see :func:`advcg.engine.choose_accelerator`).
    workdir
        Directory of the per-iteration files (module docstring); existing iteration
        directories are an error unless ``overwrite``.
    damping_factor, tolerance, r_range
        α, the stopping threshold of max |Δg| and its range (Å).
    frame_interval
        Time between the frames of the CG RDF, fs (a multiple of ``timestep``).
    start_frame
        Frame of ``aa_trajectory_for_start`` to start from.
    method
        ``ibi`` (:func:`ibi_update`) or ``imc`` (:func:`imc_update`).
    epsilon, log_clip, update_smoothing, weight_floor
        See :func:`ibi_update`.
    regularisation, max_step
        See :func:`imc_update`.
    overwrite
        Replace existing ``iter_*`` directories in ``workdir``.

    Returns
    -------
    IBIResult

    Raises
    ------
    ValueError
        Negative ``n_iterations``, ``r_cut`` beyond half the box, an RDF on bins that do not
        reach ``r_cut``, bad numbers.
    """
    if isinstance(n_iterations, bool) or not isinstance(n_iterations, (int, np.integer)):
        raise TypeError(f"n_iterations must be an integer, got {n_iterations!r}")
    if n_iterations < 0:
        raise ValueError(f"n_iterations must be >= 0, got {n_iterations}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 1:
        raise ValueError(f"seed must be a positive integer, got {seed!r}")
    temperature = _check_positive("temperature", temperature)
    damp = _check_positive("damp", damp)
    timestep = _check_positive("timestep", timestep)
    run_ps = _check_positive("run_ps", run_ps)
    tolerance = _check_positive("tolerance", tolerance)
    _check_positive("damping_factor", damping_factor)
    if not (math.isfinite(equilibration_ps) and equilibration_ps >= 0):
        raise ValueError(f"equilibration_ps must be finite and >= 0, got {equilibration_ps}")
    frame_every = frame_interval / timestep
    if not (frame_every >= 1 and abs(frame_every - round(frame_every)) < 1e-9):
        raise ValueError(f"frame_interval = {frame_interval} fs must be a positive multiple of "
                         f"the timestep ({timestep} fs)")
    frame_every = int(round(frame_every))
    system = CGSystem.from_trajectory(aa_trajectory_for_start, start_frame)
    potential = copy.deepcopy(potential)
    potential.validate_box(np.array(system.box))  # r_c <= half the box
    _check_rdf(target, potential.r_cut)
    r_range = (float(r_range[0]), min(float(r_range[1]), _rdf_r_max(target)))
    production = int(round(run_ps * FS_PER_PS / timestep))
    production = frame_every * max(2, math.ceil(production / frame_every))
    plan = RunPlan(equilibration_steps=int(round(equilibration_ps * FS_PER_PS / timestep)),
                   production_steps=production, frame_every=frame_every)
    workdir = Path(workdir)
    _prepare_workdir(workdir, overwrite)
    accel = _resolve_accelerator(accelerator, n_threads)
    settings = {"temperature": temperature, "damp_fs": damp, "timestep_fs": timestep,
                "n_iterations": int(n_iterations), "run_ps": run_ps,
                "equilibration_ps": float(equilibration_ps), "seed": int(seed),
                "accelerator": accel.describe(), "damping_factor": float(damping_factor),
                "tolerance": tolerance, "r_range": list(r_range), "frame_interval_fs": float(frame_interval),
                "start_frame": int(start_frame), "epsilon": float(epsilon), "log_clip": float(log_clip),
                "method": method, "update_smoothing": float(update_smoothing),
                "regularisation": float(regularisation), "max_step": float(max_step),
                "weight_floor": float(weight_floor), "n_beads": system.n_beads,
                "box": system.box.tolist(), "variant": potential.variant,
                "threebody": potential.threebody.to_dict()}
    logger.info("IBI (%s update): up to %d updates, %.1f + %.1f ps per run, %d beads, alpha %.2f, "
                "tolerance %.3f over %.1f-%.1f Å, %s", method, n_iterations, equilibration_ps, run_ps,
                system.n_beads, damping_factor, tolerance, r_range[0], r_range[1],
                potential.variant)
    iterations: list[IBIIteration] = []
    rdfs: list[RDF] = []
    models: list[CGPotential] = []
    stop_reason = "max_iterations"
    for k in range(int(n_iterations) + 1):
        start = time.perf_counter()
        directory = workdir / f"iter_{k:03d}"
        try:
            g, frames, run_time, rate = _run_iteration(
                potential, system, target, directory, temperature=temperature, damp=damp,
                timestep=timestep, plan=plan, seed=int(seed) + k, accelerator=accel)
        except (FloatingPointError, RuntimeError) as exc:
            if k == 0:
                raise
            logger.error("IBI iteration %d: the CG run failed (%s); keeping iterations 0-%d", k, exc, k - 1)
            stop_reason = "unstable"
            break
        deviation = rdf_max_abs_diff(g.g, target.g, target.r, r_range)
        io.save_npz(directory / "rdf.npz", r=g.r, g=g.g, target=target.g,
                    frames=frames.astype(np.float32))
        models.append(copy.deepcopy(potential))
        rdfs.append(g)
        done = deviation <= tolerance
        previous = potential.pair.coefficients.detach().clone()
        if not done and k < n_iterations and method == "ibi":
            potential.pair = ibi_update(potential.pair, g, target, temperature,
                                        damping_factor=damping_factor, epsilon=epsilon,
                                        log_clip=log_clip, smoothing=update_smoothing,
                                        weight_floor=weight_floor)
        elif not done and k < n_iterations:
            potential.pair = imc_update(potential.pair, frames, target, temperature,
                                        n_beads=system.n_beads, volume=float(np.prod(system.box)),
                                        damping_factor=damping_factor,
                                        regularisation=regularisation, max_step=max_step,
                                        r_range=r_range)
        change = float((potential.pair.coefficients.detach() - previous).abs().max())
        record = IBIIteration(iteration=k, rdf_max_abs_diff=deviation,
                              wall_time_s=time.perf_counter() - start, run_time_s=run_time,
                              steps_per_s=rate, n_frames=len(frames),
                              parameters=directory / "model" / "parameters.json",
                              coefficient_change=change)
        iterations.append(record)
        io.write_json(directory / "metrics.json", record.to_dict())
        best = min(range(len(iterations)), key=lambda i: iterations[i].rdf_max_abs_diff)
        logger.info("IBI iteration %d: max|dg| = %.4f over %.1f-%.1f Å (best %.4f at %d); run %.1f s "
                    "(%.0f steps/s), iteration %.1f s; max coefficient change %.3f kcal/mol", k,
                    deviation, r_range[0], r_range[1], iterations[best].rdf_max_abs_diff, best,
                    run_time, rate, record.wall_time_s, change)
        if done:
            stop_reason = "converged"
            break
    best = min(range(len(iterations)), key=lambda i: iterations[i].rdf_max_abs_diff)
    result = IBIResult(potential=models[best], best_iteration=best, iterations=tuple(iterations),
                       rdfs=tuple(rdfs), target=target, converged=stop_reason == "converged",
                       stop_reason=stop_reason, settings=settings)
    io.write_json(workdir / "ibi_report.json", result.to_dict())
    logger.info("IBI %s after %d run(s), %.0f s: best max|dg| = %.4f at iteration %d", stop_reason,
                len(iterations), result.total_time_s, result.best_rdf_max_abs_diff, best)
    return result


# -- the pipeline's initialisation ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Initialisation:
    """What :func:`initialise` wrote: the initial ``potential`` (``potential_path``), the BI
    starting point, the IBI result, the AA ``target`` RDF and the report."""

    potential: CGPotential
    boltzmann_inversion: CGPotential
    ibi: IBIResult
    target: RDF
    potential_path: Path
    report_path: Path


def _threebody(variant: str, pair_only: bool) -> ThreeBody:
    if variant == "sw":
        return SWThreeBody(strength=0.0 if pair_only else DEFAULT_LAMBDA)
    if variant == "sw/angle/table":
        term = AngleTableThreeBody()
        if pair_only:
            term.set_parameter_vector(torch.zeros(term.n_parameters, dtype=torch.float64))
        return term
    raise ValueError(f"unknown three-body variant {variant!r}")


def target_rdf(aa_trajectory: CGTrajectory, r_cut: float, *, bin_width: float = RDF_BIN_WIDTH,
               r_max: float = RDF_R_MAX, step: int = 1) -> RDF:
    """The AA RDF on the evaluation bins: up to ``r_max`` (12 Å), or the largest multiple of
    ``bin_width`` within half the smallest box edge; raises if that is below ``r_cut``."""
    half_box = 0.5 * float(aa_trajectory.box.min())
    reach = min(r_max, math.floor(half_box / bin_width + 1e-9) * bin_width)
    if reach < r_cut - 1e-9:
        raise ValueError(f"pair cutoff r_cut = {r_cut} Å exceeds half the smallest box edge of the AA "
                         f"trajectory ({half_box:.3f} Å): use a larger box or a shorter r_cut")
    return rdf(aa_trajectory, r_max=round(reach, 10), bin_width=bin_width, step=step)


def initialise(aa_trajectory: CGTrajectory, config: Config, outdir: str | os.PathLike, *,
               pair_only: bool = False, overwrite: bool = False,
               method: str = "imc", damping_factor: float = DEFAULT_DAMPING_FACTOR,
               tolerance: float = DEFAULT_TOLERANCE,
               equilibration_ps: float = DEFAULT_EQUILIBRATION_PS) -> Initialisation:
    r"""Structural initialisation of the CG model: BI of the AA RDF, then IBI.

    .. math::

        \phi_0 = -k_BT\ln g_\mathrm{AA},\qquad
        \phi_{k+1} = \phi_k + \alpha k_BT \ln(g_k/g_\mathrm{AA}),\quad k < \texttt{init.ibi\_iterations}

    Uses ``temperature``, ``seed``, ``accelerator``, ``threads``, ``timestep``,
    ``potential.{variant, r_min, r_cut, knot_spacing}`` and
    ``init.{ibi_iterations, ibi_run_ps, damp_fs}`` of ``config`` (validated, defaults filled).
    The three-body term has its default values (``sw``: λ = 10, cos θ0 = −1/3), or zero strength
    with ``pair_only`` (the pair-only baseline); IBI always targets the AA RDF.

    Writes into ``outdir`` (atomically): ``target_rdf.npz`` (AA RDF), ``bi_potential.json``,
    ``potential.json`` (the best IBI iterate: the initial model), ``init_report.json`` (settings,
    per-iteration RDF deviation and times) and ``ibi/`` (see :func:`iterative_boltzmann_inversion`).

    Parameters
    ----------
    aa_trajectory
        Mapped AA trajectory (target RDF, starting frame and box of the CG runs).
    config
        The configuration (``config/config.yaml`` layout).
    outdir
        Output directory.
    pair_only
        Three-body strength 0 (λ = 0; zero angle spline for ``sw/angle/table``).
    overwrite
        Replace an existing ``potential.json``/report and IBI iterations in ``outdir``.
    method
        Update rule, ``imc`` (default: converges in a few steps on water) or ``ibi``.
    damping_factor, tolerance, equilibration_ps
        Passed to :func:`iterative_boltzmann_inversion`.

    Returns
    -------
    Initialisation

    Raises
    ------
    ValueError
        Invalid configuration, ``r_cut`` beyond half the box, an existing result without
        ``overwrite``.
    """
    outdir = Path(outdir)
    potential_path, report_path = outdir / "potential.json", outdir / "init_report.json"
    if not overwrite and (potential_path.exists() or report_path.exists()):
        raise ValueError(f"{outdir} already holds an initialisation: choose another directory or "
                         "overwrite")
    pot, init = config.potential, config.init
    start = time.perf_counter()
    r_max = float(config.evaluation.rdf_r_max)
    target = target_rdf(aa_trajectory, pot.r_cut, r_max=r_max)
    io.save_npz(outdir / "target_rdf.npz", r=target.r, g=target.g,
                bin_width=np.array(target.bin_width), n_frames=np.array(target.n_frames))
    pair = boltzmann_inversion(target, config.temperature, r_min=pot.r_min, r_cut=pot.r_cut,
                               spacing=pot.knot_spacing)
    bi = CGPotential(pair, _threebody(pot.variant, pair_only))
    bi.to_json(outdir / "bi_potential.json")
    ibi = iterative_boltzmann_inversion(
        bi, target, aa_trajectory, temperature=config.temperature, damp=init.damp_fs,
        timestep=config.timestep, n_iterations=init.ibi_iterations, run_ps=init.ibi_run_ps,
        equilibration_ps=equilibration_ps, seed=config.seed, accelerator=config.accelerator,
        n_threads=config.threads, workdir=outdir / "ibi", damping_factor=damping_factor,
        tolerance=tolerance, method=method, overwrite=overwrite)
    ibi.potential.to_json(potential_path)
    report = {"pair_only": bool(pair_only), "variant": pot.variant, "method": method,
              "threebody": ibi.potential.threebody.to_dict(),
              "aa_frames": aa_trajectory.n_frames, "aa_beads": aa_trajectory.n_beads,
              "target_rdf": str(outdir / "target_rdf.npz"),
              "bi_potential": str(outdir / "bi_potential.json"),
              "potential": str(potential_path), "ibi": ibi.to_dict(),
              "wall_time_s": time.perf_counter() - start}
    io.write_json(report_path, report)
    logger.info("initialisation in %s: %s, best max|dg| = %.4f (iteration %d of %d), %.0f s",
                outdir, "pair only" if pair_only else f"three-body {pot.variant}",
                ibi.best_rdf_max_abs_diff, ibi.best_iteration, len(ibi.iterations) - 1,
                report["wall_time_s"])
    return Initialisation(potential=ibi.potential, boltzmann_inversion=bi, ibi=ibi, target=target,
                          potential_path=potential_path, report_path=report_path)
