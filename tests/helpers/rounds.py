"""One adversarial round on a small real system (guard, structure and crash-resume tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from advcg import stages
from advcg.config import Config, load_config
from advcg.observables import compute_observables, save_observables_json
from advcg.recording import Recording
from advcg.simulation import RunPlan, recording_trajectory
from advcg.state import RoundProgress, TrainingState, save_state

from helpers.systems import DAMP, TIMESTEP, langevin, run, water_like_potential

ROOT = Path(__file__).resolve().parents[2]


def guard_overrides(**guard: Any) -> dict[str, Any]:
    """config/test.yaml, serial, with a short probe and ``guard`` changes, as a YAML mapping (the
    RDF bound allows for the noise of a 4 ps probe of 216 beads, ~0.1 in max|dg|)."""
    overrides = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    overrides.update(accelerator="serial", threads=1)
    overrides["potential"]["r_cut"] = 9.0
    overrides["training"]["guard"] = {"probe_ps": 4.0, "probe_windows": 2,
                                      "max_rdf_deviation": 0.3, **guard}
    return overrides


def guard_config(**guard: Any) -> Config:
    """:func:`guard_overrides` on top of the defaults, loaded."""
    return load_config(None, guard_overrides(**guard))


def make_round_files(work: Path) -> dict[str, Path]:
    """State 0, its round-0 recording, features and discriminator, and an 'AA' reference (a run
    of the CG model itself) in ``work``."""
    config = guard_config()
    potential = water_like_potential()
    reference = run(potential, DAMP, 5, RunPlan(2000, 5000, frame_every=20), work / "ref_model")
    aa = recording_trajectory(reference, TIMESTEP, langevin().mass)
    aa.save(work / "aa.npz")
    save_observables_json(work / "aa_observables.json", compute_observables(aa, r_max=9.0))
    save_state(work / "state_0", TrainingState(potential, langevin(), RoundProgress(seed=3)))
    stages.aa_features(work / "aa.npz", work / "aa_features.pt", windows=config.windows)
    files = stages.prepare_round(work / "state_0", work / "round_0", work / "aa.npz",
                                 work / "aa_features.pt", config).files
    return {"work": work, "state": work / "state_0", "recording": files.recording,
            "cg_features": files.cg_features, "discriminator": files.discriminator,
            "aa": work / "aa.npz", "aa_observables": work / "aa_observables.json"}


def run_update(files: dict[str, Path], config: Config, name: str, recording: Path | None = None):
    """The update stage of round 0 with ``config``, into ``files["work"]/name``."""
    out = files["work"] / name
    return stages.update(files["state"], recording or files["recording"], files["cg_features"],
                         files["discriminator"], files["aa"], files["aa_observables"],
                         out / "next_state", out / "update.json", windows=config.windows,
                         training=config.training, accelerator=config.accelerator), out


def nan_recording(files: dict[str, Path], directory: Path) -> Path:
    """The round-0 recording with one NaN position, as from a run that blew up: its gradient is
    not finite, whatever the machine's floating-point path (a wild step's fate is not)."""
    recording = Recording.load(files["recording"])
    recording.paths[0, 5, 3, 0] = np.nan
    return recording.save(directory / "recording.npz")
