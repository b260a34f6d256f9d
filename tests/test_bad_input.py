"""Bad user input, through the real ``advcg`` command line: every case exits non-zero with one
message that names the file (or key, or option) and what was expected, and leaves no output file,
whole or partial, behind.

The inputs are real files: a few SPC/E-shaped water molecules written as LAMMPS data + DCD (and
GRO, XYZ) by MDAnalysis, bead trajectories and potentials written by advcg, configurations in the
``config/test.yaml`` layout. Commands run in-process through :func:`advcg.cli.main` (the console
script's entry point; its error line is read from the ``advcg`` logger), and once as
``python -m advcg.cli`` to check what a shell sees.

Checks that live elsewhere and are not repeated here: wrong-typed, unknown and cross-key
configuration values stopping Snakemake before any job (``tests/test_pipeline.py``:
``test_an_invalid_config_fails_before_any_job_naming_the_key``,
``test_the_wrong_type_error_names_the_key_path``); the library-level refusals of
:func:`advcg.mapping.map_to_beads`, :meth:`advcg.trajectory.CGTrajectory.load` and
:meth:`advcg.potential.CGPotential.from_json` (``tests/test_mapping.py``, ``test_trajectory.py``,
``test_potential.py``); :func:`advcg.engine.choose_accelerator` (``tests/test_engine.py``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import MDAnalysis as mda
import numpy as np
import pytest
import yaml
from MDAnalysis.coordinates.memory import MemoryReader

from advcg import cli, units
from advcg.config import load_config
from advcg.engine import has_kokkos_gpu
from advcg.potential import CGPotential, PairSpline, SWThreeBody
from advcg.stages import initial_state
from advcg.trajectory import CGTrajectory

REPO = Path(__file__).resolve().parent.parent
TEST_CONFIG = REPO / "config" / "test.yaml"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

# -- real input files ---------------------------------------------------------------------------
MASSES = np.array([15.9994, 1.008, 1.008])
GEOMETRY = np.array([[0.0, 0.0, 0.0], [0.8164904, 0.5773590, 0.0], [-0.8164904, 0.5773590, 0.0]])
N_DCD_FRAMES = 4


def _water(n_side: int = 3, density: float = 1.0, n_frames: int = N_DCD_FRAMES, seed: int = 0):
    """In-memory MDAnalysis universe of ``n_side**3`` rigid water molecules (bonds, molecule ids,
    masses) at ``density`` g/cm³ on a jittered lattice, moving a little from frame to frame."""
    n = n_side ** 3
    box = (n * units.WATER_MASS / (density * units.AVOGADRO * 1e-24)) ** (1 / 3)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    com = (grid + 0.5) * box / n_side + np.cumsum(rng.normal(0, 0.1, (n_frames, n, 3)), axis=0)
    local = GEOMETRY - MASSES @ GEOMETRY / MASSES.sum()
    atoms = (com[:, :, None, :] + local).reshape(n_frames, 3 * n, 3)
    u = mda.Universe.empty(3 * n, n_residues=n, atom_resindex=np.repeat(np.arange(n), 3),
                           trajectory=True)
    u.add_TopologyAttr("names", ["OW", "HW1", "HW2"] * n)
    u.add_TopologyAttr("elements", ["O", "H", "H"] * n)
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
    u.load_new(atoms % box, format=MemoryReader, dimensions=[box, box, box, 90, 90, 90], dt=0.02)
    return u


def _write_lammps(u, directory: Path, name: str = "w") -> tuple[Path, Path]:
    """LAMMPS data file (molecule ids, masses, bonds) and a DCD trajectory of ``u``."""
    topology, trajectory = directory / f"{name}.data", directory / f"{name}.dcd"
    u.trajectory[0]
    u.trajectory.ts.data["molecule_tag"] = u.atoms.resids
    u.atoms.write(str(topology))
    with mda.Writer(str(trajectory), n_atoms=len(u.atoms), dt=0.02) as writer:
        for _ in u.trajectory:
            writer.write(u.atoms)
    return topology, trajectory


def _gro(directory: Path, residues: list[list[str]], name: str) -> Path:
    """A GRO file of residues with the given atom names (masses guessed from the names)."""
    names = [atom for res in residues for atom in res]
    resindex = np.concatenate([[i] * len(res) for i, res in enumerate(residues)])
    u = mda.Universe.empty(len(names), n_residues=len(residues), atom_resindex=resindex,
                           trajectory=True)
    u.add_TopologyAttr("names", names)
    u.add_TopologyAttr("resnames", ["MOL"] * len(residues))
    u.add_TopologyAttr("resids", np.arange(1, len(residues) + 1))
    box = (len(residues) * units.WATER_MASS / (units.AVOGADRO * 1e-24)) ** (1 / 3)
    u.atoms.positions = np.random.default_rng(1).random((len(names), 3)) * box
    u.dimensions = [box, box, box, 90, 90, 90]
    path = directory / f"{name}.gro"
    u.atoms.write(str(path))
    return path


@pytest.fixture(scope="module")
def aa(tmp_path_factory) -> dict[str, Path]:
    """AA inputs, good and bad, written once for the module."""
    d = tmp_path_factory.mktemp("aa")
    files: dict[str, Path] = {}
    files["data"], files["dcd"] = _write_lammps(_water(), d)
    raw = files["dcd"].read_bytes()
    (d / "half.dcd").write_bytes(raw[: len(raw) // 2])                 # cut inside a frame
    frame = 3 * (4 * 81 + 8) + 56          # bytes per frame: x, y, z records of 81 atoms + the cell
    header = len(raw) - N_DCD_FRAMES * frame
    (d / "two_frames.dcd").write_bytes(raw[: header + 2 * frame])       # cut between frames
    (d / "noise.dcd").write_bytes(np.random.default_rng(3).bytes(4096))  # not a DCD at all
    (d / "folder.dcd").mkdir()
    water = _water()
    water.atoms.write(str(d / "w.gro"))
    with mda.Writer(str(d / "w.xtc"), n_atoms=len(water.atoms)) as writer:
        for _ in water.trajectory:
            writer.write(water.atoms)
    raw = (d / "w.xtc").read_bytes()
    (d / "half.xtc").write_bytes(raw[: len(raw) // 2])
    files["lo_data"], files["lo_dcd"] = _write_lammps(_water(density=0.3), d, "lo")
    files["small_data"], _ = _write_lammps(_water(n_side=2), d, "small")  # 8 molecules
    _water().atoms.write(str(d / "w.xyz"))                              # names only: no molecules
    files["methanolish"] = _gro(d, [["C", "O", "H"]] * 8, "coh")
    files["mixed"] = _gro(d, [["OW", "HW1", "HW2"]] * 7 + [["C", "O", "H", "H"]], "mixed")
    return {**files, **{p.name: p for p in d.iterdir()}}


# -- running the command line -------------------------------------------------------------------
def advcg(caplog: pytest.LogCaptureFixture, *args: object) -> tuple[int, str]:
    """``advcg ARGS`` in-process: exit status and the error line(s) it logged."""
    caplog.clear()
    status = cli.main([str(a) for a in args])
    errors = [r.getMessage() for r in caplog.records
              if r.name == "advcg" and r.levelno >= logging.ERROR]
    return status, "\n".join(errors)


def assert_refused(status: int, message: str, *expected: str) -> None:
    """Non-zero exit and a message containing every regular expression of ``expected``."""
    assert status != 0, f"accepted; log: {message}"
    assert message, "no error message"
    for pattern in expected:
        assert re.search(pattern, message), \
            f"{pattern!r} not in the message {message!r}"


def assert_nothing_written(path: Path) -> None:
    """Neither ``path`` nor a temporary file of the atomic writers (``.<name>.*``) exists."""
    assert not path.exists(), f"{path} was written"
    if path.parent.is_dir():
        leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
        assert not leftovers, f"temporary files left: {leftovers}"


# -- AA topology / trajectory for `advcg map` ---------------------------------------------------------
def test_the_good_aa_inputs_map(aa, tmp_path, caplog) -> None:
    """The control: the files the cases below spoil are valid as written."""
    out = tmp_path / "beads.npz"
    assert advcg(caplog, "map", "--topology", aa["data"], "--trajectory", aa["dcd"],
                 "--output", out) == (0, "")
    assert CGTrajectory.load(out).n_frames == N_DCD_FRAMES
    assert advcg(caplog, "map", "--topology", aa["w.gro"], "--trajectory", aa["w.xtc"],
                 "--output", out) == (0, "")
    assert CGTrajectory.load(out).n_frames == N_DCD_FRAMES
    status, _ = advcg(caplog, "map", "--topology", aa["lo_data"], "--trajectory", aa["lo_dcd"],
                      "--output", tmp_path / "lo.npz", "--any-density")
    assert status == 0
    assert advcg(caplog, "map", "--topology", aa["methanolish"], "--any-liquid",
                 "--output", tmp_path / "coh.npz")[0] == 0


@pytest.mark.parametrize("topology, trajectory, expected", [
    ("data", "missing.dcd", [r"trajectory file \S*missing\.dcd does not exist"]),
    ("data", "folder.dcd", [r"folder\.dcd is not a regular file"]),
    ("data", "noise.dcd", [r"noise\.dcd is not a readable DCD file"]),
    ("data", "half.dcd", [r"half\.dcd is truncated or corrupt", "whole frames of 1052 bytes"]),
    ("data", "two_frames.dcd", [r"two_frames\.dcd is truncated", "declares 4 frames but it holds 2"]),
    ("w.gro", "half.xtc", [r"half\.xtc is truncated or corrupt", "XTC frame"]),
    ("small_data", "dcd", [r"small\.data", r"w\.dcd", "MDAnalysis cannot read"]),
    ("w.xyz", None, [r"w\.xyz", "defines no molecules"]),
    ("methanolish", None, [r"coh\.gro", "not water's", "--any-liquid"]),
    ("mixed", None, [r"mixed\.gro", "different numbers of atoms", "one-component"]),
    ("lo_data", "lo_dcd", [r"lo\.dcd", r"density 0\.300 g/cm\^3", "liquid water", "--any-density"]),
], ids=["missing", "directory", "not-a-dcd", "dcd-cut-in-a-frame", "dcd-cut-between-frames",
        "xtc-cut-in-a-frame", "atom-count-mismatch", "no-molecules", "not-water", "mixed-molecules", "density-0.3"])
def test_map_refuses_bad_aa_input(aa, tmp_path, caplog, topology, trajectory, expected) -> None:
    out = tmp_path / "beads.npz"
    args = ["map", "--topology", aa[topology], "--output", out]
    if trajectory is not None:
        args += ["--trajectory", aa.get(trajectory, aa["dcd"].parent / trajectory)]
    assert_refused(*advcg(caplog, *args), *expected)
    assert_nothing_written(out)


def test_map_refuses_a_negative_time_unit(aa, tmp_path, caplog) -> None:
    out = tmp_path / "beads.npz"
    assert_refused(*advcg(caplog, "map", "--topology", aa["data"], "--trajectory", aa["dcd"],
                          "--dt-ps", "-0.002", "--output", out), r"dt_ps must be > 0 \(ps\); got -0\.002")
    assert_nothing_written(out)


def test_a_truncated_dcd_fails_in_a_shell_with_one_line(aa, tmp_path) -> None:
    """What a user sees: exit status 2, the reason on stderr, no traceback, no file."""
    out = tmp_path / "beads.npz"
    result = subprocess.run([sys.executable, "-m", "advcg.cli", "map", "--topology", str(aa["data"]),
                             "--trajectory", str(aa["half.dcd"]), "--output", str(out)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"trajectory file {aa['half.dcd']} is truncated or corrupt" in result.stderr
    assert_nothing_written(out)


# -- bead trajectories (.npz) -------------------------------------------------------------------------
N_BEADS = 64


def _beads(n_frames: int, dt: float = 20.0) -> CGTrajectory:
    edge = (N_BEADS / units.number_density(1.0)) ** (1 / 3)
    rng = np.random.default_rng(5)
    x = rng.random((N_BEADS, 3)) * edge + np.cumsum(rng.normal(0, 0.1, (n_frames, N_BEADS, 3)), axis=0)
    return CGTrajectory(x, np.full((n_frames, 3), edge), dt * np.arange(n_frames))


@pytest.fixture(scope="module")
def beads(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("beads")
    files = {"good": _beads(11).save(d / "good.npz"), "single": _beads(1).save(d / "single.npz"),
             "short": _beads(3).save(d / "short.npz")}
    raw = files["good"].read_bytes()
    files["truncated"] = d / "truncated.npz"
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    return files


def test_observables_need_more_than_one_frame(beads, tmp_path, caplog) -> None:
    out = tmp_path / "obs.json"
    args = ["observables", "--r-max", "6", "--output-json", out, "--trajectory"]
    assert advcg(caplog, *args, beads["good"])[0] == 0              # the control
    out.unlink()
    assert_refused(*advcg(caplog, *args, beads["single"]),
                   r"single\.npz has a single frame", "MSD and D need at least two frames")
    assert_nothing_written(out)


@pytest.mark.parametrize("name, expected", [
    ("single", [r"single\.npz", r"a window has n_lags \+ 1 = 3 frames", "the trajectory has 1 frame$"]),
    ("short", [r"short\.npz", "a window of 80.0 fs is longer than the trajectory", "3 frames"]),
])
def test_aa_windows_longer_than_the_trajectory(beads, tmp_path, caplog, name, expected) -> None:
    out = tmp_path / "aa_features.pt"
    args = ["features", "aa", "--config", TEST_CONFIG, "--threads", "1", "--output", out, "--input"]
    assert advcg(caplog, *args, beads["good"])[0] == 0              # the control: 11 frames
    out.unlink()
    assert_refused(*advcg(caplog, *args, beads[name]), *expected)
    assert_nothing_written(out)


@pytest.mark.parametrize("command", [
    ["observables", "--r-max", "6", "--output-json", "{out}/obs.json", "--trajectory"],
    ["init", "--config", str(TEST_CONFIG), "--outdir", "{out}/init", "--aa-trajectory"],
    ["features", "aa", "--config", str(TEST_CONFIG), "--threads", "1", "--output", "{out}/f.pt",
     "--input"],
], ids=["observables", "init", "features"])
def test_a_truncated_bead_file_is_named(beads, tmp_path, caplog, command) -> None:
    args = [a.format(out=tmp_path / "out") for a in command]
    assert_refused(*advcg(caplog, *args, beads["truncated"]),
                   r"truncated\.npz is not a readable \.npz file \(truncated or corrupt\?\)")
    assert not (tmp_path / "out").exists()


# -- potentials, states, configurations -----------------------------------------------------------------
def _state0(potential: Path, outdir: Path) -> None:
    """Training state 0 of ``potential`` with config/test.yaml's settings."""
    config = load_config(TEST_CONFIG)
    initial_state(potential, outdir, potential=config.potential, dynamics=config.dynamics,
                  temperature=config.temperature, timestep=config.timestep, seed=config.seed)


def _water_like_potential() -> CGPotential:
    r = np.linspace(2.2, 9.0, 400)
    phi = 4 * 0.3 * ((3.0 / r) ** 12 - (3.0 / r) ** 6)
    return CGPotential(PairSpline.fit(r, phi - phi[-1], r_min=2.2, r_cut=9.0), SWThreeBody())


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict[str, Path]:
    """A potential JSON (r_cut 9 Å, ``sw``: matches config/test.yaml), spoilt copies, a state."""
    d = tmp_path_factory.mktemp("model")
    files = {"potential": d / "potential.json"}
    _water_like_potential().to_json(files["potential"])
    good = json.loads(files["potential"].read_text())

    def spoilt(name: str, edit) -> None:
        data = json.loads(json.dumps(good))
        edit(data)
        files[name] = d / f"{name}.json"
        files[name].write_text(json.dumps(data))   # Python's json writes NaN and Infinity

    spoilt("nan", lambda p: p["pair"]["coefficients"].__setitem__(7, float("nan")))
    spoilt("inf", lambda p: p["threebody"].__setitem__("epsilon", float("inf")))
    spoilt("negative_lambda", lambda p: p["threebody"].__setitem__("lambda", -1.0))
    spoilt("typo", lambda p: p["threebody"].__setitem__("lamda", p["threebody"].pop("lambda")))
    spoilt("unknown_top_level", lambda p: p.__setitem__("temperature", 300.0))
    spoilt("absurd_kappa", lambda p: p["pair"]["wall"].__setitem__("kappa", 1e300))
    spoilt("absurd_coefficient", lambda p: p["pair"]["coefficients"].__setitem__(2, -1e30))
    spoilt("kilojoules", lambda p: p["units"].__setitem__("energy", "kJ/mol"))
    files["binary"] = d / "binary.json"
    files["binary"].write_bytes(b"\xff\xfe\x00\x01 not text")
    files["state"] = d / "state"
    _state0(files["potential"], files["state"])
    return files


@pytest.mark.parametrize("name, expected", [
    ("nan", [r"nan\.json: key 'pair\.coefficients\[7\]' is not finite \(nan\)"]),
    ("inf", [r"inf\.json: key 'threebody\.epsilon' is not finite \(inf\)"]),
    ("binary", [r"binary\.json: not a readable CG potential JSON file"]),
    ("missing", [r"CG potential file \S*missing\.json does not exist"]),
    ("state", [r"state: not a readable CG potential JSON file", "Is a directory"]),
])
def test_bad_potential_files_are_named_with_the_key(model, tmp_path, caplog, name, expected) -> None:
    path = model.get(name, model["potential"].parent / f"{name}.json")
    assert_refused(*advcg(caplog, "export", "--parameters", path, "--outdir", tmp_path / "export"),
                   *expected)
    assert_nothing_written(tmp_path / "export")
    assert_refused(*advcg(caplog, "state-init", "--config", TEST_CONFIG, "--potential", path,
                          "--outdir", tmp_path / "state"), *expected)
    assert_nothing_written(tmp_path / "state")


@pytest.mark.parametrize("name, expected", [
    ("typo", [r"typo\.json: unknown key 'threebody\.lamda' \(did you mean 'lambda'\?\)"]),
    ("unknown_top_level", [r"unknown_top_level\.json: unknown key 'temperature'; known keys: format"]),
    ("absurd_kappa", [r"absurd_kappa\.json: key 'pair\.wall\.kappa' = 1e\+300 is outside the physical "
                      r"range 0 \.\. 1e\+06 kcal/\(mol Å²\)"]),
    ("absurd_coefficient", [r"absurd_coefficient\.json: key 'pair\.coefficients\[2\]' = -1e\+30 is "
                            r"outside the physical range -10000 \.\. 10000 kcal/mol"]),
    ("kilojoules", [r"kilojoules\.json: key 'units\.energy' must be 'kcal/mol', got 'kJ/mol'"]),
])
def test_potential_files_are_read_as_strictly_as_the_configuration(model, tmp_path, caplog, name,
                                                                   expected) -> None:
    """Unknown keys (a typo would leave the default in force) and values outside physical ranges."""
    assert_refused(*advcg(caplog, "export", "--parameters", model[name], "--outdir", tmp_path / "export"),
                   *expected)
    assert_nothing_written(tmp_path / "export")
    assert_refused(*advcg(caplog, "state-init", "--config", TEST_CONFIG, "--potential", model[name],
                          "--outdir", tmp_path / "state"), *expected)
    assert_nothing_written(tmp_path / "state")


def test_absurd_temperatures_are_refused_by_export_and_state_init(model, tmp_path, caplog, capsys) -> None:
    """Finite but unphysical: 1e300 K on the command line and in the configuration."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "--parameters", str(model["potential"]), "--outdir", str(tmp_path / "export"),
                  "--temperature", "1e300"])
    assert exit_info.value.code == 2
    assert "argument --temperature: 1e300 is out of range: must be <= 1000 K" in capsys.readouterr().err
    assert_nothing_written(tmp_path / "export")
    config = _config(tmp_path, "hot", temperature=1e300)
    assert_refused(*advcg(caplog, "state-init", "--config", config, "--potential", model["potential"],
                          "--outdir", tmp_path / "state"),
                   r"hot\.yaml: invalid configuration", r"temperature: 1e\+300 is greater than the maximum of 1000")
    assert_nothing_written(tmp_path / "state")


@pytest.mark.parametrize("option, value, expected", [
    ("--temperature", "-5", r"temperature must be a finite number in \(0, 1000\], got -5\.0"),
    ("--timestep", "-2", r"timestep must be a finite number in \(0, 50\], got -2\.0"),
    ("--damp", "0", r"damp must be a finite number in \(0, 1e\+06\], got 0\.0"),
    ("--seed", "0", "LAMMPS seeds must be positive integers, got 0"),
])
def test_export_refuses_bad_options_before_writing(model, tmp_path, caplog, option, value, expected) -> None:
    """A refused export leaves no directory: no pair table without its deck."""
    outdir = tmp_path / "export"
    assert_refused(*advcg(caplog, "export", "--parameters", model["potential"], "--outdir", outdir,
                          option, value), expected)
    assert_nothing_written(outdir)


def test_export_refuses_a_negative_sw_strength_before_writing(model, tmp_path, caplog) -> None:
    outdir = tmp_path / "export"
    assert_refused(*advcg(caplog, "export", "--parameters", model["negative_lambda"], "--outdir", outdir),
                   r"lambda >= 0 \(threebody\.lambda\), got -1\.0")
    assert_nothing_written(outdir)


def _config(tmp_path: Path, name: str, **changes) -> Path:
    data = yaml.safe_load(TEST_CONFIG.read_text())
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("changes, expected", [
    ({"temperature": -5.0}, r"temperature: -5\.0 is less than or equal to the minimum of 0"),
    ({"timestep": -2.0}, r"timestep: -2\.0 is less than or equal to the minimum of 0"),
    ({"accelerator": "cuda"}, r"accelerator: 'cuda' is not one of \['auto', 'kokkos', 'openmp', 'serial'\]"),
    ({"temperature": float("nan")}, "temperature: nan is not a finite number"),
    ({"timestep": float("inf")}, "timestep: inf is not a finite number"),
], ids=["negative-temperature", "negative-timestep", "unknown-accelerator", "nan-temperature",
        "infinite-timestep"])
def test_config_values_are_named_with_the_key(model, tmp_path, caplog, changes, expected) -> None:
    config = _config(tmp_path, "bad", **changes)
    outdir = tmp_path / "state"
    control = _config(tmp_path, "control", training={**yaml.safe_load(TEST_CONFIG.read_text())["training"],
                                                     "localisation_radius": float("inf")})
    assert advcg(caplog, "state-init", "--config", control, "--potential", model["potential"],
                 "--outdir", tmp_path / "control")[0] == 0   # inf is allowed where it means "global"
    assert_refused(*advcg(caplog, "state-init", "--config", config, "--potential", model["potential"],
                          "--outdir", outdir), r"bad\.yaml: invalid configuration", expected)
    assert_nothing_written(outdir)


def test_an_unreadable_config_is_named(model, tmp_path, caplog) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00seed: 1")
    outdir = tmp_path / "state"
    assert_refused(*advcg(caplog, "state-init", "--config", binary, "--potential", model["potential"],
                          "--outdir", outdir), r"binary\.yaml: not a readable YAML configuration file")
    assert_refused(*advcg(caplog, "state-init", "--config", tmp_path / "none.yaml", "--potential",
                          model["potential"], "--outdir", outdir),
                   r"configuration file \S*none\.yaml does not exist")
    assert_nothing_written(outdir)


def test_negative_temperature_on_the_command_line(tmp_path, caplog) -> None:
    outdir = tmp_path / "reference"
    assert_refused(*advcg(caplog, "aa-reference", "--outdir", outdir, "--temperature", "-5",
                          "--accelerator", "serial"),
                   r"temperature must be a finite number > 0; got -5\.0")
    assert_nothing_written(outdir)


def test_unknown_accelerator_on_the_command_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["aa-reference", "--outdir", str(tmp_path / "reference"), "--accelerator", "cuda"])
    assert exit_info.value.code == 2
    assert "argument --accelerator: invalid choice: 'cuda'" in capsys.readouterr().err
    assert_nothing_written(tmp_path / "reference")


@pytest.mark.skipif(has_kokkos_gpu(), reason="this LAMMPS has a Kokkos GPU backend")
def test_kokkos_without_kokkos_stops_before_any_output(model, beads, tmp_path, caplog) -> None:
    config = _config(tmp_path, "kokkos", accelerator="kokkos")
    expected = [r"kokkos\.yaml", "accelerator 'kokkos' requested but this LAMMPS has no KOKKOS GPU backend",
                "set accelerator: openmp|serial"]
    outdir = tmp_path / "simulate"
    assert_refused(*advcg(caplog, "simulate", "--config", config, "--threads", "1", "--state", model["state"],
                          "--aa-trajectory", beads["good"], "--outdir", outdir), *expected)
    assert_nothing_written(outdir)
    outdir = tmp_path / "init"
    assert_refused(*advcg(caplog, "init", "--config", config, "--aa-trajectory", beads["good"],
                          "--outdir", outdir), *expected)
    assert_nothing_written(outdir)
    outdir = tmp_path / "reference"
    assert_refused(*advcg(caplog, "aa-reference", "--outdir", outdir, "--accelerator", "kokkos",
                          "--n-molecules", "27", "--equilibration-ps", "0", "--production-ps", "0.1"),
                   "accelerator 'kokkos' requested but this LAMMPS has no KOKKOS GPU backend")
    assert_nothing_written(outdir)


# -- training-state files --------------------------------------------------------------------------
def test_a_truncated_recording_is_named(tmp_path, caplog) -> None:
    recording = tmp_path / "recording.npz"
    np.savez(recording, paths=np.zeros((2, 4, 3, 3)), box=np.ones(3), window_starts=np.arange(2),
             timestep=np.float64(2.0), lag_steps=np.int64(1))
    raw = recording.read_bytes()
    recording.write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "cg_features.pt"
    assert_refused(*advcg(caplog, "features", "cg", "--config", TEST_CONFIG, "--threads", "1",
                          "--input", recording, "--output", out),
                   r"CG recording \S*recording\.npz is unreadable")
    assert_nothing_written(out)


def test_nan_in_a_state_dynamics_file_is_named(model, beads, tmp_path, caplog) -> None:
    state = tmp_path / "state"
    _state0(model["potential"], state)
    dynamics = json.loads((state / "dynamics.json").read_text())
    dynamics["temperature"] = float("nan")
    (state / "dynamics.json").write_text(json.dumps(dynamics))
    outdir = tmp_path / "simulate"
    assert_refused(*advcg(caplog, "simulate", "--config", TEST_CONFIG, "--threads", "1", "--state", state,
                          "--aa-trajectory", beads["good"], "--outdir", outdir),
                   "temperature must be a finite number in", r"dynamics\.json")
    assert_nothing_written(outdir)
