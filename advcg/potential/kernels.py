r"""Evaluation kernels on one :class:`~advcg.potential.neighbors.PairGroup`: forces and weighted
parameter derivatives of the forces, without autograd and without per-op allocations.

Arithmetic is component-major: the group's positions are ``(3, n_beads, n_frames)``, pair and
triplet vectors ``(3, n_items, n_frames)`` and scalars ``(n_items, n_frames)``, so every
elementwise op runs over contiguous memory and a gather (``index_select`` along the item axis)
moves whole rows of a group's frames. Forces are scattered as rows ``(n_beads, 3, n_frames)``
after one transposing copy, and always with ``alpha = 1`` (``index_add_`` with another ``alpha``
takes a slow path): contributions that enter with a minus sign go to a second accumulator. Pair
vectors are recomputed from the positions in every pass
(:func:`~advcg.potential.neighbors.pair_vectors`). Work is done in blocks of about
:data:`~advcg.potential.neighbors.BLOCK_ELEMENTS` item-frames whose temporaries come from a
:class:`~advcg.potential.scratch.Scratch` (see there for why).

Pair term, with :math:`\hat d = (x_j - x_i)/r`:

.. math::

    F_i \mathrel{+}= \phi'(r)\,\hat d,\quad F_j \mathrel{-}= \phi'(r)\,\hat d,\qquad
    w\cdot\frac{\partial F}{\partial c_k} = \sum_\mathrm{pairs} (w_i - w_j)\cdot\hat d\; B'_k(r).

On knot interval ``m`` (local coordinate ``u``), :math:`B'_{m+l}(r) = \sum_q D_{lq} u^q / h`, so the
pair part of the weighted derivative needs only the three moments
:math:`H_q[m] = \sum_{\text{pairs in } m} s\,u^q` per frame (one ``scatter_add_`` for all moments
and weight sets) and a 4 × 3 convolution (:func:`pair_coefficients_from_moments`).

Three-body term: with :math:`E = f(r_1) f(r_2) g(\cos\theta)` and unit legs :math:`\hat u_1, \hat u_2`,

.. math::

    \frac{\partial E}{\partial d_1} = \Big(f_1' f_2 g - \frac{f_1 f_2 g_c}{r_1}\cos\theta\Big)\hat u_1
      + \frac{f_1 f_2 g_c}{r_1}\hat u_2

(and symmetrically for :math:`d_2`); the forces are :math:`-\partial E/\partial d_1` on ``j``,
:math:`-\partial E/\partial d_2` on ``k`` and :math:`\partial E/\partial d_1 + \partial E/\partial d_2`
on the centre. θ enters only through :math:`g` and :math:`g_c = dg/d\cos\theta`, so

.. math::

    w\cdot\frac{\partial F}{\partial\theta_p} = \sum_\mathrm{triplets}
      \frac{\partial g}{\partial\theta_p} A + \frac{\partial g_c}{\partial\theta_p} B

with :math:`A, B` the weighted forces of the triplet with :math:`(g, g_c)` replaced by
:math:`(1, 0)` and :math:`(0, 1)` (:func:`threebody_vjp`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from advcg.potential.bspline import power_basis
from advcg.potential.neighbors import PairGroup, pair_vectors
from advcg.potential.scratch import Scratch
from advcg.potential.threebody import ThreeBody

__all__ = ["SplineGrid", "ForceAccumulator", "pair_forces", "pair_vjp_moments",
           "pair_coefficients_from_moments", "leg_tables", "threebody_forces", "threebody_vjp"]


class SplineGrid(NamedTuple):
    """Knot layout of the pair spline as the kernels use it.

    ``last`` is the zero interval (:math:`r \\ge r_c`): bins run over ``0..last``.
    """

    r_min: float
    spacing: float
    last: int
    kappa: float

    @property
    def n_bins(self) -> int:
        return self.last + 1


class ForceAccumulator:
    """Forces of one group as two row accumulators ``(n_beads, 3, n)``, ``plus`` and ``minus``
    (both scattered with ``alpha = 1``); :meth:`total` is their difference.

    Component-major vectors ``(3, B, n)`` become rows with :meth:`rows`, which :meth:`add_rows`
    and :meth:`subtract_rows` scatter to beads ``(B,)``; :meth:`add` does both steps.
    """

    def __init__(self, n_beads: int, n_frames: int, scratch: Scratch) -> None:
        self.plus = scratch.get("acc.plus", (n_beads, 3, n_frames)).zero_()
        self.minus = scratch.get("acc.minus", (n_beads, 3, n_frames)).zero_()
        self._scratch = scratch

    def rows(self, vectors: torch.Tensor) -> torch.Tensor:
        """``vectors`` ``(3, B, n)`` as rows ``(B, 3, n)`` (a buffer reused by the next call)."""
        rows = self._scratch.get("acc.rows", (vectors.shape[1], 3, vectors.shape[2]))
        return rows.copy_(vectors.permute(1, 0, 2))

    def add_rows(self, beads: torch.Tensor, rows: torch.Tensor) -> None:
        self.plus.index_add_(0, beads, rows)

    def subtract_rows(self, beads: torch.Tensor, rows: torch.Tensor) -> None:
        self.minus.index_add_(0, beads, rows)

    def add(self, beads: torch.Tensor, vectors: torch.Tensor) -> None:
        self.add_rows(beads, self.rows(vectors))

    def total(self) -> torch.Tensor:
        """The forces ``(n_beads, 3, n)`` (in the ``plus`` buffer)."""
        return self.plus.sub_(self.minus)


def spline_bins(r: torch.Tensor, grid: SplineGrid, scratch: Scratch
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Interval index (clamped to ``0..last``), local coordinate ``u`` (clamped at 0, as in the
    wall) and the wall offset :math:`\\min(r - r_\\mathrm{min}, 0)` of distances ``r``; all
    live in ``scratch``."""
    shape = tuple(r.shape)
    s = scratch.get("bins.s", shape)
    m = scratch.get("bins.m", shape)
    index = scratch.get("bins.index", shape, torch.int64)
    wall = scratch.get("bins.wall", shape)
    torch.sub(r, grid.r_min, out=wall)
    torch.div(wall, grid.spacing, out=s)
    wall.clamp_(max=0.0)
    torch.clamp(s, 0, grid.last, out=m)
    index.copy_(m)          # float -> int truncates, = floor for m >= 0
    m.copy_(index)          # the interval's start, as float
    return index, s.sub_(m).clamp_(min=0.0), wall


def derivative_tables(polynomials: torch.Tensor, spacing: float) -> tuple[torch.Tensor, ...]:
    """Contiguous Horner tables of :math:`\\phi'` from :meth:`PairSpline.cutoff_polynomials`:
    :math:`\\phi' = T_0 + u(T_1 + u T_2)` (without the wall)."""
    return (polynomials[:, 1] / spacing, 2.0 * polynomials[:, 2] / spacing,
            3.0 * polynomials[:, 3] / spacing)


def _pair_block(xs: torch.Tensor, box: torch.Tensor, group: PairGroup, block: slice,
                scratch: Scratch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vectors ``d`` ``(3, B, n)``, distances ``r`` and ``1/r`` ``(B, n)`` of a block of pairs."""
    shift = None if group.shift is None else group.shift[:, block]
    d, r = pair_vectors(xs, box, group.i[block], group.j[block], shift, scratch)
    inverse = scratch.get("pair.rinv", tuple(r.shape))
    torch.rsqrt(r, out=inverse)
    return d, r.mul_(inverse), inverse


def pair_forces(xs: torch.Tensor, box: torch.Tensor, group: PairGroup, tables: tuple[torch.Tensor, ...],
                grid: SplineGrid, forces: ForceAccumulator, scratch: Scratch) -> None:
    """Add the pair forces of ``group`` in frames ``xs`` ``(3, n_beads, n)`` to ``forces``."""
    t0, t1, t2 = tables
    for block in group.blocks(group.n_pairs):
        d, r, inverse = _pair_block(xs, box, group, block, scratch)
        shape = tuple(r.shape)
        index, u, wall = spline_bins(r, grid, scratch)
        flat = index.view(-1)
        dphi = scratch.get("pf.dphi", shape)
        tmp = scratch.get("pf.tmp", shape)
        torch.index_select(t2, 0, flat, out=dphi.view(-1))
        dphi.mul_(u)
        torch.index_select(t1, 0, flat, out=tmp.view(-1))
        dphi.add_(tmp).mul_(u)
        torch.index_select(t0, 0, flat, out=tmp.view(-1))
        dphi.add_(tmp).add_(wall, alpha=grid.kappa)
        rows = forces.rows(d.mul_(dphi.mul_(inverse)))   # φ'(r) d / r: the force on i
        forces.add_rows(group.i[block], rows)
        forces.subtract_rows(group.j[block], rows)


def _dot(w: torch.Tensor, vectors: torch.Tensor, out: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
    """``out[k] = w[k] · vectors`` for ``w`` ``(K, 3, ...)``, ``vectors`` ``(3, ...)`` and
    ``out`` ``(K, ...)``; ``products`` is a buffer shaped like ``w`` (may be ``w`` itself)."""
    torch.mul(w, vectors, out=products)
    return torch.add(products[:, 0], products[:, 1], out=out).add_(products[:, 2])


def _add_moments(moments: torch.Tensor, index: torch.Tensor, values: torch.Tensor, u: torch.Tensor) -> None:
    """``moments[k, q, index] += s[k] u^q`` for ``q < 3``, with ``s = values[:, 0]`` given and
    ``values`` ``(K, 3, B, n)`` completed here (one ``scatter_add_`` for all sets and moments)."""
    torch.mul(values[:, 0], u, out=values[:, 1])
    torch.mul(values[:, 1], u, out=values[:, 2])
    rows = moments.shape[0] * 3
    flat = values.view(rows, -1)
    moments.view(rows, -1).scatter_add_(1, index.view(1, -1).expand(rows, -1), flat)


def pair_vjp_moments(xs: torch.Tensor, box: torch.Tensor, group: PairGroup, weights: torch.Tensor,
                     grid: SplineGrid, moments: torch.Tensor, per_bead: bool, scratch: Scratch) -> None:
    r"""Add the moments :math:`H_q` of the weighted pair-force derivatives of ``group``.

    Parameters
    ----------
    xs
        The group's frames ``(3, n_beads, n)``.
    weights
        ``(n_sets, 3, n_beads, n)``, contiguous.
    moments
        ``(n_sets, 3, n * n_bins)`` (bins ``t * n_bins + m``) or, if ``per_bead``,
        ``(n_sets, 3, n_beads * n * n_bins)`` (bins ``(b * n + t) * n_bins + m``).
    """
    n_sets, _, n_beads, n = weights.shape
    w = weights.view(n_sets * 3, n_beads, n)
    frame_bins = torch.arange(n, device=weights.device) * grid.n_bins
    for block in group.blocks(group.n_pairs):
        d, r, inverse = _pair_block(xs, box, group, block, scratch)
        b = r.shape[0]
        index, u, _ = spline_bins(r, grid, scratch)
        wi = scratch.get("pv.wi", (n_sets, 3, b, n))
        wj = scratch.get("pv.wj", (n_sets, 3, b, n))
        torch.index_select(w, 1, group.i[block], out=wi.view(n_sets * 3, b, n))
        torch.index_select(w, 1, group.j[block], out=wj.view(n_sets * 3, b, n))
        values = scratch.get("pv.values", (n_sets, 3, b, n))   # s u^q, s = w·d̂
        bins = scratch.get("pv.bins", (b, n), torch.int64)
        torch.add(index, frame_bins, out=bins)
        d.mul_(inverse)                                  # unit vectors
        if not per_bead:
            wi.sub_(wj)
            _dot(wi, d, values[:, 0], wi)                # (w_i - w_j)·d̂
            _add_moments(moments, bins, values, u)
            continue
        # bead b's own term: w_i·d̂ B' on i, -w_j·d̂ B' on j
        bead_bins = scratch.get("pv.bead_bins", (b, n), torch.int64)
        for beads, wb, sign in ((group.i[block], wi, 1.0), (group.j[block], wj, -1.0)):
            _dot(wb, d, values[:, 0], wb).mul_(sign)
            torch.add(bins, (beads * (n * grid.n_bins)).unsqueeze(1), out=bead_bins)
            _add_moments(moments, bead_bins, values, u)


def pair_coefficients_from_moments(moments: torch.Tensor, grid: SplineGrid) -> torch.Tensor:
    """Coefficient derivatives ``(..., n_intervals)`` from moments ``(..., 3, n_bins)``.

    The zero interval (``r >= r_c``) is dropped, and so are the three padding coefficients.
    """
    n_intervals = grid.last
    _, first = power_basis(moments.dtype, moments.device)
    # per interval m and local function l: sum_q D[l, q] H_q[m] / h
    local = torch.einsum("...qm,lq->...lm", moments[..., :n_intervals], first) / grid.spacing
    out = moments.new_zeros(*moments.shape[:-2], n_intervals + 3)
    for m in range(4):
        out[..., m:m + n_intervals] += local[..., m, :]
    return out[..., :n_intervals]


def leg_tables(xs: torch.Tensor, box: torch.Tensor, group: PairGroup, threebody: ThreeBody,
               scratch: Scratch) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed legs of the group's short pairs in frames ``xs``: unit vectors
    ``(3, 2 n_short, n)`` and ``(r, f(r), f'(r))`` stacked as ``(3, 2 n_short, n)``."""
    n_short, n = group.n_short, xs.shape[2]
    short = group.short
    shift = None if group.shift is None else group.shift[:, short]
    d, r = pair_vectors(xs, box, group.i[short], group.j[short], shift, scratch, "legs")
    r.sqrt_()
    unit = scratch.get("legs.unit", (3, 2 * n_short, n))
    torch.div(d, r, out=unit[:, :n_short])
    torch.neg(unit[:, :n_short], out=unit[:, n_short:])
    radial = scratch.get("legs.radial", (3, 2 * n_short, n))
    f, df = threebody.radial(r, float(threebody.sigma * threebody.gamma), threebody.cutoff)
    for k, value in enumerate((r, f, df)):
        radial[k, :n_short] = value
        radial[k, n_short:] = value
    return unit, radial


def _gather_legs(legs: tuple[torch.Tensor, torch.Tensor], group: PairGroup, block: slice,
                 scratch: Scratch) -> tuple[torch.Tensor, ...]:
    """Both legs of the triplets in ``block`` (unit vectors and ``(r, f, f')``, each
    ``(3, q, n)``) and cos θ ``(q, n)``."""
    unit, radial = legs
    n = unit.shape[2]
    q = block.stop - block.start
    u1, u2 = scratch.get("leg.u1", (3, q, n)), scratch.get("leg.u2", (3, q, n))
    q1, q2 = scratch.get("leg.q1", (3, q, n)), scratch.get("leg.q2", (3, q, n))
    torch.index_select(unit, 1, group.trip_leg1[block], out=u1)
    torch.index_select(unit, 1, group.trip_leg2[block], out=u2)
    torch.index_select(radial, 1, group.trip_leg1[block], out=q1)
    torch.index_select(radial, 1, group.trip_leg2[block], out=q2)
    cos = scratch.get("leg.cos", (q, n))
    torch.mul(u1[0], u2[0], out=cos)
    cos.addcmul_(u1[1], u2[1]).addcmul_(u1[2], u2[2])
    return u1, u2, q1, q2, cos


def threebody_forces(group: PairGroup, threebody: ThreeBody, legs: tuple[torch.Tensor, torch.Tensor],
                     forces: ForceAccumulator, scratch: Scratch) -> None:
    """Add the three-body forces of ``group`` to ``forces``."""
    for block in group.blocks(group.n_triplets):
        u1, u2, (r1, f1, df1), (r2, f2, df2), cos = _gather_legs(legs, group, block, scratch)
        shape = tuple(cos.shape)
        g, g_c = scratch.get("tf.g", shape), scratch.get("tf.gc", shape)
        threebody.angular_out(cos, g, g_c)
        b = scratch.get("tf.b", shape)
        torch.mul(f1, f2, out=b).mul_(g_c)           # f1 f2 g_c
        c1, c2 = scratch.get("tf.c1", shape), scratch.get("tf.c2", shape)
        torch.div(b, r1, out=c1)
        torch.div(b, r2, out=c2)
        a1, a2 = scratch.get("tf.a1", shape), scratch.get("tf.a2", shape)
        torch.mul(df1, f2, out=a1).mul_(g).addcmul_(c1, cos, value=-1.0)
        torch.mul(f1, df2, out=a2).mul_(g).addcmul_(c2, cos, value=-1.0)
        grad1, grad2 = scratch.get("tf.grad1", (3,) + shape), scratch.get("tf.grad2", (3,) + shape)
        torch.mul(u1, a1, out=grad1).addcmul_(u2, c1)    # ∂E/∂d1
        torch.mul(u2, a2, out=grad2).addcmul_(u1, c2)    # ∂E/∂d2
        forces.subtract_rows(group.trip_j[block], forces.rows(grad1))
        forces.subtract_rows(group.trip_k[block], forces.rows(grad2))
        forces.add(group.trip_center[block], grad1.add_(grad2))


def threebody_vjp(group: PairGroup, threebody: ThreeBody, legs: tuple[torch.Tensor, torch.Tensor],
                  weights: torch.Tensor, out: torch.Tensor, per_bead: bool, scratch: Scratch) -> None:
    r"""Add the weighted three-body force derivatives of ``group`` to ``out``.

    With :math:`\alpha_1 = f_1' f_2`, :math:`\alpha_2 = f_1 f_2'`, :math:`\beta_i = f_1 f_2/r_i` and
    :math:`\Delta_1 = w_c - w_j`, :math:`\Delta_2 = w_c - w_k`, the triplet's weighted force for
    :math:`(g, g_c) = (1, 0)` and :math:`(0, 1)` is

    .. math::

        A = \alpha_1 \Delta_1\cdot\hat u_1 + \alpha_2 \Delta_2\cdot\hat u_2,\qquad
        B = \beta_1 (\Delta_1\cdot\hat u_2 - \cos\theta\,\Delta_1\cdot\hat u_1)
          + \beta_2 (\Delta_2\cdot\hat u_1 - \cos\theta\,\Delta_2\cdot\hat u_2)

    (per bead: each bead's own share of these sums).

    Parameters
    ----------
    weights
        ``(n_sets, 3, n_beads, n)``, contiguous.
    out
        ``(n_sets, n * n3)`` (entry ``t * n3 + p``) or, if ``per_bead``,
        ``(n_sets, n_beads * n * n3)`` (entry ``(b * n + t) * n3 + p``).
    """
    n_sets, _, n_beads, n = weights.shape
    w = weights.view(n_sets * 3, n_beads, n)
    frames = torch.arange(n, device=weights.device).unsqueeze(0)
    for block in group.blocks(group.n_triplets):
        u1, u2, (r1, f1, df1), (r2, f2, df2), cos = _gather_legs(legs, group, block, scratch)
        q = cos.shape[0]
        shape = tuple(cos.shape)
        alpha1, alpha2 = scratch.get("tv.alpha1", shape), scratch.get("tv.alpha2", shape)
        beta1, beta2 = scratch.get("tv.beta1", shape), scratch.get("tv.beta2", shape)
        torch.mul(df1, f2, out=alpha1)
        torch.mul(f1, df2, out=alpha2)
        torch.mul(f1, f2, out=beta2)
        torch.div(beta2, r1, out=beta1)
        beta2.div_(r2)
        roles = (group.trip_j[block], group.trip_k[block], group.trip_center[block])
        wj, wk, wc = (torch.index_select(w, 1, beads, out=scratch.get(f"tv.{name}", (n_sets * 3, q, n)))
                      .view(n_sets, 3, q, n) for name, beads in zip(("wj", "wk", "wc"), roles))
        sets = (n_sets,) + shape
        a, b = scratch.get("tv.a", sets), scratch.get("tv.b", sets)
        p1, p2 = scratch.get("tv.p1", sets), scratch.get("tv.p2", sets)
        products = scratch.get("tv.products", (n_sets, 3) + shape)
        if not per_bead:
            dw1 = wj.neg_().add_(wc)   # w_c - w_j
            dw2 = wk.neg_().add_(wc)   # w_c - w_k
            _dot(dw1, u1, p1, products)
            _dot(dw1, u2, p2, products)
            torch.mul(p1, alpha1, out=a)
            torch.mul(p2.addcmul_(p1, cos, value=-1.0), beta1, out=b)
            _dot(dw2, u2, p1, products)
            _dot(dw2, u1, p2, products)
            a.addcmul_(p1, alpha2)
            b.addcmul_(p2.addcmul_(p1, cos, value=-1.0), beta2)
            threebody.add_parameter_terms(cos, a, b, None, out, scratch)
            continue
        # per bead: j gets -w_j·∂E/∂d1, k gets -w_k·∂E/∂d2, the centre w_c·(∂E/∂d1 + ∂E/∂d2)
        rows = scratch.get("tv.rows", shape, torch.int64)
        for role, (beads, wb) in enumerate(zip(roles, (wj, wk, wc))):
            _dot(wb, u1, p1, products)
            _dot(wb, u2, p2, products)
            if role == 0:
                torch.mul(p1, alpha1, out=a).neg_()
                torch.mul(p2.addcmul_(p1, cos, value=-1.0), beta1, out=b).neg_()
            elif role == 1:
                torch.mul(p2, alpha2, out=a).neg_()
                torch.mul(p1.addcmul_(p2, cos, value=-1.0), beta2, out=b).neg_()
            else:
                torch.mul(p1, alpha1, out=a).addcmul_(p2, alpha2)
                tmp = scratch.get("tv.tmp", sets)
                torch.addcmul(p2, p1, cos, value=-1.0, out=tmp)        # p2 - cos p1
                torch.mul(tmp, beta1, out=b)
                torch.addcmul(p1, p2, cos, value=-1.0, out=tmp)        # p1 - cos p2
                b.addcmul_(tmp, beta2)
            torch.add(frames, (beads * n).unsqueeze(1), out=rows)
            threebody.add_parameter_terms(cos, a, b, rows, out, scratch)
