"""How large a CG time step a model stands: stability, energy conservation, fidelity, speed.

For one model (a potential JSON, with Langevin friction of ``--damp`` fs) and each time step of
``--timesteps`` (fs), from the last frame of the mapped AA trajectory:

* **stability**: a Langevin run of ``--run-ps`` (frames every ``--frame-fs``); LAMMPS losing an
  atom or non-finite positions is a failure;
* **energy conservation**: after it, ``--nve-ps`` of plain velocity Verlet (``fix nve``): the
  total-energy drift over the segment per bead in k_BT, and its fluctuation (range) per bead;
* **fidelity**: RDF max|Δg|, ADF TVD and the MSD ratio against AA at 0.1-20 ps, D ratio
  (:func:`advcg.observables.compare_observables`) of the Langevin run;
* **speed**: LAMMPS's own steps/s and ns/day of the Langevin run (Python-driven, as in training).

    python benchmarks/timestep.py --aa-beads results/aa/beads.npz \\
        --potential results/init/potential.json --timesteps 2 5 10 --run-ps 100

Every number printed is measured in that run; the Markdown table goes to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from advcg.dynamics import LangevinDynamics
from advcg.engine import EngineError
from advcg.export import export_model
from advcg.io import write_text
from advcg.observables import compare_observables, compute_observables
from advcg.potential import CGPotential
from advcg.simulation import CGSystem, NVERecording, RunPlan, build_engine, recording_trajectory, run_cg
from advcg.threads import use_threads
from advcg.trajectory import CGTrajectory
from advcg.units import BOLTZMANN, mass_density

from machine import machine_summary

LAGS_PS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def steps(ps: float, timestep: float) -> int:
    return int(round(ps * 1000.0 / timestep))


def measure(potential: CGPotential, aa: CGTrajectory, reference, timestep: float, args, workdir: Path) -> dict:
    """One time step: a Langevin run (stability, fidelity, speed), then an NVE segment."""
    system = CGSystem.from_trajectory(aa, -1)
    dynamics = LangevinDynamics(temperature=args.temperature, timestep=timestep, mass=system.mass,
                                damp=args.damp)
    files = export_model(potential, workdir / f"dt{timestep:g}", dynamics, n_beads=system.n_beads,
                         density=mass_density(system.n_beads, float(np.prod(system.box)), system.mass))
    frame_every = max(1, round(args.frame_fs / timestep))
    row: dict = {"timestep": timestep}
    log = workdir / f"log.dt{timestep:g}.lammps"
    engine = build_engine(system, files, args.temperature, timestep, velocity_seed=args.seed,
                          log_file=str(log))
    try:
        started = time.perf_counter()
        recording = run_cg(engine, dynamics, args.seed, RunPlan(steps(args.equilibration_ps, timestep),
                                                                 steps(args.run_ps, timestep), frame_every))
        row["seconds"] = time.perf_counter() - started
        performance = engine.performance()
        row.update(steps_per_s=performance.timesteps_per_s, ns_per_day=performance.ns_per_day)
        nve = run_cg(engine, dynamics, args.seed + 1, RunPlan(0, steps(args.nve_ps, timestep), frame_every,
                                                              nve_production=True))
    except (EngineError, FloatingPointError) as exc:
        row["failure"] = str(exc).splitlines()[0]
        return row
    finally:
        engine.close()
    assert isinstance(nve, NVERecording)
    kT_beads = BOLTZMANN * args.temperature * system.n_beads
    row["nve_drift_kT_per_bead"] = float((nve.total_energy[-1] - nve.total_energy[0]) / kT_beads)
    row["nve_range_kT_per_bead"] = float(np.ptp(nve.total_energy) / kT_beads)
    traj = recording_trajectory(recording, timestep, system.mass)
    r_max = float(reference.rdf.r[-1] + 0.5 * reference.rdf.bin_width)
    metrics = compare_observables(compute_observables(traj, r_max=r_max, rdf_bin_width=reference.rdf.bin_width),
                                  reference, at_ps=LAGS_PS)
    row.update(rdf=metrics["rdf_max_abs_diff"], adf=metrics["adf_total_variation"],
               msd=metrics["msd_ratios"], d_ratio=metrics["diffusion_ratio"])
    return row


def fmt(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def table(rows: list[dict], args, started: datetime.datetime) -> str:
    head = ["| dt (fs) | stable | NVE drift (k_BT/bead) | NVE range (k_BT/bead) | steps/s | ns/day | RDF | ADF | "
            + " | ".join(f"MSD {t:g} ps" for t in LAGS_PS) + " | D ratio |",
            "|---:|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(LAGS_PS) + "---:|"]
    lines = []
    for r in rows:
        if "failure" in r:
            lines.append(f"| {r['timestep']:g} | no: {r['failure']} |" + " |" * (8 + len(LAGS_PS)))
            continue
        lines.append(f"| {r['timestep']:g} | yes | {r['nve_drift_kT_per_bead']:.2e} | "
                     f"{r['nve_range_kT_per_bead']:.2e} | "
                     f"{r['steps_per_s']:.0f} | {r['ns_per_day']:.0f} | {fmt(r['rdf'])} | {fmt(r['adf'])} | "
                     + " | ".join(fmt(r["msd"].get(t)) for t in LAGS_PS) + f" | {fmt(r['d_ratio'])} |")
    header = (f"**CG time step** — measured {started:%Y-%m-%d %H:%M} UTC by `benchmarks/timestep.py` on "
              f"{machine_summary()}, {args.threads} thread(s). Model `{args.potential}`, Langevin damping "
              f"{args.damp:g} fs (the same at every step), {args.temperature:g} K; from the last frame of "
              f"`{args.aa_beads}`: {args.equilibration_ps:g} ps equilibration, {args.run_ps:g} ps Langevin "
              f"(frames every {args.frame_fs:g} fs), then {args.nve_ps:g} ps NVE. Command: "
              f"`python {' '.join(sys.argv)}`.")
    return "\n".join([header, "", *head, *lines]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa-beads", type=Path, required=True, help="mapped AA trajectory (.npz)")
    parser.add_argument("--potential", type=Path, required=True, help="CG potential JSON")
    parser.add_argument("--timesteps", type=float, nargs="+", default=[2.0, 5.0, 10.0], help="fs")
    parser.add_argument("--damp", type=float, default=100.0, help="Langevin damping time, fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--equilibration-ps", type=float, default=5.0)
    parser.add_argument("--run-ps", type=float, default=100.0)
    parser.add_argument("--nve-ps", type=float, default=20.0)
    parser.add_argument("--frame-fs", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/timestep.md"))
    args = parser.parse_args()
    use_threads(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    aa = CGTrajectory.load(args.aa_beads)
    reference = compute_observables(aa, r_max=min(12.0, 0.5 * float(aa.box.min())))
    potential = CGPotential.from_json(args.potential)
    rows = []
    with tempfile.TemporaryDirectory(prefix="advcg-timestep-") as tmp:
        for timestep in args.timesteps:
            rows.append(measure(potential, aa, reference, timestep, args, Path(tmp)))
            print(rows[-1], flush=True)
    block = table(rows, args, started)
    print(block)
    write_text(args.out, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
