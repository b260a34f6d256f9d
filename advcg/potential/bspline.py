r"""Uniform cubic B-splines: the local basis shared by the pair term and the angle spline.

On uniform knots :math:`t_m = x_0 + m h`, the cardinal cubic B-spline :math:`B_k` has support
:math:`[t_k, t_{k+4}]`. On the interval :math:`[t_m, t_{m+1})`, with :math:`u = (x - t_m)/h`, the four
non-zero basis functions are :math:`B_{m-3}, \dots, B_m`:

.. math::

    b_0(u) = \frac{(1-u)^3}{6},\quad b_1(u) = \frac{3u^3 - 6u^2 + 4}{6},\quad
    b_2(u) = \frac{-3u^3 + 3u^2 + 3u + 1}{6},\quad b_3(u) = \frac{u^3}{6}.

Here the basis function :math:`B_{m-3+l}` is stored at array index ``m + l`` (``l = 0..3``), so
coefficient ``a`` multiplies :math:`B_{a-3}`.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["local_basis", "interval_and_offset", "power_basis", "coefficient_tensor"]


def local_basis(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The four non-zero cubic B-spline values and their first two ``u``-derivatives.

    .. math::

        b_l(u),\quad \frac{db_l}{du},\quad \frac{d^2 b_l}{du^2},\qquad l = 0..3

    Parameters
    ----------
    u
        Local coordinates in ``[0, 1]``, shape ``(...)``.

    Returns
    -------
    values, first, second
        Each of shape ``(..., 4)``.
    """
    u2 = u * u
    u3 = u2 * u
    w = 1.0 - u
    values = torch.stack([w * w * w, 3.0 * u3 - 6.0 * u2 + 4.0,
                          -3.0 * u3 + 3.0 * u2 + 3.0 * u + 1.0, u3], dim=-1) / 6.0
    first = torch.stack([-0.5 * w * w, 1.5 * u2 - 2.0 * u,
                         -1.5 * u2 + u + 0.5, 0.5 * u2], dim=-1)
    second = torch.stack([w, 3.0 * u - 2.0, -3.0 * u + 1.0, u], dim=-1)
    return values, first, second


def interval_and_offset(x: torch.Tensor, x0: float, spacing: float,
                        n_intervals: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Interval index :math:`m = \lfloor (x - x_0)/h \rfloor` clamped to ``[0, n_intervals - 1]``
    and the local coordinate :math:`u = (x - x_0)/h - m` (so ``u`` may leave ``[0, 1]`` only for
    ``x`` outside the knot range).

    Parameters
    ----------
    x
        Positions, shape ``(...)``.
    x0, spacing, n_intervals
        First knot, knot spacing and number of knot intervals.

    Returns
    -------
    m, u
        ``m`` int64 and ``u`` of ``x``'s dtype, each of shape ``(...)``.
    """
    s = (x - x0) / spacing
    m = torch.floor(s.detach()).clamp(0, n_intervals - 1)
    return m.to(torch.int64), s - m


def power_basis(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The local basis in powers of ``u``: :math:`b_l(u) = \sum_q V_{lq} u^q` and
    :math:`db_l/du = \sum_q D_{lq} u^q`.

    Returns
    -------
    V, D
        ``(4, 4)`` and ``(4, 3)``; row ``l`` holds the coefficients of :math:`u^0, u^1, \dots`.
    """
    values = torch.tensor([[1.0, -3.0, 3.0, -1.0], [4.0, 0.0, -6.0, 3.0],
                           [1.0, 3.0, 3.0, -3.0], [0.0, 0.0, 0.0, 1.0]], dtype=dtype, device=device) / 6.0
    first = torch.tensor([[-0.5, 1.0, -0.5], [0.0, -2.0, 1.5],
                          [0.5, 1.0, -1.5], [0.0, 0.0, 0.5]], dtype=dtype, device=device)
    return values, first


def coefficient_tensor(values: object, n: int, what: str, detail: str) -> torch.Tensor:
    """Spline coefficients ``values`` as a new float64 tensor of shape ``(n,)``.

    Raises
    ------
    ValueError
        Wrong shape (the message names ``what`` and ``detail``, e.g. the knot intervals) or
        NaN/inf values.
    """
    out = torch.as_tensor(np.asarray(values, dtype=np.float64)).clone()
    if out.shape != (n,):
        raise ValueError(f"{what} coefficients must have shape ({n},) for {detail}, "
                         f"got {tuple(out.shape)}")
    if not torch.isfinite(out).all():
        raise ValueError(f"{what} coefficients contain NaN or inf")
    return out
