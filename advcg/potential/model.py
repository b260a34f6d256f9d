r"""The CG potential :math:`U_\theta` of one-bead water: pair spline + SW-form three-body term.

.. math::

    U_\theta(X) = \sum_{i<j} \phi(r_{ij})
      + \sum_i \sum_{j<k \in \mathrm{nbr}(i)} f(r_{ij}) f(r_{ik})\, g(\theta_{jik})

with :math:`\phi` from :class:`~advcg.potential.pair.PairSpline` and :math:`f`, :math:`g` from a
:class:`~advcg.potential.threebody.ThreeBody`. Positions are batched over leading frame
dimensions ``(..., n_beads, 3)`` in a periodic orthogonal box ``(3,)``; everything is float64 in
LAMMPS ``real`` units. Forces, :math:`\partial F/\partial\theta` and :math:`\partial U/\partial\theta`
are assembled analytically (no autograd through positions), so ``forces(create_graph=True)`` is a
first-order graph in the parameters only.

θ is the concatenation, in :meth:`CGPotential.parameter_names` order, of the pair coefficients
and the three-body parameters.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advcg import io
from advcg.potential.kernels import (
    ForceAccumulator,
    SplineGrid,
    derivative_tables,
    leg_tables,
    pair_coefficients_from_moments,
    pair_forces,
    pair_vjp_moments,
    threebody_forces,
    threebody_vjp,
)
from advcg.potential.neighbors import (
    Geometry,
    NeighborList,
    PairGroup,
    build_geometry,
    build_neighbor_list,
    check_neighbor_list,
    iter_pair_groups,
    pair_vectors,
)
from advcg.potential.pair import PairSpline
from advcg.potential.scratch import Scratch, shared_scratch
from advcg.potential.threebody import VARIANTS, AngleTableThreeBody, SWThreeBody, ThreeBody

logger = logging.getLogger(__name__)

__all__ = ["CGPotential", "PotentialFileError", "DEFAULT_SKIN", "FORMAT", "FORMAT_VERSION"]

#: Verlet skin of the neighbour lists, Å.
DEFAULT_SKIN = 1.0
#: ``format`` tag of the JSON parameter files.
FORMAT = "advcg-cg-potential"
FORMAT_VERSION = 1


class PotentialFileError(ValueError):
    """A parameter file is malformed; the message names the file and the key."""


def _as_batch(positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float]
              ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    positions = torch.as_tensor(positions)
    if positions.dtype != torch.float64:
        raise TypeError(f"positions must be float64, got {positions.dtype}")
    if positions.dim() < 2 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (..., n_beads, 3), got {tuple(positions.shape)}")
    lead = tuple(positions.shape[:-2])
    x = positions.reshape(-1, positions.shape[-2], 3)
    if isinstance(box, torch.Tensor) and box.dtype != torch.float64:
        raise TypeError(f"box must be float64 (or a list/array of floats), got {box.dtype}")
    box_t = torch.as_tensor(np.asarray(box, dtype=np.float64) if not isinstance(box, torch.Tensor)
                            else box, dtype=torch.float64, device=x.device).reshape(-1)
    if box_t.shape != (3,):
        raise ValueError(f"box must be the 3 orthogonal edge lengths, got shape {tuple(box_t.shape)}")
    return x, box_t, lead


class _ParameterForces(torch.autograd.Function):
    """Forces as a first-order differentiable function of θ: the backward pass is the weighted
    parameter derivative :meth:`CGPotential.force_parameter_vjp` of the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, potential: CGPotential, positions: torch.Tensor,
                box: torch.Tensor, groups: tuple[PairGroup, ...]) -> torch.Tensor:
        ctx.potential, ctx.positions, ctx.box, ctx.groups = potential, positions, box, groups
        return potential._forces(positions, box, groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        with torch.no_grad():
            vjp = ctx.potential._vjp(ctx.positions, ctx.box, ctx.groups, grad.unsqueeze(0), per_bead=False)
        return vjp[0].sum(0), None, None, None, None


class CGPotential(nn.Module):
    r"""Pair spline plus SW-form three-body term (see module doc).

    Parameters
    ----------
    pair
        The pair term.
    threebody
        A :class:`~advcg.potential.threebody.SWThreeBody` or
        :class:`~advcg.potential.threebody.AngleTableThreeBody`.
    skin
        Verlet skin of the neighbour lists, Å.
    neighbor_method
        ``auto``, ``kdtree`` or ``brute`` (see :func:`~advcg.potential.neighbors.build_pairs`).

    Examples
    --------
    >>> model = CGPotential(PairSpline(), SWThreeBody())
    >>> forces = model.forces(positions, box)            # (..., n_beads, 3)
    >>> dF_dc = model.pair_basis_forces(positions, box)  # (..., n_beads, 3, n_coefficients)
    """

    def __init__(self, pair: PairSpline, threebody: ThreeBody, skin: float = DEFAULT_SKIN,
                 neighbor_method: str = "auto") -> None:
        super().__init__()
        if not isinstance(threebody, ThreeBody) or threebody.variant not in VARIANTS:
            raise ValueError(f"threebody must be one of the variants {VARIANTS}")
        if not (math.isfinite(skin) and skin >= 0):
            raise ValueError(f"skin must be finite and >= 0, got {skin}")
        self.pair = pair
        self.threebody = threebody
        self.skin = float(skin)
        self.neighbor_method = neighbor_method

    @classmethod
    def default(cls, variant: str = "sw", **pair_options: float) -> CGPotential:
        """A potential with zero pair coefficients and default three-body values for ``variant``."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown three-body variant {variant!r}; known: {', '.join(VARIANTS)}")
        threebody = SWThreeBody() if variant == "sw" else AngleTableThreeBody()
        return cls(PairSpline(**pair_options), threebody)

    # -- parameters ------------------------------------------------------------------------
    @property
    def variant(self) -> str:
        """Three-body variant: ``sw`` or ``sw/angle/table``."""
        return self.threebody.variant

    @property
    def r_cut(self) -> float:
        """Pair cutoff r_c, Å."""
        return self.pair.r_cut

    def parameter_names(self) -> list[str]:
        """Names of the entries of :attr:`theta`: ``pair.c[k]`` then the three-body ones."""
        return [f"pair.c[{k}]" for k in range(self.pair.n_coefficients)] + self.threebody.parameter_names()

    @property
    def n_parameters(self) -> int:
        """Length of θ."""
        return self.pair.n_coefficients + self.threebody.n_parameters

    @property
    def pair_slice(self) -> slice:
        """Where the pair coefficients sit in θ."""
        return slice(0, self.pair.n_coefficients)

    @property
    def threebody_slice(self) -> slice:
        """Where the three-body parameters sit in θ."""
        return slice(self.pair.n_coefficients, self.n_parameters)

    def theta_tensor(self) -> torch.Tensor:
        """θ as one ``(n_parameters,)`` tensor that stays in the autograd graph."""
        return torch.cat([self.pair.coefficients, self.threebody.parameter_vector().reshape(-1)])

    @property
    def theta(self) -> torch.Tensor:
        """θ as a detached copy ``(n_parameters,)``; change it with :meth:`set_theta`."""
        return self.theta_tensor().detach().clone()

    def set_theta(self, values: torch.Tensor | np.ndarray | list[float]) -> None:
        """Copy ``values`` ``(n_parameters,)`` into the parameters (no graph).

        Raises
        ------
        ValueError
            Wrong length or non-finite values.
        """
        values = torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(-1)
        if values.shape != (self.n_parameters,):
            raise ValueError(f"theta must have {self.n_parameters} values, got {values.numel()}")
        if not torch.isfinite(values).all():
            bad = [self.parameter_names()[i] for i in torch.nonzero(~torch.isfinite(values)).reshape(-1)]
            raise ValueError(f"theta has non-finite values at {bad}")
        with torch.no_grad():
            self.pair.coefficients.copy_(values[self.pair_slice])
            self.threebody.set_parameter_vector(values[self.threebody_slice])

    # -- boxes and neighbour lists ---------------------------------------------------------------
    def validate_box(self, box: torch.Tensor | np.ndarray | list[float]) -> None:
        """Raise :class:`ValueError` unless ``r_c <= min(box) / 2`` (minimum image is exact).

        Call it before starting LAMMPS with this potential.
        """
        edges = (box.detach().cpu().numpy() if isinstance(box, torch.Tensor)
                 else np.array(box, dtype=np.float64)).astype(np.float64).reshape(-1)
        if edges.shape != (3,) or not np.all(np.isfinite(edges)) or np.any(edges <= 0):
            raise ValueError(f"box must be 3 finite positive edge lengths, got {edges.tolist()}")
        if self.r_cut > 0.5 * edges.min() + 1e-12:
            raise ValueError(f"pair cutoff r_c = {self.r_cut} Å exceeds half the smallest box edge "
                             f"({0.5 * edges.min():.4f} Å of box {edges.tolist()}): use a larger "
                             f"box or a shorter r_c")

    def neighbor_list(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float]
                      ) -> NeighborList:
        """Verlet lists (cutoff ``r_c + skin``) for a batch ``(..., n_beads, 3)``; pass the result
        as ``neighbors=`` to reuse it for the same frames."""
        x, box_t, _ = _as_batch(positions, box)
        self.validate_box(box_t)
        return build_neighbor_list(x, box_t, self.r_cut, self.skin, self.neighbor_method)

    def _neighbors(self, x: torch.Tensor, box: torch.Tensor, neighbors: NeighborList | None
                   ) -> NeighborList:
        if neighbors is None:
            return build_neighbor_list(x, box, self.r_cut, self.skin, self.neighbor_method)
        check_neighbor_list(neighbors, x, box, self.r_cut)
        return neighbors

    def geometry(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                 neighbors: NeighborList | None = None) -> Geometry:
        """Pair and triplet lists of a batch, grouped by runs of frames (see :class:`Geometry`);
        pass it as ``neighbors=`` to every evaluation on these same frames (forces, then
        :meth:`force_parameter_vjp`, ...), which then skips the neighbour search."""
        x, box_t, _ = _as_batch(positions, box)
        self.validate_box(box_t)
        neighbors = self._neighbors(x, box_t, neighbors)
        return build_geometry(x, box_t, neighbors, self.r_cut, self.threebody.cutoff)

    def _groups(self, x: torch.Tensor, box: torch.Tensor,
                neighbors: NeighborList | Geometry | None) -> Iterable[PairGroup]:
        """The pair groups of a batch: a geometry's, or built one group at a time from
        ``neighbors`` (or from scratch)."""
        if isinstance(neighbors, Geometry):
            neighbors.check(x, box)
            return neighbors.groups
        self.validate_box(box)
        return iter_pair_groups(x, box, self._neighbors(x, box, neighbors), self.r_cut,
                                self.threebody.cutoff)

    def _grid(self) -> SplineGrid:
        p = self.pair
        return SplineGrid(p.r_min, p.spacing, p.n_intervals, p.kappa)

    # -- energies (differentiable in positions and parameters) ------------------------------------
    def _energies(self, positions: torch.Tensor, box: Any, neighbors: NeighborList | Geometry | None,
                  per_bead: bool) -> tuple[torch.Tensor, tuple[int, ...], int]:
        """Energies per frame ``(T,)`` or per bead ``(T, n_beads)``, recomputed from ``positions``."""
        x, box_t, lead = _as_batch(positions, box)
        n_beads = x.shape[1]
        p = self.pair
        polynomials = p.cutoff_polynomials(p.coefficients)
        parts = []
        for group in self._groups(x, box_t, neighbors):
            frames = x[group.start:group.stop]
            d = frames[:, group.j] - frames[:, group.i]              # (n, n_pairs, 3)
            d = d - box_t * torch.round(d.detach() / box_t)
            r = torch.linalg.vector_norm(d, dim=-1)
            phi, _ = p.compute_fast(r, polynomials, p.r_min, p.spacing, p.n_intervals + 1, p.kappa)
            legs = torch.cat([d[:, group.short], -d[:, group.short]], 1)
            lengths = torch.cat([r[:, group.short], r[:, group.short]], 1)
            d1, d2 = legs[:, group.trip_leg1], legs[:, group.trip_leg2]
            r1, r2 = lengths[:, group.trip_leg1], lengths[:, group.trip_leg2]
            f1, _, f2, _ = self.threebody.legs(r1, r2)
            g, _ = self.threebody.angular((d1 * d2).sum(-1) / (r1 * r2))
            e3 = f1 * f2 * g                                         # (n, n_triplets)
            if per_bead:
                half = 0.5 * phi
                bead = x.new_zeros(group.n_frames, n_beads).index_add(1, group.i, half)
                parts.append(bead.index_add(1, group.j, half).index_add(1, group.trip_center, e3))
            else:
                parts.append(phi.sum(1) + e3.sum(1))
        return torch.cat(parts), lead, n_beads

    # -- public evaluation ---------------------------------------------------------------------
    def energy(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
               neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Total energy :math:`U_\theta(X)` per frame, kcal/mol.

        Differentiable (autograd) w.r.t. positions and parameters.

        Parameters
        ----------
        positions
            ``(..., n_beads, 3)`` float64, Å (wrapped or unwrapped).
        box
            ``(3,)`` orthogonal edges, Å.
        neighbors
            Verlet lists from :meth:`neighbor_list`, or the :class:`Geometry` from
            :meth:`geometry`, for these same frames (built if ``None``); reuse one across the
            calls on a batch.

        Returns
        -------
        torch.Tensor
            ``(...)``.
        """
        energy, lead, _ = self._energies(positions, box, neighbors, per_bead=False)
        return energy.reshape(lead)

    def forward(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float]) -> torch.Tensor:
        """Same as :meth:`energy`."""
        return self.energy(positions, box)

    def bead_energies(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                      neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Per-bead split of :math:`U_\theta`: :math:`\tfrac12\phi(r_{ij})` to each of ``i``, ``j``,
        each triplet's energy to its central bead; sums to :meth:`energy`.

        Returns
        -------
        torch.Tensor
            ``(..., n_beads)``, kcal/mol, differentiable like :meth:`energy`.
        """
        energies, lead, n_beads = self._energies(positions, box, neighbors, per_bead=True)
        return energies.reshape(*lead, n_beads)

    def forces(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
               create_graph: bool = False, neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Forces :math:`F = -\partial U_\theta/\partial x`, kcal/(mol Å), assembled analytically.

        Parameters
        ----------
        positions, box, neighbors
            As for :meth:`energy`.
        create_graph
            ``False``: evaluated without autograd (fast, detached). ``True``: the result is a
            differentiable function of the parameters (first order: its backward pass is
            :meth:`force_parameter_vjp`), e.g. for
            ``torch.autograd.grad((R * F).sum(), model.parameters())``; no graph through positions.

        Returns
        -------
        torch.Tensor
            ``(..., n_beads, 3)``.
        """
        x, box_t, lead = _as_batch(positions, box)
        groups = self._groups(x, box_t, neighbors)
        if create_graph and torch.is_grad_enabled():
            x = x.detach()
            out = _ParameterForces.apply(self.theta_tensor(), self, x, box_t, tuple(groups))
        else:
            out = self._forces(x.detach(), box_t, groups)
        return out.reshape(*lead, x.shape[1], 3)

    def _forces(self, x: torch.Tensor, box: torch.Tensor, groups: Iterable[PairGroup]) -> torch.Tensor:
        """Forces ``(n_frames, n_beads, 3)`` of frames ``x`` (no graph)."""
        with torch.no_grad():
            n_beads = x.shape[1]
            p = self.pair
            tables = derivative_tables(p.cutoff_polynomials(p.coefficients.detach()), p.spacing)
            grid = self._grid()
            scratch = shared_scratch(x.device)
            out = torch.empty_like(x)
            for group in groups:
                xs = group.frames_of(x, scratch)
                forces = ForceAccumulator(n_beads, group.n_frames, scratch)
                pair_forces(xs, box, group, tables, grid, forces, scratch)
                if group.n_triplets:
                    legs = leg_tables(xs, box, group, self.threebody, scratch)
                    threebody_forces(group, self.threebody, legs, forces, scratch)
                out[group.start:group.stop] = forces.total().permute(2, 0, 1)
            return out

    def force_parameter_vjp(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                            weights: torch.Tensor, per_bead: bool = False,
                            neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Weighted parameter derivative of the forces, without forming the full Jacobian.

        .. math::

            v_{p} = \sum_{i} w_i \cdot \frac{\partial F_i}{\partial\theta_p}
            \quad(\text{per frame; per bead } i \text{ if } \texttt{per\_bead})

        With ``weights`` the reconstructed noise :math:`R_n/\mathrm{Var}(R)` this is the path
        score of one step; ``per_bead`` keeps bead ``i``'s term apart (for localised scores).
        Several weightings ("sets") are evaluated in one pass over the pairs and triplets.

        Parameters
        ----------
        positions, box, neighbors
            As for :meth:`energy`.
        weights
            ``(..., n_beads, 3)``, the shape of ``positions``, or ``(n_sets, ..., n_beads, 3)``.
        per_bead
            Keep the bead axis: ``(..., n_beads, n_parameters)`` per set.

        Returns
        -------
        torch.Tensor
            ``(..., n_parameters)``, or ``(n_sets, ..., n_parameters)`` for weights with a set
            axis (``n_beads`` before ``n_parameters`` if ``per_bead``); detached, columns in
            :meth:`parameter_names` order.

        Examples
        --------
        >>> both = model.force_parameter_vjp(x, box, torch.stack([a * R, R]), neighbors=geo)
        >>> both.shape  # (2, n_frames, n_parameters)
        """
        with torch.no_grad():
            x, box_t, lead = _as_batch(positions, box)
            shape = (*lead, *x.shape[1:])
            w = torch.as_tensor(weights, dtype=torch.float64, device=x.device)
            has_sets = w.dim() == len(shape) + 1
            if tuple(w.shape[has_sets:]) != shape:
                raise ValueError(f"weights must have the shape of positions {shape} or "
                                 f"(n_sets, *{shape}), got {tuple(w.shape)}")
            w = w.reshape(-1, *x.shape)
            out = self._vjp(x.detach(), box_t, self._groups(x, box_t, neighbors), w, per_bead)
            tail = (x.shape[1], self.n_parameters) if per_bead else (self.n_parameters,)
            out = out.reshape(w.shape[0], *lead, *tail)
            return out if has_sets else out[0]

    def _vjp(self, x: torch.Tensor, box: torch.Tensor, groups: Iterable[PairGroup], weights: torch.Tensor,
             per_bead: bool) -> torch.Tensor:
        """:meth:`force_parameter_vjp` of frames ``x`` for weights ``(n_sets, n_frames, n_beads, 3)``:
        ``(n_sets, n_frames, [n_beads,] n_parameters)``."""
        n_sets, n_frames, n_beads, _ = weights.shape
        n3 = self.threebody.n_parameters
        grid = self._grid()
        scratch = shared_scratch(x.device)
        out = weights.new_zeros(n_sets, n_frames, *((n_beads,) if per_bead else ()), self.n_parameters)
        for group in groups:
            n = group.n_frames
            xs = group.frames_of(x, scratch)
            w = scratch.get("model.weights", (n_sets, 3, n_beads, n))
            w.copy_(weights[:, group.start:group.stop].permute(0, 3, 2, 1))
            rows = n_beads * n if per_bead else n
            moments = weights.new_zeros(n_sets, 3, rows * grid.n_bins)
            pair_vjp_moments(xs, box, group, w, grid, moments, per_bead, scratch)
            pair = pair_coefficients_from_moments(
                moments.view(n_sets, 3, rows, grid.n_bins).transpose(1, 2), grid)
            three = weights.new_zeros(n_sets, rows * n3)
            if group.n_triplets:
                legs = leg_tables(xs, box, group, self.threebody, scratch)
                threebody_vjp(group, self.threebody, legs, w, three, per_bead, scratch)
            both = torch.cat([pair, three.view(n_sets, rows, n3)], -1)
            if per_bead:
                both = both.view(n_sets, n_beads, n, self.n_parameters).transpose(1, 2)
            out[:, group.start:group.stop] = both
        return out

    def parameter_forces(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                         neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Full Jacobian :math:`\partial F/\partial\theta` (pair basis + three-body parameters).

        Exact for every parameter: the three-body force depends on θ only through
        :math:`g`, so :math:`\partial F/\partial\theta_p` is the force of the triplet energy with
        :math:`g` replaced by :math:`\partial g/\partial\theta_p`. Computed as the per-bead
        :meth:`force_parameter_vjp` of the three Cartesian unit weights. Prefer
        :meth:`force_parameter_vjp` when only :math:`w \cdot \partial F/\partial\theta` is needed.

        Returns
        -------
        torch.Tensor
            ``(..., n_beads, 3, n_parameters)``, detached, columns in :meth:`parameter_names` order.
        """
        with torch.no_grad():
            x, box_t, lead = _as_batch(positions, box)
            axes = torch.eye(3, dtype=torch.float64, device=x.device)
            weights = axes[:, None, None, :].expand(3, *x.shape)
            jac = self._vjp(x.detach(), box_t, self._groups(x, box_t, neighbors), weights, per_bead=True)
            return jac.permute(1, 2, 0, 3).reshape(*lead, x.shape[1], 3, self.n_parameters)

    def pair_basis_forces(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                          neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r""":math:`\partial F/\partial c_k` of the pair term (exact: ``F`` is affine in ``c``).

        .. math::

            \frac{\partial F_i}{\partial c_k} = \sum_j \frac{B'_k(r_{ij})}{r_{ij}}\,(x_j - x_i)

        Returns
        -------
        torch.Tensor
            ``(..., n_beads, 3, n_coefficients)``, detached.
        """
        return self.parameter_forces(positions, box, neighbors)[..., self.pair_slice]

    def energy_gradient(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                        neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r""":math:`\partial U_\theta/\partial\theta` per frame (for thermodynamic reweighting).

        .. math::

            \frac{\partial U}{\partial c_k} = \sum_{i<j} \frac{\partial\phi(r_{ij})}{\partial c_k},\qquad
            \frac{\partial U}{\partial\theta_p} = \sum_{\text{triplets}} f f\,
            \frac{\partial g}{\partial\theta_p}

        Returns
        -------
        torch.Tensor
            ``(..., n_parameters)``, detached.
        """
        with torch.no_grad():
            x, box_t, lead = _as_batch(positions, box)
            p = self.pair
            k = p.n_coefficients + 3
            n3 = self.threebody.n_parameters
            out = x.new_zeros(x.shape[0], self.n_parameters)
            scratch = Scratch(x.device)
            for group in self._groups(x, box_t, neighbors):
                frames = torch.arange(group.n_frames, device=x.device)
                xs = group.frames_of(x.detach(), scratch)
                pair = x.new_zeros(group.n_frames * k)
                for block in group.blocks(group.n_pairs):
                    shift = None if group.shift is None else group.shift[:, block]
                    _, r2 = pair_vectors(xs, box_t, group.i[block], group.j[block], shift, scratch)
                    r = r2.sqrt()
                    index, beta, _, _ = p.local(r, p.r_min, p.spacing, p.n_intervals)
                    beta = beta * (r < p.r_cut).unsqueeze(-1)
                    pair.index_add_(0, (index + (frames * k)[:, None]).reshape(-1), beta.reshape(-1))
                three = x.new_zeros(group.n_frames * n3)
                if group.n_triplets:
                    unit, radial = leg_tables(xs, box_t, group, self.threebody, scratch)
                    for block in group.blocks(group.n_triplets):
                        u1, u2 = unit[:, group.trip_leg1[block]], unit[:, group.trip_leg2[block]]
                        f12 = radial[1, group.trip_leg1[block]] * radial[1, group.trip_leg2[block]]
                        index, dg, _ = self.threebody.angular_parameter_terms((u1 * u2).sum(0))
                        three.index_add_(0, (index + (frames * n3)[:, None]).reshape(-1),
                                         (f12.unsqueeze(-1) * dg).reshape(-1))
                out[group.start:group.stop] = torch.cat(
                    [pair.view(group.n_frames, k)[:, :p.n_coefficients], three.view(group.n_frames, n3)], -1)
            return out.reshape(*lead, self.n_parameters)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready description: format, units, pair, three-body, skin."""
        p = self.pair
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "units": {"lammps": "real", "length": "angstrom", "energy": "kcal/mol",
                      "angle": "radian"},
            "pair": {"kind": "cubic-bspline", "r_min": p.r_min, "r_cut": p.r_cut,
                     "spacing": p.spacing, "knots": p.knots.tolist(),
                     "coefficients": p.coefficients.detach().tolist(),
                     "wall": {"kind": "quadratic", "kappa": p.kappa}},
            "threebody": self.threebody.to_dict(),
            "neighbor_skin": self.skin,
        }

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` to ``path`` atomically."""
        io.write_json(path, self.to_dict())
        logger.info("wrote CG potential (%s, %d parameters) to %s", self.variant, self.n_parameters, path)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> CGPotential:
        """Build from :meth:`to_dict` output, validating every key (errors name ``source``)."""
        return _parse(data, source)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> CGPotential:
        """Read and validate a parameter file written by :meth:`to_json`.

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist.
        PotentialFileError
            Invalid JSON, NaN/inf, unknown variant, knots not increasing, wrong lengths...;
            the message names the file and the key.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"CG potential file {path} does not exist")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PotentialFileError(f"{path}: not a readable CG potential JSON file ({exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PotentialFileError(f"{path}: not valid JSON ({exc})") from exc
        return _parse(data, str(path))


# -- validation of parameter files -------------------------------------------------------------------
#: The keys of a parameter file, by section (the three-body section by variant); any other key is
#: refused (a typo such as ``lamda`` would otherwise leave the default in force).
_KEYS: dict[str, set[str]] = {
    "": {"format", "version", "units", "pair", "threebody", "neighbor_skin"},
    "units": {"lammps", "length", "energy", "angle"},
    "pair": {"kind", "r_min", "r_cut", "spacing", "knots", "coefficients", "wall"},
    "pair.wall": {"kind", "kappa"},
    "threebody/sw": {"variant", "sigma", "a", "gamma", "epsilon", "lambda", "cos_theta0"},
    "threebody/sw/angle/table": {"variant", "sigma", "a", "gamma", "knots", "coefficients"},
}
#: The one accepted value of each ``units`` key.
_UNITS = {"lammps": "real", "length": "angstrom", "energy": "kcal/mol", "angle": "radian"}
#: Physical range (inclusive; ``positive`` keys also > 0) and unit of every number, far wider than
#: any CG water model: outside them a file is corrupt or written in other units. cos θ0 may pass
#: ±1 a little (training moves it freely; g's minimum then lies at the end of the angles).
_RANGES: dict[str, tuple[float, float, str]] = {
    "pair.r_min": (0.0, 10.0, "Å"), "pair.r_cut": (0.0, 50.0, "Å"), "pair.spacing": (0.0, 5.0, "Å"),
    "pair.coefficients": (-1e4, 1e4, "kcal/mol"), "pair.wall.kappa": (0.0, 1e6, "kcal/(mol Å²)"),
    "threebody.sigma": (0.0, 10.0, "Å"), "threebody.a": (0.0, 50.0, "(units of sigma)"),
    "threebody.gamma": (0.0, 100.0, "(dimensionless)"), "threebody.epsilon": (0.0, 1e3, "kcal/mol"),
    "threebody.lambda": (-1e4, 1e4, "(dimensionless)"), "threebody.cos_theta0": (-2.0, 2.0, ""),
    "threebody.coefficients": (-1e4, 1e4, "kcal/mol"), "neighbor_skin": (0.0, 10.0, "Å"),
}


def _check_keys(node: Any, section: str, source: str, known: str | None = None) -> None:
    """Refuse keys of the object at ``section`` that are not in ``_KEYS[known or section]``."""
    if not isinstance(node, dict):
        raise PotentialFileError(f"{source}: key '{section}' must be a JSON object, got {node!r}")
    allowed = _KEYS[known or section]
    for key in sorted(set(node) - allowed):
        name = f"{section}.{key}" if section else key
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise PotentialFileError(f"{source}: unknown key '{name}'{hint}; known keys"
                                 f"{' of ' + repr(section) if section else ''}: {', '.join(sorted(allowed))}")


def _check_range(values: np.ndarray, key: str, source: str, elements: bool) -> None:
    """Refuse values of ``key`` outside :data:`_RANGES`, naming the key (and the element, for
    ``elements`` of a list)."""
    if key not in _RANGES:
        return
    lo, hi, unit = _RANGES[key]
    bad = np.nonzero((values < lo) | (values > hi))[0]
    if bad.size:
        name = f"{key}[{bad[0]}]" if elements else key
        raise PotentialFileError(f"{source}: key '{name}' = {values[bad[0]]} is outside the "
                                 f"physical range {lo:g} .. {hi:g} {unit}".rstrip())


def _get(data: dict, key: str, source: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise PotentialFileError(f"{source}: missing key '{key}'")
        node = node[part]
    return node


def _number(data: dict, key: str, source: str, positive: bool = False) -> float:
    value = _get(data, key, source)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PotentialFileError(f"{source}: key '{key}' must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise PotentialFileError(f"{source}: key '{key}' is not finite ({value})")
    if positive and value <= 0:
        raise PotentialFileError(f"{source}: key '{key}' must be > 0, got {value}")
    _check_range(np.array([value]), key, source, elements=False)
    return value


def _array(data: dict, key: str, source: str) -> np.ndarray:
    value = _get(data, key, source)
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise PotentialFileError(f"{source}: key '{key}' must be a list of numbers")
    arr = np.asarray(value, dtype=np.float64)
    bad = np.nonzero(~np.isfinite(arr))[0]
    if bad.size:
        raise PotentialFileError(f"{source}: key '{key}[{bad[0]}]' is not finite ({arr[bad[0]]})")
    _check_range(arr, key, source, elements=True)
    return arr


def _check_knots(knots: np.ndarray, lo: float, hi: float, key: str, source: str) -> float:
    if knots.size < 2 or np.any(np.diff(knots) <= 0):
        raise PotentialFileError(f"{source}: key '{key}' must be strictly increasing")
    spacing = np.diff(knots)
    if np.max(np.abs(spacing - spacing.mean())) > 1e-9 * max(1.0, abs(hi)):
        raise PotentialFileError(f"{source}: key '{key}' must be uniformly spaced")
    if abs(knots[0] - lo) > 1e-9 * max(1.0, abs(lo)) or abs(knots[-1] - hi) > 1e-9 * max(1.0, abs(hi)):
        raise PotentialFileError(f"{source}: key '{key}' must run from {lo} to {hi}, "
                                 f"got {knots[0]} .. {knots[-1]}")
    return float(spacing.mean())


def _parse(data: Any, source: str) -> CGPotential:
    if not isinstance(data, dict):
        raise PotentialFileError(f"{source}: top level must be a JSON object")
    _check_keys(data, "", source)
    fmt = data.get("format")
    if fmt != FORMAT:
        raise PotentialFileError(f"{source}: key 'format' must be {FORMAT!r}, got {fmt!r}")
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise PotentialFileError(f"{source}: key 'version' must be {FORMAT_VERSION}, got {version!r}")
    units = _get(data, "units", source)
    _check_keys(units, "units", source)
    for key, wanted in _UNITS.items():   # 'lammps' is required, the others are descriptive
        if (key == "lammps" or key in units) and units.get(key) != wanted:
            raise PotentialFileError(f"{source}: key 'units.{key}' must be {wanted!r}, got "
                                     f"{units.get(key)!r}")
    _check_keys(_get(data, "pair", source), "pair", source)
    _check_keys(_get(data, "pair.wall", source), "pair.wall", source)
    kind = _get(data, "pair.kind", source)
    if kind != "cubic-bspline":
        raise PotentialFileError(f"{source}: key 'pair.kind' must be 'cubic-bspline', got {kind!r}")
    r_min = _number(data, "pair.r_min", source, positive=True)
    r_cut = _number(data, "pair.r_cut", source, positive=True)
    if r_cut <= r_min:
        raise PotentialFileError(f"{source}: key 'pair.r_cut' ({r_cut}) must exceed 'pair.r_min' ({r_min})")
    knots = _array(data, "pair.knots", source)
    spacing = _check_knots(knots, r_min, r_cut, "pair.knots", source)
    declared = _number(data, "pair.spacing", source, positive=True)
    if abs(declared - spacing) > 1e-9 * max(1.0, spacing):
        raise PotentialFileError(f"{source}: key 'pair.spacing' ({declared}) disagrees with "
                                 f"'pair.knots' (spacing {spacing})")
    coefficients = _array(data, "pair.coefficients", source)
    if coefficients.size != knots.size - 1:
        raise PotentialFileError(f"{source}: key 'pair.coefficients' has {coefficients.size} values; "
                                 f"{knots.size} knots need {knots.size - 1}")
    wall_kind = _get(data, "pair.wall.kind", source)
    if wall_kind != "quadratic":
        raise PotentialFileError(f"{source}: key 'pair.wall.kind' must be 'quadratic', got {wall_kind!r}")
    kappa = _number(data, "pair.wall.kappa", source, positive=True)
    try:
        pair = PairSpline(r_min, r_cut, declared, kappa, coefficients)
    except ValueError as exc:
        raise PotentialFileError(f"{source}: key 'pair': {exc}") from exc
    variant = _get(data, "threebody.variant", source)
    if variant not in VARIANTS:
        raise PotentialFileError(f"{source}: key 'threebody.variant' is {variant!r}; "
                                 f"known variants: {', '.join(VARIANTS)}")
    _check_keys(data["threebody"], "threebody", source, known=f"threebody/{variant}")
    constants = {name: _number(data, f"threebody.{name}", source, positive=True)
                 for name in ("sigma", "a", "gamma")}
    if variant == "sw":
        threebody: ThreeBody = SWThreeBody(
            strength=_number(data, "threebody.lambda", source),
            cos_theta0=_number(data, "threebody.cos_theta0", source),
            epsilon=_number(data, "threebody.epsilon", source, positive=True), **constants)
    else:
        angle_knots = _array(data, "threebody.knots", source)
        _check_knots(angle_knots, 0.0, math.pi, "threebody.knots", source)
        values = _array(data, "threebody.coefficients", source)
        n_intervals = angle_knots.size - 1
        if values.size != n_intervals + 3:
            raise PotentialFileError(f"{source}: key 'threebody.coefficients' has {values.size} values; "
                                     f"{angle_knots.size} knots need {n_intervals + 3}")
        threebody = AngleTableThreeBody(values, n_intervals, **constants)
    skin = _number(data, "neighbor_skin", source) if "neighbor_skin" in data else DEFAULT_SKIN
    if skin < 0:
        raise PotentialFileError(f"{source}: key 'neighbor_skin' must be >= 0, got {skin}")
    return CGPotential(pair, threebody, skin=skin)
