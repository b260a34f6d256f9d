"""Mapping AA water to COM beads: whole molecules, continuous tracks, many file formats, bad inputs.

The fixtures are a small synthetic water box whose true centres of mass are known: rigid SPC/E
geometry, random orientations, bead tracks that drift across the periodic box, atoms wrapped
one by one (so molecules are split across the boundary), written with MDAnalysis's writers (a
LAMMPS dump by hand: MDAnalysis has no dump writer).
"""


import MDAnalysis as mda
import numpy as np
import pytest
from MDAnalysis.coordinates.memory import MemoryReader

from advcg import cli, units
from advcg.mapping import map_to_beads, molecular_centres, unwrap_tracks
from advcg.observables import msd
from advcg.trajectory import CGTrajectory

MASSES = np.array([15.9994, 1.008, 1.008])
GEOMETRY = np.array([[0.0, 0.0, 0.0], [0.8164904, 0.5773590, 0.0], [-0.8164904, 0.5773590, 0.0]])
N_SIDE = 3
N_MOL = N_SIDE ** 3
BOX = (N_MOL * units.WATER_MASS / (1.0 * units.AVOGADRO * 1e-24)) ** (1 / 3)  # 1 g/cm³
N_FRAMES = 9
FRAME_DT_PS = 0.02

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _rotations(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    return q * np.sign(np.linalg.det(q))[:, None, None]


def _synthetic_water(seed=0):
    """True COM tracks (n_frames, n_mol, 3), unwrapped atoms (n_frames, 3 n_mol, 3)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(N_SIDE)] * 3, indexing="ij"), -1).reshape(-1, 3)
    start = (grid + 0.5) * BOX / N_SIDE + rng.normal(0, 0.2, (N_MOL, 3))
    steps = rng.normal(0, 0.25, (N_FRAMES - 1, N_MOL, 3)) + np.array([1.3, -0.8, 0.5])  # drifts across
    com = np.concatenate([start[None], start[None] + np.cumsum(steps, axis=0)])
    local = GEOMETRY - MASSES @ GEOMETRY / MASSES.sum()
    atoms = np.empty((N_FRAMES, N_MOL, 3, 3))
    for f in range(N_FRAMES):
        atoms[f] = com[f][:, None, :] + np.einsum("mij,aj->mai", _rotations(rng, N_MOL), local)
    return com, atoms.reshape(N_FRAMES, 3 * N_MOL, 3)


def _universe(atoms, order=None):
    """In-memory water universe; ``order`` permutes atoms (molecules then need not be contiguous)."""
    n = 3 * N_MOL
    order = np.arange(n) if order is None else order
    resindex = np.repeat(np.arange(N_MOL), 3)[order]
    u = mda.Universe.empty(n, n_residues=N_MOL, atom_resindex=resindex, trajectory=True)
    u.add_TopologyAttr("names", np.array(["OW", "HW1", "HW2"] * N_MOL)[order])
    u.add_TopologyAttr("elements", np.array(["O", "H", "H"] * N_MOL)[order])
    u.add_TopologyAttr("types", np.array(["1", "2", "2"] * N_MOL)[order])
    u.add_TopologyAttr("masses", np.tile(MASSES, N_MOL)[order])
    u.add_TopologyAttr("charges", np.tile([-0.8476, 0.4238, 0.4238], N_MOL)[order])
    u.add_TopologyAttr("resids", np.arange(1, N_MOL + 1))
    u.add_TopologyAttr("resnames", ["SOL"] * N_MOL)
    where = np.argsort(order)  # new index of original atom k
    bonds = [(where[3 * m], where[3 * m + h]) for m in range(N_MOL) for h in (1, 2)]
    u.add_bonds(bonds, types=["1"] * len(bonds))
    u.add_angles([(where[3 * m + 1], where[3 * m], where[3 * m + 2]) for m in range(N_MOL)],
                 types=["1"] * N_MOL)
    u.add_TopologyAttr("dihedrals", [])
    u.add_TopologyAttr("impropers", [])
    wrapped = atoms[:, order] % BOX
    u.load_new(wrapped, format=MemoryReader, dimensions=[BOX, BOX, BOX, 90, 90, 90], dt=FRAME_DT_PS)
    return u


def _write(u, topology, trajectory, fmt=None, molecule_tag=False):
    u.trajectory[0]
    if molecule_tag:  # MDAnalysis's DATAWriter takes LAMMPS molecule ids from here
        u.trajectory.ts.data["molecule_tag"] = u.atoms.resids
    u.atoms.write(str(topology))
    kwargs = {"format": fmt} if fmt else {}
    if str(trajectory).endswith(".dcd"):
        kwargs["dt"] = FRAME_DT_PS  # DCD writers do not take dt from the frames
    with mda.Writer(str(trajectory), n_atoms=len(u.atoms), **kwargs) as w:
        for _ in u.trajectory:
            w.write(u.atoms)


def _write_dump(path, atoms, order, steps_per_frame=10, seed=5):
    """A LAMMPS text dump of wrapped positions, atom lines shuffled in every frame."""
    rng = np.random.default_rng(seed)
    lines = []
    for f, frame in enumerate(atoms[:, order] % BOX):
        lines += ["ITEM: TIMESTEP", str(f * steps_per_frame), "ITEM: NUMBER OF ATOMS", str(len(frame)),
                  "ITEM: BOX BOUNDS pp pp pp"] + [f"0.0 {BOX:.10f}"] * 3 + ["ITEM: ATOMS id type x y z"]
        types = np.array([1, 2, 2] * N_MOL)[order]
        for i in rng.permutation(len(frame)):
            lines.append(f"{i + 1} {types[i]} {frame[i, 0]:.8f} {frame[i, 1]:.8f} {frame[i, 2]:.8f}")
    path.write_text("\n".join(lines) + "\n")


def _assert_tracks(traj, com, atol):
    """Same bead tracks as ``com`` up to one whole box vector per bead, continuous in time."""
    assert traj.n_frames == N_FRAMES and traj.n_beads == N_MOL
    np.testing.assert_allclose(traj.positions - traj.positions[0], com - com[0], rtol=0, atol=atol)
    shift = (traj.positions[0] - com[0]) / BOX
    np.testing.assert_allclose(shift, np.round(shift), rtol=0, atol=atol / BOX)
    np.testing.assert_allclose(traj.box, BOX, rtol=1e-5)
    np.testing.assert_allclose(traj.times, np.arange(N_FRAMES) * FRAME_DT_PS * 1000.0, atol=1e-3)
    assert traj.mass == pytest.approx(MASSES.sum(), abs=2e-3)


@pytest.fixture(scope="module")
def water():
    return _synthetic_water()


def test_fixture_really_splits_molecules_and_crosses_the_box(water):
    com, atoms = water
    wrapped = (atoms % BOX).reshape(N_FRAMES, N_MOL, 3, 3)
    extent = np.abs(wrapped - wrapped[:, :, :1]).max(axis=(2, 3))
    assert (extent > BOX / 2).sum() > 10          # molecules split across the boundary
    assert np.abs(com[-1] - com[0]).max() > BOX   # tracks leave the box


def test_centres_and_unwrapping_vectorised(water):
    com, atoms = water
    box = np.full((N_FRAMES, 3), BOX)
    index = np.arange(3 * N_MOL).reshape(N_MOL, 3)
    centres = molecular_centres(atoms % BOX, box, index, MASSES)
    diff = (centres - com) / BOX
    np.testing.assert_allclose(diff, np.round(diff), atol=1e-9)
    tracks = unwrap_tracks(centres % BOX, box)
    np.testing.assert_allclose(tracks - tracks[0], com - com[0], atol=1e-9)


def test_frames_too_far_apart_are_flagged(caplog):
    box = np.full((2, 3), 10.0)
    tracks = np.array([[[1.0, 1.0, 1.0]], [[5.8, 1.0, 1.0]]])   # 0.48 box edges in one frame
    with caplog.at_level("WARNING", logger="advcg.mapping"):
        unwrap_tracks(tracks, box)
    assert "ambiguous" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="advcg.mapping"):
        unwrap_tracks(tracks * [[[1.0, 1.0, 1.0]], [[0.5, 1.0, 1.0]]], box)
    assert caplog.text == ""


def test_lammps_data_and_dcd_with_interleaved_atoms(tmp_path, water):
    com, atoms = water
    order = np.argsort(np.tile([0, 1, 2], N_MOL), kind="stable")  # all O, then all H1, all H2
    u = _universe(atoms, order)
    _write(u, tmp_path / "w.data", tmp_path / "w.dcd", fmt="LAMMPS", molecule_tag=True)
    traj = map_to_beads(tmp_path / "w.data", tmp_path / "w.dcd")
    _assert_tracks(traj, com, atol=1e-4)


def test_lammps_data_and_dump(tmp_path, water):
    com, atoms = water
    u = _universe(atoms)
    _write(u, tmp_path / "w.data", tmp_path / "ignored.dcd", fmt="LAMMPS", molecule_tag=True)
    _write_dump(tmp_path / "w.lammpstrj", atoms, np.arange(3 * N_MOL))
    with pytest.raises(ValueError, match="dt_ps"):
        map_to_beads(tmp_path / "w.data", tmp_path / "w.lammpstrj")
    traj = map_to_beads(tmp_path / "w.data", tmp_path / "w.lammpstrj", dt_ps=0.002)
    _assert_tracks(traj, com, atol=1e-6)


def test_gro_and_xtc(tmp_path, water):
    com, atoms = water
    _write(_universe(atoms), tmp_path / "w.gro", tmp_path / "w.xtc")
    traj = map_to_beads(tmp_path / "w.gro", tmp_path / "w.xtc")  # masses guessed from names
    _assert_tracks(traj, com, atol=0.01)  # XTC keeps 0.001 nm


def test_pdb_and_charmm_dcd_with_frame_selection(tmp_path, water):
    com, atoms = water
    _write(_universe(atoms), tmp_path / "w.pdb", tmp_path / "w.dcd")
    traj = map_to_beads(tmp_path / "w.pdb", tmp_path / "w.dcd", start=1, step=2)
    expected = com[1::2]
    assert traj.n_frames == len(expected)
    np.testing.assert_allclose(traj.positions - traj.positions[0], expected - expected[0], atol=1e-3)
    np.testing.assert_allclose(np.diff(traj.times), 2 * FRAME_DT_PS * 1000.0, rtol=1e-4)


def test_single_frame_maps_but_msd_refuses(tmp_path, water):
    com, atoms = water
    _write(_universe(atoms), tmp_path / "w.gro", tmp_path / "unused.xtc")
    traj = map_to_beads(tmp_path / "w.gro")
    assert traj.n_frames == 1 and traj.n_beads == N_MOL
    with pytest.raises(ValueError, match="two frames"):
        msd(traj)


def test_cli_map_writes_the_same_trajectory(tmp_path, water):
    com, atoms = water
    _write(_universe(atoms), tmp_path / "w.data", tmp_path / "w.dcd", fmt="LAMMPS", molecule_tag=True)
    out = tmp_path / "beads.npz"
    assert cli.main(["map", "--topology", str(tmp_path / "w.data"), "--trajectory",
                     str(tmp_path / "w.dcd"), "--output", str(out)]) == 0
    saved = CGTrajectory.load(out)
    direct = map_to_beads(tmp_path / "w.data", tmp_path / "w.dcd")
    np.testing.assert_array_equal(saved.positions, direct.positions)
    np.testing.assert_array_equal(saved.times, direct.times)
    assert cli.main(["map", "--topology", str(tmp_path / "missing.data"), "--output", str(out)]) == 2


# -- bad inputs -----------------------------------------------------------------------------------
def test_missing_files_are_named(tmp_path, water):
    with pytest.raises(FileNotFoundError, match="nope.data"):
        map_to_beads(tmp_path / "nope.data", tmp_path / "nope.dcd")
    _write(_universe(water[1]), tmp_path / "w.gro", tmp_path / "w.xtc")
    with pytest.raises(FileNotFoundError, match="nope.xtc"):
        map_to_beads(tmp_path / "w.gro", tmp_path / "nope.xtc")


def test_topology_without_molecules(tmp_path, water):
    u = _universe(water[1])
    u.atoms.write(str(tmp_path / "w.xyz"))  # XYZ: names only, every atom in one residue
    with pytest.raises(ValueError, match="defines no molecules"):
        map_to_beads(tmp_path / "w.xyz")


def _gro_with(tmp_path, names_per_residue):
    """A GRO file of residues with the given atom names (positions on a grid)."""
    names = [n for res in names_per_residue for n in res]
    resindex = np.concatenate([[i] * len(res) for i, res in enumerate(names_per_residue)])
    u = mda.Universe.empty(len(names), n_residues=len(names_per_residue), atom_resindex=resindex,
                           trajectory=True)
    u.add_TopologyAttr("names", names)
    u.add_TopologyAttr("resnames", ["MOL"] * len(names_per_residue))
    u.add_TopologyAttr("resids", np.arange(1, len(names_per_residue) + 1))
    u.atoms.positions = np.random.default_rng(1).random((len(names), 3)) * 20.0
    u.dimensions = [20, 20, 20, 90, 90, 90]
    path = tmp_path / "mixed.gro"
    u.atoms.write(str(path))
    return path


def test_molecules_of_different_size(tmp_path):
    path = _gro_with(tmp_path, [["OW", "HW1", "HW2"]] * 5 + [["C", "O", "H", "H"]])
    with pytest.raises(ValueError, match="different numbers of atoms"):
        map_to_beads(path)


def test_molecules_of_different_composition(tmp_path):
    path = _gro_with(tmp_path, [["OW", "HW1", "HW2"]] * 5 + [["C", "H", "H"]])
    with pytest.raises(ValueError, match="differ in composition"):
        map_to_beads(path)


def test_non_water_is_refused_unless_asked(tmp_path):
    path = _gro_with(tmp_path, [["C", "O", "H"]] * 6)
    with pytest.raises(ValueError, match="not water"):
        map_to_beads(path)
    traj = map_to_beads(path, water_only=False)
    assert traj.mass == pytest.approx(12.011 + 15.999 + 1.008, abs=1e-2)


def test_non_orthogonal_box(tmp_path, water):
    u = _universe(water[1])
    u.dimensions = [BOX, BOX, BOX, 90, 90, 70]
    u.atoms.write(str(tmp_path / "tri.pdb"))
    with pytest.raises(ValueError, match="orthogonal"):
        map_to_beads(tmp_path / "tri.pdb")


def test_empty_frame_selection(tmp_path, water):
    _write(_universe(water[1]), tmp_path / "w.gro", tmp_path / "w.xtc")
    with pytest.raises(ValueError, match="select nothing"):
        map_to_beads(tmp_path / "w.gro", tmp_path / "w.xtc", start=50)


# -- what the topology calls a molecule must be one -------------------------------------------------
def test_atoms_in_another_order_than_the_topology_are_refused(tmp_path, water):
    """A trajectory written with its atoms permuted against the topology (same atom count, same
    masses per position) used to map, with exit 0, to centres ~12 Å from the true ones."""
    com, atoms = water
    _write(_universe(atoms), tmp_path / "w.data", tmp_path / "unused.dcd", fmt="LAMMPS", molecule_tag=True)
    permuted = np.random.default_rng(2).permutation(3 * N_MOL)
    shuffled = _universe(atoms[:, permuted])   # atom k of the file is atom permuted[k] of the system
    _write(shuffled, tmp_path / "unused.data", tmp_path / "shuffled.dcd", fmt="LAMMPS", molecule_tag=True)
    pattern = (r"mapping \S+w\.data \+ \S+shuffled\.dcd: frame 0: \d+ of 27 molecules are not water "
               r"molecules: molecule \d+ \(atom ids \d+, \d+, \d+\) has O-H \d+\.\d\d and \d+\.\d\d Å, "
               r"H-H \d+\.\d\d Å \(water: O-H 0\.85-1\.15 Å, H-H 1\.35-1\.85 Å.*not in the topology's order")
    with pytest.raises(ValueError, match=pattern):
        map_to_beads(tmp_path / "w.data", tmp_path / "shuffled.dcd")
    # not water: the topology's bonds are checked instead
    with pytest.raises(ValueError, match=r"frame 0: \d+ of 54 bonds are longer than 3\.0 Å: atoms \d+ "
                                         r"and \d+ are \d+\.\d\d Å apart"):
        map_to_beads(tmp_path / "w.data", tmp_path / "shuffled.dcd", water_only=False)
    out = tmp_path / "beads.npz"
    assert cli.main(["map", "--topology", str(tmp_path / "w.data"), "--trajectory",
                     str(tmp_path / "shuffled.dcd"), "--output", str(out)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shuffled.dcd", "unused.data", "unused.dcd", "w.data"]


def test_a_later_frame_with_atoms_out_of_order_is_refused(tmp_path, water):
    """Every frame is checked: a dump whose atom lines lose their order half-way."""
    com, atoms = water
    reordered = atoms.copy()
    reordered[5:] = atoms[5:, np.random.default_rng(4).permutation(3 * N_MOL)]
    _write(_universe(reordered), tmp_path / "w.gro", tmp_path / "w.xtc")
    with pytest.raises(ValueError, match=r"w\.xtc: frame 5: \d+ of 27 molecules are not water molecules"):
        map_to_beads(tmp_path / "w.gro", tmp_path / "w.xtc")


def test_a_molecule_split_across_the_box_maps_to_its_true_centre(tmp_path):
    """Wrapped atoms of molecules whose centre sits on the box faces (some atoms at x ~ 0.5 Å,
    the others wrapped to x ~ L - 0.5 Å): the beads are the true centres of mass."""
    rng = np.random.default_rng(8)
    n_frames = 3
    grid = np.stack(np.meshgrid(*[np.arange(N_SIDE)] * 3, indexing="ij"), -1).reshape(-1, 3)
    com = np.broadcast_to(grid * BOX / N_SIDE, (n_frames, N_MOL, 3)).copy()   # molecule 0 at the corner
    com += rng.normal(0, 0.05, com.shape)
    local = GEOMETRY - MASSES @ GEOMETRY / MASSES.sum()
    atoms = (com[:, :, None, :] + np.einsum("mij,aj->mai", _rotations(rng, N_MOL), local)[None])
    wrapped = (atoms % BOX).reshape(n_frames, N_MOL, 3, 3)
    assert (np.ptp(wrapped, axis=2) > BOX / 2).any(axis=-1).sum() >= 9 * n_frames  # really split
    u = _universe(np.zeros((N_FRAMES, 3 * N_MOL, 3)))
    u.load_new(atoms.reshape(n_frames, 3 * N_MOL, 3) % BOX, format=MemoryReader,
               dimensions=[BOX, BOX, BOX, 90, 90, 90], dt=FRAME_DT_PS)
    _write(u, tmp_path / "w.data", tmp_path / "w.dcd", fmt="LAMMPS", molecule_tag=True)
    traj = map_to_beads(tmp_path / "w.data", tmp_path / "w.dcd")
    offset = traj.positions - com
    np.testing.assert_allclose(offset - BOX * np.round(offset / BOX), 0.0, atol=1e-4)


def test_four_site_water_with_a_massless_site_maps_and_its_site_is_checked(tmp_path, water):
    """TIP4P written by GROMACS: OW, HW1, HW2 and the massless MW 0.15 Å from O on the bisector."""
    com, atoms = water
    per = atoms.reshape(N_FRAMES, N_MOL, 3, 3)
    bisector = per[:, :, 1:].mean(axis=2) - per[:, :, 0]
    site = per[:, :, 0] + 0.15 * bisector / np.linalg.norm(bisector, axis=-1, keepdims=True)
    four = np.concatenate([per, site[:, :, None]], axis=2)

    def write(positions, name):
        u = mda.Universe.empty(4 * N_MOL, n_residues=N_MOL, atom_resindex=np.repeat(np.arange(N_MOL), 4),
                               trajectory=True)
        u.add_TopologyAttr("names", ["OW", "HW1", "HW2", "MW"] * N_MOL)
        u.add_TopologyAttr("resnames", ["SOL"] * N_MOL)
        u.add_TopologyAttr("resids", np.arange(1, N_MOL + 1))
        u.load_new(positions.reshape(N_FRAMES, 4 * N_MOL, 3) % BOX, format=MemoryReader,
                   dimensions=[BOX, BOX, BOX, 90, 90, 90], dt=FRAME_DT_PS)
        u.trajectory[0]
        u.atoms.write(str(tmp_path / f"{name}.gro"))
        with mda.Writer(str(tmp_path / f"{name}.xtc"), n_atoms=4 * N_MOL) as w:
            for _ in u.trajectory:
                w.write(u.atoms)

    write(four, "tip4p")
    _assert_tracks(map_to_beads(tmp_path / "tip4p.gro", tmp_path / "tip4p.xtc"), com, atol=0.01)
    swapped = four.copy()
    swapped[:, 3, 3], swapped[:, 4, 3] = four[:, 4, 3], four[:, 3, 3]   # two molecules' M sites
    write(swapped, "swapped")
    with pytest.raises(ValueError, match=r"frame 0: 2 of 27 molecules are not water molecules: "
                                         r"molecule 3 .*massless site\(s\) \d+\.\d\d Å from O"):
        map_to_beads(tmp_path / "tip4p.gro", tmp_path / "swapped.xtc")
