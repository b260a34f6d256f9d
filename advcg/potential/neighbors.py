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

:class:`Geometry` then splits a batch of frames into :class:`PairGroup` s: runs of consecutive
frames (one Verlet list) that share one pair list, the pairs closer than :math:`r_c` in at least one
of the group's frames, and one triplet list :math:`(j, i, k)` built from the pairs closer than the
three-body cutoff in at least one frame. Every frame of a group is evaluated with the same index
arrays, so gathers and scatters move whole rows of frames; pairs and triplets that are out of
range in a frame contribute exactly zero there (the pair spline and the three-body screening
vanish at their cutoffs). Distances are recomputed from the positions at every evaluation: on
CPU that is cheaper than reading them from a cache, whose fresh memory costs more in page faults
than the arithmetic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from advcg.potential.scratch import Scratch, shared_scratch

logger = logging.getLogger(__name__)

#: item-frame elements per vectorised pass: the temporaries (0.25 MiB each) stay in the L2 cache
BLOCK_ELEMENTS = 32768
#: frames of one pair group at most (longer Verlet-list groups are split)
MAX_GROUP_FRAMES = 64

__all__ = ["NeighborList", "PairGroup", "Geometry", "build_pairs", "build_neighbor_list",
           "build_geometry", "iter_pair_groups", "pair_vectors", "frames_of", "minimum_image", "BLOCK_ELEMENTS"]


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

    def spans(self, max_frames: int) -> list[tuple[int, int]]:
        """Consecutive frame ranges ``(start, stop)`` covering all frames, each inside one list
        group and at most ``max_frames`` long: batches that evaluate with one pair list each."""
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        return [(lo, min(lo + max_frames, stop)) for start, stop, _, _ in self.groups
                for lo in range(start, stop, max_frames)]

    def frames(self, start: int, stop: int) -> NeighborList:
        """The lists of frames ``start:stop`` (frame indices relative to ``start``)."""
        if not 0 <= start < stop <= self.n_frames:
            raise ValueError(f"frames {start}:{stop} outside the {self.n_frames} frames of the list")
        groups = tuple((max(a, start) - start, min(b, stop) - start, i, j)
                       for a, b, i, j in self.groups if a < stop and b > start)
        return NeighborList(self.cutoff, self.skin, self.box, stop - start, self.n_beads, groups)


def _max_displacement(frames: torch.Tensor, reference: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Largest minimum-image displacement of any bead from ``reference`` ``(3, n_beads)``, per
    frame of ``frames`` ``(n_frames, 3, n_beads)`` (component-major: no size-3 inner loops)."""
    box3 = box.view(1, 3, 1)
    delta = frames - reference
    delta.sub_(torch.round(delta / box3).mul_(box3))
    d2 = delta[:, 0] * delta[:, 0]
    d2.addcmul_(delta[:, 1], delta[:, 1]).addcmul_(delta[:, 2], delta[:, 2])
    return d2.amax(-1).sqrt_()


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
    columns = x.transpose(1, 2).contiguous()  # (n_frames, 3, n_beads)
    groups = []
    start = 0
    while start < n_frames:
        reference = x[start]
        i, j = build_pairs(reference, box, cutoff + skin, method)
        stop = n_frames
        if start + 1 < n_frames:
            moved = _max_displacement(columns[start + 1:], columns[start], box)
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
class PairGroup:
    r"""Consecutive frames ``start:stop`` that share one pair list and one triplet list.

    Pair ``p`` joins beads ``i[p] < j[p]``; its vector in a frame is ``x_j - x_i - shift[:, p]`` when
    ``shift`` is given (a constant image shift: exact for every pair in range when every box edge
    is at least twice the Verlet cutoff), the per-frame minimum image of ``x_j - x_i`` otherwise.
    The pairs are those closer than :math:`r_c` in at least one of the group's frames.

    Triplets use *directed legs* of the ``short`` pairs (closer than the three-body cutoff in at
    least one frame): leg ``l < n_short`` runs from ``i`` to ``j`` of pair ``short[l]``, leg
    ``n_short + l`` from ``j`` to ``i``. Triplet ``q`` has centre ``trip_center[q]`` and legs
    ``trip_leg1[q]`` (to bead ``trip_j[q]``) and ``trip_leg2[q]`` (to ``trip_k[q]``).

    Attributes
    ----------
    start, stop : int
        Frames of the batch covered.
    i, j : (n_pairs,) int64
    shift : (3, n_pairs, 1) float64 or None
        Å.
    short : (n_short,) int64
        Indices into the pairs.
    trip_center, trip_j, trip_k, trip_leg1, trip_leg2 : (n_triplets,) int64
    """

    start: int
    stop: int
    i: torch.Tensor
    j: torch.Tensor
    shift: torch.Tensor | None
    short: torch.Tensor
    trip_center: torch.Tensor
    trip_j: torch.Tensor
    trip_k: torch.Tensor
    trip_leg1: torch.Tensor
    trip_leg2: torch.Tensor

    @property
    def n_frames(self) -> int:
        return self.stop - self.start

    @property
    def n_pairs(self) -> int:
        return int(self.i.numel())

    @property
    def n_short(self) -> int:
        return int(self.short.numel())

    @property
    def n_triplets(self) -> int:
        return int(self.trip_center.numel())

    def blocks(self, n_items: int) -> list[slice]:
        """Slices of ``n_items`` pairs (or triplets) of about :data:`BLOCK_ELEMENTS` item-frames each."""
        step = max(1, BLOCK_ELEMENTS // self.n_frames)
        return [slice(lo, min(lo + step, n_items)) for lo in range(0, n_items, step)]

    def frames_of(self, positions: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        """The group's frames of ``positions``, see :func:`frames_of`."""
        return frames_of(positions, self.start, self.stop, scratch)


def frames_of(positions: torch.Tensor, start: int, stop: int, scratch: Scratch) -> torch.Tensor:
    """Frames ``start:stop`` of ``positions`` ``(n_frames, n_beads, 3)`` as a component-major
    scratch buffer ``(3, n_beads, stop - start)``."""
    xs = scratch.get("group.positions", (3, positions.shape[1], stop - start))
    return xs.copy_(positions[start:stop].permute(2, 1, 0))


def pair_vectors(xs: torch.Tensor, box: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                 shift: torch.Tensor | None, scratch: Scratch, prefix: str = "pair"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair vectors ``(3, B, n)`` and squared distances ``(B, n)`` of pairs ``(i, j)`` in the frames
    ``xs`` ``(3, n_beads, n)`` (constant ``shift`` ``(3, B, 1)`` or per-frame minimum image);
    both are buffers of ``scratch`` named after ``prefix``."""
    b, n = i.numel(), xs.shape[2]
    d = scratch.get(f"{prefix}.d", (3, b, n))
    t = scratch.get(f"{prefix}.t", (3, b, n))
    torch.index_select(xs, 1, j, out=d)
    torch.index_select(xs, 1, i, out=t)
    d.sub_(t)
    if shift is not None:
        d.sub_(shift)
    else:  # per-frame minimum image, exactly as minimum_image()
        box3 = box.view(3, 1, 1)
        torch.div(d, box3, out=t)
        d.sub_(t.round_().mul_(box3))
    r2 = scratch.get(f"{prefix}.r2", (b, n))
    torch.mul(d[0], d[0], out=r2)
    r2.addcmul_(d[1], d[1]).addcmul_(d[2], d[2])
    return d, r2


@dataclass(frozen=True)
class Geometry:
    """The pair groups of a batch of frames: index lists valid for any positions within the skin
    of the ones they were built from (no distances are cached).

    Attributes
    ----------
    n_frames, n_beads : int
    box : (3,) float64, Å
    groups : tuple of PairGroup
        Consecutive, covering frames ``0:n_frames``.
    """

    n_frames: int
    n_beads: int
    box: torch.Tensor
    groups: tuple[PairGroup, ...]

    def check(self, positions: torch.Tensor, box: torch.Tensor) -> None:
        """Raise :class:`ValueError` unless ``positions`` ``(n_frames, n_beads, 3)`` and ``box`` fit."""
        if tuple(positions.shape) != (self.n_frames, self.n_beads, 3):
            raise ValueError(f"geometry built for {self.n_frames} frames x {self.n_beads} beads, "
                             f"got positions of shape {tuple(positions.shape)}")
        if not torch.allclose(self.box.to(box), box):
            raise ValueError(f"geometry built for box {self.box.tolist()}, got {box.tolist()}")

    def pair_distances(self, positions: torch.Tensor) -> torch.Tensor:
        """Distances of all listed pairs in all frames of ``positions`` (out-of-range ones too), Å."""
        scratch = Scratch(positions.device)
        out = []
        for group in self.groups:
            xs = group.frames_of(positions.detach(), scratch)
            _, r2 = pair_vectors(xs, self.box.to(xs), group.i, group.j, group.shift, scratch)
            out.append(r2.sqrt().reshape(-1))
        return torch.cat(out)


def _enumerate_triplets(i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centre, both outer beads and both directed legs of every triplet of the pairs ``(i, j)``."""
    device = i.device
    n = i.numel()
    centers = torch.cat([i, j])
    others = torch.cat([j, i])
    order = torch.argsort(centers, stable=True)
    centers, others = centers[order], others[order]
    legs = order  # directed leg l: pair l from i to j (l < n), pair l - n from j to i
    _, counts = torch.unique_consecutive(centers, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    n_directed = 2 * n
    local = torch.arange(n_directed, device=device) - torch.repeat_interleave(starts, counts)
    n_after = torch.repeat_interleave(counts, counts) - 1 - local
    first = torch.repeat_interleave(torch.arange(n_directed, device=device), n_after)
    offsets = torch.arange(first.numel(), device=device) - torch.repeat_interleave(
        torch.cumsum(n_after, 0) - n_after, n_after)
    second = first + 1 + offsets
    return centers[first], others[first], others[second], legs[first], legs[second]


def _closest_approach(xs: torch.Tensor, box: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                      shift: torch.Tensor | None, scratch: Scratch) -> torch.Tensor:
    """Smallest squared distance of each pair ``(i, j)`` over the frames ``xs``."""
    out = torch.empty(i.numel(), dtype=xs.dtype, device=xs.device)
    step = max(1, BLOCK_ELEMENTS // xs.shape[2])
    for lo in range(0, i.numel(), step):
        block = slice(lo, min(lo + step, i.numel()))
        _, r2 = pair_vectors(xs, box, i[block], j[block], None if shift is None else shift[:, block],
                             scratch, "geo")
        torch.amin(r2, 1, out=out[block])
    return out


def _reference_pairs(reference: torch.Tensor, box: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                     scratch: Scratch) -> tuple[torch.Tensor, torch.Tensor]:
    """Image shifts ``(3, n_pairs)`` and minimum-image distances of pairs ``(i, j)`` in the frame
    ``reference`` ``(3, n_beads)`` (buffers of ``scratch``)."""
    box2 = box.view(3, 1)
    n_pairs = i.numel()
    delta = torch.index_select(reference, 1, j, out=scratch.get("ref.delta", (3, n_pairs)))
    shift = torch.index_select(reference, 1, i, out=scratch.get("ref.shift", (3, n_pairs)))
    delta.sub_(shift)
    torch.div(delta, box2, out=shift).round_().mul_(box2)
    delta.sub_(shift)
    distance = torch.mul(delta[0], delta[0], out=scratch.get("ref.distance", (n_pairs,)))
    return shift, distance.addcmul_(delta[1], delta[1]).addcmul_(delta[2], delta[2]).sqrt_()


def iter_pair_groups(positions: torch.Tensor, box: torch.Tensor, neighbors: NeighborList,
                     r_cut: float, r_three: float | None) -> Iterator[PairGroup]:
    r"""The :class:`PairGroup` s of frames ``(n_frames, n_beads, 3)``, one after the other.

    Each Verlet-list group is split into runs of at most :data:`MAX_GROUP_FRAMES` frames. With
    :math:`D_b` the largest (minimum-image) displacement of bead ``b`` from the list's reference
    frame within a run, the distance of pair ``(i, j)`` in any frame of the run is at least
    :math:`r^\mathrm{ref}_{ij} - D_i - D_j`; a run keeps the pairs for which that bound is below
    :math:`r_c`, and the triplets built from the pairs that are closer than ``r_three`` in at
    least one of its frames (checked exactly).

    Pair vectors use the reference frame's image shift when that is exact: every box edge at
    least twice the list cutoff (no second image within :math:`r_c`) and no bead jumping by half
    an edge or more (unwrapped frames); otherwise the per-frame minimum image. Both give the same
    vectors for every pair in range.
    """
    x = positions.detach()
    box = box.to(x)
    box3 = box.view(3, 1, 1)
    large_box = bool(box.min() >= 2.0 * neighbors.cutoff)
    scratch = shared_scratch(x.device)
    for first, last, i, j in neighbors.groups:
        reference = x[first].t().unsqueeze(-1)                               # (3, n_beads, 1)
        ref_shift, ref_distance = _reference_pairs(reference[..., 0], box, i, j, scratch)
        for start in range(first, last, MAX_GROUP_FRAMES):
            stop = min(start + MAX_GROUP_FRAMES, last)
            xs = frames_of(x, start, stop, scratch)                          # (3, n_beads, n)
            moved = xs - reference
            unwrapped = bool(moved.abs().amax() < 0.5 * box.min())
            if not unwrapped:
                moved.sub_(torch.round(moved / box3).mul_(box3))
            reach = moved[0] * moved[0]
            reach = reach.addcmul_(moved[1], moved[1]).addcmul_(moved[2], moved[2]).amax(1).sqrt_()
            # lower bound of each pair's distance in every frame of the run
            bound = torch.index_select(reach, 0, i, out=scratch.get("ref.bound", (i.numel(),)))
            bound.neg_().add_(ref_distance)
            bound.sub_(torch.index_select(reach, 0, j, out=scratch.get("ref.reach_j", (i.numel(),))))
            keep = torch.nonzero(bound < r_cut).squeeze(1)
            pi, pj = torch.index_select(i, 0, keep), torch.index_select(j, 0, keep)
            shift = None
            if large_box and unwrapped:
                shift = ref_shift.index_select(1, keep).unsqueeze(-1)        # (3, n_pairs, 1)
            if r_three is not None and keep.numel():
                candidates = torch.nonzero(bound.index_select(0, keep) < r_three).squeeze(1)
                closest = _closest_approach(xs, box, pi[candidates], pj[candidates],
                                            None if shift is None else shift[:, candidates], scratch)
                short = candidates[closest < r_three * r_three]
                center, tj, tk, leg1, leg2 = _enumerate_triplets(pi[short], pj[short])
            else:
                short = center = tj = tk = leg1 = leg2 = i.new_zeros(0)
            yield PairGroup(start, stop, pi, pj, shift, short, center, tj, tk, leg1, leg2)


def build_geometry(positions: torch.Tensor, box: torch.Tensor, neighbors: NeighborList,
                   r_cut: float, r_three: float | None) -> Geometry:
    r"""All :class:`PairGroup` s of a batch (see :func:`iter_pair_groups`).

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
        groups = tuple(iter_pair_groups(x, box, neighbors, r_cut, r_three))
        return Geometry(x.shape[0], x.shape[1], box.to(x), groups)
