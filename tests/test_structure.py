"""The structure correction (advcg.structure): one IMC step from a round's window frames moves the
CG RDF towards the target on real LAMMPS runs, and the update adds exactly that step."""

import json

import numpy as np
import pytest
import torch

from advcg.config import load_config
from advcg.imc import frame_rdfs
from advcg.observables import RDF
from advcg.potential import CGPotential, PairSpline
from advcg.simulation import RunPlan
from advcg.structure import MIN_FRAMES, StructureSettings, recording_frames, structure_correction
from advcg.units import WATER_MASS

from helpers.rounds import guard_overrides, run_update
from helpers.systems import DAMP, TEMPERATURE, TIMESTEP, run, water_like_potential

#: 40 windows of 0.5 ps, 1 ps apart, after 10 ps: frames every 50 fs give 440 frames.
PLAN = RunPlan.evenly_spaced_windows(n_windows=40, window_steps=250, spacing_steps=500,
                                     equilibration_steps=5000)


def window_rdf(potential: CGPotential, seed: int, workdir, target_bins: RDF | None = None):
    """Window frames of a real run of ``potential`` and their mean RDF on 0.05 Å bins to 9 Å."""
    recording = run(potential, DAMP, seed, PLAN, workdir)
    frames = recording_frames(recording.paths, recording.box, recording.window_starts, TIMESTEP,
                              50.0, WATER_MASS)
    bins = target_bins or RDF(r=np.arange(0.025, 9.0, 0.05), g=np.ones(180), bin_width=0.05, n_frames=1)
    return frames, frame_rdfs(frames, bins).mean(axis=0)


def rms_deviation(g: np.ndarray, target: RDF) -> float:
    inside = target.r >= 2.0
    return float(np.sqrt(np.mean((g[inside] - target.g[inside]) ** 2)))


def test_recording_frames_takes_every_interval_of_every_window_in_time_order():
    paths = np.arange(3 * 11 * 2 * 3, dtype=float).reshape(3, 11, 2, 3)
    frames = recording_frames(paths, np.full(3, 10.0), np.array([0, 40, 80]), 2.0, 10.0, WATER_MASS)
    assert frames.n_frames == 9 and frames.n_beads == 2
    np.testing.assert_array_equal(frames.times, [0, 10, 20, 80, 90, 100, 160, 170, 180])
    np.testing.assert_array_equal(frames.positions[4], paths[1, 5])


def test_recording_frames_take_the_shared_frame_of_touching_windows_once():
    """Window spacing = window length (allowed): the end of one window is the next one's start."""
    paths = np.arange(3 * 11 * 2 * 3, dtype=float).reshape(3, 11, 2, 3)
    frames = recording_frames(paths, np.full(3, 10.0), np.array([0, 10, 20]), 2.0, 10.0, WATER_MASS)
    np.testing.assert_array_equal(frames.times, [0, 10, 20, 30, 40, 50, 60])
    np.testing.assert_array_equal(frames.positions[2], paths[0, 10])
    np.testing.assert_array_equal(frames.positions[3], paths[1, 5])


def test_settings_and_frame_count_are_checked(tmp_path):
    with pytest.raises(ValueError, match="structure_correction.damping"):
        StructureSettings(damping=1.5, frame_interval_fs=50.0)
    with pytest.raises(ValueError, match="frame_interval_fs"):
        StructureSettings(damping=1.0, frame_interval_fs=0.0)
    paths = np.random.default_rng(0).uniform(0, 20, (1, MIN_FRAMES - 1, 50, 3))
    frames = recording_frames(paths, np.full(3, 20.0), np.array([0]), 2.0, 2.0, WATER_MASS)
    target = RDF(r=np.arange(0.025, 9.0, 0.05), g=np.ones(180), bin_width=0.05, n_frames=1)
    with pytest.raises(ValueError, match=r"training\.structure_correction: .* 9 frames"):
        structure_correction(water_like_potential(), frames, target, TEMPERATURE,
                             StructureSettings(damping=1.0, frame_interval_fs=50.0))


def test_one_correction_moves_the_rdf_towards_the_target(tmp_path):
    """Target: the RDF of the water-like model. Start: the same model with its first-shell pair
    coefficients raised by 0.3 kcal/mol. One undamped correction from the start's window frames
    must remove at least half of the RMS deviation, as a fresh run of the corrected model shows."""
    torch.set_num_threads(1)
    truth = water_like_potential()
    _, g_truth = window_rdf(truth, 11, tmp_path / "truth")
    target = RDF(r=np.arange(0.025, 9.0, 0.05), g=g_truth, bin_width=0.05, n_frames=440)

    pair = truth.pair
    knots = pair.r_min + pair.spacing * np.arange(pair.coefficients.numel())
    bump = np.where((knots > 3.0) & (knots < 4.5), 0.3, 0.0)
    start = CGPotential(PairSpline(r_min=pair.r_min, r_cut=pair.r_cut, spacing=pair.spacing,
                                   kappa=pair.kappa, coefficients=pair.coefficients.detach().numpy() + bump),
                        truth.threebody)
    frames, g_start = window_rdf(start, 12, tmp_path / "start", target)
    correction = structure_correction(start, frames, target, TEMPERATURE,
                                      StructureSettings(damping=1.0, frame_interval_fs=50.0))
    corrected = CGPotential(PairSpline(r_min=pair.r_min, r_cut=pair.r_cut, spacing=pair.spacing,
                                       kappa=pair.kappa,
                                       coefficients=start.pair.coefficients.detach().numpy() + correction.delta),
                            truth.threebody)
    _, g_corrected = window_rdf(corrected, 13, tmp_path / "corrected", target)
    before, after = rms_deviation(g_start, target), rms_deviation(g_corrected, target)
    print(f"RMS |dg| over 2-9 A: start {before:.4f}, corrected {after:.4f}; max|dg| of the start's "
          f"frames {correction.rdf_max_abs_diff:.3f}, predicted after the step "
          f"{correction.predicted_rdf_max_abs_diff:.3f}; max |dc| {np.abs(correction.delta).max():.3f}")
    assert correction.n_frames == 440
    assert correction.predicted_rdf_max_abs_diff < correction.rdf_max_abs_diff
    assert after < 0.5 * before


def test_the_update_adds_the_correction_to_the_adam_step(round_files):
    """Same round, damping 0.5 and 0: the accepted states differ by the reported pair correction."""
    states, reports = {}, {}
    for damping in (0.5, 0.0):
        overrides = guard_overrides()
        overrides["training"]["structure_correction"]["damping"] = damping
        result, out = run_update(round_files, load_config(None, overrides), f"structure_{damping}")
        assert [e.accepted for e in result.events] == [True]
        states[damping] = result.state.parameter_vector()
        reports[damping] = json.loads((out / "update.json").read_text())["structure_correction"]
    pair = result.state.potential.pair_slice   # the potential block comes first in ϑ
    difference = states[0.5] - states[0.0]
    print(f"correction: {reports[0.5]}")
    assert reports[0.0]["max_abs_delta"] == 0.0 and reports[0.5]["max_abs_delta"] > 0
    assert reports[0.5]["n_frames"] == 20          # 4 windows x 5 frames (config/test.yaml)
    np.testing.assert_allclose(np.abs(difference[pair]).max(), reports[0.5]["max_abs_delta"], rtol=1e-9)
    assert np.all(difference[pair.stop:] == 0)
