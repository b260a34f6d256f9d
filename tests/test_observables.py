"""RDF and ADF agree with LAMMPS's own computes; the MSD with analytic cases; metrics and output."""

import json

import numpy as np
import pytest

from advcg import cli, units
from advcg.engine import Engine, lammps_module
from advcg.observables import (
    adf,
    adf_total_variation,
    compare_observables,
    compute_observables,
    diffusion_coefficient,
    msd,
    msd_ratios,
    observables_from_json,
    observables_to_json,
    plot_observables,
    rdf,
    rdf_max_abs_diff,
    save_observables_json,
)
from advcg.trajectory import CGTrajectory

BOX = np.array([20.0, 21.0, 22.0])
N_BEADS = 300
N_FRAMES = 3


@pytest.fixture(scope="module")
def beads():
    """Three frames of 300 beads (float32-exact coordinates), given unwrapped by random images."""
    rng = np.random.default_rng(3)
    wrapped = (rng.random((N_FRAMES, N_BEADS, 3)) * BOX).astype(np.float32).astype(np.float64)
    images = rng.integers(-3, 4, (N_FRAMES, N_BEADS, 3))
    traj = CGTrajectory(wrapped + images * BOX, np.tile(BOX, (N_FRAMES, 1)),
                        20.0 * np.arange(N_FRAMES))
    return traj, wrapped


@pytest.fixture(scope="module")
def lammps_computes(beads):
    """LAMMPS compute rdf (0-9 Å, 180 bins) and adf (3.3 Å, 90 bins) of each frame."""
    _, wrapped = beads
    lmp_mod = lammps_module()
    results = []
    with Engine("serial") as engine:
        engine.commands([
            "units real", "atom_style atomic", "boundary p p p",
            f"region box block 0 {BOX[0]} 0 {BOX[1]} 0 {BOX[2]}", "create_box 1 box",
            "mass 1 18.0154", "pair_style zero 9.5", "pair_coeff * *", "neighbor 1.0 bin",
            "compute gr all rdf 180 cutoff 9.0",
            "compute ad all adf 90 1 1 1 0.0 3.3 0.0 3.3 ordinate degree",
        ])
        for frame in wrapped:
            engine.command("delete_atoms group all")
            engine.lmp.create_atoms(N_BEADS, list(range(1, N_BEADS + 1)), [1] * N_BEADS,
                                    frame.ravel().tolist())
            assert engine.n_atoms == N_BEADS
            engine.command("run 0")
            get = engine.lmp.numpy.extract_compute
            results.append(tuple(
                np.array(get(name, lmp_mod.LMP_STYLE_GLOBAL, lmp_mod.LMP_TYPE_ARRAY), copy=True)
                for name in ("gr", "ad")))
    return results


def test_rdf_matches_lammps_compute_rdf(beads, lammps_computes):
    traj, _ = beads
    ours = rdf(traj, r_max=9.0, bin_width=0.05)
    theirs = np.mean([gr[:, 1] for gr, _ in lammps_computes], axis=0)
    np.testing.assert_allclose(ours.r, lammps_computes[0][0][:, 0], atol=1e-12)
    assert theirs[100:].mean() == pytest.approx(1.0, abs=0.05)  # a non-trivial comparison
    np.testing.assert_allclose(ours.g, theirs, rtol=1e-9, atol=1e-9)


def test_adf_matches_lammps_compute_adf(beads, lammps_computes):
    traj, _ = beads
    ours = adf(traj, cutoff=3.3, bin_width_deg=2.0)
    per_bead = np.array([ad[-1, 2] for _, ad in lammps_computes])  # angles per central bead
    assert ours.n_angles == pytest.approx(per_bead.sum() * N_BEADS, abs=1e-6)
    weights = per_bead / per_bead.sum()
    theirs = np.sum([w * ad[:, 1] for w, (_, ad) in zip(weights, lammps_computes)], axis=0)
    np.testing.assert_allclose(ours.theta, lammps_computes[0][1][:, 0], atol=1e-12)
    assert np.sum(ours.density) * ours.bin_width == pytest.approx(1.0)
    np.testing.assert_allclose(ours.density, theirs, rtol=1e-9, atol=1e-12)


def test_rdf_agrees_with_mdanalysis_interrdf(beads):
    from MDAnalysis.analysis.rdf import InterRDF

    traj, _ = beads
    u = traj.to_universe()
    theirs = InterRDF(u.atoms, u.atoms, nbins=180, range=(0.0, 9.0), exclusion_block=(1, 1)).run()
    ours = rdf(traj, r_max=9.0).g
    # MDAnalysis works in single precision: a pair within ~1e-6 Å of a bin edge may change bin.
    one_pair = 2.0 / (N_FRAMES * N_BEADS * (N_BEADS - 1) / np.prod(BOX) * 4 * np.pi * 2.0 ** 2 * 0.05)
    assert np.abs(ours - theirs.results.rdf).max() < 2 * one_pair
    assert np.abs(ours - theirs.results.rdf).mean() < 1e-3


def test_rdf_adf_refuse_bad_settings(beads):
    traj, _ = beads
    with pytest.raises(ValueError, match="half the smallest box"):
        rdf(traj, r_max=12.0)
    with pytest.raises(ValueError, match="whole number of bins"):
        rdf(traj, r_max=9.0, bin_width=0.07)
    with pytest.raises(ValueError, match="whole number of bins"):
        adf(traj, bin_width_deg=7.0)
    with pytest.raises(ValueError, match="step"):
        adf(traj, step=0)
    with pytest.raises(ValueError, match="half the smallest box"):
        adf(traj, cutoff=10.5)


# -- MSD -------------------------------------------------------------------------------------------
def _brute_force_msd(x):
    n = len(x)
    return np.array([np.mean(np.sum((x[lag:] - x[:n - lag]) ** 2, axis=-1)) for lag in range(n)])


def test_msd_equals_brute_force_over_all_origins():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(40, 7, 3)), axis=0)
    traj = CGTrajectory(x, np.full((40, 3), 50.0), 5.0 * np.arange(40))
    result = msd(traj, remove_com_drift=False)
    np.testing.assert_allclose(result.times, 5.0 * np.arange(40))
    np.testing.assert_allclose(result.msd, _brute_force_msd(x), rtol=1e-10, atol=1e-10)
    removed = msd(traj)
    np.testing.assert_allclose(removed.msd, _brute_force_msd(x - x.mean(axis=1, keepdims=True)),
                               rtol=1e-10, atol=1e-10)


def test_msd_ballistic_and_com_drift_removed():
    rng = np.random.default_rng(1)
    n_frames, dt = 200, 10.0
    v = rng.normal(0, 0.01, (50, 3))
    v -= v.mean(axis=0)                                     # no net momentum
    t = dt * np.arange(n_frames)
    x0 = rng.random((50, 3)) * 30.0
    drift = np.array([0.02, -0.01, 0.005])                  # Å/fs, the same for every bead
    x = x0 + (v + drift)[None] * t[:, None, None]
    traj = CGTrajectory(x, np.full((n_frames, 3), 30.0), t)
    expected = np.mean(np.sum(v ** 2, axis=1)) * t ** 2
    np.testing.assert_allclose(msd(traj).msd, expected, rtol=1e-9, atol=1e-9)
    with_drift = msd(traj, remove_com_drift=False).msd
    np.testing.assert_allclose(with_drift, expected + np.sum(drift ** 2) * t ** 2, rtol=1e-9, atol=1e-9)
    assert msd(traj, max_lag_fs=100.0).times[-1] == pytest.approx(100.0)


def test_random_walk_gives_its_diffusion_coefficient():
    rng = np.random.default_rng(2)
    n_beads, n_frames, dt, d_true = 400, 3000, 20.0, 2.3e-4   # Å²/fs = 2.3e-9 m²/s
    steps = rng.normal(0, np.sqrt(2 * d_true * dt), (n_frames - 1, n_beads, 3))
    x = np.concatenate([np.zeros((1, n_beads, 3)), np.cumsum(steps, axis=0)])
    traj = CGTrajectory(x, np.full((n_frames, 3), 25.0), dt * np.arange(n_frames))
    result = msd(traj)
    short = diffusion_coefficient(result.times, result.msd, fit_range_fs=(1000.0, 5000.0))
    # COM removal lowers the single-bead MSD by 1/N for independent walkers.
    assert short.coefficient == pytest.approx(d_true * (1 - 1 / n_beads), rel=0.03)
    assert short.coefficient_si == pytest.approx(units.diffusion_to_si(short.coefficient))
    assert short.coefficient_si == pytest.approx(2.3e-9, rel=0.03)
    default = diffusion_coefficient(result.times, result.msd)
    assert default.fit_range_fs == (10000.0, 50000.0) and default.n_points == 2001
    assert default.coefficient == pytest.approx(d_true, rel=0.15)
    with pytest.raises(ValueError, match="longer trajectory"):
        diffusion_coefficient(result.times[:1000], result.msd[:1000])


def test_msd_refuses_uneven_frames():
    traj = CGTrajectory(np.zeros((3, 2, 3)), np.ones((3, 3)), [0.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="not equally spaced"):
        msd(traj)


# -- metrics ---------------------------------------------------------------------------------------
def test_comparison_metrics():
    r = np.arange(0.025, 12.0, 0.05)
    g1 = np.exp(-((r - 2.8) ** 2))
    g2 = g1.copy()
    g2[r < 1.9] += 5.0       # outside the range: ignored
    g2[np.argmin(np.abs(r - 5.0))] += 0.3
    assert rdf_max_abs_diff(g1, g2, r) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="one shape"):
        rdf_max_abs_diff(g1, g2[:-1], r)

    p1 = np.zeros(90)
    p2 = np.zeros(90)
    p1[:45], p2[45:] = 1 / 90.0, 1 / 90.0            # disjoint densities over 2° bins
    assert adf_total_variation(p1, p2, 2.0) == pytest.approx(1.0)
    assert adf_total_variation(p1, p1, 2.0) == 0.0

    t = np.arange(0, 2001) * 10.0                     # up to 20 ps
    ratios = msd_ratios(t, 3.0 * t, 2.0 * t)
    assert list(ratios) == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    assert all(ratios[k] == pytest.approx(1.5) for k in (0.1, 1.0, 20.0))
    assert np.isnan(ratios[50.0])
    t_aa = np.arange(0, 501) * 20.0                   # AA only to 10 ps, other spacing
    mixed = msd_ratios(t, 3.0 * t, 2.0 * t_aa, t_aa=t_aa)
    assert mixed[10.0] == pytest.approx(1.5) and np.isnan(mixed[20.0])


def _liquidish(seed, n_frames=60, n_beads=120, box=15.0, step=0.3):
    rng = np.random.default_rng(seed)
    x = rng.random((n_beads, 3)) * box + np.cumsum(rng.normal(0, step, (n_frames, n_beads, 3)), axis=0)
    return CGTrajectory(x, np.full((n_frames, 3), box), 20.0 * np.arange(n_frames))


def test_json_roundtrip_plot_and_cli(tmp_path):
    cg, aa = _liquidish(0), _liquidish(1, step=0.2)
    kwargs = dict(r_max=7.0, fit_range_fs=(200.0, 1000.0))
    obs, ref = compute_observables(cg, **kwargs), compute_observables(aa, **kwargs)
    assert obs.diffusion is not None and obs.diffusion.coefficient > ref.diffusion.coefficient
    back = observables_from_json(json.loads(json.dumps(observables_to_json(obs))))
    np.testing.assert_array_equal(back.rdf.g, obs.rdf.g)
    np.testing.assert_array_equal(back.msd.msd, obs.msd.msd)
    assert back.diffusion == obs.diffusion

    metrics = compare_observables(obs, ref)
    assert metrics["msd_ratios"][1.0] == pytest.approx(2.25, rel=0.2)   # (0.3 / 0.2)² per step
    assert np.isnan(metrics["msd_ratios"][50.0])
    save_observables_json(tmp_path / "o.json", obs, metrics, ref)
    saved = json.loads((tmp_path / "o.json").read_text())
    assert saved["comparison"]["msd_ratios"][-1] == [50.0, None]   # [[lag_ps, ratio], ...], NaN as null
    png = plot_observables(tmp_path / "o.png", obs, ref)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    cg.save(tmp_path / "cg.npz")
    aa.save(tmp_path / "aa.npz")
    args = ["observables", "--trajectory", str(tmp_path / "cg.npz"), "--r-max", "7",
            "--fit-range-fs", "200", "1000", "--output-json", str(tmp_path / "cli.json")]
    assert cli.main(args + ["--reference", str(tmp_path / "aa.npz"),
                            "--output-png", str(tmp_path / "cli.png")]) == 0
    from_npz = json.loads((tmp_path / "cli.json").read_text())["comparison"]
    assert from_npz["rdf_max_abs_diff"] == pytest.approx(metrics["rdf_max_abs_diff"])
    assert (tmp_path / "cli.png").stat().st_size > 0
    # The reference may also be an observables JSON written before.
    save_observables_json(tmp_path / "aa.json", ref)
    assert cli.main(args + ["--reference", str(tmp_path / "aa.json")]) == 0
    from_json = json.loads((tmp_path / "cli.json").read_text())["comparison"]
    assert from_json["adf_total_variation"] == pytest.approx(metrics["adf_total_variation"])
    # Errors: different bins, missing files, no output requested.
    assert cli.main(["observables", "--trajectory", str(tmp_path / "cg.npz"), "--r-max", "6",
                     "--reference", str(tmp_path / "aa.json"), "--output-json",
                     str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    assert cli.main(["observables", "--trajectory", str(tmp_path / "none.npz"),
                     "--output-json", str(tmp_path / "x.json")]) == 2
    assert cli.main(["observables", "--trajectory", str(tmp_path / "cg.npz")]) == 2
