"""The AA water reference: real LAMMPS runs of SPC/E and TIP4P/2005, their outputs and mapping."""

import json

import numpy as np
import pytest

from advcg import cli, units
from advcg.mapping import map_to_beads
from advcg.observables import rdf
from advcg.reference import load_aa_reference, run_aa_reference


@pytest.fixture(scope="module")
def tiny_spce(tmp_path_factory):
    """216 SPC/E molecules, 1 ps equilibration + 2 ps production, frames every 20 fs."""
    outdir = tmp_path_factory.mktemp("aa") / "spce"
    return run_aa_reference(outdir, model="spce", n_molecules=216, equilibration_ps=1.0,
                            production_ps=2.0, dump_interval_fs=20.0, accelerator="serial")


def test_outputs_exist_and_describe_the_run(tiny_spce):
    ref = tiny_spce
    for path in (ref.topology, ref.trajectory, ref.log, ref.metadata):
        assert path.is_file() and path.stat().st_size > 0
    assert sorted(p.name for p in ref.outdir.parent.iterdir()) == ["spce"]  # no temporaries left
    meta = json.loads(ref.metadata.read_text())
    assert meta["model"] == "spce" and meta["n_molecules"] == 216 and meta["timestep"] == 2.0
    assert ref.ns_per_day > 0 and ref.timesteps_per_s > 0 and ref.wall_time_s > 0
    assert "Performance:" in ref.log.read_text()
    assert load_aa_reference(ref.outdir) == ref


def test_reference_maps_to_continuous_water_beads(tiny_spce):
    traj = map_to_beads(tiny_spce.topology, tiny_spce.trajectory)
    assert traj.n_beads == 216 and traj.n_frames == tiny_spce.n_frames == 101
    assert traj.timestep == pytest.approx(20.0, rel=1e-6)
    assert traj.times[0] == 0.0
    assert traj.mass == pytest.approx(units.WATER_MASS, abs=1e-4)
    volume = np.prod(traj.box[0])
    assert 216 / volume == pytest.approx(units.number_density(1.0), rel=1e-4)
    step = np.linalg.norm(np.diff(traj.positions, axis=0), axis=-1)
    assert step.max() < 1.5       # no jumps across the box in 20 fs
    # Bead RDF of a short, small run: at least the first shell at the right place.
    g = rdf(traj, r_max=9.0, bin_width=0.1)
    assert 2.6 <= g.r[np.argmax(g.g)] <= 2.9


def test_tip4p2005_runs(tmp_path):
    ref = run_aa_reference(tmp_path / "tip4p", model="tip4p2005", n_molecules=125,
                           equilibration_ps=0.2, production_ps=0.2, accelerator="serial")
    traj = map_to_beads(ref.topology, ref.trajectory)
    assert traj.n_beads == 125 and traj.n_frames == 11
    assert np.all(np.isfinite(traj.positions))
    assert "lj/cut/tip4p/long" in ref.log.read_text()


def test_cli_runs_a_reference_and_refuses_to_overwrite(tmp_path):
    args = ["aa-reference", "--outdir", str(tmp_path / "cli"), "--n-molecules", "27",
            "--equilibration-ps", "0", "--production-ps", "0.1", "--quiet", "--accelerator", "serial"]
    assert cli.main(args) == 0
    assert (tmp_path / "cli" / "aa.dcd").is_file()
    assert cli.main(args) == 2                     # non-empty outdir
    assert cli.main(args + ["--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]
    assert cli.main(["aa-reference", "--outdir", str(tmp_path / "x"), "--temperature", "-5"]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="tip3p"), "spce, tip4p2005"),
    (dict(temperature=-300.0), "temperature"),
    (dict(density=0.0), "density"),
    (dict(n_molecules=0), "n_molecules"),
    (dict(n_molecules=10.5), "n_molecules"),
    (dict(production_ps=-1.0), "production_ps"),
    (dict(equilibration_ps=-1.0), "equilibration_ps"),
    (dict(dump_interval_fs=5.0), "multiple of the 2.0 fs"),
    (dict(production_ps=0.001), "whole number"),
    (dict(seed=0), "seed"),
    (dict(accelerator="cuda"), "auto, kokkos, openmp, serial"),
])
def test_invalid_settings_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_aa_reference(tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()


def test_failed_run_leaves_only_its_log(tmp_path):
    # One molecule at 50 g/cm³ (a 0.8 Å box): LAMMPS stops (neighbour list overflow).
    from advcg.engine import EngineError

    with pytest.raises(EngineError):
        run_aa_reference(tmp_path / "fail", n_molecules=1, density=50.0, equilibration_ps=0.0,
                         production_ps=0.02, accelerator="serial")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fail.failed.log.lammps"]


@pytest.mark.slow
def test_spce_512_first_peak(tmp_path):
    ref = run_aa_reference(tmp_path / "spce512", n_molecules=512, equilibration_ps=10.0,
                           production_ps=10.0, accelerator="auto")
    traj = map_to_beads(ref.topology, ref.trajectory)
    g = rdf(traj, r_max=12.0, bin_width=0.05)
    peak = g.r[np.argmax(g.g)]
    assert 2.7 <= peak <= 2.8
    assert 2.6 <= g.g.max() <= 3.4
