"""Structural initialisation: Boltzmann inversion and IBI with real LAMMPS runs (docs/method.md §6, §7)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from advcg.cli import main
from advcg.config import DEFAULT_CONFIG_PATH
from advcg.dynamics import LangevinDynamics
from advcg.export import export_model
from advcg.ibi import IBIResult, boltzmann_inversion, ibi_update, initialise, iterative_boltzmann_inversion, target_rdf
from advcg.observables import RDF, rdf_max_abs_diff
from advcg.potential import CGPotential, PairSpline, SWThreeBody
from advcg.simulation import CGSystem, RunPlan, build_engine, recording_trajectory, run_cg
from advcg.trajectory import CGTrajectory
from advcg.units import BOLTZMANN, WATER_MASS, mass_density

TEMPERATURE = 300.0
KT = BOLTZMANN * TEMPERATURE
R_MIN, R_CUT, SPACING = 2.2, 9.0, 0.2  # the 216-bead box is 18.6 Å: r_c <= 9.3 Å
LATTICE = 3.1  # Å; 6^3 beads on a simple cubic lattice: 18.6 Å box, water number density


def lennard_jones(r: np.ndarray, sigma: float = 3.0, epsilon: float = 0.4) -> np.ndarray:
    """4ε[(σ/r)^12 − (σ/r)^6], kcal/mol: at 300 K (T* = 1.49) and ρ* = 0.91 a dense fluid."""
    x = (sigma / r) ** 6
    return 4.0 * epsilon * (x * x - x)


def analytic_rdf(r_max: float, bin_width: float, scale: float = 1.0) -> tuple[RDF, np.ndarray]:
    """g(r) = scale · exp(−φ_LJ/kT) on histogram bins, exactly 0 where it is below 1e-6."""
    r = (np.arange(round(r_max / bin_width)) + 0.5) * bin_width
    phi = lennard_jones(r)
    g = scale * np.exp(-phi / KT)
    g[g < 1e-6] = 0.0
    return RDF(r=r, g=g, bin_width=bin_width, n_frames=1), phi


# -- Boltzmann inversion ----------------------------------------------------------------------------
def test_boltzmann_inversion_reproduces_minus_kt_ln_g_where_sampled():
    target, phi = analytic_rdf(10.0, 0.05, scale=1.02)  # a 2 % normalisation error: shifted away
    pair = boltzmann_inversion(target, TEMPERATURE, r_min=R_MIN, r_cut=9.0, spacing=SPACING)
    assert isinstance(pair, PairSpline) and pair.r_cut == 9.0 and pair.r_min == R_MIN
    r = torch.tensor(target.r)
    with torch.no_grad():
        fitted = pair(r).numpy()
        slope = pair.derivative(r).numpy()
    # the documented tail shift: the weighted mean of -kT ln g over [r_c - 1 Å, r_c)
    tail = (target.r >= 8.0) & (target.r < 9.0)
    expected = phi - np.average(phi[tail], weights=target.g[tail] / (target.g[tail] + 0.01))
    sampled = (target.g >= 0.05) & (target.r <= 8.0)  # away from the tail taper (8–9 Å)
    error = np.abs(fitted - expected)[sampled]
    assert error.max() < 0.06, f"BI off by {error.max():.4f} kcal/mol where g >= 0.05"
    bulk = sampled & (target.r >= 4.5)
    # -kT ln(1.02) = -0.0118 kcal/mol would remain without the tail shift
    assert np.abs(fitted - expected)[bulk].max() < 0.001
    # smooth to zero at r_c
    assert abs(fitted[np.searchsorted(target.r, 8.975)]) < 1e-3
    # repulsive core below the sampled range, down to r_min
    core = (target.r >= R_MIN) & (target.g < 0.01)
    assert np.all(slope[core] < -KT) and fitted[core].min() > fitted[sampled].max()


def test_boltzmann_inversion_rejects_bad_rdfs():
    empty = RDF(r=(np.arange(200) + 0.5) * 0.05, g=np.zeros(200), bin_width=0.05, n_frames=10)
    with pytest.raises(ValueError, match="no sampled bin"):
        boltzmann_inversion(empty, TEMPERATURE, r_min=R_MIN, r_cut=R_CUT, spacing=SPACING)
    short, _ = analytic_rdf(8.0, 0.05)
    with pytest.raises(ValueError, match="before r_cut"):
        boltzmann_inversion(short, TEMPERATURE, r_min=R_MIN, r_cut=R_CUT, spacing=SPACING)
    full, _ = analytic_rdf(10.0, 0.05)
    with pytest.raises(ValueError, match="temperature"):
        boltzmann_inversion(full, -1.0, r_min=R_MIN, r_cut=R_CUT, spacing=SPACING)
    with pytest.raises(ValueError, match="spacing"):
        boltzmann_inversion(full, TEMPERATURE, r_min=R_MIN, r_cut=R_CUT, spacing=0.3)


def test_ibi_update_is_the_damped_log_ratio_fitted_into_the_spline():
    target, _ = analytic_rdf(10.0, 0.05)
    pair = boltzmann_inversion(target, TEMPERATURE, r_min=R_MIN, r_cut=R_CUT, spacing=SPACING)
    # CG RDF 10 % too high everywhere: the IBI step raises phi by alpha kT ln(1.1)
    g_cg = RDF(r=target.r, g=1.1 * target.g, bin_width=0.05, n_frames=1)
    new = ibi_update(pair, g_cg, target, TEMPERATURE, damping_factor=0.5, epsilon=1e-9)
    r = torch.linspace(3.0, 7.0, 41, dtype=torch.float64)
    with torch.no_grad():
        change = (new(r) - pair(r)).numpy()
    np.testing.assert_allclose(change, 0.5 * KT * math.log(1.1), rtol=0.02)
    # a CG run entering the AA core (g_AA = 0) is pushed out by at most alpha kT (clipped log);
    # where the RDFs agree nothing changes
    entering = RDF(r=target.r, g=np.where((target.r > R_MIN) & (target.g == 0), 0.05, target.g),
                   bin_width=0.05, n_frames=1)
    pushed = ibi_update(pair, entering, target, TEMPERATURE, damping_factor=1.0)
    with torch.no_grad():
        core = (pushed(torch.tensor([2.25, 2.3, 2.35])) - pair(torch.tensor([2.25, 2.3, 2.35]))).numpy()
        assert np.all((core > 0.7 * KT) & (core < 1.3 * KT)), core / KT
        assert torch.allclose(pushed(r[5:]), pair(r[5:]), atol=0.01 * KT)
    with pytest.raises(ValueError, match="different bins"):
        ibi_update(pair, analytic_rdf(9.5, 0.05)[0], target, TEMPERATURE)


# -- a 216-bead CG "truth" run with a known pair potential -------------------------------------------
def truth_potential() -> CGPotential:
    """Lennard-Jones fitted into the pair spline, tapered to 0 over 8–9 Å; no three-body term."""
    r = np.linspace(R_MIN, R_CUT, 1000, endpoint=False)
    taper = np.where(r < 8.0, 1.0, 0.5 * (1 + np.cos(np.pi * (r - 8.0))))
    pair = PairSpline.fit(r, lennard_jones(r) * taper, r_min=R_MIN, r_cut=R_CUT, spacing=SPACING)
    return CGPotential(pair, SWThreeBody(strength=0.0))


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> CGTrajectory:
    """4 ps from a lattice, then 20 ps of frames every 100 fs."""
    grid = np.arange(6) * LATTICE + 0.5 * LATTICE
    positions = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    system = CGSystem(positions, np.full(3, 6 * LATTICE), WATER_MASS)
    density = mass_density(system.n_beads, float(np.prod(system.box)))
    dynamics = LangevinDynamics(temperature=TEMPERATURE, timestep=2.0, mass=WATER_MASS, damp=100.0)
    model = export_model(truth_potential(), tmp_path_factory.mktemp("truth"), dynamics, n_beads=216,
                         density=density)
    engine = build_engine(system, model, TEMPERATURE, 2.0, velocity_seed=5, accelerator="serial")
    try:
        recording = run_cg(engine, dynamics, 5,
                           RunPlan(equilibration_steps=2000, production_steps=10000, frame_every=50))
    finally:
        engine.close()
    return recording_trajectory(recording, 2.0, WATER_MASS)


def _config(tmp_path: Path, **init: float) -> Path:
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config.update(accelerator="serial", threads=1, seed=3)
    config["potential"].update(r_min=R_MIN, r_cut=R_CUT, knot_spacing=SPACING)
    config["init"].update(init)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_init_approaches_the_truth_rdf(truth, tmp_path):
    """BI of a dense fluid's RDF over-structures; the default (IMC) updates bring max|Δg| down.

    Spread behind the bound, measured over 20 seeds (truth run and IMC seeds 1-20, one thread,
    this test's settings): BI's max|Δg| d0 =
    0.42 ± 0.07; the best of the two IMC iterates, min(d1, d2)/d0 = 0.43 ± 0.15 (0.22-0.73). A
    single step is noisy on 216 beads and 8 ps (d1/d0 up to 1.01, d2/d0 up to 0.78), so the test
    bounds the best iterate, the one ``advcg init`` keeps, at the mean + 3 SD: 0.86."""
    beads = tmp_path / "beads.npz"
    truth.save(beads)
    outdir = tmp_path / "init"
    config = _config(tmp_path, ibi_iterations=2, ibi_run_ps=8.0, damp_fs=100.0)
    assert main(["init", "--aa-trajectory", str(beads), "--config", str(config),
                 "--outdir", str(outdir), "--pair-only"]) == 0
    report = json.loads((outdir / "init_report.json").read_text())
    deviations = [it["rdf_max_abs_diff"] for it in report["ibi"]["iterations"]]
    print(f"IMC on the 216-bead truth: max|dg| per iteration {np.round(deviations, 3)}")
    assert report["method"] == "imc" and report["ibi"]["settings"]["method"] == "imc"
    assert len(deviations) == 3 and report["ibi"]["stop_reason"] == "max_iterations"
    assert deviations[0] > 0.2, f"BI already matches ({deviations}): the test cannot fail"
    assert min(deviations[1:]) < 0.86 * deviations[0], deviations
    assert report["ibi"]["best_iteration"] == int(np.argmin(deviations))
    assert all(it["run_time_s"] > 0 and it["steps_per_s"] > 0 and it["n_frames"] == 81
               for it in report["ibi"]["iterations"])
    initial = CGPotential.from_json(outdir / "potential.json")
    assert float(initial.threebody.strength.detach()) == 0.0 and report["pair_only"]
    best = report["ibi"]["best_iteration"]
    assert torch.equal(initial.theta, CGPotential.from_json(
        outdir / "ibi" / f"iter_{best:03d}" / "model" / "parameters.json").theta)
    for k in range(3):
        files = outdir / "ibi" / f"iter_{k:03d}"
        assert {"rdf.npz", "metrics.json", "log.lammps", "model"} <= {p.name for p in files.iterdir()}
    assert not list(outdir.rglob(".*.tmp*"))  # atomic writes leave no temporaries
    target = np.load(outdir / "target_rdf.npz")
    assert target["r"][-1] == pytest.approx(9.275)  # 9.3 Å = half the box
    assert main(["init", "--aa-trajectory", str(beads), "--config", str(config),
                 "--outdir", str(outdir)]) == 2  # a finished initialisation is kept


def test_ibi_with_threebody_targets_the_rdf_and_keeps_the_threebody_term(truth, tmp_path):
    """Plain IBI from BI with λ = 10 switched on: the pair term absorbs the three-body term."""
    target = target_rdf(truth, R_CUT)
    pair = boltzmann_inversion(target, TEMPERATURE, r_min=R_MIN, r_cut=R_CUT, spacing=SPACING)
    start = CGPotential(pair, SWThreeBody())
    kwargs = dict(temperature=TEMPERATURE, damp=100.0, timestep=2.0, equilibration_ps=1.0,
                  seed=9, accelerator="serial", method="ibi")
    result = iterative_boltzmann_inversion(start, target, truth, n_iterations=1, run_ps=5.0,
                                           workdir=tmp_path / "ibi", **kwargs)
    assert isinstance(result, IBIResult) and result.stop_reason == "max_iterations"
    first, second = (it.rdf_max_abs_diff for it in result.iterations)
    print(f"IBI with lambda = 10: max|dg| {first:.3f} -> {second:.3f}")
    assert first > 0.3 and second < 0.8 * first, (first, second)
    assert result.best_iteration == 1 and not torch.equal(result.potential.theta, start.theta)
    assert float(result.potential.threebody.strength.detach()) == pytest.approx(10.0)
    g = result.rdfs[1]
    assert second == pytest.approx(rdf_max_abs_diff(g.g, target.g, target.r, (2.0, 9.3)))
    report = json.loads((tmp_path / "ibi" / "ibi_report.json").read_text())
    assert report["settings"]["threebody"]["lambda"] == 10.0 and report["best_iteration"] == 1
    # stop at the tolerance: the starting model is returned after one run
    easy = iterative_boltzmann_inversion(start, target, truth, n_iterations=3, run_ps=1.0,
                                         workdir=tmp_path / "easy", tolerance=5.0, **kwargs)
    assert easy.converged and easy.stop_reason == "converged" and len(easy.iterations) == 1
    assert torch.equal(easy.potential.theta, start.theta)
    with pytest.raises(ValueError, match="already holds IBI iterations"):
        iterative_boltzmann_inversion(start, target, truth, n_iterations=0, run_ps=1.0,
                                      workdir=tmp_path / "easy", **kwargs)


def test_bad_ibi_inputs_fail_before_lammps(truth, tmp_path):
    target = target_rdf(truth, R_CUT)
    pair = boltzmann_inversion(target, TEMPERATURE, r_min=R_MIN, r_cut=R_CUT, spacing=SPACING)
    good = CGPotential(pair, SWThreeBody(strength=0.0))
    kwargs = dict(temperature=TEMPERATURE, damp=100.0, timestep=2.0, run_ps=1.0, seed=1,
                  workdir=tmp_path / "ibi")
    with pytest.raises(ValueError, match="n_iterations must be >= 0"):
        iterative_boltzmann_inversion(good, target, truth, n_iterations=-1, **kwargs)
    with pytest.raises(ValueError, match="method must be one of"):
        iterative_boltzmann_inversion(good, target, truth, n_iterations=1, method="newton", **kwargs)
    wide = CGPotential(PairSpline(r_min=R_MIN, r_cut=10.0, spacing=SPACING), SWThreeBody())
    with pytest.raises(ValueError, match="exceeds half the smallest box edge"):
        iterative_boltzmann_inversion(wide, target, truth, n_iterations=1, **kwargs)
    with pytest.raises(ValueError, match="exceeds half the smallest box edge"):
        target_rdf(truth, 10.0)
    with pytest.raises(ValueError, match="frame_interval"):
        iterative_boltzmann_inversion(good, target, truth, n_iterations=1, frame_interval=3.0, **kwargs)
    short, _ = analytic_rdf(8.0, 0.05)
    with pytest.raises(ValueError, match="before r_cut"):
        iterative_boltzmann_inversion(good, short, truth, n_iterations=1, **kwargs)
    assert not (tmp_path / "ibi").exists()
    # an existing initialisation is not overwritten silently
    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "potential.json").write_text("{}")
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    with pytest.raises(ValueError, match="already holds an initialisation"):
        initialise(truth, config, tmp_path / "init")
    assert main(["init", "--aa-trajectory", str(tmp_path / "missing.npz"), "--config",
                 str(DEFAULT_CONFIG_PATH), "--outdir", str(tmp_path / "x")]) == 2


# -- slow: IBI against a mapped SPC/E reference --------------------------------------------------------
@pytest.mark.slow
def test_ibi_reaches_the_spce_rdf(tmp_path):
    """512 SPC/E molecules (10 + 40 ps), mapped; pair-only IMC until max|Δg| <= 0.05 over 2–12 Å.

    Measured: about 6 updates of 40 ps runs against the 100 ps reference (0.95 for BI).
    """
    from advcg.mapping import map_to_beads
    from advcg.reference import run_aa_reference

    torch.set_num_threads(1)
    ref = run_aa_reference(tmp_path / "aa", n_molecules=512, equilibration_ps=10.0,
                           production_ps=40.0, dump_interval_fs=20.0, accelerator="openmp",
                           n_threads=2)
    beads = map_to_beads(ref.topology, ref.trajectory)
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config.update(accelerator="openmp", threads=2)
    config["init"].update(ibi_iterations=10, ibi_run_ps=30.0)
    result = initialise(beads, config, tmp_path / "init", pair_only=True)
    deviations = [round(it.rdf_max_abs_diff, 4) for it in result.ibi.iterations]
    print(f"SPC/E IMC: max|dg| per iteration {deviations}, {result.ibi.total_time_s:.0f} s")
    assert deviations[0] > 0.5, deviations  # BI is far off: the test can fail
    assert result.ibi.converged and result.ibi.best_rdf_max_abs_diff <= 0.05, deviations
    assert result.ibi.best_iteration == len(deviations) - 1
