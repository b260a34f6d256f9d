r"""The pair term: a cubic B-spline on uniform knots with a fixed quadratic wall below ``r_min``.

.. math::

    \phi(r) = \begin{cases}
      \sum_k c_k B_k(r), & r_\mathrm{min} \le r < r_c,\\
      \phi(r_\mathrm{min}) + \phi'(r_\mathrm{min})\,(r - r_\mathrm{min})
        + \tfrac12 \kappa (r - r_\mathrm{min})^2, & r < r_\mathrm{min},\\
      0, & r \ge r_c.
    \end{cases}

The knots are :math:`t_m = r_\mathrm{min} + m h`, :math:`m = 0..n` with :math:`n h = r_c - r_\mathrm{min}`.
Only the cardinal cubic B-splines whose support ends at or before :math:`r_c` are kept
(:math:`B_{-3}, \dots, B_{n-4}`: ``n`` coefficients), so :math:`\phi`, :math:`\phi'` and
:math:`\phi''` vanish at :math:`r_c` exactly for every choice of the coefficients. The three basis
functions that start left of :math:`r_\mathrm{min}` leave value, slope and curvature at
:math:`r_\mathrm{min}` free.

The wall continues :math:`\phi` below :math:`r_\mathrm{min}` with C1 continuity and a fixed
curvature :math:`\kappa` (default 100 kcal/(mol Å²)): it is finite at every ``r > 0``, so LAMMPS
tables can start at small ``r`` (Kokkos ``table/kk`` does not check the inner cutoff). Its force
:math:`-\phi'(r_\mathrm{min}) + \kappa (r_\mathrm{min} - r)` is repulsive wherever
:math:`\phi'(r_\mathrm{min}) < \kappa (r_\mathrm{min} - r)`.

:math:`\phi` and :math:`\phi'` are affine in the coefficients: :meth:`PairSpline.basis` returns
the basis matrices, :meth:`PairSpline.fit` fits the coefficients to a tabulated :math:`\phi(r)`.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from advcg.potential.bspline import coefficient_tensor, interval_and_offset, local_basis

logger = logging.getLogger(__name__)

__all__ = ["PairSpline", "DEFAULT_R_MIN", "DEFAULT_R_CUT", "DEFAULT_SPACING", "DEFAULT_KAPPA"]

#: Inner end of the spline, Å.
DEFAULT_R_MIN = 2.2
#: Pair cutoff r_c, Å.
DEFAULT_R_CUT = 10.0
#: Knot spacing h, Å.
DEFAULT_SPACING = 0.2
#: Curvature of the repulsive wall below r_min, kcal/(mol Å²).
DEFAULT_KAPPA = 100.0


def _n_intervals(r_min: float, r_cut: float, spacing: float) -> int:
    """Number of knot intervals; raises unless ``spacing`` divides ``r_cut - r_min``."""
    if not (math.isfinite(r_min) and math.isfinite(r_cut) and math.isfinite(spacing)):
        raise ValueError(f"r_min, r_cut and spacing must be finite, got {r_min}, {r_cut}, {spacing}")
    if r_min <= 0.0 or spacing <= 0.0 or r_cut <= r_min:
        raise ValueError(f"need 0 < r_min < r_cut and spacing > 0, got r_min={r_min}, "
                         f"r_cut={r_cut}, spacing={spacing}")
    n = (r_cut - r_min) / spacing
    n_int = int(round(n))
    if abs(n - n_int) > 1e-9 * max(1.0, n):
        raise ValueError(f"spacing {spacing} does not divide r_cut - r_min = {r_cut - r_min}")
    if n_int < 4:
        raise ValueError(f"the pair spline needs at least 4 knot intervals, got {n_int}")
    return n_int


class PairSpline(nn.Module):
    r"""Pair potential :math:`\phi(r)`: cubic B-spline plus a quadratic wall (see module doc).

    Parameters
    ----------
    r_min, r_cut, spacing
        Inner end of the spline, cutoff :math:`r_c` and knot spacing :math:`h`, Å.
    kappa
        Wall curvature :math:`\kappa`, kcal/(mol Å²), fixed (a buffer).
    coefficients
        Initial coefficients, shape ``(n_coefficients,)`` with
        ``n_coefficients = (r_cut - r_min) / spacing``; zeros if ``None``.

    Attributes
    ----------
    coefficients : nn.Parameter
        :math:`c_k`, shape ``(n_coefficients,)``, float64, kcal/mol.
    knots : torch.Tensor
        Buffer, shape ``(n_coefficients + 1,)``: :math:`r_\mathrm{min}, \dots, r_c`.
    """

    def __init__(self, r_min: float = DEFAULT_R_MIN, r_cut: float = DEFAULT_R_CUT,
                 spacing: float = DEFAULT_SPACING, kappa: float = DEFAULT_KAPPA,
                 coefficients: torch.Tensor | np.ndarray | list[float] | None = None) -> None:
        super().__init__()
        n_int = _n_intervals(float(r_min), float(r_cut), float(spacing))
        if not (math.isfinite(kappa) and kappa > 0.0):
            raise ValueError(f"wall curvature kappa must be finite and > 0, got {kappa}")
        self.r_min = float(r_min)
        self.r_cut = float(r_cut)
        self.spacing = float(spacing)
        self.kappa = float(kappa)
        self.n_intervals = n_int
        self.register_buffer("knots", self.r_min + self.spacing * torch.arange(n_int + 1, dtype=torch.float64))
        if coefficients is None:
            values = torch.zeros(n_int, dtype=torch.float64)
        else:
            values = coefficient_tensor(coefficients, n_int, "pair", f"{n_int} knot intervals")
        self.coefficients = nn.Parameter(values)

    @property
    def n_coefficients(self) -> int:
        """Number of spline coefficients (one per knot interval)."""
        return self.n_intervals

    # -- the functional form -------------------------------------------------------------
    @staticmethod
    def local(r: torch.Tensor, r_min: float, spacing: float, n_intervals: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Local basis of :math:`\phi` at ``r``: the four coefficient indices and the values of
        :math:`\partial\phi/\partial c` and :math:`\partial\phi'/\partial c` there, plus the
        coefficient-free wall term :math:`\tfrac12\kappa\delta^2/\kappa` (``δ = r - r_min < 0``).

        .. math::

            \phi(r) = \sum_{l=0}^{3} c_{m+l}\,\beta_l(r) + \tfrac12\kappa\,\omega(r),\qquad
            \phi'(r) = \sum_{l=0}^{3} c_{m+l}\,\beta'_l(r) + \kappa\,\delta_-(r)

        Parameters
        ----------
        r
            Distances, shape ``(...)``, all ``< r_cut`` (callers mask the rest).

        Returns
        -------
        index
            ``(..., 4)`` int64 indices into the coefficients padded with three zeros.
        beta, dbeta
            ``(..., 4)``: :math:`\beta_l` and :math:`\beta'_l` (per Å).
        delta_minus
            ``(...)``: :math:`\min(r - r_\mathrm{min}, 0)`.
        """
        delta = r - r_min
        inside = delta >= 0.0
        delta_minus = torch.where(inside, torch.zeros_like(delta), delta)
        m, u = interval_and_offset(torch.where(inside, r, torch.full_like(r, r_min)),
                                   r_min, spacing, n_intervals)
        values, first, _ = local_basis(u)
        dbeta = first / spacing
        beta = values + dbeta * delta_minus.unsqueeze(-1)
        index = m.unsqueeze(-1) + torch.arange(4, device=r.device)
        return index, beta, dbeta, delta_minus

    @staticmethod
    def compute(r: torch.Tensor, coefficients: torch.Tensor, r_min: float, spacing: float,
                n_intervals: int, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Pure evaluation of :math:`\phi(r)` and :math:`\phi'(r)` for ``r < r_c``.

        .. math::

            \phi(r) = \sum_k c_k B_k(r) \;(+\text{wall}),\qquad \phi'(r) = \sum_k c_k B'_k(r)
            \;(+\text{wall})

        Parameters
        ----------
        r
            Distances, shape ``(...)``, Å; must be ``< r_cut``.
        coefficients
            :math:`c_k`, shape ``(n_intervals,)``.

        Returns
        -------
        phi, dphi
            Shape ``(...)``: kcal/mol and kcal/(mol Å).
        """
        index, beta, dbeta, delta_minus = PairSpline.local(r, r_min, spacing, n_intervals)
        padded = torch.cat([coefficients, coefficients.new_zeros(3)])
        c = padded[index]
        phi = (c * beta).sum(-1) + 0.5 * kappa * delta_minus * delta_minus
        dphi = (c * dbeta).sum(-1) + kappa * delta_minus
        return phi, dphi

    @staticmethod
    def interval_polynomials(coefficients: torch.Tensor) -> torch.Tensor:
        r"""Power-basis coefficients of :math:`\phi` on each knot interval.

        .. math::

            \phi(r_\mathrm{min} + (m + u) h) = \sum_{p=0}^{3} P_{mp} u^p,\qquad
            P_{mp} = \sum_{l=0}^{3} c_{m+l} M_{lp}

        with :math:`M` the power-basis matrix of the four local B-spline pieces.

        Returns
        -------
        torch.Tensor
            ``(n_intervals, 4)``, differentiable in the coefficients.
        """
        padded = torch.cat([coefficients, coefficients.new_zeros(3)])
        windows = padded.unfold(0, 4, 1)  # (n_intervals, 4)
        power = coefficients.new_tensor([[1.0, -3.0, 3.0, -1.0], [4.0, 0.0, -6.0, 3.0],
                                         [1.0, 3.0, 3.0, -3.0], [0.0, 0.0, 0.0, 1.0]]) / 6.0
        return windows @ power

    @staticmethod
    def cutoff_polynomials(coefficients: torch.Tensor) -> torch.Tensor:
        r""":meth:`interval_polynomials` with a zero row appended, ``(n_intervals + 1, 4)``.

        With the interval index clamped to ``n_intervals`` (not ``n_intervals - 1``), distances
        :math:`r \ge r_c` fall on the zero row, so :math:`\phi = \phi' = 0` there without a mask.
        """
        polynomials = PairSpline.interval_polynomials(coefficients)
        return torch.cat([polynomials, polynomials.new_zeros(1, 4)])

    @staticmethod
    def compute_fast(r: torch.Tensor, polynomials: torch.Tensor, r_min: float, spacing: float,
                     n_intervals: int, kappa: float, energy: bool = True
                     ) -> tuple[torch.Tensor | None, torch.Tensor]:
        r""":math:`\phi(r)` and :math:`\phi'(r)` (``r < r_c``) by Horner's rule on the interval
        polynomials of :meth:`interval_polynomials`; same values as :meth:`compute`.

        Returns
        -------
        phi, dphi
            ``(...)`` each; ``phi`` is ``None`` when ``energy`` is false.
        """
        s = (r - r_min) / spacing
        m = torch.floor(s.detach()).clamp_(0, n_intervals - 1).to(torch.int64)
        delta_minus = torch.clamp(r - r_min, max=0.0)
        u = torch.clamp(s - m, min=0.0)
        p = polynomials[m]
        p1 = p[..., 1]
        dphi = (p1 + u * (2.0 * p[..., 2] + 3.0 * u * p[..., 3])) / spacing + kappa * delta_minus
        if not energy:
            return None, dphi
        phi = (p[..., 0] + u * (p1 + u * (p[..., 2] + u * p[..., 3]))
               + delta_minus * (p1 / spacing + 0.5 * kappa * delta_minus))
        return phi, dphi

    def evaluate(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`\phi(r)` and :math:`\phi'(r)` for any ``r > 0`` (zero at and beyond ``r_cut``).

        Parameters
        ----------
        r
            Distances, shape ``(...)``, Å.

        Returns
        -------
        phi, dphi
            Shape ``(...)``.
        """
        r = torch.as_tensor(r, dtype=torch.float64)
        inside = r < self.r_cut
        safe = torch.where(inside, r, torch.full_like(r, self.r_min))
        phi, dphi = self.compute(safe, self.coefficients, self.r_min, self.spacing,
                                 self.n_intervals, self.kappa)
        zero = torch.zeros_like(phi)
        return torch.where(inside, phi, zero), torch.where(inside, dphi, zero)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r""":math:`\phi(r)`, shape of ``r``."""
        return self.evaluate(r)[0]

    def derivative(self, r: torch.Tensor) -> torch.Tensor:
        r""":math:`d\phi/dr`, shape of ``r``."""
        return self.evaluate(r)[1]

    def second_derivative(self, r: torch.Tensor) -> torch.Tensor:
        r""":math:`d^2\phi/dr^2` (``κ`` below ``r_min``, zero at and beyond ``r_cut``)."""
        r = torch.as_tensor(r, dtype=torch.float64)
        inside = r < self.r_cut
        spline = r >= self.r_min
        safe = torch.where(inside & spline, r, torch.full_like(r, self.r_min))
        m, u = interval_and_offset(safe, self.r_min, self.spacing, self.n_intervals)
        _, _, second = local_basis(u)
        padded = torch.cat([self.coefficients, self.coefficients.new_zeros(3)])
        index = m.unsqueeze(-1) + torch.arange(4)
        d2 = (padded[index] * second).sum(-1) / self.spacing ** 2
        d2 = torch.where(spline, d2, torch.full_like(d2, self.kappa))
        return torch.where(inside, d2, torch.zeros_like(d2))

    # -- basis matrices and fitting ------------------------------------------------------
    def basis(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Dense basis matrices of the affine maps :math:`c \mapsto \phi(r)`, :math:`c \mapsto \phi'(r)`.

        .. math::

            \phi(r) = \Phi(r)\,c + \phi_0(r),\qquad \phi'(r) = \Phi'(r)\,c + \phi'_0(r)

        with :math:`\phi_0 = \tfrac12\kappa\delta_-^2`, :math:`\phi'_0 = \kappa\delta_-` (the wall).

        Parameters
        ----------
        r
            Distances, shape ``(n,)``, Å.

        Returns
        -------
        Phi, dPhi
            ``(n, n_coefficients)``.
        phi0, dphi0
            ``(n,)``.
        """
        r = torch.as_tensor(r, dtype=torch.float64).reshape(-1)
        inside = r < self.r_cut
        safe = torch.where(inside, r, torch.full_like(r, self.r_min))
        index, beta, dbeta, delta_minus = self.local(safe, self.r_min, self.spacing, self.n_intervals)
        n, k = r.shape[0], self.n_coefficients
        mask = inside.to(r.dtype).unsqueeze(-1)
        Phi = r.new_zeros(n, k + 3).scatter_add_(1, index, beta * mask)[:, :k]
        dPhi = r.new_zeros(n, k + 3).scatter_add_(1, index, dbeta * mask)[:, :k]
        phi0 = torch.where(inside, 0.5 * self.kappa * delta_minus ** 2, torch.zeros_like(r))
        dphi0 = torch.where(inside, self.kappa * delta_minus, torch.zeros_like(r))
        return Phi, dPhi, phi0, dphi0

    @classmethod
    def fit(cls, r: np.ndarray | torch.Tensor, phi: np.ndarray | torch.Tensor, *,
            r_min: float = DEFAULT_R_MIN, r_cut: float = DEFAULT_R_CUT,
            spacing: float = DEFAULT_SPACING, kappa: float = DEFAULT_KAPPA,
            weights: np.ndarray | torch.Tensor | None = None,
            smoothing: float = 0.0) -> PairSpline:
        r"""Least-squares fit of the coefficients to a tabulated :math:`\phi(r)`.

        .. math::

            \min_c \sum_i w_i \left(\Phi(r_i) c + \phi_0(r_i) - \phi_i\right)^2
              + s \sum_k (c_{k+1} - 2c_k + c_{k-1})^2

        Points at or beyond ``r_cut`` are ignored (the spline is zero there by construction).

        Parameters
        ----------
        r, phi
            Tabulated distances (Å) and energies (kcal/mol), shape ``(n,)``, finite: drop the
            unsampled (infinite) points of a Boltzmann inversion before fitting.
        r_min, r_cut, spacing, kappa
            As for :class:`PairSpline`.
        weights
            Non-negative weights ``(n,)`` (e.g. the RDF); uniform if ``None``.
        smoothing
            Weight ``s`` (dimensionless) of the second-difference penalty; 0 for a plain fit.

        Returns
        -------
        PairSpline
            A new pair term with the fitted coefficients.

        Raises
        ------
        ValueError
            Shapes differ, values are not finite, or too few points lie below ``r_cut`` to fix
            all coefficients.
        """
        r_t = torch.as_tensor(np.asarray(r, dtype=np.float64)).reshape(-1)
        phi_t = torch.as_tensor(np.asarray(phi, dtype=np.float64)).reshape(-1)
        if r_t.shape != phi_t.shape:
            raise ValueError(f"r and phi must have the same length, got {r_t.numel()} and {phi_t.numel()}")
        if not (torch.isfinite(r_t).all() and torch.isfinite(phi_t).all()):
            raise ValueError("r and phi must be finite: drop unsampled (infinite) points first")
        w = (torch.ones_like(r_t) if weights is None
             else torch.as_tensor(np.asarray(weights, dtype=np.float64)).reshape(-1))
        if w.shape != r_t.shape or not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite, non-negative and as long as r")
        model = cls(r_min=r_min, r_cut=r_cut, spacing=spacing, kappa=kappa)
        keep = (r_t < r_cut) & (r_t > 0) & (w > 0)
        if int(keep.sum()) < model.n_coefficients:
            raise ValueError(f"need at least {model.n_coefficients} points with 0 < r < r_cut and "
                             f"weight > 0 to fit the pair spline, got {int(keep.sum())}")
        with torch.no_grad():
            Phi, _, phi0, _ = model.basis(r_t[keep])
            sw = torch.sqrt(w[keep]).unsqueeze(-1)
            A = Phi * sw
            b = (phi_t[keep] - phi0).unsqueeze(-1) * sw
            if smoothing > 0.0:
                k = model.n_coefficients
                D = torch.zeros(k - 2, k, dtype=torch.float64)
                idx = torch.arange(k - 2)
                D[idx, idx] = 1.0
                D[idx, idx + 1] = -2.0
                D[idx, idx + 2] = 1.0
                A = torch.cat([A, math.sqrt(smoothing) * D])
                b = torch.cat([b, torch.zeros(k - 2, 1, dtype=torch.float64)])
            solution = torch.linalg.lstsq(A, b, driver="gelsd").solution.reshape(-1)
            model.coefficients.copy_(solution)
        residual = (model(r_t[keep]) - phi_t[keep]).abs().max().item()
        logger.info("fitted %d pair coefficients to %d points: max |residual| %.3g kcal/mol",
                    model.n_coefficients, int(keep.sum()), residual)
        return model

    def extra_repr(self) -> str:
        return (f"r_min={self.r_min}, r_cut={self.r_cut}, spacing={self.spacing}, "
                f"kappa={self.kappa}, n_coefficients={self.n_coefficients}")
