"""Shared fixtures: one adversarial round on a small real system (tests/test_guard.py,
tests/test_crash_resume.py)."""

from pathlib import Path

import pytest
import torch
import yaml

from advcg import training
from advcg.config import load_config
from advcg.observables import compute_observables, save_observables_json
from advcg.simulation import RunPlan, recording_trajectory
from advcg.state import DynamicsParameters, TrainingState, save_state
from advcg.threads import use_threads
from advcg.units import WATER_MASS

from test_estimator import DAMP, TEMPERATURE, TIMESTEP, run, water_like_potential

ROOT = Path(__file__).resolve().parents[1]

# One thread for torch and LAMMPS before any test runs, whatever the machine or the test order:
# results of MD runs depend on the thread count (advcg.threads).
use_threads(1)


def guard_config(**guard) -> dict:
    """config/test.yaml on top of the defaults, serial, with a short probe and ``guard`` changes
    (the RDF bound allows for the noise of a 4 ps probe of 216 beads, ~0.1 in max|dg|)."""
    overrides = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    overrides.update(accelerator="serial", threads=1)
    overrides["potential"]["r_cut"] = 9.0
    overrides["training"]["guard"] = {"probe_ps": 4.0, "probe_windows": 2,
                                      "max_rdf_deviation": 0.3, **guard}
    return load_config(None, overrides)


@pytest.fixture(scope="session")
def round_files(tmp_path_factory) -> dict[str, Path]:
    """State 0, its round-0 recording, features and discriminator, and an 'AA' reference."""
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("guard")
    config = guard_config()
    potential = water_like_potential()
    reference = run(potential, DAMP, 5, RunPlan(2000, 5000, frame_every=20), work / "ref_model")
    aa = recording_trajectory(reference, TIMESTEP, WATER_MASS)
    aa.save(work / "aa.npz")
    obs = compute_observables(aa, r_max=9.0)
    save_observables_json(work / "aa_observables.json", obs)
    save_state(work / "state_0", TrainingState(potential, DynamicsParameters(
        damp=DAMP, temperature=TEMPERATURE, timestep=TIMESTEP, mass=WATER_MASS, seed=3)))
    training.aa_features(work / "aa.npz", config, work / "aa_features.pt")
    training.simulate(work / "state_0", work / "aa.npz", config, work / "round_0")
    training.cg_features(work / "round_0" / "recording.npz", work / "cg_features.pt")
    training.discriminate(work / "aa_features.pt", work / "cg_features.pt", None, config, 0,
                          work / "discriminator.pt", work / "discriminator.json")
    return {"work": work, "state": work / "state_0", "recording": work / "round_0" / "recording.npz",
            "cg_features": work / "cg_features.pt", "discriminator": work / "discriminator.pt",
            "aa": work / "aa.npz", "aa_observables": work / "aa_observables.json"}
