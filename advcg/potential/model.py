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

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from advcg import io
from advcg.potential.neighbors import (Geometry, NeighborList, build_geometry,
                                       build_neighbor_list, check_neighbor_list)
from advcg.potential.pair import PairSpline
from advcg.potential.threebody import (VARIANTS, AngleTableThreeBody, SWThreeBody, ThreeBody)

logger = logging.getLogger(__name__)

__all__ = ["CGPotential", "PotentialFileError", "DEFAULT_SKIN", "FORMAT", "FORMAT_VERSION"]

#: Verlet skin of the neighbour lists, Å.
DEFAULT_SKIN = 1.0
# pairs per evaluation chunk (frames are grouped up to about this many pairs)
_CHUNK_PAIRS = 40000
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
    def default(cls, variant: str = "sw", **pair_options: float) -> "CGPotential":
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
        edges = np.asarray(torch.as_tensor(box, dtype=torch.float64).cpu(), dtype=np.float64).reshape(-1)
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

    def _resolve(self, x: torch.Tensor, box: torch.Tensor,
                 neighbors: NeighborList | Geometry | None) -> Geometry:
        """The geometry of a batch: given, or built from ``neighbors`` (or from scratch)."""
        if isinstance(neighbors, Geometry):
            if neighbors.n_frames != x.shape[0] or neighbors.n_beads != x.shape[1]:
                raise ValueError(f"geometry built for {neighbors.n_frames} frames x {neighbors.n_beads} "
                                 f"beads, got positions of shape {tuple(x.shape)}")
            return neighbors
        return self.geometry(x, box, neighbors)

    def geometry(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                 neighbors: NeighborList | None = None) -> Geometry:
        """Pairs within ``r_c`` and triplets within ``aσ`` of a batch (see :class:`Geometry`)."""
        x, box_t, _ = _as_batch(positions, box)
        self.validate_box(box_t)
        if neighbors is None:
            neighbors = build_neighbor_list(x, box_t, self.r_cut, self.skin, self.neighbor_method)
        else:
            check_neighbor_list(neighbors, x, box_t, self.r_cut)
        return build_geometry(x, box_t, neighbors, self.r_cut, self.threebody.cutoff)

    @staticmethod
    def _chunks(geo: Geometry) -> Iterator[tuple[int, int, Geometry]]:
        """``(start, stop, sub_geometry)`` over frame ranges of about ``_CHUNK_PAIRS`` pairs."""
        per_frame = max(1, geo.pair_i.numel() // max(1, geo.n_frames))
        step = max(1, _CHUNK_PAIRS // per_frame)
        for start in range(0, geo.n_frames, step):
            stop = min(start + step, geo.n_frames)
            yield start, stop, geo.frames(start, stop)

    # -- evaluation core -----------------------------------------------------------------------
    def _pair_vectors(self, flat: torch.Tensor, geo: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
        d = flat[geo.pair_j] - flat[geo.pair_i] - geo.pair_shift
        return d, torch.linalg.vector_norm(d, dim=-1)

    def _triplet_vectors(self, d: torch.Tensor, r: torch.Tensor, geo: Geometry
                         ) -> tuple[torch.Tensor, ...]:
        d1 = geo.trip_s1.unsqueeze(-1) * d[geo.trip_p1]
        d2 = geo.trip_s2.unsqueeze(-1) * d[geo.trip_p2]
        r1, r2 = r[geo.trip_p1], r[geo.trip_p2]
        cos_theta = (d1 * d2).sum(-1) / (r1 * r2)
        return d1, d2, r1, r2, cos_theta

    def _evaluate(self, positions: torch.Tensor, box: Any, neighbors: NeighborList | Geometry | None,
                  want_energy: bool, want_bead: bool, want_forces: bool
                  ) -> tuple[dict[str, torch.Tensor], tuple[int, ...], int]:
        x, box_t, lead = _as_batch(positions, box)
        geo = self._resolve(x, box_t, neighbors)
        n_frames, n_beads = x.shape[0], x.shape[1]
        flat = x.reshape(-1, 3)
        p = self.pair
        polynomials = p.interval_polynomials(p.coefficients)
        # frames in chunks of about _CHUNK_PAIRS pairs: the arrays stay in cache
        per_frame = max(1, geo.pair_i.numel() // max(1, n_frames))
        chunk = max(1, _CHUNK_PAIRS // per_frame)
        parts: dict[str, list[torch.Tensor]] = {"energy": [], "bead": [], "forces": []}
        for start in range(0, n_frames, chunk):
            stop = min(start + chunk, n_frames)
            sub = geo.frames(start, stop)
            local = flat[start * n_beads:stop * n_beads]
            n_local = local.shape[0]
            d, r = self._pair_vectors(local, sub)
            phi, dphi = p.compute_fast(r, polynomials, p.r_min, p.spacing, p.n_intervals, p.kappa,
                                       energy=want_energy or want_bead)
            d1, d2, r1, r2, cos_theta = self._triplet_vectors(d, r, sub)
            f1, df1, f2, df2 = self.threebody.legs(r1, r2)
            g, g_c = self.threebody.angular(cos_theta)
            f12 = f1 * f2
            e3 = f12 * g
            if want_energy:
                energy = local.new_zeros(stop - start).index_add(0, sub.pair_frame, phi)
                parts["energy"].append(energy.index_add(0, sub.trip_frame, e3))
            if want_bead:
                half = 0.5 * phi
                bead = local.new_zeros(n_local).index_add(0, sub.pair_i, half).index_add(0, sub.pair_j, half)
                parts["bead"].append(bead.index_add(0, sub.trip_center, e3))
            if want_forces:
                vec = (dphi / r).unsqueeze(-1) * d  # force on i; -vec on j
                forces = local.new_zeros(n_local, 3).index_add(0, sub.pair_i, vec).index_add(0, sub.pair_j, -vec)
                grad1, grad2 = ThreeBody.leg_gradients(d1, d2, r1, r2, cos_theta, df1 * f2 * g,
                                                       f1 * df2 * g, f12 * g_c)
                forces = (forces.index_add(0, sub.trip_j, -grad1).index_add(0, sub.trip_k, -grad2)
                          .index_add(0, sub.trip_center, grad1 + grad2))
                parts["forces"].append(forces)
        out = {key: torch.cat(values) for key, values in parts.items() if values}
        return out, lead, n_beads

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
        out, lead, _ = self._evaluate(positions, box, neighbors, True, False, False)
        return out["energy"].reshape(lead)

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
            ``(..., n_beads)``, kcal/mol.
        """
        out, lead, n_beads = self._evaluate(positions, box, neighbors, False, True, False)
        return out["bead"].reshape(*lead, n_beads)

    def forces(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
               create_graph: bool = False, neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Forces :math:`F = -\partial U_\theta/\partial x`, kcal/(mol Å), assembled analytically.

        Parameters
        ----------
        positions, box, neighbors
            As for :meth:`energy`.
        create_graph
            ``False``: evaluated without autograd (fast, detached). ``True``: the result is a
            differentiable function of the parameters (first-order graph), e.g. for
            ``torch.autograd.grad((R * F).sum(), model.parameters())``.

        Returns
        -------
        torch.Tensor
            ``(..., n_beads, 3)``.
        """
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            out, lead, n_beads = self._evaluate(positions, box, neighbors, False, False, True)
        return out["forces"].reshape(*lead, n_beads, 3)

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
        with torch.no_grad():
            x, box_t, lead = _as_batch(positions, box)
            geo = self._resolve(x, box_t, neighbors)
            n_beads = x.shape[1]
            flat = x.reshape(-1, 3)
            out = torch.cat([self._pair_basis_forces(flat[a * n_beads:b * n_beads], sub)
                             for a, b, sub in self._chunks(geo)])
            return out.reshape(*lead, n_beads, 3, self.pair.n_coefficients)

    def _pair_basis_forces(self, flat: torch.Tensor, geo: Geometry) -> torch.Tensor:
        """``(n_flat, 3, n_coefficients)`` pair-basis forces for a geometry."""
        d, r = self._pair_vectors(flat, geo)
        p = self.pair
        index, _, dbeta, _ = p.local(r, p.r_min, p.spacing, p.n_intervals)
        k = p.n_coefficients + 3
        vec = (dbeta / r.unsqueeze(-1)).unsqueeze(-1) * d.unsqueeze(1)  # (M, 4, 3)
        out = flat.new_zeros(flat.shape[0] * k, 3)
        out.index_add_(0, (geo.pair_i.unsqueeze(-1) * k + index).reshape(-1), vec.reshape(-1, 3))
        out.index_add_(0, (geo.pair_j.unsqueeze(-1) * k + index).reshape(-1), -vec.reshape(-1, 3))
        return out.reshape(flat.shape[0], k, 3)[:, :p.n_coefficients].permute(0, 2, 1)

    def parameter_forces(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                         neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Full Jacobian :math:`\partial F/\partial\theta` (pair basis + three-body parameters).

        Exact for every parameter: the three-body force depends on θ only through
        :math:`g`, so :math:`\partial F/\partial\theta_p` is the force of the triplet energy with
        :math:`g` replaced by :math:`\partial g/\partial\theta_p`. Prefer
        :meth:`force_parameter_vjp` when only :math:`w \cdot \partial F/\partial\theta` is needed.

        Returns
        -------
        torch.Tensor
            ``(..., n_beads, 3, n_parameters)``, detached, columns in :meth:`parameter_names` order.
        """
        with torch.no_grad():
            x, box_t, lead = _as_batch(positions, box)
            n_beads = x.shape[1]
            geo = self._resolve(x, box_t, neighbors)
            flat = x.reshape(-1, 3)
            parts = []
            for start, stop, sub in self._chunks(geo):
                local = flat[start * n_beads:stop * n_beads]
                parts.append(torch.cat([self._pair_basis_forces(local, sub),
                                        self._threebody_parameter_forces(local, sub)], dim=-1))
            return torch.cat(parts).reshape(*lead, n_beads, 3, self.n_parameters)

    def _threebody_terms(self, flat: torch.Tensor, geo: Geometry
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-triplet parameter indices, ∂E/∂θ_p, and ∂(∂E/∂d1)/∂θ_p, ∂(∂E/∂d2)/∂θ_p."""
        d, r = self._pair_vectors(flat, geo)
        d1, d2, r1, r2, cos_theta = self._triplet_vectors(d, r, geo)
        f1, df1, f2, df2 = self.threebody.legs(r1, r2)
        index, dg, dgc = self.threebody.angular_parameter_terms(cos_theta)
        f12 = (f1 * f2).unsqueeze(-1)
        grad1, grad2 = ThreeBody.leg_gradients(
            d1, d2, r1, r2, cos_theta, (df1 * f2).unsqueeze(-1) * dg,
            (f1 * df2).unsqueeze(-1) * dg, f12 * dgc)  # (T, L, 3)
        return index, f12 * dg, grad1, grad2

    def _threebody_parameter_forces(self, flat: torch.Tensor, geo: Geometry) -> torch.Tensor:
        """``(n_flat, 3, n_threebody_parameters)`` three-body force Jacobian for a geometry."""
        index, _, grad1, grad2 = self._threebody_terms(flat, geo)
        n3 = self.threebody.n_parameters
        n_flat = flat.shape[0]
        three = flat.new_zeros(n_flat * n3, 3)
        three.index_add_(0, (geo.trip_j.unsqueeze(-1) * n3 + index).reshape(-1), -grad1.reshape(-1, 3))
        three.index_add_(0, (geo.trip_k.unsqueeze(-1) * n3 + index).reshape(-1), -grad2.reshape(-1, 3))
        three.index_add_(0, (geo.trip_center.unsqueeze(-1) * n3 + index).reshape(-1),
                         (grad1 + grad2).reshape(-1, 3))
        return three.reshape(n_flat, n3, 3).permute(0, 2, 1)

    def force_parameter_vjp(self, positions: torch.Tensor, box: torch.Tensor | np.ndarray | list[float],
                            weights: torch.Tensor, per_bead: bool = False,
                            neighbors: NeighborList | Geometry | None = None) -> torch.Tensor:
        r"""Weighted parameter derivative of the forces, without forming the full Jacobian.

        .. math::

            v_{p} = \sum_{i} w_i \cdot \frac{\partial F_i}{\partial\theta_p}
            \quad(\text{per frame; per bead } i \text{ if } \texttt{per\_bead})

        With ``weights`` the reconstructed noise :math:`R_n/\mathrm{Var}(R)` this is the path
        score of one step; ``per_bead`` keeps bead ``i``'s term apart (for localised scores).

        Parameters
        ----------
        positions, box, neighbors
            As for :meth:`energy`.
        weights
            ``(..., n_beads, 3)``, same leading shape as ``positions``.
        per_bead
            Return ``(..., n_beads, n_parameters)`` instead of ``(..., n_parameters)``.

        Returns
        -------
        torch.Tensor
            Detached, columns in :meth:`parameter_names` order.
        """
        with torch.no_grad():
            x, box_t, lead = _as_batch(positions, box)
            w = torch.as_tensor(weights, dtype=torch.float64, device=x.device)
            if w.shape != positions.shape:
                raise ValueError(f"weights must have the shape of positions {tuple(positions.shape)}, "
                                 f"got {tuple(w.shape)}")
            n_beads = x.shape[1]
            geo = self._resolve(x, box_t, neighbors)
            flat = x.reshape(-1, 3)
            w_flat = w.reshape(-1, 3)
            parts = []
            for start, stop, sub in self._chunks(geo):
                rows = slice(start * n_beads, stop * n_beads)
                parts.append(self._vjp(flat[rows], w_flat[rows], sub, per_bead))
            out = torch.cat(parts)
            shape = (*lead, n_beads, self.n_parameters) if per_bead else (*lead, self.n_parameters)
            return out.reshape(shape)

    def _vjp(self, flat: torch.Tensor, w_flat: torch.Tensor, geo: Geometry, per_bead: bool) -> torch.Tensor:
        """:meth:`force_parameter_vjp` for one geometry: ``(rows, n_parameters)``."""
        p = self.pair
        k = p.n_coefficients + 3
        n3 = self.threebody.n_parameters
        rows = flat.shape[0] if per_bead else geo.n_frames
        pair_out = flat.new_zeros(rows * k)
        three_out = flat.new_zeros(rows * n3)
        d, r = self._pair_vectors(flat, geo)
        index, _, dbeta, _ = p.local(r, p.r_min, p.spacing, p.n_intervals)
        scale = dbeta / r.unsqueeze(-1)  # (M, 4)
        wi = (w_flat[geo.pair_i] * d).sum(-1, keepdim=True)
        wj = (w_flat[geo.pair_j] * d).sum(-1, keepdim=True)
        if per_bead:
            pair_out.index_add_(0, (geo.pair_i.unsqueeze(-1) * k + index).reshape(-1), (scale * wi).reshape(-1))
            pair_out.index_add_(0, (geo.pair_j.unsqueeze(-1) * k + index).reshape(-1), (-scale * wj).reshape(-1))
        else:
            pair_out.index_add_(0, (geo.pair_frame.unsqueeze(-1) * k + index).reshape(-1),
                                (scale * (wi - wj)).reshape(-1))
        index3, _, grad1, grad2 = self._threebody_terms(flat, geo)
        on_j = -(grad1 * w_flat[geo.trip_j].unsqueeze(1)).sum(-1)
        on_k = -(grad2 * w_flat[geo.trip_k].unsqueeze(1)).sum(-1)
        on_c = ((grad1 + grad2) * w_flat[geo.trip_center].unsqueeze(1)).sum(-1)
        if per_bead:
            for bead, value in ((geo.trip_j, on_j), (geo.trip_k, on_k), (geo.trip_center, on_c)):
                three_out.index_add_(0, (bead.unsqueeze(-1) * n3 + index3).reshape(-1), value.reshape(-1))
        else:
            three_out.index_add_(0, (geo.trip_frame.unsqueeze(-1) * n3 + index3).reshape(-1),
                                 (on_j + on_k + on_c).reshape(-1))
        return torch.cat([pair_out.reshape(rows, k)[:, :p.n_coefficients], three_out.reshape(rows, n3)], -1)

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
            geo = self._resolve(x, box_t, neighbors)
            n_frames = x.shape[0]
            flat = x.reshape(-1, 3)
            d, r = self._pair_vectors(flat, geo)
            p = self.pair
            index, beta, _, _ = p.local(r, p.r_min, p.spacing, p.n_intervals)
            k = p.n_coefficients + 3
            pair_part = flat.new_zeros(n_frames * k).index_add_(
                0, (geo.pair_frame.unsqueeze(-1) * k + index).reshape(-1), beta.reshape(-1))
            pair_part = pair_part.reshape(n_frames, k)[:, :p.n_coefficients]
            index3, de, _, _ = self._threebody_terms(flat, geo)
            n3 = self.threebody.n_parameters
            three = flat.new_zeros(n_frames * n3).index_add_(
                0, (geo.trip_frame.unsqueeze(-1) * n3 + index3).reshape(-1), de.reshape(-1))
            return torch.cat([pair_part, three.reshape(n_frames, n3)], -1).reshape(*lead, self.n_parameters)

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
    def from_dict(cls, data: dict, source: str = "<dict>") -> "CGPotential":
        """Build from :meth:`to_dict` output, validating every key (errors name ``source``)."""
        return _parse(data, source)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "CGPotential":
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
        text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PotentialFileError(f"{path}: not valid JSON ({exc})") from exc
        return _parse(data, str(path))


# -- validation of parameter files -------------------------------------------------------------------
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
    fmt = data.get("format")
    if fmt != FORMAT:
        raise PotentialFileError(f"{source}: key 'format' must be {FORMAT!r}, got {fmt!r}")
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise PotentialFileError(f"{source}: key 'version' must be {FORMAT_VERSION}, got {version!r}")
    units = _get(data, "units", source)
    if not isinstance(units, dict) or units.get("lammps") != "real":
        raise PotentialFileError(f"{source}: key 'units.lammps' must be 'real', got "
                                 f"{units.get('lammps') if isinstance(units, dict) else units!r}")
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
