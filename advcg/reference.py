"""The all-atom water reference: run rigid SPC/E or TIP4P/2005 water in LAMMPS.

The run (``lammps_inputs/aa_water.in``) builds N molecules at a given density, relaxes them,
equilibrates in NVT (Nose-Hoover) and writes, for the production part, a topology (LAMMPS data
file: molecule ids, masses, bonds) and an unwrapped DCD trajectory, which
:func:`advcg.mapping.map_to_beads` reads. Everything is written into a hidden temporary
directory beside ``outdir`` that is renamed onto ``outdir`` only when the run has finished, so
``outdir`` is either complete or absent.

Output directory layout:

================== ==============================================================
``aa.data``        topology at the start of production (``write_data``)
``aa.dcd``         unwrapped positions, float32, every ``dump_interval_fs``; frame 0 at t = 0
``log.lammps``     LAMMPS log (thermo lines, the ``Performance:`` line)
``reference.json`` the settings and LAMMPS's performance figures
================== ==============================================================
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advcg.engine import ACCELERATORS, TEMPLATE_DIR, Engine
from advcg.io import write_json

logger = logging.getLogger(__name__)

#: Water models of the AA reference.
MODELS = ("spce", "tip4p2005")
#: Template run by :func:`run_aa_reference`.
TEMPLATE = "aa_water.in"
#: MD timestep of the AA reference, fs (rigid water, SHAKE).
TIMESTEP = 2.0

TOPOLOGY_NAME = "aa.data"
TRAJECTORY_NAME = "aa.dcd"
LOG_NAME = "log.lammps"
METADATA_NAME = "reference.json"

_MAX_SEED = 2**31 - 1 - 2  # LAMMPS seeds are positive 32-bit ints; the template uses seed + 2


@dataclass(frozen=True)
class AAReference:
    """A finished AA reference run.

    Attributes
    ----------
    outdir, topology, trajectory, log, metadata
        The output directory and its files (see the module docstring).
    model, n_molecules, temperature, density, timestep, equilibration_ps, production_ps,
    dump_interval_fs, seed, accelerator
        The settings (temperature in K, density in g/cm³, timestep in fs).
    ns_per_day, timesteps_per_s
        LAMMPS's ``Performance:`` figures for the production run.
    wall_time_s
        Wall time of the whole LAMMPS run (build, relaxation, equilibration, production), s.
    """

    outdir: Path
    topology: Path
    trajectory: Path
    log: Path
    metadata: Path
    model: str
    n_molecules: int
    temperature: float
    density: float
    timestep: float
    equilibration_ps: float
    production_ps: float
    dump_interval_fs: float
    seed: int
    accelerator: str
    ns_per_day: float
    timesteps_per_s: float
    wall_time_s: float

    @property
    def n_frames(self) -> int:
        """Number of trajectory frames (frame 0 at the start of production)."""
        return int(round(self.production_ps * 1000.0 / self.dump_interval_fs)) + 1


def _validate(model: str, n_molecules: int, temperature: float, density: float,
              equilibration_ps: float, production_ps: float, dump_interval_fs: float,
              seed: int, accelerator: str) -> None:
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    if isinstance(n_molecules, bool) or int(n_molecules) != n_molecules or n_molecules < 1:
        raise ValueError(f"n_molecules must be a positive integer; got {n_molecules!r}")
    for name, value in (("temperature", temperature), ("density", density),
                        ("production_ps", production_ps), ("dump_interval_fs", dump_interval_fs)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    if not (math.isfinite(equilibration_ps) and equilibration_ps >= 0):
        raise ValueError(f"equilibration_ps must be a finite number >= 0; got {equilibration_ps!r}")
    if abs(dump_interval_fs / TIMESTEP - round(dump_interval_fs / TIMESTEP)) > 1e-9:
        raise ValueError(f"dump_interval_fs must be a multiple of the {TIMESTEP} fs timestep; "
                         f"got {dump_interval_fs}")
    for name, ps in (("equilibration_ps", equilibration_ps), ("production_ps", production_ps)):
        steps = ps * 1000.0 / TIMESTEP
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError(f"{name} must be a whole number of {TIMESTEP} fs steps; got {ps}")
    if production_ps * 1000.0 < dump_interval_fs:
        raise ValueError(f"production_ps ({production_ps} ps) must cover at least one "
                         f"dump_interval_fs ({dump_interval_fs} fs)")
    if isinstance(seed, bool) or int(seed) != seed or not 1 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be an integer in 1..{_MAX_SEED}; got {seed!r}")
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}; got {accelerator!r}")


def _prepare_outdir(outdir: Path, overwrite: bool) -> None:
    if any(c.isspace() for c in str(outdir.resolve())):
        raise ValueError(f"outdir {outdir} contains whitespace, which LAMMPS input variables cannot carry")
    if outdir.exists():
        if not outdir.is_dir():
            raise ValueError(f"outdir {outdir} exists and is not a directory")
        if any(outdir.iterdir()) and not overwrite:
            raise ValueError(f"outdir {outdir} exists and is not empty; choose another or overwrite it")


def _install(tmp: Path, outdir: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` onto ``outdir`` (replacing it only when allowed)."""
    _prepare_outdir(outdir, overwrite)
    if outdir.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old.", dir=outdir.parent))
        os.replace(outdir, trash / outdir.name)
        os.replace(tmp, outdir)
        shutil.rmtree(trash)
    else:
        os.replace(tmp, outdir)


def run_aa_reference(outdir: str | os.PathLike, model: str = "spce", n_molecules: int = 512,
                     temperature: float = 300.0, density: float = 1.0,
                     equilibration_ps: float = 20.0, production_ps: float = 100.0,
                     dump_interval_fs: float = 20.0, seed: int = 4928459,
                     accelerator: str = "auto", *, n_threads: int | None = None,
                     screen: bool = False, overwrite: bool = False) -> AAReference:
    """Run the AA water reference in LAMMPS and write it to ``outdir``.

    Parameters
    ----------
    outdir
        Output directory; must not exist or be empty unless ``overwrite``.
    model
        ``spce`` (lj/cut/coul/long 10 Å, PPPM 1e-4, SHAKE) or ``tip4p2005``
        (lj/cut/tip4p/long 10 Å, PPPM/TIP4P 1e-4, SHAKE).
    n_molecules
        Number of water molecules.
    temperature
        NVT temperature, K.
    density
        Mass density, g/cm³ (sets the cubic box).
    equilibration_ps, production_ps
        Lengths of the NVT equilibration and the dumped production run, ps.
    dump_interval_fs
        Time between trajectory frames, fs (a multiple of the 2 fs timestep).
    seed
        Random seed of lattice filling, orientations and velocities (deterministic runs).
    accelerator
        ``auto``, ``kokkos``, ``openmp`` or ``serial`` (see :func:`advcg.engine.choose_accelerator`).
    n_threads
        OpenMP threads (default: ``OMP_NUM_THREADS`` or 1).
    screen
        Echo LAMMPS's output (thermo lines every 1 ps as progress) to stdout.
    overwrite
        Replace a non-empty ``outdir`` once the new run has finished.

    Returns
    -------
    AAReference

    Raises
    ------
    ValueError
        An invalid setting (named, with the allowed values) or an unusable ``outdir``.
    advcg.engine.EngineError
        LAMMPS failed; its log is kept as ``<outdir>.failed.log.lammps``.
    """
    _validate(model, n_molecules, float(temperature), float(density), float(equilibration_ps),
              float(production_ps), float(dump_interval_fs), seed, accelerator)
    outdir = Path(outdir)
    _prepare_outdir(outdir, overwrite)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp.", dir=outdir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should not be
    variables = {
        "model": model, "nmol": int(n_molecules), "density": float(density),
        "temp": float(temperature), "seed": int(seed), "dt": TIMESTEP,
        "equil_ps": float(equilibration_ps), "prod_ps": float(production_ps),
        "dump_fs": float(dump_interval_fs), "inputs": TEMPLATE_DIR,
        "data_file": tmp / TOPOLOGY_NAME, "dcd_file": tmp / TRAJECTORY_NAME,
    }
    logger.info("AA reference: %s, %d molecules, %.1f K, %.3f g/cm3, %.1f + %.1f ps -> %s",
                model, n_molecules, temperature, density, equilibration_ps, production_ps, outdir)
    try:
        started = time.perf_counter()
        with Engine(accelerator, log_file=tmp / LOG_NAME, screen=screen, n_threads=n_threads) as engine:
            acc = engine.accelerator.describe()
            engine.run_template(TEMPLATE, variables)
            performance = engine.performance()
        wall = time.perf_counter() - started
    except BaseException:
        failed_log = outdir.parent / f"{outdir.name}.failed.log.lammps"
        if (tmp / LOG_NAME).exists():
            os.replace(tmp / LOG_NAME, failed_log)
            logger.error("LAMMPS log of the failed run kept in %s", failed_log)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("AA reference done: %.1f ns/day, %.0f s wall", performance.ns_per_day, wall)
    settings = dict(model=model, n_molecules=int(n_molecules), temperature=float(temperature),
                    density=float(density), timestep=TIMESTEP,
                    equilibration_ps=float(equilibration_ps), production_ps=float(production_ps),
                    dump_interval_fs=float(dump_interval_fs), seed=int(seed), accelerator=acc,
                    ns_per_day=performance.ns_per_day,
                    timesteps_per_s=performance.timesteps_per_s, wall_time_s=wall)
    try:
        write_json(tmp / METADATA_NAME, settings)
        _install(tmp, outdir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _reference(outdir, settings)


def _reference(outdir: Path, settings: dict[str, Any]) -> AAReference:
    return AAReference(outdir=outdir, topology=outdir / TOPOLOGY_NAME,
                       trajectory=outdir / TRAJECTORY_NAME, log=outdir / LOG_NAME,
                       metadata=outdir / METADATA_NAME, **settings)


def load_aa_reference(outdir: str | os.PathLike) -> AAReference:
    """The :class:`AAReference` of a finished run in ``outdir`` (read from ``reference.json``).

    Raises
    ------
    FileNotFoundError
        ``outdir`` has no ``reference.json`` or lacks one of the run's files.
    ValueError
        ``reference.json`` is not valid.
    """
    outdir = Path(outdir)
    meta = outdir / METADATA_NAME
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} does not exist: {outdir} is not a finished AA reference")
    try:
        settings = json.loads(meta.read_text())
        reference = _reference(outdir, settings)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{meta} is not a valid AA reference description: {exc}") from exc
    for path in (reference.topology, reference.trajectory, reference.log):
        if not path.is_file():
            raise FileNotFoundError(f"AA reference file {path} is missing")
    return reference
