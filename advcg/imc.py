r"""Inverse Monte Carlo (IMC): Newton steps of the pair coefficients towards a target RDF.

The Jacobian of the mean RDF with respect to the pair-spline coefficients is the canonical
fluctuation formula, estimated from the RDFs of single frames of a CG run of the current model:

.. math::

    J_{ik} = \frac{\partial\langle g_i\rangle}{\partial c_k}
           = -\beta\left(\langle g_i u_k\rangle - \langle g_i\rangle\langle u_k\rangle\right)

Two users: the structural initialisation (:mod:`advcg.ibi`, ``method="imc"``) and the per-round
structure correction of the adversarial updates (:mod:`advcg.structure`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from advcg.observables import RDF, RDF_RANGE, rdf
from advcg.potential import PairSpline
from advcg.trajectory import CGTrajectory
from advcg.units import kT as thermal_energy

logger = logging.getLogger(__name__)

__all__ = ["imc_update", "imc_jacobian", "imc_newton_step", "frame_rdfs", "IMC_MIN_FRAMES",
           "DEFAULT_REGULARISATION", "DEFAULT_MAX_STEP"]

#: Relative second-difference penalty of the Newton step.
DEFAULT_REGULARISATION = 1e-2
#: Largest change of one coefficient per step, kcal/mol.
DEFAULT_MAX_STEP = 0.3
#: Fewest frames the fluctuation formula is estimated from.
IMC_MIN_FRAMES = 10


def _check_positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def imc_update(pair: PairSpline, frame_rdfs: np.ndarray, target: RDF, temperature: float, *,
               n_beads: int, volume: float, damping_factor: float = 1.0,
               regularisation: float = DEFAULT_REGULARISATION, max_step: float = DEFAULT_MAX_STEP,
               r_range: tuple[float, float] = RDF_RANGE) -> PairSpline:
    r"""One Newton (inverse Monte Carlo) step of the pair term from the RDFs of single frames.

    .. math::

        J_{ik} = \frac{\partial\langle g_i\rangle}{\partial c_k}
               = -\beta\left(\langle g_i u_k\rangle - \langle g_i\rangle\langle u_k\rangle\right),
        \qquad u_k = \frac{\partial U}{\partial c_k} = \sum_{j} n_j B_k(r_j),

        \delta = \arg\min_\delta \sum_{i:\,r_i \in \text{r\_range}}
            \big(\langle g_i\rangle - g_{\mathrm{AA},i} + (J\delta)_i\big)^2
            + \lambda \left(\|D_2 \delta\|^2 + \|\delta\|^2\right),\qquad
        c \leftarrow c + \alpha\,\mathrm{clip}(\delta, \pm\delta_\mathrm{max})

    (Lyubartsev & Laaksonen's inverse Monte Carlo in the spline basis). :math:`J` is the exact
    canonical fluctuation formula, estimated over the frames, with the pair counts
    :math:`n_j = g_j N(N-1) v_j / 2V` of bin :math:`j` (shell volume :math:`v_j`) standing in
    for the pair distances (bins of 0.05 Å against 0.2 Å knots); it only sets the step, the
    fixed point is :math:`\langle g\rangle = g_\mathrm{AA}` whatever its errors. The
    penalty, :math:`\lambda = \text{regularisation}\cdot\|J\|_F^2/K` on the second differences
    and on the step itself, leaves the directions the frames do not determine (the core, where
    :math:`g = 0`) as they are and smooths the rest. Unlike the IBI update, this step accounts for
    the collective response of a dense liquid (raising :math:`\phi` over the first shell moves
    neighbours out less than :math:`e^{-\beta\Delta\phi}` says), which makes plain IBI
    converge slowly for water.

    Parameters
    ----------
    pair
        The current pair term (not changed).
    frame_rdfs
        ``(n_frames, n_bins)``: the RDF of each frame of the CG run, on the target's bins.
    target
        Target RDF.
    temperature
        K.
    n_beads, volume
        Beads and box volume (Å³) of the CG run.
    damping_factor, regularisation, max_step
        α, the relative penalty and the largest coefficient change (kcal/mol) per step.
    r_range
        Bins whose deviation is minimised, Å.

    Returns
    -------
    PairSpline
    """
    alpha = _check_positive("damping_factor", damping_factor)
    frames = np.asarray(frame_rdfs, dtype=np.float64)
    jacobian = imc_jacobian(pair, frames, target, temperature, n_beads=n_beads, volume=volume)
    step = alpha * imc_newton_step(jacobian, frames.mean(axis=0), target, regularisation=regularisation,
                                   max_step=max_step, r_range=r_range)
    coefficients = pair.coefficients.detach().numpy() + step
    return PairSpline(r_min=pair.r_min, r_cut=pair.r_cut, spacing=pair.spacing, kappa=pair.kappa,
                      coefficients=coefficients)


def imc_jacobian(pair: PairSpline, frame_rdfs: np.ndarray, target: RDF, temperature: float, *,
                 n_beads: int, volume: float) -> np.ndarray:
    """J_ik = ∂⟨g_i⟩/∂c_k, ``(n_bins, K)``, from the RDFs of
    single frames ``(n_frames, n_bins)`` of a run of ``pair`` (see :func:`imc_update`)."""
    beta = 1.0 / thermal_energy(_check_positive("temperature", temperature))
    frames = np.asarray(frame_rdfs, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != target.r.size:
        raise ValueError(f"frame_rdfs must be (n_frames, {target.r.size}), got {frames.shape}")
    if frames.shape[0] < IMC_MIN_FRAMES:
        raise ValueError(f"an IMC step needs at least {IMC_MIN_FRAMES} frames, got {frames.shape[0]}")
    edges = target.r[0] - 0.5 * target.bin_width + np.arange(target.r.size + 1) * target.bin_width
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    pairs_per_g = n_beads * (n_beads - 1) / (2.0 * volume) * shell  # pair counts = g * this
    inside = (target.r >= pair.r_min) & (target.r < pair.r_cut)
    with torch.no_grad():
        basis = pair.basis(torch.tensor(target.r[inside]))[0].numpy()  # (n_inside, K)
    u = (frames[:, inside] * pairs_per_g[inside]) @ basis  # (n_frames, K): dU/dc per frame
    return -beta * (frames - frames.mean(axis=0)).T @ (u - u.mean(axis=0)) / (frames.shape[0] - 1)


def imc_newton_step(jacobian: np.ndarray, mean_g: np.ndarray, target: RDF, *,
                    regularisation: float = DEFAULT_REGULARISATION, max_step: float = DEFAULT_MAX_STEP,
                    r_range: tuple[float, float] = RDF_RANGE) -> np.ndarray:
    """The undamped penalised Newton step δ of :func:`imc_update` (kcal/mol per coefficient, each
    clipped at ``max_step``) that takes the mean RDF ``mean_g`` to ``target`` in linear response."""
    rows = (target.r >= r_range[0]) & (target.r <= r_range[1])
    A, b = jacobian[rows], (target.g - mean_g)[rows]
    k = A.shape[1]
    D = np.zeros((k - 2, k))
    index = np.arange(k - 2)
    D[index, index], D[index, index + 1], D[index, index + 2] = 1.0, -2.0, 1.0
    lam = regularisation * float(np.sum(A * A)) / k
    penalty = math.sqrt(lam) * np.vstack([D, np.eye(k)])
    delta = np.linalg.lstsq(np.vstack([A, penalty]), np.concatenate([b, np.zeros(2 * k - 2)]),
                            rcond=None)[0]
    logger.debug("IMC step: max |delta| %.3f kcal/mol, predicted max |dg| %.4f",
                 float(np.abs(delta).max()), float(np.abs(b - A @ delta).max()))
    return np.clip(delta, -max_step, max_step)


def frame_rdfs(traj: CGTrajectory, target: RDF) -> np.ndarray:
    """The RDF of every frame of ``traj`` on ``target``'s bins, ``(n_frames, n_bins)``."""
    r_max = float(target.r[-1] + 0.5 * target.bin_width)
    return np.stack([rdf(traj.slice(f, f + 1), r_max=r_max, bin_width=target.bin_width).g
                     for f in range(traj.n_frames)])
