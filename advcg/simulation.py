"""CG LAMMPS runs driven from Python: a box of beads with an exported model, run with the model's
dynamics (:mod:`advcg.dynamics`) or, for the production part of a run, without any thermostat
(plain velocity Verlet, ``fix nve``: the microcanonical baseline of docs/method.md §7).

The system is built directly in the Python-driven instance (no data file): one atom type of mass
:data:`advcg.units.WATER_MASS`, an orthogonal periodic box and given starting positions (typically
a frame of the mapped AA trajectory, so runs start from a liquid without overlaps).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from advcg.dynamics import Dynamics
from advcg.engine import Accelerator, Engine
from advcg.export import ExportedModel, pair_commands
from advcg.recording import Recording, RecordPlan
from advcg.trajectory import CGTrajectory
from advcg.units import BOLTZMANN

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CGSystem:
    """A periodic box of CG beads.

    Parameters
    ----------
    positions : (n_beads, 3)
        Starting positions, Å (any periodic image: they are wrapped into the box).
    box : (3,)
        Orthogonal box edges, Å.
    mass
        Bead mass, g/mol.
    """

    positions: np.ndarray
    box: np.ndarray
    mass: float

    def __post_init__(self) -> None:
        positions = np.asarray(self.positions, dtype=float)
        box = np.asarray(self.box, dtype=float)
        if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) < 2:
            raise ValueError(f"CG system: positions must be (n_beads >= 2, 3), got {positions.shape}")
        if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
            raise ValueError(f"CG system: box must be 3 positive edges in Å, got {box}")
        if not np.all(np.isfinite(positions)):
            raise ValueError("CG system: positions contain NaN or inf")
        object.__setattr__(self, "positions", np.mod(positions, box))
        object.__setattr__(self, "box", box)

    @classmethod
    def from_trajectory(cls, traj: CGTrajectory, frame: int = -1) -> CGSystem:
        """The beads and box of one frame of a (mapped AA) trajectory."""
        return cls(traj.positions[frame], traj.box[frame], traj.mass)

    @property
    def n_beads(self) -> int:
        return len(self.positions)


def build_engine(system: CGSystem, model: ExportedModel, temperature: float, timestep: float,
                 velocity_seed: int, accelerator: Accelerator | str = "auto",
                 log_file: str | None = None) -> Engine:
    """A LAMMPS instance holding ``system`` with the exported ``model``, velocities drawn at
    ``temperature`` (zero total momentum), ready for a dynamics' integrator."""
    engine = Engine(accelerator, log_file=log_file)
    lx, ly, lz = (float(edge) for edge in system.box)
    engine.commands([
        "units real", "atom_style atomic", "boundary p p p", "atom_modify map array",
        f"region box block 0 {lx!r} 0 {ly!r} 0 {lz!r}", "create_box 1 box",
        f"mass 1 {float(system.mass)!r}",
    ])
    n = system.n_beads
    engine.lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, system.positions.reshape(-1).tolist())
    if engine.n_atoms != n:
        raise RuntimeError(f"LAMMPS created {engine.n_atoms} of {n} beads")
    engine.commands(pair_commands(model))
    engine.commands([
        "neighbor 2.0 bin", "neigh_modify every 1 delay 0 check yes",
        f"timestep {float(timestep)!r}", "thermo 0",
        f"velocity all create {float(temperature)!r} {int(velocity_seed)} mom yes rot no dist gaussian",
    ])
    return engine


@dataclass(frozen=True)
class RunPlan:
    """A CG run: equilibration, then production with recorded windows and frames.

    Parameters
    ----------
    equilibration_steps
        Steps run (and discarded) first.
    production_steps
        Steps of the recorded run.
    frame_every
        Keep a frame every this many production steps (0: none).
    window_starts, window_steps, record_forces
        Training windows, and whether LAMMPS's forces are kept with them (see
        :class:`~advcg.recording.RecordPlan`).
    nve_production
        Run the production without thermostat (``fix nve`` only: constant energy) after the
        thermostatted equilibration; frames only (windows need the dynamics' path law).
        :func:`run_cg` then returns an :class:`NVERecording`.
    """

    equilibration_steps: int
    production_steps: int
    frame_every: int = 0
    window_starts: tuple[int, ...] = ()
    window_steps: int = 0
    nve_production: bool = False
    record_forces: bool = False

    def __post_init__(self) -> None:
        if self.nve_production and self.window_starts:
            raise ValueError("an NVE production records frames only: training windows need the "
                             "path law of the model's dynamics (Langevin path law)")

    @classmethod
    def evenly_spaced_windows(cls, n_windows: int, window_steps: int, spacing_steps: int,
                              equilibration_steps: int, frame_every: int = 0,
                              record_forces: bool = False) -> RunPlan:
        """``n_windows`` windows, one every ``spacing_steps`` (>= ``window_steps``)."""
        if spacing_steps < window_steps:
            raise ValueError(f"window spacing ({spacing_steps} steps) is shorter than a window "
                             f"({window_steps} steps)")
        starts = tuple(2 + k * spacing_steps for k in range(n_windows))
        production = 2 + n_windows * spacing_steps
        if frame_every:
            production = frame_every * math.ceil(production / frame_every)
        return cls(equilibration_steps, production, frame_every, starts, window_steps,
                   record_forces=record_forces)


@dataclass(kw_only=True)
class NVERecording(Recording):
    """The frames of a production run without thermostat, with the total energy (kcal/mol) and
    the kinetic temperature (K) of the whole system at every frame (``(n_frames,)`` each)."""

    total_energy: np.ndarray
    temperature: np.ndarray


def run_nve(engine: Engine, n_steps: int, frame_every: int) -> NVERecording:
    """Run ``n_steps`` of plain velocity Verlet (``fix nve``, no thermostat), keeping a frame
    (unwrapped positions, total energy, temperature) every ``frame_every`` steps from the first.

    Frames are taken between LAMMPS ``run`` commands of ``frame_every`` steps (``pre no post no``
    after the first), which leaves velocity Verlet's trajectory unchanged; steps left over after the
    last whole chunk are run without a frame.
    """
    if n_steps < 1 or frame_every < 0:
        raise ValueError(f"n_steps must be >= 1 and frame_every >= 0; got {n_steps}, {frame_every}")
    chunk = frame_every or n_steps
    n_chunks, rest = divmod(n_steps, chunk)
    n_frames = n_chunks + 1 if frame_every else 0
    lmp = engine.lmp
    box = engine.box()
    frames = np.empty((n_frames, engine.n_atoms, 3))
    frame_steps = np.empty(n_frames, dtype=np.int64)
    energy = np.empty(n_frames)
    temperature = np.empty(n_frames)
    fix = "advcg_nve"
    # thermo every step: the potential energy is then tallied at the last step of every chunk
    engine.commands([f"fix {fix} all nve", "thermo_style custom step temp etotal", "thermo 1",
                     "thermo_modify norm no", "run 0"])
    try:
        engine.command("thermo 0")

        def keep(k: int) -> None:
            frames[k] = engine.unwrapped_positions()
            frame_steps[k] = int(lmp.extract_global("ntimestep"))
            energy[k] = float(lmp.get_thermo("etotal"))
            temperature[k] = float(lmp.get_thermo("temp"))

        if frame_every:
            keep(0)
        for k in range(1, n_chunks + 1):
            engine.command(f"run {chunk} pre no post no")
            if frame_every:
                keep(k)
        if rest:
            engine.command(f"run {rest} pre no post no")
    finally:
        engine.command(f"unfix {fix}")
    if not np.all(np.isfinite(frames)):
        raise FloatingPointError("the NVE run produced non-finite positions (it blew up)")
    if n_frames > 1:
        drift = (energy[-1] - energy[0]) / (engine.n_atoms * BOLTZMANN * float(np.mean(temperature)))
        logger.info("NVE production: %d steps, <T> = %.1f K, total-energy drift %.3g kT per bead",
                    n_steps, float(np.mean(temperature)), drift)
    empty = np.empty((0, 0, engine.n_atoms, 3))
    return NVERecording(frame_steps=frame_steps, frames=frames,
                        window_starts=np.empty(0, dtype=np.int64), paths=empty, path_forces=None,
                        box=box, timestep=float(lmp.extract_global("dt")),
                        total_energy=energy, temperature=temperature)


def run_cg(engine: Engine, dynamics: Dynamics, seed: int, plan: RunPlan) -> Recording:
    """Equilibrate, then run production with the recording that ``plan`` asks for (under
    ``dynamics`` with random seed ``seed``, or without thermostat if ``plan.nve_production``)."""
    integrator = dynamics.integrator(engine, seed)
    if plan.equilibration_steps:
        integrator.run(plan.equilibration_steps)
    if plan.nve_production:
        logger.info("CG production without thermostat (NVE): %d steps, a frame every %d steps",
                    plan.production_steps, plan.frame_every)
        return run_nve(engine, plan.production_steps, plan.frame_every)
    logger.info("CG production: %d steps, %d windows of %d steps, a frame every %d steps",
                plan.production_steps, len(plan.window_starts), plan.window_steps, plan.frame_every)
    return integrator.run(plan.production_steps, RecordPlan(
        frame_every=plan.frame_every, window_starts=plan.window_starts,
        window_steps=plan.window_steps, record_forces=plan.record_forces))


def recording_trajectory(recording: Recording, timestep: float, mass: float) -> CGTrajectory:
    """The recorded frames as a :class:`CGTrajectory` (times in fs from the first frame)."""
    times = (recording.frame_steps - recording.frame_steps[0]) * timestep
    box = np.broadcast_to(recording.box, (len(times), 3))
    return CGTrajectory(positions=recording.frames, box=box, times=times.astype(float), mass=mass)
