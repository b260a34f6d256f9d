"""Real AA input files for command-line and pipeline tests: a small box of rigid SPC/E-shaped
water written as a LAMMPS data file (molecule ids, masses, bonds) and a DCD trajectory by
MDAnalysis's writers, and a smooth water-like CG potential."""

from __future__ import annotations

from pathlib import Path

import MDAnalysis as mda
import numpy as np
from MDAnalysis.coordinates.memory import MemoryReader

from advcg import units
from advcg.potential import CGPotential, PairSpline, SWThreeBody

MASSES = np.array([15.9994, 1.008, 1.008])
GEOMETRY = np.array([[0.0, 0.0, 0.0], [0.8164904, 0.5773590, 0.0], [-0.8164904, 0.5773590, 0.0]])


def water_universe(n_side: int, n_frames: int, frame_dt_fs: float, seed: int = 0) -> mda.Universe:
    """In-memory universe of ``n_side**3`` rigid water molecules at 1 g/cm³ on a jittered lattice,
    diffusing a little between frames ``frame_dt_fs`` fs apart; atoms wrapped into the box."""
    n = n_side ** 3
    box = (n * units.WATER_MASS / (units.AVOGADRO * 1e-24)) ** (1 / 3)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    com = (grid + 0.5) * box / n_side + np.cumsum(rng.normal(0, 0.05, (n_frames, n, 3)), axis=0)
    local = GEOMETRY - MASSES @ GEOMETRY / MASSES.sum()
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    rotations = q * np.sign(np.linalg.det(q))[:, None, None]
    atoms = (com[:, :, None, :] + np.einsum("mij,aj->mai", rotations, local)).reshape(n_frames, 3 * n, 3)
    u = mda.Universe.empty(3 * n, n_residues=n, atom_resindex=np.repeat(np.arange(n), 3), trajectory=True)
    u.add_TopologyAttr("names", ["OW", "HW1", "HW2"] * n)
    u.add_TopologyAttr("types", ["1", "2", "2"] * n)
    u.add_TopologyAttr("masses", np.tile(MASSES, n))
    u.add_TopologyAttr("charges", np.tile([-0.8476, 0.4238, 0.4238], n))
    u.add_TopologyAttr("resids", np.arange(1, n + 1))
    u.add_TopologyAttr("resnames", ["SOL"] * n)
    bonds = [(3 * m, 3 * m + h) for m in range(n) for h in (1, 2)]
    u.add_bonds(bonds, types=["1"] * len(bonds))
    u.add_angles([(3 * m + 1, 3 * m, 3 * m + 2) for m in range(n)], types=["1"] * n)
    u.add_TopologyAttr("dihedrals", [])
    u.add_TopologyAttr("impropers", [])
    u.load_new(atoms % box, format=MemoryReader, dimensions=[box, box, box, 90, 90, 90],
               dt=frame_dt_fs / 1000.0)
    return u


def write_lammps_water(directory: Path, name: str = "water", *, n_side: int = 3, n_frames: int = 11,
                       frame_dt_fs: float = 20.0, seed: int = 0) -> tuple[Path, Path]:
    """``directory/name.data`` and ``directory/name.dcd`` of :func:`water_universe` (the DCD's
    frames ``frame_dt_fs`` apart, as LAMMPS writes them: read with MDAnalysis's LAMMPS format)."""
    u = water_universe(n_side, n_frames, frame_dt_fs, seed)
    topology, trajectory = directory / f"{name}.data", directory / f"{name}.dcd"
    u.trajectory[0]
    u.trajectory.ts.data["molecule_tag"] = u.atoms.resids
    u.atoms.write(str(topology))
    with mda.Writer(str(trajectory), n_atoms=len(u.atoms), format="LAMMPS",
                    dt=frame_dt_fs / 1000.0) as writer:
        for _ in u.trajectory:
            writer.write(u.atoms)
    return topology, trajectory


def water_like_potential(r_cut: float = 9.0) -> CGPotential:
    """A smooth Lennard-Jones-shaped pair term at water density plus the default SW three-body."""
    r = np.linspace(2.2, r_cut, 400)
    phi = 4 * 0.3 * ((3.0 / r) ** 12 - (3.0 / r) ** 6)
    return CGPotential(PairSpline.fit(r, phi - phi[-1], r_min=2.2, r_cut=r_cut), SWThreeBody())
