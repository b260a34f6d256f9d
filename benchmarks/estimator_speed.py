"""Estimator speed against the LAMMPS run it analyses, measured in one run.

For each system size, a jittered cubic lattice of beads at water density runs with the default
CG potential (:meth:`CGPotential.default`, r_c 10 Å, SW three-body) under the training dynamics
(Python-driven LAMMPS, :mod:`advcg.simulation` / :mod:`advcg.langevin`), recording per-step
windows; then :func:`advcg.estimator.estimate_gradient` processes those windows. Both are timed
on the same machine with the same number of threads and reported as steps per second; the ratio
is the estimator's cost of one step in units of one LAMMPS step (1 = as fast as the simulation).

Usage::

    python benchmarks/estimator_speed.py                      # 512 and 4096 beads, 1 thread
    python benchmarks/estimator_speed.py --beads 512 --windows 4 --threads 2

The LAMMPS figure covers the production run only (equilibration excluded); the estimator figure
covers everything :func:`estimate_gradient` does (neighbour lists, forces, weighted parameter
derivatives, localisation weights, thermodynamic part). Ratios are given in wall-clock time and,
in brackets, in CPU time of this process, which other jobs on a shared machine do not inflate
(with one thread both agree on an idle machine). The last column is the share of the estimator's
time spent in :func:`advcg.estimator.localisation_weights` (a pair search within r_loc per
window), timed separately.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advcg.engine import Accelerator
from advcg.estimator import EstimatorSpec, estimate_gradient, localisation_weights
from advcg.export import box_length, export_model
from advcg.langevin import GaussianLangevin, LangevinSpec, RecordPlan, Recording
from advcg.potential import CGPotential
from advcg.simulation import CGSystem, build_engine
from advcg.units import WATER_MASS

DENSITY = 0.997       # g/cm³
TEMPERATURE = 300.0   # K
DAMP = 100.0          # fs
TIMESTEP = 2.0        # fs


@dataclass
class Timing:
    """One system size: steps per second of LAMMPS and of the estimator."""

    n_beads: int
    lammps_steps: int
    lammps_seconds: float       # wall clock
    lammps_cpu: float           # CPU time of this process
    estimator_steps: int
    estimator_seconds: float
    estimator_cpu: float
    localisation_seconds: float  # part of estimator_seconds: the per-window localisation weights

    @property
    def lammps_rate(self) -> float:
        return self.lammps_steps / self.lammps_seconds

    @property
    def estimator_rate(self) -> float:
        return self.estimator_steps / self.estimator_seconds

    @property
    def ratio(self) -> float:
        """Estimator seconds per step / LAMMPS seconds per step (wall clock)."""
        return self.lammps_rate / self.estimator_rate

    @property
    def cpu_ratio(self) -> float:
        """The same in CPU time: insensitive to other load on a shared machine."""
        return (self.estimator_cpu / self.estimator_steps) / (self.lammps_cpu / self.lammps_steps)


def lattice(n_beads: int, seed: int = 0) -> CGSystem:
    """``n_beads`` (a cube number) on a simple cubic lattice with 0.2 Å jitter, at water density."""
    cells = round(n_beads ** (1.0 / 3.0))
    if cells ** 3 != n_beads:
        raise ValueError(f"--beads must be cube numbers (512, 4096, ...), got {n_beads}")
    edge = box_length(n_beads, DENSITY)
    grid = (np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5)
    jitter = np.random.default_rng(seed).normal(scale=0.2, size=grid.shape)
    return CGSystem(grid * edge / cells + jitter, np.full(3, edge), WATER_MASS)


def simulate(potential: CGPotential, system: CGSystem, dynamics: LangevinSpec, threads: int,
             n_windows: int, window_steps: int, equilibration: int, workdir: Path
             ) -> tuple[Recording, float, float, int]:
    """Equilibrate, then time a production run that records ``n_windows`` back-to-back windows
    (wall and CPU seconds)."""
    files = export_model(potential, workdir, n_beads=system.n_beads, density=DENSITY,
                         temperature=TEMPERATURE, damp_fs=DAMP, timestep=TIMESTEP)
    accelerator = Accelerator("serial") if threads == 1 else Accelerator("openmp", n_threads=threads)
    engine = build_engine(system, files, TEMPERATURE, TIMESTEP, velocity_seed=11, accelerator=accelerator)
    try:
        integrator = GaussianLangevin(engine, dynamics)
        integrator.run(equilibration)
        starts = tuple(2 + k * window_steps for k in range(n_windows))
        production = 2 + n_windows * window_steps
        started, cpu = time.perf_counter(), time.process_time()
        recording = integrator.run(production, RecordPlan(window_starts=starts, window_steps=window_steps))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        engine.close()
    return recording, seconds, cpu, production


def measure(n_beads: int, threads: int, n_windows: int, window_steps: int, equilibration: int) -> Timing:
    """Time LAMMPS and the estimator for one system size."""
    potential = CGPotential.default()
    dynamics = LangevinSpec(TEMPERATURE, DAMP, TIMESTEP, WATER_MASS, seed=5)
    with tempfile.TemporaryDirectory() as workdir:
        recording, lammps_seconds, lammps_cpu, lammps_steps = simulate(
            potential, lattice(n_beads), dynamics, threads, n_windows, window_steps, equilibration,
            Path(workdir))
    losses = np.random.default_rng(1).normal(size=(n_windows, n_beads))
    estimate_gradient(potential, recording.paths[:1, :4], recording.box, losses[:1], dynamics)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    estimate_gradient(potential, recording.paths, recording.box, losses, dynamics)
    estimator_seconds, estimator_cpu = time.perf_counter() - started, time.process_time() - cpu
    radius = EstimatorSpec().localisation_radius
    started = time.perf_counter()
    for window, window_losses in zip(recording.paths, losses):
        localisation_weights(window[1], recording.box, window_losses, radius)
    localisation_seconds = time.perf_counter() - started
    return Timing(n_beads, lammps_steps, lammps_seconds, lammps_cpu, n_windows * window_steps,
                  estimator_seconds, estimator_cpu, localisation_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beads", type=int, nargs="+", default=[512, 4096], help="system sizes (cubes)")
    parser.add_argument("--threads", type=int, default=1, help="threads for LAMMPS and torch (default 1)")
    parser.add_argument("--windows", type=int, default=2, help="recorded windows per size (default 2)")
    parser.add_argument("--window-steps", type=int, default=250, help="MD steps per window (default 250)")
    parser.add_argument("--equilibration", type=int, default=500, help="untimed steps first (default 500)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); {args.windows} window(s) x "
          f"{args.window_steps} steps per size")
    print("cost ratio = estimator time per step / LAMMPS time per step (wall clock; CPU time of "
          "this process in brackets, robust to other load)")
    print(f"{'beads':>6} {'LAMMPS steps/s':>15} {'estimator steps/s':>18} {'cost ratio':>11} {'(CPU)':>8} "
          f"{'localisation share':>19}")
    for n_beads in args.beads:
        t = measure(n_beads, args.threads, args.windows, args.window_steps, args.equilibration)
        share = t.localisation_seconds / t.estimator_seconds
        print(f"{t.n_beads:>6} {t.lammps_rate:>15.1f} {t.estimator_rate:>18.1f} {t.ratio:>10.2f}x "
              f"({t.cpu_ratio:.2f}x) {share:>18.0%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
