"""The divergence guard (advcg.guard, advcg.stages.update): a proposal that breaks the model is
rejected, retried with a smaller step from the last good parameters, logged, and after
``max_rejections`` rejections training stops with a message naming the round and the reasons.

Real runs throughout: the "AA" reference is a LAMMPS run of the CG model itself (so the starting
model is good and a wild step is what breaks it), and every stage is the library's own.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import yaml

from advcg.cli import main as advcg_main
from advcg.config import load_config
from advcg.guard import DivergenceError, ProbeResult, dynamics_problems, rdf_bound, structure_problems
from advcg.state import load_state

from helpers.rounds import guard_config, guard_overrides, nan_recording, run_update


def wild(overrides: dict, rate: float = 20.0):
    """Learning rates that move every spline coefficient by ~``rate`` kcal/mol in one step: the raw
    gradient, no structure correction (whose step the guard does not scale: tests/test_structure.py)."""
    overrides["training"].update(learning_rates={"pair": rate, "threebody": rate, "lambda": rate},
                                 gradient_noise_threshold=0.0)
    overrides["training"]["structure_correction"]["damping"] = 0.0
    return load_config(None, overrides)


def default_guard():
    """The schema's guard settings."""
    return load_config().training.guard


def test_a_good_step_is_accepted_and_logged(round_files):
    result, out = run_update(round_files, guard_config(), "good")
    assert [e.accepted for e in result.events] == [True]
    probe = result.events[0].probe
    print(f"probe: RDF max|dg| {probe.rdf_max_abs_diff:.3f}, generator loss {probe.generator_loss:.3f}")
    assert probe.failure is None and probe.rdf_max_abs_diff < 0.3
    report = json.loads((out / "update.json").read_text())
    assert report["rejections"] == 0 and report["step_scales"] == {"potential": 1.0, "dynamics": 1.0}
    assert report["guard"][0]["accepted"] and report["guard"][0]["probe"]["rdf_max_abs_diff"] < 0.3
    progress = load_state(out / "next_state").progress
    assert progress.round == 1
    assert progress.rdf_bound == max(0.3, report["guard_baseline"]["rdf_max_abs_diff"] + 0.05)


def test_a_wild_step_is_rejected_then_retried_smaller_from_the_last_good_parameters(round_files):
    config = wild(guard_overrides(max_rejections=4, step_shrink=0.01))
    result, out = run_update(round_files, config, "retried")
    events = result.events
    for e in events:
        print(f"attempt {e.attempt} scales {e.step_scales}: {'; '.join(e.reasons) or 'accepted'}")
    assert not events[0].accepted and events[-1].accepted and len(events) >= 2
    assert events[0].reasons[0].startswith(("probe run failed", "RDF max|dg|"))
    state = load_state(out / "next_state")
    assert state.progress.step_scales["potential"] == pytest.approx(0.01 ** (len(events) - 1))
    assert state.progress.rejections == 0
    # the accepted step is the shrunken step from state 0, not a step from a rejected proposal
    start = load_state(round_files["state"]).parameter_vector()
    step = state.parameter_vector() - start
    assert np.max(np.abs(step[:-1])) < 20.0 * 0.01 ** (len(events) - 1) * 1.01
    report = json.loads((out / "update.json").read_text())
    assert [g["accepted"] for g in report["guard"]] == [e.accepted for e in events]


def test_too_many_rejections_stop_training_and_write_nothing(round_files, tmp_path):
    """Consecutive rejections count across rounds: a non-finite gradient (a recording with a NaN
    position) is rejected and the round redone; the second in a row reaches max_rejections = 2."""
    config = guard_config(max_rejections=2)
    broken = nan_recording(round_files, tmp_path)
    first, out = run_update(round_files, config, "first_nan", recording=broken)
    assert not first.events[-1].accepted and load_state(out / "next_state").progress.rejections == 1
    files = {**round_files, "state": out / "next_state"}
    with pytest.raises(DivergenceError) as info:
        run_update(files, config, "stopped", recording=broken)
    message = str(info.value)
    print(message)
    assert "round 1: 2 consecutive updates rejected" in message and "non-finite gradient" in message
    assert "training.guard.max_rejections = 2" in message and str(files["state"]) in message
    assert not (round_files["work"] / "stopped").exists()


def test_the_cli_exits_non_zero_with_the_guard_message(round_files, tmp_path, caplog):
    config = guard_config(max_rejections=1)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    code = advcg_main(["update", "--config", str(config_path), "--threads", "1",
                       "--state", str(round_files["state"]),
                       "--recording", str(nan_recording(round_files, tmp_path)),
                       "--cg-features", str(round_files["cg_features"]),
                       "--discriminator", str(round_files["discriminator"]),
                       "--aa-trajectory", str(round_files["aa"]),
                       "--aa-observables", str(round_files["aa_observables"]),
                       "--out-state", str(tmp_path / "next"), "--report", str(tmp_path / "update.json")])
    assert code == 3
    assert "divergence guard: round 0: 1 consecutive updates rejected" in caplog.text
    assert not (tmp_path / "next").exists() and not (tmp_path / "update.json").exists()


def test_a_non_finite_gradient_keeps_the_last_good_parameters(round_files, tmp_path):
    """A recording from a run that blew up (a NaN position) gives a non-finite gradient: no step is
    taken, the next round redoes this one from the same parameters with a smaller step scale."""
    result, out = run_update(round_files, guard_config(), "nan", recording=nan_recording(round_files, tmp_path))
    assert result.events[0].reasons[0].startswith("non-finite gradient for ")
    state, start = load_state(out / "next_state"), load_state(round_files["state"])
    np.testing.assert_array_equal(state.parameter_vector(), start.parameter_vector())
    assert (state.progress.round, state.progress.rejections, state.progress.step_scales["potential"],
            state.progress.step_scales["dynamics"]) == (1, 1, 0.5, 0.5)


def test_probe_problems_name_each_bound():
    settings = replace(default_guard(), max_rdf_deviation=0.1, rdf_tolerance=0.05,
                       max_generator_loss_increase=0.05)
    inside = ProbeResult(rdf_max_abs_diff=0.04, generator_loss=0.68)
    bound = rdf_bound(inside, settings)
    assert bound == 0.1
    good = ProbeResult(rdf_max_abs_diff=0.09, generator_loss=0.70)
    assert structure_problems(good, bound, settings) == dynamics_problems(good, inside, settings) == []
    bad = ProbeResult(rdf_max_abs_diff=0.3, generator_loss=0.9)
    assert structure_problems(bad, bound, settings)[0].startswith("RDF max|dg| 0.300 > 0.100 (max_rdf_deviation 0.1")
    assert dynamics_problems(bad, inside, settings)[0].startswith("generator loss rose by 0.220")
    # a model that starts outside the band may not move further than rdf_tolerance from its start
    outside = ProbeResult(rdf_max_abs_diff=0.4, generator_loss=0.7)
    assert rdf_bound(outside, settings) == pytest.approx(0.45)
    assert structure_problems(ProbeResult(rdf_max_abs_diff=0.44), 0.45, settings) == []
    assert structure_problems(ProbeResult(rdf_max_abs_diff=0.46), 0.45, settings)
    assert structure_problems(ProbeResult(rdf_max_abs_diff=math.nan), bound, settings)
    assert dynamics_problems(ProbeResult(failure="Lost atoms"), inside, settings) == ["probe run failed: Lost atoms"]
    with pytest.raises(ValueError, match="training.guard.step_shrink"):
        replace(default_guard(), step_shrink=1.0)
    with pytest.raises(ValueError, match="training.guard.max_rejections"):
        replace(default_guard(), max_rejections=0)


def test_rdf_rejections_fall_back_to_a_friction_only_step(round_files):
    """An RDF bound no potential step can meet: after max_rejections structural rejections the
    proposal moves the dynamics block (log γ) alone (friction leaves the structure as it is) and is
    accepted."""
    overrides = guard_overrides(max_rejections=2, max_rdf_deviation=1e-3, rdf_tolerance=1e-3)
    overrides["training"]["gradient_noise_threshold"] = 0.0     # every coefficient moves
    result, out = run_update(round_files, load_config(None, overrides), "friction_only")
    events = result.events
    assert [e.accepted for e in events] == [False, False, True]
    assert all(r.startswith("RDF max|dg|") for e in events[:2] for r in e.reasons)
    assert events[1].step_scales["potential"] == 0.5 and events[2].step_scales["potential"] == 0.0
    assert all(e.step_scales["dynamics"] == 1.0 for e in events)
    start, state = load_state(round_files["state"]), load_state(out / "next_state")
    np.testing.assert_array_equal(state.potential.theta.numpy(), start.potential.theta.numpy())
    assert state.dynamics.damp != start.dynamics.damp
    assert state.progress.step_scales == {"potential": 0.25, "dynamics": 1.0}
