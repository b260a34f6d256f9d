"""Map an all-atom trajectory to one bead per molecule at the molecular centre of mass.

.. math::

    R_I(t) = \\frac{\\sum_{a \\in I} m_a\\, r_a(t)}{\\sum_{a \\in I} m_a}

with each molecule made whole first (every atom put at the minimum image of the molecule's
first atom, valid for molecules smaller than half the box) and the bead track then unwrapped in
time: each frame-to-frame displacement is taken at its minimum image, so beads never jump across
the box. Wrapped and already-unwrapped inputs give the same continuous track, provided no bead
moves more than half a box edge between the frames read.

What the topology calls a molecule must be one in every frame read (:func:`check_molecules`):
water's O–H and H–H distances, and every bond of the topology no longer than
:data:`MAX_BOND_LENGTH`. A trajectory whose atoms are in another order than the topology's
(or of another system with as many atoms) is refused, not mapped to wrong centres.

Molecules come from the topology, in this order: GROMACS molecule numbers (``molnums``, TPR),
bonded fragments (LAMMPS data, PSF, TPR), residues (GRO, PDB). Times are converted from
MDAnalysis's ps to fs once, here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advcg import units
from advcg.trajectory import CGTrajectory

logger = logging.getLogger(__name__)

#: Allowed deviation (g/mol) of a molecule's mass from water's for ``water_only``.
WATER_MASS_TOLERANCE = 0.05
#: Mass densities (g/cm³) accepted for water with ``check_density``: liquid water lies near 1;
#: far outside this range the box is wrong (units, a cut trajectory, a gas), and a CG water
#: model learned or run there is meaningless.
WATER_DENSITY_RANGE = (0.5, 1.5)

#: Intramolecular distances (Å) accepted in water: O–H and H–H of rigid and flexible models
#: (SPC/E 1.0 and 1.633, TIP4P/2005 0.9572 and 1.5139, flexible models within ~0.1 of theirs)
#: and massless sites (TIP4P's M, TIP5P's lone pairs) within :data:`WATER_SITE_MAX` of the
#: oxygen. Atoms of different molecules are ~1.8 Å (a hydrogen bond) and more apart.
WATER_OH_RANGE = (0.85, 1.15)
WATER_HH_RANGE = (1.35, 1.85)
WATER_SITE_MAX = 1.0
#: Longest bond (Å) accepted between two atoms the topology bonds: covalent bonds are shorter
#: than 2.7 Å (I–I).
MAX_BOND_LENGTH = 3.0

#: A file path, or one or more of them.
PathLike = str | os.PathLike
Paths = PathLike | Sequence[PathLike]

# Suffixes of LAMMPS text dumps, which MDAnalysis does not recognise by itself.
_DUMP_SUFFIXES = (".lammpstrj", ".dump", ".lammpsdump")


def _check_exists(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} file {path} is not a regular file (a directory?)")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{what} file {path} is not readable (permissions)")
    return path


def _check_dcd(path: Path) -> None:
    """Refuse a DCD file that libdcd cannot open or that is truncated.

    MDAnalysis counts DCD frames from the file size and silently drops a partial last frame, so
    a trajectory cut short (a full disk, a killed run, a copy stopped half-way) would map to
    fewer frames without a word. Here the size must be the header plus whole frames, and the
    frame count must reach the one the header declares (``NSET``, which LAMMPS and MDAnalysis
    keep up to date as they write).
    """
    from MDAnalysis.lib.formats.libdcd import DCDFile

    try:
        dcd = DCDFile(str(path))
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"trajectory file {path} is not a readable DCD file: {exc}") from exc
    try:
        n_frames = int(dcd.n_frames)
        sizes = [getattr(dcd, name, None) for name in ("_header_size", "_firstframesize", "_framesize")]
    finally:
        dcd.close()
    size = path.stat().st_size
    if None not in sizes and n_frames > 0:
        header, first, frame = (int(v) for v in sizes)
        expected = header + first + (n_frames - 1) * frame
        if size != expected:
            raise ValueError(f"trajectory file {path} is truncated or corrupt: {size} bytes is not "
                             f"the DCD header plus whole frames of {frame} bytes ({n_frames} "
                             f"whole frame(s), then {size - expected} bytes)")
    with open(path, "rb") as handle:
        head = handle.read(12)             # record marker 84, "CORD", NSET
    for order in ("<", ">"):
        marker, _, declared = (int(v) for v in np.frombuffer(head.ljust(12, b"\0"), dtype=f"{order}i4"))
        if marker == 84 and declared > n_frames:
            raise ValueError(f"trajectory file {path} is truncated: its header declares "
                             f"{declared} frames but it holds {n_frames}")


def _check_xdr(path: Path, kind: str) -> None:
    """Refuse an XTC or TRR file that ends inside a frame (MDAnalysis drops such a frame silently)."""
    from MDAnalysis.lib.formats import libmdaxdr

    try:
        xdr = getattr(libmdaxdr, f"{kind}File")(str(path))
        try:
            n_frames = len(xdr.offsets)
            if n_frames == 0 or not hasattr(xdr, "_bytes_tell"):
                return
            xdr.seek(n_frames - 1)
            xdr.read()
            end = int(xdr._bytes_tell())
        finally:
            xdr.close()
    except (OSError, ValueError, EOFError, RuntimeError) as exc:
        raise ValueError(f"trajectory file {path} is not a readable {kind} file: {exc}") from exc
    size = path.stat().st_size
    if end != size:
        raise ValueError(f"trajectory file {path} is truncated or corrupt: its {n_frames} whole "
                         f"{kind} frame(s) end at byte {end} of {size}")


def _trajectory_format(topology: Path, trajectory: Path, fmt: str | None) -> str | None:
    """MDAnalysis format name for ``trajectory``: explicit, or inferred where the suffix misleads."""
    if fmt is not None:
        return fmt
    suffix = trajectory.suffix.lower()
    if suffix in _DUMP_SUFFIXES:
        return "LAMMPSDUMP"
    if suffix == ".dcd" and topology.suffix.lower() in (".data", ".lmp", ".lammps"):
        # LAMMPS writes DCD time in fs; MDAnalysis's default DCD reader assumes CHARMM units.
        return "LAMMPS"
    return None


def load_universe(topology: PathLike, trajectory: Paths | None = None, *,
                  format: str | None = None, topology_format: str | None = None,
                  dt_ps: float | None = None) -> Any:
    """Open ``topology`` (+ ``trajectory``) as an MDAnalysis Universe.

    Parameters
    ----------
    topology
        Topology file defining molecules (LAMMPS data, TPR, GRO, PSF, PDB, ...).
    trajectory
        Trajectory file(s); ``None`` uses the coordinates in ``topology``.
    format
        MDAnalysis trajectory format. Inferred when ``None``: ``LAMMPS`` for a DCD beside a
        LAMMPS data file (LAMMPS DCDs use fs), ``LAMMPSDUMP`` for ``.lammpstrj``/``.dump``,
        otherwise from the suffix.
    topology_format
        MDAnalysis topology format (default: from the suffix).
    dt_ps
        Time unit as MDAnalysis uses it, ps: for LAMMPS dumps the MD timestep (times are
        step × dt; required), for other formats the time between frames (overrides the file's).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A file that is not a regular readable file, that MDAnalysis cannot read, a truncated
        DCD, a LAMMPS dump without ``dt_ps``, or a non-positive ``dt_ps``.
    """
    import MDAnalysis as mda

    top = _check_exists(topology, "topology")
    kwargs: dict[str, Any] = {}
    if topology_format is not None:
        kwargs["topology_format"] = topology_format
    if dt_ps is not None:
        if not dt_ps > 0:
            raise ValueError(f"dt_ps must be > 0 (ps); got {dt_ps}")
        kwargs["dt"] = float(dt_ps)
    if trajectory is None:
        try:
            return mda.Universe(str(top), **kwargs)
        except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"MDAnalysis cannot read topology {top}: {type(exc).__name__}: {exc}") from exc
    paths = [trajectory] if isinstance(trajectory, (str, os.PathLike)) else list(trajectory)
    if not paths:
        raise ValueError("trajectory: give at least one file (or None to use the topology's coordinates)")
    trajs = [_check_exists(p, "trajectory") for p in paths]
    fmt = _trajectory_format(top, trajs[0], format)
    if fmt is not None:
        kwargs["format"] = fmt
    if fmt is not None and fmt.upper() == "LAMMPSDUMP" and dt_ps is None:
        raise ValueError(f"{trajs[0]}: LAMMPS dumps store step numbers, not times; give dt_ps, "
                         "the MD timestep in ps (e.g. 0.002)")
    for path in trajs:   # files MDAnalysis would read short without a word
        kind = fmt.upper() if fmt is not None else path.suffix.lstrip(".").upper()
        if kind in ("DCD", "LAMMPS"):
            _check_dcd(path)
        elif kind in ("XTC", "TRR"):
            _check_xdr(path, kind)
    logger.info("reading %s with %s (format %s)", [str(p) for p in trajs], top, fmt or "by suffix")
    files = [str(p) for p in trajs]
    try:
        return mda.Universe(str(top), files if len(files) > 1 else files[0], **kwargs)
    except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"MDAnalysis cannot read topology {top} with trajectory "
                         f"{', '.join(files)} (format {fmt or 'from the suffix'}): "
                         f"{type(exc).__name__}: {exc}") from exc


def molecule_indices(universe: Any, water_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Atom indices of each molecule and the atom masses of one molecule.

    Returns
    -------
    index : ndarray, shape (n_molecules, n_atoms_per_molecule)
        Atom indices, molecules in order of first appearance, atoms in file order.
    masses : ndarray, shape (n_atoms_per_molecule,)
        Masses (g/mol) of the atoms of a molecule (identical for all molecules).

    Raises
    ------
    ValueError
        No molecule information, no masses, molecules of different composition, or (with
        ``water_only``) a molecular mass that is not water's.
    """
    atoms = universe.atoms
    name = getattr(universe, "filename", None) or "the topology"
    if hasattr(atoms, "molnums"):
        label, source = np.asarray(atoms.molnums), "molecule numbers"
    elif hasattr(universe, "bonds") and len(universe.bonds) > 0:
        label, source = np.asarray(atoms.fragindices), "bonded fragments"
    else:
        label, source = np.asarray(atoms.resindices), "residues"
        if len(universe.residues) == 1 and len(atoms) > 1:
            raise ValueError(f"{name} defines no molecules (no bonds, no molecule numbers, all "
                             f"{len(atoms)} atoms in one residue): use a topology with molecule ids "
                             "(LAMMPS data, TPR, PSF, GRO/PDB with one residue per molecule)")
    if not hasattr(atoms, "masses"):
        raise ValueError(f"{name} has no atom masses; use a topology with masses or known elements")
    masses = np.asarray(atoms.masses, dtype=np.float64)
    # Group atoms by molecule in order of first appearance, keeping file order inside each.
    _, first, inverse, counts = np.unique(label, return_index=True, return_inverse=True, return_counts=True)
    if np.any(counts != counts[0]):
        sizes = np.unique(counts)
        raise ValueError(f"{name}: molecules ({source}) have different numbers of atoms "
                         f"{sizes.tolist()}; advcg maps a one-component liquid (water) only")
    rank = np.argsort(np.argsort(first))  # molecule label -> order of appearance
    order = np.lexsort((np.arange(len(atoms)), rank[inverse.ravel()]))
    index = order.reshape(len(counts), counts[0])
    mol_masses = masses[index]
    if np.any(mol_masses.sum(axis=1) <= 0):
        raise ValueError(f"{name}: molecules with zero total mass (masses missing?)")
    if not np.allclose(mol_masses, mol_masses[0], rtol=0.0, atol=1e-4):
        bad = int(np.argmax(np.any(~np.isclose(mol_masses, mol_masses[0], rtol=0.0, atol=1e-4), axis=1)))
        raise ValueError(f"{name}: molecules differ in composition (atom masses {mol_masses[0].tolist()} "
                         f"vs {mol_masses[bad].tolist()} in molecule {bad}); advcg maps a "
                         "one-component liquid (water) only")
    total = float(mol_masses[0].sum())
    if water_only and abs(total - units.WATER_MASS) > WATER_MASS_TOLERANCE:
        raise ValueError(f"{name}: molecular mass {total:.4f} g/mol is not water's "
                         f"({units.WATER_MASS} ± {WATER_MASS_TOLERANCE}); pass water_only=False "
                         "(advcg map --any-liquid) to map another one-component liquid")
    logger.info("%d molecules of %d atoms (%s), mass %.4f g/mol", len(index), index.shape[1], source, total)
    return index, mol_masses[0]


def _orthogonal_box(dimensions: Any, frame: int) -> np.ndarray:
    if dimensions is None:
        raise ValueError(f"frame {frame} has no periodic box; advcg needs an orthogonal box")
    dims = np.asarray(dimensions, dtype=np.float64)
    if np.any(dims[:3] <= 0) or not np.allclose(dims[3:], 90.0, atol=1e-3):
        raise ValueError(f"frame {frame} has box {dims.tolist()}; advcg needs an orthogonal "
                         "periodic box (positive edges, 90° angles)")
    return dims[:3]


def _whole(positions: np.ndarray, box: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each molecule's first atom ``(f, m, 1, 3)`` and every atom's position relative to it at
    the minimum image ``(f, m, a, 3)``: the molecule made whole."""
    x = positions[:, index, :]                       # (f, m, a, 3)
    first = x[:, :, :1, :]
    b = box[:, None, None, :]
    d = x - first
    d -= b * np.round(d / b)                         # whole: minimum image around atom 0
    return first, d


def _water_sites(masses: np.ndarray) -> tuple[int, list[int], list[int]] | None:
    """Positions in a molecule of water's oxygen, its two hydrogens and its massless sites;
    ``None`` unless the masses are those of O, 2 H and massless sites."""
    oxygen = int(np.argmax(masses))
    hydrogens = [i for i, m in enumerate(masses) if abs(m - 1.008) < 0.1]
    sites = [i for i, m in enumerate(masses) if m < 0.5]
    if abs(masses[oxygen] - 15.999) > 0.1 or len(hydrogens) != 2 or len(sites) + 3 != len(masses):
        return None
    return oxygen, hydrogens, sites


def can_check_molecules(masses: np.ndarray, bonds: np.ndarray | None, water: bool) -> bool:
    """Whether :func:`check_molecules` checks anything for molecules of these atom ``masses``."""
    return (water and _water_sites(masses) is not None) or (bonds is not None and len(bonds) > 0)


def check_molecules(positions: np.ndarray, box: np.ndarray, index: np.ndarray, masses: np.ndarray, *,
                    water: bool, bonds: np.ndarray | None = None, ids: np.ndarray | None = None,
                    frames: Sequence[int] | None = None) -> None:
    """Refuse atoms that do not form the topology's molecules in every frame.

    Parameters
    ----------
    positions, box, index, masses
        As for :func:`molecular_centres`.
    water
        Check water's O–H, H–H and massless-site distances (:data:`WATER_OH_RANGE`,
        :data:`WATER_HH_RANGE`, :data:`WATER_SITE_MAX`) when the masses are water's.
    bonds
        ``(n_bonds, 2)`` atom indices of the topology's bonds: each at most
        :data:`MAX_BOND_LENGTH` long (minimum image).
    ids, frames
        Atom ids and frame numbers for the message (default: index + 1, 0, 1, ...).

    Raises
    ------
    ValueError
        The first frame with a molecule that is not one: how many, which atoms, the distances.
    """
    n_frames, n_mol = len(positions), len(index)
    ids = np.arange(positions.shape[1]) + 1 if ids is None else np.asarray(ids)
    frames = list(range(n_frames)) if frames is None else list(frames)
    cause = ("the trajectory's atoms are not in the topology's order, or the trajectory is not "
             "of this topology")
    water_sites = _water_sites(masses) if water else None
    if water_sites is not None:
        oxygen, (h1, h2), sites = water_sites
        _, d = _whole(positions, box, index)

        def distance(a: int, b: int) -> np.ndarray:
            return np.linalg.norm(d[:, :, a] - d[:, :, b], axis=-1)          # (f, m)

        oh = np.stack([distance(h1, oxygen), distance(h2, oxygen)], axis=-1)
        hh = distance(h1, h2)
        site = np.stack([distance(k, oxygen) for k in sites], axis=-1) if sites else np.zeros((n_frames, n_mol, 0))
        bad = ((oh < WATER_OH_RANGE[0]) | (oh > WATER_OH_RANGE[1])).any(axis=-1) \
            | (hh < WATER_HH_RANGE[0]) | (hh > WATER_HH_RANGE[1]) | (site > WATER_SITE_MAX).any(axis=-1)
        if bad.any():
            f, m = (int(v) for v in np.argwhere(bad)[0])
            extra = (f", massless site(s) {', '.join(f'{v:.2f}' for v in site[f, m])} Å from O"
                     if sites else "")
            raise ValueError(
                f"frame {frames[f]}: {int(bad[f].sum())} of {n_mol} molecules are not water "
                f"molecules: molecule {m} (atom ids {', '.join(str(i) for i in ids[index[m]])}) has "
                f"O-H {oh[f, m, 0]:.2f} and {oh[f, m, 1]:.2f} Å, H-H {hh[f, m]:.2f} Å{extra} "
                f"(water: O-H {WATER_OH_RANGE[0]}-{WATER_OH_RANGE[1]} Å, H-H {WATER_HH_RANGE[0]}-"
                f"{WATER_HH_RANGE[1]} Å, massless sites within {WATER_SITE_MAX} Å of O): {cause}")
    if bonds is not None and len(bonds):
        d = positions[:, bonds[:, 0]] - positions[:, bonds[:, 1]]
        b = box[:, None, :]
        length = np.linalg.norm(d - b * np.round(d / b), axis=-1)         # (f, n_bonds)
        bad = length > MAX_BOND_LENGTH
        if bad.any():
            f, k = (int(v) for v in np.argwhere(bad)[0])
            i, j = ids[bonds[k]]
            raise ValueError(f"frame {frames[f]}: {int(bad[f].sum())} of {len(bonds)} bonds are "
                             f"longer than {MAX_BOND_LENGTH} Å: atoms {i} and {j} are "
                             f"{length[f, k]:.2f} Å apart: {cause}")


def molecular_centres(positions: np.ndarray, box: np.ndarray, index: np.ndarray,
                      masses: np.ndarray) -> np.ndarray:
    """Centres of mass of whole molecules from (possibly broken) atom positions.

    Parameters
    ----------
    positions : ndarray, shape (n_frames, n_atoms, 3)
        Atom positions, Å, wrapped or not.
    box : ndarray, shape (n_frames, 3)
        Orthogonal box edges, Å.
    index : ndarray, shape (n_molecules, n_per)
        Atom indices of each molecule.
    masses : ndarray, shape (n_per,)
        Atom masses of one molecule.

    Returns
    -------
    ndarray, shape (n_frames, n_molecules, 3)
        Centres of mass, each near its molecule's first atom.
    """
    first, d = _whole(positions, box, index)
    weights = masses / masses.sum()
    return first[:, :, 0, :] + np.einsum("fmak,a->fmk", d, weights)


def unwrap_tracks(centres: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Remove periodic jumps from bead tracks.

    Each frame-to-frame displacement is replaced by its minimum image; the first frame is kept.

    Parameters
    ----------
    centres : ndarray, shape (n_frames, n_beads, 3)
    box : ndarray, shape (n_frames, 3)

    Returns
    -------
    ndarray, shape (n_frames, n_beads, 3)
        Continuous tracks, equal to ``centres`` plus whole box vectors.
    """
    if len(centres) < 2:
        return centres.copy()
    step = np.diff(centres, axis=0)
    b = box[1:, None, :]
    shift = -b * np.round(step / b)
    largest = np.max(np.abs(step + shift) / b)
    if largest > 0.35:
        logger.warning("beads move up to %.2f box edges between frames: unwrapping may be "
                       "ambiguous (read frames more closely spaced)", largest)
    out = centres.copy()
    out[1:] += np.cumsum(shift, axis=0)
    return out


def check_water_density(traj: CGTrajectory, limits: tuple[float, float] = WATER_DENSITY_RANGE) -> None:
    """Refuse a water trajectory whose mass density (g/cm³) leaves ``limits`` in any frame."""
    volume = np.prod(traj.box, axis=1)                                   # Å³, per frame
    density = units.mass_density(traj.n_beads, volume, traj.mass)
    lo, hi = limits
    bad = np.nonzero((density < lo) | (density > hi))[0]
    if bad.size:
        f = int(bad[np.argmax(np.abs(density[bad] - 1.0))])
        raise ValueError(f"density {density[f]:.3f} g/cm^3 ({traj.n_beads} molecules of "
                         f"{traj.mass:.4f} g/mol in a box of {np.round(traj.box[f], 3).tolist()} Å, "
                         f"frame {f}) is far from liquid water's (~1.0; accepted {lo}..{hi}): check "
                         "the box and its units, or pass check_density=False (advcg map "
                         "--any-density) to map water at this density")


def map_universe(universe: Any, *, start: int | None = None, stop: int | None = None,
                 step: int | None = None, water_only: bool = True,
                 check_density: bool = True) -> CGTrajectory:
    """Map frames ``start:stop:step`` of an MDAnalysis Universe to COM beads.

    See :func:`map_to_beads`.
    """
    index, masses = molecule_indices(universe, water_only=water_only)
    frames = range(*slice(start, stop, step).indices(universe.trajectory.n_frames))
    if len(frames) == 0:
        raise ValueError(f"frames start={start}, stop={stop}, step={step} select nothing out of the "
                         f"{universe.trajectory.n_frames} frame(s)")
    bonds = np.asarray(universe.bonds.indices) if hasattr(universe, "bonds") and len(universe.bonds) else None
    ids = getattr(universe.atoms, "ids", None)
    if not can_check_molecules(masses, bonds, water_only):
        logger.warning("the molecules have no bonds in the topology and are not water: their "
                       "atoms cannot be checked to form molecules (atoms in another order than "
                       "the topology's would give wrong centres)")
    n_atoms = len(universe.atoms)
    chunk = max(1, 2_000_000 // max(1, n_atoms))     # frames per block: bounds the memory used
    buffer = np.empty((min(chunk, len(frames)), n_atoms, 3))
    centres = np.empty((len(frames), len(index), 3))
    box = np.empty((len(frames), 3))
    times = np.empty(len(frames))
    for i, ts in enumerate(universe.trajectory[start:stop:step]):
        buffer[i % chunk] = ts.positions
        box[i] = _orthogonal_box(ts.dimensions, ts.frame)
        times[i] = ts.time * units.FS_PER_PS
        if i % chunk == chunk - 1 or i == len(frames) - 1:
            lo = i - i % chunk
            check_molecules(buffer[:i + 1 - lo], box[lo:i + 1], index, masses, water=water_only,
                            bonds=bonds, ids=ids, frames=frames[lo:i + 1])
            centres[lo:i + 1] = molecular_centres(buffer[:i + 1 - lo], box[lo:i + 1], index, masses)
    tracks = unwrap_tracks(centres, box)
    traj = CGTrajectory(tracks, box, times, float(masses.sum()))
    if water_only and check_density:
        check_water_density(traj)
    logger.info("mapped %d frames (t = %.1f..%.1f fs) to %d beads", traj.n_frames,
                times[0], times[-1], traj.n_beads)
    return traj


def map_to_beads(topology: PathLike, trajectory: Paths | None = None, *,
                 format: str | None = None, topology_format: str | None = None,
                 dt_ps: float | None = None, start: int | None = None, stop: int | None = None,
                 step: int | None = None, water_only: bool = True,
                 check_density: bool = True) -> CGTrajectory:
    """Read an AA trajectory and map each molecule to one bead at its centre of mass.

    Parameters
    ----------
    topology
        Topology defining molecules: LAMMPS data (molecule ids, masses, bonds), GROMACS
        TPR or GRO, PSF, PDB (one residue per molecule).
    trajectory
        Trajectory file(s) (DCD, LAMMPS dump, XTC, TRR, ...); ``None``: the topology's
        coordinates (one frame).
    format, topology_format, dt_ps
        See :func:`load_universe`.
    start, stop, step
        Frames to read (Python slice semantics).
    water_only
        Refuse molecules whose mass is not water's (18.0154 g/mol).
    check_density
        With ``water_only``: refuse a mass density outside :data:`WATER_DENSITY_RANGE` g/cm³
        in any frame (a wrong box or wrong units).

    Returns
    -------
    CGTrajectory
        Unwrapped bead positions (Å), box (Å), times (fs) and the molecular mass (g/mol).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        Unreadable or truncated files, no molecule information, mixed or non-water molecules,
        a water density far from 1 g/cm³, no or non-orthogonal box, an empty frame selection,
        or times not strictly increasing.
    """
    universe = load_universe(topology, trajectory, format=format, topology_format=topology_format,
                             dt_ps=dt_ps)
    try:
        return map_universe(universe, start=start, stop=stop, step=step, water_only=water_only,
                            check_density=check_density)
    except (ValueError, OSError, EOFError) as exc:   # OSError, EOFError: a frame that cannot be read
        files = [trajectory] if isinstance(trajectory, (str, os.PathLike)) else list(trajectory or [])
        where = " + ".join(str(p) for p in [topology, *files])
        raise ValueError(f"mapping {where}: {exc}") from exc
