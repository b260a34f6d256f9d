"""A 216-bead water-like CG system and its real LAMMPS runs, shared by the physics tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advcg.dynamics import LangevinDynamics
from advcg.export import export_model
from advcg.potential import CGPotential, PairSpline, SWThreeBody
from advcg.recording import Recording
from advcg.simulation import CGSystem, RunPlan, build_engine, run_cg
from advcg.units import WATER_MASS, number_density

N_BEADS = 216
R_CUT = 9.0
TEMPERATURE = 300.0
DAMP = 100.0
TIMESTEP = 2.0
TAU = 250                      # window length in steps (0.5 ps)


def water_like_potential() -> CGPotential:
    """A smooth Lennard-Jones-shaped pair term at water density plus the default SW three-body."""
    r = np.linspace(2.2, R_CUT, 400)
    phi = 4 * 0.3 * ((3.0 / r) ** 12 - (3.0 / r) ** 6)
    return CGPotential(PairSpline.fit(r, phi - phi[-1], r_min=2.2, r_cut=R_CUT), SWThreeBody())


def lattice_system() -> CGSystem:
    """216 beads on a jittered simple-cubic lattice at 1 g/cm³."""
    edge = (N_BEADS / number_density(1.0)) ** (1 / 3)
    cells = round(N_BEADS ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    jitter = np.random.default_rng(0).normal(0, 0.1, grid.shape)
    return CGSystem(grid * edge / cells + jitter, np.full(3, edge), WATER_MASS)


def langevin(damp: float = DAMP) -> LangevinDynamics:
    """The tests' Langevin dynamics (300 K, 2 fs, water mass) with damping time ``damp`` fs."""
    return LangevinDynamics(temperature=TEMPERATURE, timestep=TIMESTEP, mass=WATER_MASS, damp=damp)


def run(potential: CGPotential, damp: float, seed: int, plan: RunPlan, workdir: Path) -> Recording:
    """A real LAMMPS run of ``potential`` on :func:`lattice_system` with Langevin dynamics."""
    dynamics = langevin(damp)
    files = export_model(potential, workdir, dynamics, n_beads=N_BEADS, density=1.0)
    engine = build_engine(lattice_system(), files, TEMPERATURE, TIMESTEP, seed, "serial")
    try:
        return run_cg(engine, dynamics, seed, plan)
    finally:
        engine.close()
