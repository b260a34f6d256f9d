r"""Neighbour lists for periodic orthogonal boxes (minimum image), reusable across frames.

A Verlet list holds every pair :math:`i < j` with minimum-image distance
:math:`|r_{ij}| < r_c + s` in a reference frame (``s``: the skin). It stays valid for any later
frame in which no bead has moved more than :math:`s/2` (minimum-image displacement) from the
reference, so one list serves a whole MD window: :func:`build_neighbor_list` starts a new
reference frame only where that bound is broken.

Pair search:

* ``kdtree``: :class:`scipy.spatial.cKDTree` with ``boxsize`` (a periodic k-d tree; ``O(n log n)``),
  for CPU tensors;
* ``brute``: all pairs in row chunks of ``chunk`` beads (``O(n²)`` work, ``O(chunk · n)``
  memory), for any device; at 4,096 beads the cutoff sphere (11 Å) covers 40 % of a 49.7 Å box,
  so a cell list would save little over it.

:class:`Geometry` then keeps, for a batch of frames, the pairs inside :math:`r_c` and the triplets
:math:`(j, i, k)`, :math:`j < k`, whose legs are both shorter than the three-body cutoff, as index
arrays into the flattened positions ``(n_frames * n_beads, 3)`` plus constant image shifts, so that
distances can be recomputed differentiably from the positions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

# pairs handled per vectorised pass over frames
_CHUNK_PAIRS = 40000

__all__ = ["NeighborList", "Geometry", "build_pairs", "build_neighbor_list", "build_geometry",
           "minimum_image"]


def minimum_image(delta: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Minimum-image vectors :math:`d - L\,\mathrm{round}(d/L)` and the (constant) shifts removed.

    Parameters
    ----------
    delta
        Difference vectors ``(..., 3)``, Å.
    box
        Orthogonal edges ``(3,)``, Å.

    Returns
    -------
    wrapped, shift
        Both ``(..., 3)``; ``wrapped = delta - shift``.
    """
    shift = box * torch.round(delta.detach() / box)
    return delta - shift, shift


def _pairs_kdtree(x: np.ndarray, box: np.ndarray, cutoff: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    wrapped = np.mod(x, box)
    wrapped[wrapped >= box] = 0.0  # np.mod can round up to the edge
    tree = cKDTree(wrapped, boxsize=box)
    pairs = tree.query_pairs(cutoff, output_type="ndarray")
    return pairs.astype(np.int64).reshape(-1, 2)


def _pairs_brute(x: torch.Tensor, box: torch.Tensor, cutoff: float, chunk: int) -> torch.Tensor:
    n = x.shape[0]
    out = []
    cut2 = cutoff * cutoff
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        delta = x[None, :, :] - x[start:stop, None, :]
        delta = delta - box * torch.round(delta / box)
        r2 = (delta * delta).sum(-1)
        rows = torch.arange(start, stop, device=x.device).unsqueeze(1)
        cols = torch.arange(n, device=x.device).unsqueeze(0)
        hit = (r2 < cut2) & (cols > rows)
        ii, jj = torch.nonzero(hit, as_tuple=True)
        out.append(torch.stack([ii + start, jj], dim=1))
    return torch.cat(out) if out else torch.zeros(0, 2, dtype=torch.int64, device=x.device)


def build_pairs(positions: torch.Tensor, box: torch.Tensor, cutoff: float,
                method: str = "auto", chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    r"""All pairs :math:`i < j` with minimum-image distance :math:`|x_j - x_i| < r` (one frame).

    Parameters
    ----------
    positions
        ``(n_beads, 3)``, Å (wrapped or not).
    box
        ``(3,)`` orthogonal edges, Å.
    cutoff
        ``r``, Å.
    method
        ``kdtree``, ``brute`` or ``auto`` (k-d tree on CPU, brute force elsewhere).
    chunk
        Rows per block of the brute-force search.

    Returns
    -------
    i, j
        ``(n_pairs,)`` int64 each, ``i < j`` (order depends on the method, deterministic).
    """
    if method not in ("auto", "kdtree", "brute"):
        raise ValueError(f"neighbour search method must be auto, kdtree or brute, got {method!r}")
    x = positions.detach()
    box = box.to(x)
    if method == "auto":
        method = "kdtree" if x.device.type == "cpu" else "brute"
    if method == "kdtree":
        pairs = torch.from_numpy(_pairs_kdtree(x.cpu().numpy(), box.cpu().numpy(), cutoff)).to(x.device)
    else:
        pairs = _pairs_brute(x, box, cutoff, chunk)
    return pairs[:, 0].contiguous(), pairs[:, 1].contiguous()


@dataclass(frozen=True)
class NeighborList:
    """Verlet pair lists for a batch of frames.

    Attributes
    ----------
    cutoff
        List cutoff ``r_c + skin``, Å.
    skin
        Å; a list is valid while no bead moved more than ``skin / 2``.
    box
        ``(3,)`` edges, Å.
    n_frames, n_beads
        Batch shape it was built for.
    groups
        ``(start, stop, i, j)``: frames ``start:stop`` use pairs ``(i, j)``.
    """

    cutoff: float
    skin: float
    box: torch.Tensor
    n_frames: int
    n_beads: int
    groups: tuple[tuple[int, int, torch.Tensor, torch.Tensor], ...]


def _max_displacement(frames: torch.Tensor, reference: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    delta, _ = minimum_image(frames - reference, box)
    return (delta * delta).sum(-1).amax(-1).sqrt()


def build_neighbor_list(positions: torch.Tensor, box: torch.Tensor, cutoff: float, skin: float,
                        method: str = "auto") -> NeighborList:
    r"""Verlet lists for frames ``(n_frames, n_beads, 3)``, rebuilt only where needed.

    A new reference frame starts at the first frame whose maximum minimum-image displacement
    from the current reference reaches ``skin / 2``.

    Parameters
    ----------
    positions
        ``(n_frames, n_beads, 3)``, Å.
    box
        ``(3,)``, Å.
    cutoff
        Interaction cutoff ``r_c``, Å (the list uses ``r_c + skin``).
    skin
        Å, ``>= 0``.
    method
        Pair search method, see :func:`build_pairs`.

    Returns
    -------
    NeighborList
    """
    if skin < 0:
        raise ValueError(f"neighbour skin must be >= 0, got {skin}")
    x = positions.detach()
    n_frames, n_beads = x.shape[0], x.shape[1]
    box = box.to(x)
    groups = []
    start = 0
    while start < n_frames:
        reference = x[start]
        i, j = build_pairs(reference, box, cutoff + skin, method)
        stop = n_frames
        if start + 1 < n_frames:
            moved = _max_displacement(x[start + 1:], reference, box)
            bad = torch.nonzero(2.0 * moved >= skin)
            if bad.numel():
                stop = start + 1 + int(bad[0, 0])
        groups.append((start, stop, i, j))
        start = stop
    logger.debug("neighbour list: %d frame group(s), %d pairs in the first", len(groups),
                 groups[0][2].numel() if groups else 0)
    return NeighborList(cutoff + skin, skin, box, n_frames, n_beads, tuple(groups))


def check_neighbor_list(neighbors: NeighborList, positions: torch.Tensor, box: torch.Tensor,
                        cutoff: float) -> None:
    """Raise :class:`ValueError` unless ``neighbors`` fits ``positions`` and ``box``."""
    if neighbors.n_frames != positions.shape[0] or neighbors.n_beads != positions.shape[1]:
        raise ValueError(f"neighbour list built for {neighbors.n_frames} frames x "
                         f"{neighbors.n_beads} beads, got positions of shape {tuple(positions.shape)}")
    if neighbors.cutoff - neighbors.skin < cutoff - 1e-12:
        raise ValueError(f"neighbour list cutoff {neighbors.cutoff - neighbors.skin} Å is shorter "
                         f"than the interaction cutoff {cutoff} Å")
    if not torch.allclose(neighbors.box.to(box), box):
        raise ValueError(f"neighbour list built for box {neighbors.box.tolist()}, got {box.tolist()}")


@dataclass(frozen=True)
class Geometry:
    """Pairs within ``r_c`` and three-body triplets of a batch, as flat index arrays.

    Bead ``b`` of frame ``f`` is row ``f * n_beads + b`` of the flattened positions. The pair
    vector is ``x[pair_j] - x[pair_i] - pair_shift``; the triplet legs are
    ``trip_s1 * d[trip_p1]`` (centre to ``trip_j``) and ``trip_s2 * d[trip_p2]`` (to ``trip_k``).
    """

    n_frames: int
    n_beads: int
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    pair_shift: torch.Tensor
    pair_frame: torch.Tensor
    trip_center: torch.Tensor
    trip_j: torch.Tensor
    trip_k: torch.Tensor
    trip_p1: torch.Tensor
    trip_p2: torch.Tensor
    trip_s1: torch.Tensor
    trip_s2: torch.Tensor
    trip_frame: torch.Tensor

    def frames(self, start: int, stop: int) -> "Geometry":
        """The sub-geometry of frames ``start:stop``, with indices relative to frame ``start``."""
        if start == 0 and stop == self.n_frames:
            return self
        bounds = torch.tensor([start, stop], device=self.pair_frame.device)
        p0, p1 = torch.searchsorted(self.pair_frame, bounds).tolist()
        t0, t1 = torch.searchsorted(self.trip_frame, bounds).tolist()
        offset = start * self.n_beads
        return Geometry(stop - start, self.n_beads,
                        self.pair_i[p0:p1] - offset, self.pair_j[p0:p1] - offset,
                        self.pair_shift[p0:p1], self.pair_frame[p0:p1] - start,
                        self.trip_center[t0:t1] - offset, self.trip_j[t0:t1] - offset,
                        self.trip_k[t0:t1] - offset, self.trip_p1[t0:t1] - p0,
                        self.trip_p2[t0:t1] - p0, self.trip_s1[t0:t1], self.trip_s2[t0:t1],
                        self.trip_frame[t0:t1] - start)


def _enumerate_triplets(pi: torch.Tensor, pj: torch.Tensor, short: torch.Tensor
                        ) -> tuple[torch.Tensor, ...]:
    """Centre, j, k, pair indices and signs of all triplets from the short pairs ``short``."""
    device = pi.device
    centers = torch.cat([pi[short], pj[short]])
    others = torch.cat([pj[short], pi[short]])
    pidx = torch.cat([short, short])
    sign = torch.cat([torch.ones_like(short), -torch.ones_like(short)])
    order = torch.argsort(centers, stable=True)
    centers, others, pidx, sign = centers[order], others[order], pidx[order], sign[order]
    _, counts = torch.unique_consecutive(centers, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    n_directed = centers.numel()
    local = torch.arange(n_directed, device=device) - torch.repeat_interleave(starts, counts)
    n_after = torch.repeat_interleave(counts, counts) - 1 - local
    first = torch.repeat_interleave(torch.arange(n_directed, device=device), n_after)
    offsets = torch.arange(first.numel(), device=device) - torch.repeat_interleave(
        torch.cumsum(n_after, 0) - n_after, n_after)
    second = first + 1 + offsets
    return (centers[first], others[first], others[second], pidx[first], pidx[second],
            sign[first], sign[second])


def build_geometry(positions: torch.Tensor, box: torch.Tensor, neighbors: NeighborList,
                   r_cut: float, r_three: float | None) -> Geometry:
    r"""Select pairs with :math:`r < r_c` and triplets with both legs :math:`< r_3` in every frame.

    Parameters
    ----------
    positions
        ``(n_frames, n_beads, 3)``, Å.
    box
        ``(3,)``, Å.
    neighbors
        Verlet lists for these frames.
    r_cut
        Pair cutoff, Å.
    r_three
        Three-body cutoff :math:`a\sigma`, Å (``None``: no triplets).

    Returns
    -------
    Geometry
    """
    with torch.no_grad():
        x = positions.detach()
        box = box.to(x)
        n_frames, n_beads = x.shape[0], x.shape[1]
        flat_i, flat_j, shifts, frames = [], [], [], []
        for first, last, i, j in neighbors.groups:
            step = max(1, _CHUNK_PAIRS // max(1, i.numel()))  # frames per pass (cache-sized)
            for start in range(first, last, step):
                stop = min(start + step, last)
                delta, shift = minimum_image(x[start:stop, j] - x[start:stop, i], box)
                r2 = (delta * delta).sum(-1)
                f, p = torch.nonzero(r2 < r_cut * r_cut, as_tuple=True)
                frame = f + start
                flat_i.append(frame * n_beads + i[p])
                flat_j.append(frame * n_beads + j[p])
                shifts.append(shift[f, p])
                frames.append(frame)
        pair_i, pair_j = torch.cat(flat_i), torch.cat(flat_j)
        pair_shift, pair_frame = torch.cat(shifts), torch.cat(frames)
        if r_three is not None and pair_i.numel():
            flat = x.reshape(-1, 3)
            d = flat[pair_j] - flat[pair_i] - pair_shift
            short = torch.nonzero((d * d).sum(-1) < r_three * r_three, as_tuple=True)[0]
            center, tj, tk, p1, p2, s1, s2 = _enumerate_triplets(pair_i, pair_j, short)
        else:
            empty = torch.zeros(0, dtype=torch.int64, device=x.device)
            center = tj = tk = p1 = p2 = s1 = s2 = empty
        dtype = x.dtype
        return Geometry(n_frames, n_beads, pair_i, pair_j, pair_shift, pair_frame,
                        center, tj, tk, p1, p2, s1.to(dtype), s2.to(dtype),
                        torch.div(center, n_beads, rounding_mode="floor"))
