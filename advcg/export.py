r"""Export a :class:`~advcg.potential.CGPotential` to LAMMPS: tables, ``.sw`` file, input deck.

Files (all written atomically through :mod:`advcg.io`):

* pair table (``pair_style table``): section ``WW``, ``N n RSQ r_lo r_c``, rows ``i r E F`` with
  :math:`E = \phi(r)` and :math:`F = -d\phi/dr` from the spline's analytic derivative, at exactly
  the :math:`r_i = \sqrt{r_{lo}^2 + (r_c^2 - r_{lo}^2)\, i/(n-1)}` LAMMPS recomputes. Used with
  ``pair_style table linear n`` (same ``n``), LAMMPS keeps these values as they are (no spline of
  its own) and interpolates linearly in :math:`r^2`. The table starts at ``r_lo`` = 0.5 Å
  (finite wall), because Kokkos ``table/kk`` does not check the inner cutoff.
  LAMMPS flags a row as "inconsistent" when ``F`` lies outside both neighbouring secants, which
  happens at grid points within about a third of a spacing of an inflection point of
  :math:`\phi` whatever the resolution; :func:`write_pair_table` therefore tries ``n``,
  ``n + 1``, ... and keeps the first grid on which LAMMPS's own check passes (it reports the
  ``n`` it used).
* three-body: a ``.sw`` file with ``A = 0`` (LAMMPS's SW two-body term vanishes), combined with
  the table by ``pair_style hybrid/overlay``; for ``sw/angle/table`` also an angle table
  (``N n FP ...``, rows ``i θ[deg] g −dg/dθ[per deg]``) on the same ``n`` as the ``.sw`` file's
  table length, so LAMMPS's preliminary spline returns the written values.
* ``pair.in`` with the ``pair_style``/``pair_coeff`` lines, and a complete deck for plain ``lmp``
  built from ``lammps_inputs/cg_water.in`` and the lines of the model's dynamics
  (:meth:`advcg.dynamics.Dynamics.deck_lines`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advcg import io
from advcg.dynamics import Dynamics
from advcg.potential import CGPotential
from advcg.potential.threebody import AngleTableThreeBody, SWThreeBody
from advcg.units import number_density

logger = logging.getLogger(__name__)

__all__ = ["PairTableInfo", "ThreeBodyFiles", "ExportedModel", "write_pair_table",
           "write_threebody", "write_pair_include", "pair_commands", "write_deck", "export_model",
           "box_length", "table_consistency_flags", "table_points_for", "table_force_error",
           "TABLE_FORCE_TOLERANCE", "DEFAULT_TABLE_RLO", "DYNAMICS_MARKER",
           "DEFAULT_ANGLE_POINTS", "PAIR_KEYWORD", "ANGLE_KEYWORD", "ELEMENT", "DECK_TEMPLATE"]

#: Largest relative error of the pair force LAMMPS interpolates from the table (linearly in r²,
#: of F/r) against the spline's analytic force, where beads come (from ``r_min`` − 0.3 Å; forces
#: below 1 kcal/(mol Å) count as 1): the default table has the fewest rows that meet it
#: (:func:`table_points_for`).
TABLE_FORCE_TOLERANCE = 1e-4
#: How far below ``r_min`` (into the wall) the table's accuracy is checked, Å.
TABLE_CHECK_BELOW_R_MIN = 0.3
#: Preferred first r of the pair table, Å (the exact start is chosen in [0.5, 1] Å).
DEFAULT_TABLE_RLO = 0.5
#: Rows of the angle table, 0..180° (0.01° spacing).
DEFAULT_ANGLE_POINTS = 18001
#: Section keyword of the pair table.
PAIR_KEYWORD = "WW"
#: Section keyword of the angle table.
ANGLE_KEYWORD = "WWW"
#: SW element name of the bead type.
ELEMENT = "WAT"
#: Name of the deck template in ``lammps_inputs/``.
DECK_TEMPLATE = "cg_water.in"
#: The template's line that the dynamics' commands replace.
DYNAMICS_MARKER = "# @advcg-dynamics@"

_EXTRA_ROWS = 10  # table sizes tried: n_points .. n_points + 9
_TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "lammps_inputs"


@dataclass(frozen=True)
class PairTableInfo:
    """A written pair table: ``pair_style table linear n_points`` + ``pair_coeff 1 1 path keyword``."""

    path: Path
    keyword: str
    n_points: int
    r_lo: float
    r_hi: float


@dataclass(frozen=True)
class ThreeBodyFiles:
    """A written ``.sw`` file (and angle table for ``sw/angle/table``)."""

    variant: str
    sw_path: Path
    element: str
    angle_table_path: Path | None = None
    angle_keyword: str | None = None
    angle_points: int | None = None


@dataclass(frozen=True)
class ExportedModel:
    """Everything :func:`export_model` wrote; pass it to :func:`pair_commands`."""

    directory: Path
    variant: str
    pair_table: PairTableInfo
    threebody: ThreeBodyFiles
    pair_include: Path
    parameters: Path | None = None
    deck: Path | None = None


def _num(value: float) -> str:
    """Shortest text that reads back as exactly the same double."""
    return repr(float(value))


# -- pair table ----------------------------------------------------------------------------------
def _rsq_grid(r_lo: float, r_hi: float, n_points: int) -> np.ndarray:
    """The r values LAMMPS recomputes for an ``RSQ`` table (same floating-point operations)."""
    i = np.arange(n_points, dtype=np.float64)
    return np.sqrt(r_lo * r_lo + (r_hi * r_hi - r_lo * r_lo) * i / (n_points - 1))


def table_consistency_flags(r: np.ndarray, energy: np.ndarray, force: np.ndarray) -> np.ndarray:
    r"""Row indices LAMMPS's ``pair_style table`` reader flags as inconsistent with ``-dE/dr``.

    .. math::

        f^-_i = -\frac{E_i - E_{i-1}}{r_i - r_{i-1}},\quad
        f^+_i = -\frac{E_{i+1} - E_i}{r_{i+1} - r_i},\qquad
        \text{flagged if } F_i < \min(f^-_i, f^+_i) \text{ or } F_i > \max(f^-_i, f^+_i)
    """
    left = -(energy[1:-1] - energy[:-2]) / (r[1:-1] - r[:-2])
    right = -(energy[2:] - energy[1:-1]) / (r[2:] - r[1:-1])
    f = force[1:-1]
    bad = ((f < left) & (f < right)) | ((f > left) & (f > right))
    return np.nonzero(bad)[0] + 1


def _pair_rows(potential: CGPotential, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        phi, dphi = potential.pair.evaluate(torch.from_numpy(np.ascontiguousarray(r)))
    energy, force = phi.numpy(), -dphi.numpy()
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(force))):
        raise ValueError("the pair potential is not finite on the table grid")
    return energy, force


def _critical_points(potential: CGPotential) -> tuple[np.ndarray, bool]:
    r"""Inflection points of :math:`\phi` (roots of the piecewise-linear :math:`\phi''`) and
    whether the wall junction at ``r_min`` is one (:math:`\phi''(r_\mathrm{min}^+) < 0 < \kappa`)."""
    pair = potential.pair
    knots = pair.knots.numpy()
    with torch.no_grad():
        d2 = pair.second_derivative(torch.from_numpy(knots[:-1])).numpy()
    d2 = np.append(d2, 0.0)  # phi'' -> 0 at r_c
    lo, hi = d2[:-1], d2[1:]
    change = (lo * hi < 0) | ((lo == 0) & (np.arange(lo.size) > 0))
    u = np.where(change, lo / np.where(lo - hi == 0, 1.0, lo - hi), 0.0)
    roots = knots[:-1][change] + u[change] * pair.spacing
    roots = roots[roots < pair.r_cut - 0.5 * pair.spacing]
    return roots, bool(d2[0] < 0)


def _grid_candidates(r_min: float, r_hi: float, n: int, aligned: bool) -> np.ndarray:
    """``r_lo`` values in [0.5, 1.0] Å for which ``r_min`` sits on (or midway between) RSQ rows."""
    frac_lo = (r_min ** 2 - 1.0) / (r_hi ** 2 - 1.0) * (n - 1)
    frac_hi = (r_min ** 2 - 0.25) / (r_hi ** 2 - 0.25) * (n - 1)
    rows = np.arange(np.ceil(frac_lo), np.floor(frac_hi) + 1) + (0.0 if aligned else 0.5)
    rows = rows[(rows > frac_lo) & (rows < frac_hi)]
    t = rows / (n - 1)
    r_lo = np.sqrt((r_min ** 2 - r_hi ** 2 * t) / (1.0 - t))
    centre = np.argsort(np.abs(r_lo - DEFAULT_TABLE_RLO))
    return r_lo[centre]


def _local_flags(potential: CGPotential, critical: np.ndarray, r_lo: np.ndarray, r_hi: float,
                 n: int) -> np.ndarray:
    """Rows flagged by LAMMPS's check near the critical points, per candidate start ``r_lo``."""
    if critical.size == 0:
        return np.zeros(r_lo.size, dtype=np.int64)
    s = (critical[None, :] ** 2 - r_lo[:, None] ** 2) / (r_hi ** 2 - r_lo[:, None] ** 2) * (n - 1)
    rows = np.clip(np.floor(s)[..., None] + np.arange(-2, 4), 0, n - 1)  # (cand, k, 6)
    lo2 = r_lo[:, None, None] ** 2
    r = np.sqrt(lo2 + (r_hi * r_hi - lo2) * rows / (n - 1))
    energy, force = _pair_rows(potential, r.reshape(-1))
    energy, force = energy.reshape(r.shape), force.reshape(r.shape)
    left = -(energy[..., 1:-1] - energy[..., :-2]) / (r[..., 1:-1] - r[..., :-2])
    right = -(energy[..., 2:] - energy[..., 1:-1]) / (r[..., 2:] - r[..., 1:-1])
    f = force[..., 1:-1]
    return (((f < left) & (f < right)) | ((f > left) & (f > right))).sum((1, 2))


def _choose_grid(potential: CGPotential, n_points: int, r_lo: float | None) -> tuple[int, float, int]:
    """Rows ``n`` (``n_points`` .. ``n_points + 9``) and start ``r_lo`` of the table grid, and the
    number of rows LAMMPS's consistency check will flag on it (0 unless no candidate passes)."""
    r_hi = potential.r_cut
    roots, junction_inflects = _critical_points(potential)
    critical = np.append(roots, potential.pair.r_min) if junction_inflects else roots
    sizes = [n_points] if r_lo is not None else list(range(n_points, n_points + _EXTRA_ROWS))
    best: tuple[int, float, int] | None = None
    for n in sizes:
        if r_lo is not None:
            candidates = np.array([r_lo], dtype=np.float64)
        else:
            candidates = _grid_candidates(potential.pair.r_min, r_hi, n, aligned=not junction_inflects)
            if candidates.size == 0:
                candidates = np.array([DEFAULT_TABLE_RLO])
        for start in range(0, candidates.size, 256):
            block = candidates[start:start + 256]
            local = _local_flags(potential, critical, block, r_hi, n)
            order = np.argsort(local, kind="stable")[:1 if local.min() > 0 else None]
            for index in order:
                if local[index] > 0 and best is not None:
                    break
                grid = _rsq_grid(float(block[index]), r_hi, n)
                flags = int(table_consistency_flags(grid, *_pair_rows(potential, grid)).size)
                if best is None or flags < best[2]:
                    best = (n, float(block[index]), flags)
                if flags == 0:
                    return best
    assert best is not None
    logger.info("no pair-table grid with %d..%d rows and start in [0.5, 1] A passes LAMMPS's "
                "consistency check (phi has %d inflection points); using n=%d, r_lo=%r: LAMMPS will "
                "flag %d rows next to inflection points (its warning says that is where flags are "
                "expected; the rows hold the analytic values)", n_points, sizes[-1], critical.size,
                best[0], best[1], best[2])
    return best


def interpolated_force(potential: CGPotential, r_lo: float, n_points: int, r: np.ndarray) -> np.ndarray:
    r"""The pair force LAMMPS's ``pair_style table linear n`` gives at ``r`` from an ``RSQ`` table
    of ``n`` rows from ``r_lo`` to :math:`r_c` written by :func:`write_pair_table`: linear in
    :math:`r^2` between rows of :math:`F/r`, times :math:`r`."""
    grid = _rsq_grid(r_lo, potential.r_cut, n_points)
    _, force = _pair_rows(potential, grid)
    r = np.asarray(r, dtype=np.float64)
    delta = (potential.r_cut ** 2 - r_lo ** 2) / (n_points - 1)
    row = np.clip(((r * r - r_lo * r_lo) / delta).astype(np.int64), 0, n_points - 2)
    fraction = (r * r - grid[row] ** 2) / delta
    per_r = force / grid
    return r * (per_r[row] + fraction * (per_r[row + 1] - per_r[row]))


def table_force_error(potential: CGPotential, r_lo: float, n_points: int) -> float:
    """Largest relative error of :func:`interpolated_force` against the analytic force at the
    middle and quarter points (in r²) of every row interval from ``r_min`` −
    :data:`TABLE_CHECK_BELOW_R_MIN` to r_c but the one that straddles ``r_min`` (forces below
    1 kcal/(mol Å) count as 1). Away from the wall junction the force is smooth and the error
    falls as the square of the row spacing."""
    grid = _rsq_grid(r_lo, potential.r_cut, n_points)
    r_min = potential.pair.r_min
    # the interval that holds the wall junction r_min, where F has a kink, is left out:
    # write_pair_table puts r_min on a row
    smooth = ~((grid[:-1] < r_min) & (grid[1:] > r_min)) & (grid[1:] >= r_min - TABLE_CHECK_BELOW_R_MIN)
    rsq = (grid[:-1, None] ** 2 + np.array([0.25, 0.5, 0.75]) * np.diff(grid ** 2)[:, None])[smooth]
    r = np.sqrt(rsq.reshape(-1))
    _, exact = _pair_rows(potential, r)
    return float(np.max(np.abs(interpolated_force(potential, r_lo, n_points, r) - exact)
                        / np.maximum(np.abs(exact), 1.0)))


def table_points_for(potential: CGPotential, tolerance: float = TABLE_FORCE_TOLERANCE,
                     r_lo: float = DEFAULT_TABLE_RLO) -> int:
    """The fewest rows of an ``RSQ`` table from ``r_lo`` whose :func:`table_force_error` is at
    most ``tolerance``. Linear interpolation's error falls as the square of the row spacing, so
    the count is scaled from a coarse table's error and then raised by 5 % until it passes."""
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"table force tolerance must be > 0, got {tolerance}")
    coarse = 1000
    error = table_force_error(potential, r_lo, coarse)
    n = max(3, math.ceil((coarse - 1) * math.sqrt(error / tolerance)) + 1)
    while table_force_error(potential, r_lo, n) > tolerance:
        n = math.ceil(1.05 * n)
    return n


def write_pair_table(potential: CGPotential, path: str | os.PathLike,
                     n_points: int | None = None, r_lo: float | None = None,
                     keyword: str = PAIR_KEYWORD) -> PairTableInfo:
    r"""Write :math:`\phi` as a ``pair_style table`` file with ``RSQ`` spacing up to :math:`r_c`.

    .. math::

        r_i = \sqrt{r_{lo}^2 + (r_c^2 - r_{lo}^2)\,\frac{i}{n-1}},\quad E_i = \phi(r_i),\quad
        F_i = -\phi'(r_i)\ \text{(analytic)}

    Choice of ``r_lo`` (when not given): among the values in [0.5, 1] Å that put ``r_min`` exactly
    on a row (so linear interpolation never straddles the wall's curvature jump; midway between
    rows when that junction is itself an inflection point), the first, closest to 0.5 Å, for which
    no row fails LAMMPS's "inconsistent with -dE/dr" check. That check fails, whatever the
    resolution, at rows within about a third of a spacing of an inflection point of
    :math:`\phi`; the grid is chosen so none is that close.

    Parameters
    ----------
    potential
        The model.
    path
        Output file.
    n_points
        Number of rows ``n`` (default: :func:`table_points_for`, the fewest that keep the
        interpolated force within :data:`TABLE_FORCE_TOLERANCE`); when no start passes,
        ``n_points + 1`` ... ``n_points + 9`` are tried too (the row count used is returned).
    r_lo
        First r, Å, ``0 < r_lo < r_min``; chosen as above when ``None``.
    keyword
        Section keyword.

    Returns
    -------
    PairTableInfo
        Use ``pair_style table linear {n_points}`` with the returned ``n_points``.
    """
    r_hi = potential.r_cut
    if n_points is None:
        n_points = table_points_for(potential)
    if n_points < 3:
        raise ValueError(f"a pair table needs at least 3 rows, got {n_points}")
    if r_lo is not None and not (0.0 < r_lo < potential.pair.r_min):
        raise ValueError(f"table r_lo must lie in (0, r_min = {potential.pair.r_min}), got {r_lo}")
    n, r_lo, _ = _choose_grid(potential, n_points, r_lo)
    logger.info("pair table: %d rows, largest relative force error %.2g where beads come", n,
                table_force_error(potential, r_lo, n))
    r = _rsq_grid(r_lo, r_hi, n)
    energy, force = _pair_rows(potential, r)
    lines = [f"# advcg CG pair potential: phi(r) cubic B-spline (r_min={potential.pair.r_min!r}, "
             f"r_c={r_hi!r}, h={potential.pair.spacing!r} A) + quadratic wall "
             f"(kappa={potential.pair.kappa!r} kcal/mol/A^2)",
             "# units real: r in A, E in kcal/mol, F = -dE/dr (analytic) in kcal/mol/A",
             f"# use: pair_style table linear {n}", "",
             keyword, f"N {n} RSQ {_num(r_lo)} {_num(r_hi)}", ""]
    lines += [f"{i + 1} {_num(r[i])} {_num(energy[i])} {_num(force[i])}" for i in range(n)]
    io.write_text(path, "\n".join(lines) + "\n")
    logger.info("wrote pair table %s (%d rows, RSQ %.6g..%g A)", path, n, r_lo, r_hi)
    return PairTableInfo(Path(path), keyword, n, float(r_lo), float(r_hi))


# -- three-body files ----------------------------------------------------------------------------------
def _write_angle_table(term: AngleTableThreeBody, path: Path, n_points: int, keyword: str) -> None:
    degrees = np.linspace(0.0, 180.0, n_points)
    degrees[-1] = 180.0
    theta = torch.from_numpy(np.deg2rad(degrees))
    with torch.no_grad():
        g, dg, d2g = term.evaluate_theta(theta)
    per_degree = math.pi / 180.0
    energy = g.numpy()
    force = -dg.numpy() * per_degree  # -dE/dθ with θ in degrees
    curvature = -d2g.numpy() * per_degree ** 2  # d(force)/dθ in degrees, for FP
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(force))):
        raise ValueError("the angle potential is not finite on the table grid")
    lines = ["# advcg SW angular factor g(theta) for pair_style sw/angle/table",
             "# theta in degrees, E in kcal/mol, last column -dE/dtheta per degree (analytic)", "",
             keyword, f"N {n_points} FP {_num(curvature[0])} {_num(curvature[-1])}", ""]
    lines += [f"{i + 1} {_num(degrees[i])} {_num(energy[i])} {_num(force[i])}" for i in range(n_points)]
    io.write_text(path, "\n".join(lines) + "\n")


def write_threebody(potential: CGPotential, sw_path: str | os.PathLike,
                    angle_table_path: str | os.PathLike | None = None,
                    n_angle: int = DEFAULT_ANGLE_POINTS) -> ThreeBodyFiles:
    r"""Write the ``.sw`` file (``A = 0``: no SW two-body term) and, for ``sw/angle/table``, the
    angle table.

    .. math::

        \phi_3 = \exp\!\left(\frac{\gamma\sigma}{r_{ij} - a\sigma}\right)
                 \exp\!\left(\frac{\gamma\sigma}{r_{ik} - a\sigma}\right) g(\theta_{jik})

    The ``.sw`` line is ``WAT WAT WAT ε σ a λ γ cosθ0 A=0 B=0 p=0 q=0 tol=0`` (``sw``) or the same
    with ``λ = cosθ0 = 0`` (ignored by LAMMPS) followed by ``angle_table WWW linear n``
    (``sw/angle/table``). The angle table is named by its absolute path, because LAMMPS opens it
    relative to its working directory: re-export after moving the files.

    Raises
    ------
    ValueError
        ``sw`` variant with λ < 0 (LAMMPS rejects it), missing ``angle_table_path`` for
        ``sw/angle/table``, or whitespace in the angle-table path.
    """
    term = potential.threebody
    sw_path = Path(sw_path)
    sigma, a, gamma = float(term.sigma), float(term.a), float(term.gamma)
    header = ["# advcg SW three-body term (two-body part off: A = 0), LAMMPS units real",
              "# element1 element2 element3 epsilon sigma a lambda gamma costheta0 A B p q tol"
              + (" table keyword style N" if term.variant == "sw/angle/table" else "")]
    if isinstance(term, SWThreeBody):
        _check_threebody(potential)
        strength, cos0 = float(term.strength.detach()), float(term.cos_theta0.detach())
        eps = float(term.epsilon)
        line = (f"{ELEMENT} {ELEMENT} {ELEMENT} {_num(eps)} {_num(sigma)} {_num(a)} {_num(strength)} "
                f"{_num(gamma)} {_num(cos0)} 0.0 0.0 0.0 0.0 0.0")
        io.write_text(sw_path, "\n".join(header + [line]) + "\n")
        logger.info("wrote %s (sw: lambda=%g, cos_theta0=%g)", sw_path, strength, cos0)
        return ThreeBodyFiles("sw", sw_path, ELEMENT)
    assert isinstance(term, AngleTableThreeBody)
    if angle_table_path is None:
        raise ValueError("the sw/angle/table variant needs angle_table_path")
    if n_angle < 3:
        raise ValueError(f"the angle table needs at least 3 rows, got {n_angle}")
    angle_path = Path(angle_table_path)
    absolute = str(angle_path.resolve())
    if any(ch.isspace() for ch in absolute):
        raise ValueError(f"LAMMPS cannot read an angle-table path with whitespace: {absolute!r}")
    _write_angle_table(term, angle_path, n_angle, ANGLE_KEYWORD)
    line = (f"{ELEMENT} {ELEMENT} {ELEMENT} 1.0 {_num(sigma)} {_num(a)} 0.0 {_num(gamma)} 0.0 "
            f"0.0 0.0 0.0 0.0 0.0 {absolute} {ANGLE_KEYWORD} linear {n_angle}")
    io.write_text(sw_path, "\n".join(header + [line]) + "\n")
    logger.info("wrote %s and angle table %s (%d rows)", sw_path, angle_path, n_angle)
    return ThreeBodyFiles("sw/angle/table", sw_path, ELEMENT, angle_path, ANGLE_KEYWORD, n_angle)


# -- LAMMPS commands -------------------------------------------------------------------------------
def pair_commands(files: ExportedModel, relative_to: str | os.PathLike | None = None) -> list[str]:
    """The ``pair_style``/``pair_coeff`` commands that load an exported model.

    Both variants need ``newton on`` (LAMMPS's default; ``sw/angle/table`` refuses ``newton
    off``); the commands work with the plain, ``/omp`` and (``sw`` only) ``/kk`` styles.

    Parameters
    ----------
    files
        What :func:`export_model` returned.
    relative_to
        Write file names relative to this directory (for a deck run there); absolute if ``None``
        (for a Python-driven LAMMPS instance in any working directory).

    Returns
    -------
    list[str]
        E.g. ``["pair_style hybrid/overlay table linear 50000 sw",
        "pair_coeff 1 1 table /abs/pair.table WW", "pair_coeff * * sw /abs/threebody.sw WAT"]``.
    """
    def name(path: Path) -> str:
        resolved = path.resolve()
        text = str(resolved if relative_to is None else os.path.relpath(resolved, Path(relative_to).resolve()))
        if any(ch.isspace() for ch in text):
            raise ValueError(f"LAMMPS cannot read a file name with whitespace: {text!r}")
        return text

    style = files.threebody.variant
    table = files.pair_table
    return [f"pair_style hybrid/overlay table linear {table.n_points} {style}",
            f"pair_coeff 1 1 table {name(table.path)} {table.keyword}",
            f"pair_coeff * * {style} {name(files.threebody.sw_path)} {files.threebody.element}"]


def write_pair_include(files: ExportedModel, path: str | os.PathLike) -> Path:
    """Write :func:`pair_commands` (names relative to ``path``'s directory) to ``path``."""
    path = Path(path)
    lines = ["# advcg CG water pair interactions (written by advcg.export)"]
    lines += pair_commands(files, relative_to=path.parent)
    io.write_text(path, "\n".join(lines) + "\n")
    return path


# -- deck ------------------------------------------------------------------------------------------
def box_length(n_beads: int, density: float) -> float:
    """Cubic box edge (Å) holding ``n_beads`` water beads at ``density`` g/cm³."""
    if n_beads < 1 or not (math.isfinite(density) and density > 0):
        raise ValueError(f"need n_beads >= 1 and density > 0, got {n_beads}, {density}")
    return float((n_beads / number_density(density)) ** (1.0 / 3.0))


def _write_model_files(potential: CGPotential, outdir: Path, n_table: int | None, n_angle: int) -> ExportedModel:
    table = write_pair_table(potential, outdir / "pair.table", n_points=n_table)
    angle = outdir / "angle.table" if potential.variant == "sw/angle/table" else None
    threebody = write_threebody(potential, outdir / "threebody.sw", angle, n_angle=n_angle)
    model = ExportedModel(outdir, potential.variant, table, threebody, outdir / "pair.in")
    write_pair_include(model, model.pair_include)
    return model


def _check_seed(seed: int) -> None:
    if int(seed) < 1:
        raise ValueError(f"LAMMPS seeds must be positive integers, got {seed}")


def _check_threebody(potential: CGPotential) -> None:
    """What LAMMPS requires of the three-body parameters (checked before any file is written)."""
    term = potential.threebody
    if isinstance(term, SWThreeBody):
        strength, cos0 = float(term.strength.detach()), float(term.cos_theta0.detach())
        if not (math.isfinite(strength) and math.isfinite(cos0)):
            raise ValueError("three-body lambda and cos_theta0 must be finite")
        if strength < 0:
            raise ValueError(f"LAMMPS pair_style sw needs lambda >= 0 (threebody.lambda), got {strength}")


def write_deck(potential: CGPotential, outdir: str | os.PathLike, n_beads: int, density: float,
               dynamics: Dynamics, seed: int, files: ExportedModel | None = None,
               n_table: int | None = None, n_angle: int = DEFAULT_ANGLE_POINTS,
               dump_every: int = 100, thermo_every: int = 100) -> Path:
    """Write ``outdir/cg_water.in``, a complete deck for plain ``lmp`` (run it inside ``outdir``).

    The deck sets the system variables and the dynamics' own (overridable with ``-var``), then
    follows ``lammps_inputs/cg_water.in``: random insertion with a 2.4 Å overlap check,
    minimisation, the dynamics' commands (Langevin: ``fix nve`` + ``fix langevin T T damp seed``),
    unwrapped dump and thermo output; ``-var nsteps N -var seed S`` choose the run length and the
    seed. Its header says what runs on a GPU (Kokkos) and what does not.

    Parameters
    ----------
    potential
        The model; the box must satisfy :meth:`CGPotential.validate_box`.
    outdir
        Output directory.
    n_beads, density
        Number of beads and mass density (g/cm³).
    dynamics
        The model's dynamics (temperature, time step, mass and its own parameters).
    seed
        Positive integer seed.
    files
        Model files written before (by :func:`export_model`); written here when ``None``.
    n_table, n_angle
        Table resolutions when ``files`` is ``None`` (``n_table`` ``None``: :func:`table_points_for`).
    dump_every, thermo_every
        Default output intervals (steps).

    Returns
    -------
    Path
        The deck.
    """
    outdir = Path(outdir)
    length = box_length(n_beads, density)
    potential.validate_box([length] * 3)
    _check_seed(seed)
    if files is None:
        files = _write_model_files(potential, outdir, n_table, n_angle)
    template = (_TEMPLATE_DIR / DECK_TEMPLATE).read_text()
    if template.count(DYNAMICS_MARKER) != 1:
        raise ValueError(f"{_TEMPLATE_DIR / DECK_TEMPLATE} must hold the line {DYNAMICS_MARKER!r} once")
    lines = dynamics.deck_lines()
    deck = outdir / "cg_water.in"
    include = os.path.relpath(files.pair_include.resolve(), outdir.resolve())
    if potential.variant == "sw" and lines.kokkos:
        accel = [f"# GPU (Kokkos: table/kk, sw/kk, hybrid/overlay/kk, {lines.gpu_note}):",
                 f"#   cd {outdir} && lmp -k on g 1 -sf kk -pk kokkos newton on neigh half "
                 f"-in cg_water.in -var nsteps N -var seed S"]
    elif potential.variant == "sw":
        accel = [f"# {lines.gpu_note}: this deck runs on CPUs only."]
    else:
        accel = ["# pair_style sw/angle/table has no Kokkos/GPU version: this deck runs on CPUs only",
                 "#   (it needs newton on, which the deck sets)."]
    described = ", ".join(f"{k} = {v:g}" for k, v in dynamics.describe().items())
    header = ["# advcg one-bead CG water, three-body variant " + potential.variant,
              f"# {n_beads} beads, {density} g/cm^3 (box {length:.6f} A), T = {dynamics.temperature} K, "
              f"{dynamics.kind} dynamics ({described}), timestep = {dynamics.timestep} fs, "
              f"bead mass {dynamics.mass} g/mol",
              "# CPU (add -sf omp -pk omp THREADS for the OpenMP versions of the styles that have one):",
              f"#   cd {outdir} && lmp -in cg_water.in -var nsteps N -var seed S",
              *accel, ""]
    settings = [f"variable        n_beads index {int(n_beads)}",
                f"variable        box_length index {length!r}",
                f"variable        temperature index {float(dynamics.temperature)!r}",
                *[f"variable        {name} index {float(value)!r}" for name, value in lines.variables.items()],
                f"variable        timestep index {float(dynamics.timestep)!r}",
                f"variable        seed index {int(seed)}",
                f"variable        dump_every index {int(dump_every)}",
                f"variable        thermo_every index {int(thermo_every)}",
                f"variable        pair_include index {include}", ""]
    body = template.replace(DYNAMICS_MARKER, "\n".join(lines.commands))
    io.write_text(deck, "\n".join(header + settings) + "\n" + body)
    logger.info("wrote LAMMPS deck %s", deck)
    return deck


def export_model(potential: CGPotential, outdir: str | os.PathLike, dynamics: Dynamics,
                 n_beads: int = 512, density: float = 0.997, seed: int = 12345,
                 n_table: int | None = None, n_angle: int = DEFAULT_ANGLE_POINTS) -> ExportedModel:
    """Write everything: ``parameters.json``, ``pair.table``, ``threebody.sw`` (+ ``angle.table``),
    ``pair.in`` and ``cg_water.in`` (with ``dynamics``) in ``outdir``.

    Returns
    -------
    ExportedModel
        Paths and table sizes; :func:`pair_commands` turns it into LAMMPS commands.
    """
    outdir = Path(outdir)
    # every check that can fail comes before the first file: a refused export writes nothing
    potential.validate_box([box_length(n_beads, density)] * 3)
    _check_seed(seed)
    _check_threebody(potential)
    files = _write_model_files(potential, outdir, n_table, n_angle)
    parameters = outdir / "parameters.json"
    potential.to_json(parameters)
    deck = write_deck(potential, outdir, n_beads, density, dynamics, seed, files=files)
    return ExportedModel(outdir, files.variant, files.pair_table, files.threebody,
                         files.pair_include, parameters, deck)
