"""CG runs without thermostat (the NVE baseline of docs/method.md §7): velocity Verlet conserves the total
energy, frames are evenly spaced, and training windows are refused (they need the Langevin law)."""

import numpy as np
import pytest

from advcg.simulation import NVERecording, RunPlan
from advcg.units import BOLTZMANN

from helpers.systems import DAMP, N_BEADS, TEMPERATURE, run, water_like_potential


def test_nve_production_conserves_energy(tmp_path):
    """Measured over 20 seeds: total-energy range 2.6e-4 ± 0.4e-4 kT per bead (largest 3.5e-4;
    bound 1e-3), mean temperature +2.0 % ± 4.3 % from the Langevin equilibration's bath (largest
    +12.1 %; bound 25 %, 5 SDs: a 2 ps equilibration and 4 ps of NVE are that short)."""
    plan = RunPlan(equilibration_steps=1000, production_steps=2000, frame_every=100, nve_production=True)
    rec = run(water_like_potential(), DAMP, 3, plan, tmp_path)
    assert isinstance(rec, NVERecording)
    assert len(rec.frames) == 21 and np.all(np.diff(rec.frame_steps) == 100)
    kT_per_bead = N_BEADS * BOLTZMANN * TEMPERATURE
    fluctuation = np.ptp(rec.total_energy) / kT_per_bead
    print(f"NVE: <T> {rec.temperature.mean():.1f} K, total-energy range {fluctuation:.2e} kT per bead")
    assert fluctuation < 1e-3
    assert abs(rec.temperature.mean() / TEMPERATURE - 1) < 0.25
    assert np.all(np.isfinite(rec.frames))


def test_nve_production_refuses_training_windows():
    with pytest.raises(ValueError, match="Langevin path law"):
        RunPlan(100, 1000, window_starts=(2,), window_steps=10, nve_production=True)
