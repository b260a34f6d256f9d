"""Pipeline steps around the training rounds: the initial training state and the final model.

==================  ====================================================================
step                in → out
==================  ====================================================================
``initial_state``   initial potential (Boltzmann inversion + IBI) → training state 0
``finalise``        last training state + its evaluation → ``results/final``: LAMMPS tables,
                    three-body files, a deck for plain ``lmp``, parameters and metrics
==================  ====================================================================

The training stages themselves are in :mod:`advcg.training`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from advcg.export import export_model
from advcg.io import read_json, write_json, write_text
from advcg.potential import CGPotential
from advcg.state import DynamicsParameters, TrainingState, load_state, save_state
from advcg.trajectory import CGTrajectory
from advcg.units import AVOGADRO, WATER_MASS

logger = logging.getLogger(__name__)

#: Evaluation metrics copied into ``final/metrics.json``.
FINAL_METRICS = ("rdf_max_abs_diff", "rdf_r_range", "adf_total_variation", "msd_ratios",
                 "diffusion_ratio")


def initial_state(potential_path: str | os.PathLike, config: dict[str, Any],
                  outdir: str | os.PathLike) -> TrainingState:
    """Training state 0: the initial potential with ``init.damp_fs``, ``temperature``,
    ``timestep``, the water bead mass and ``seed``; no optimiser state yet.

    Raises
    ------
    ValueError
        The potential's three-body variant or pair range differ from ``config["potential"]``.
    """
    potential = CGPotential.from_json(potential_path)
    wanted = config["potential"]
    if potential.variant != wanted["variant"]:
        raise ValueError(f"{potential_path}: three-body variant {potential.variant!r} differs from "
                         f"potential.variant {wanted['variant']!r} of the configuration")
    if abs(potential.r_cut - wanted["r_cut"]) > 1e-9:
        raise ValueError(f"{potential_path}: pair cutoff {potential.r_cut} Å differs from "
                         f"potential.r_cut {wanted['r_cut']} Å of the configuration")
    dynamics = DynamicsParameters(damp=float(config["init"]["damp_fs"]),
                                  temperature=float(config["temperature"]),
                                  timestep=float(config["timestep"]), mass=WATER_MASS,
                                  round=0, seed=int(config["seed"]))
    state = TrainingState(potential, dynamics)
    save_state(outdir, state)
    logger.info("state 0 in %s: %d parameters, damp %.1f fs", outdir, potential.n_parameters,
                dynamics.damp)
    return state


def _density(traj: CGTrajectory) -> tuple[int, float]:
    """Number of beads and mass density (g/cm³) of the last frame of ``traj``."""
    volume = float(np.prod(traj.box[-1]))   # Å³
    return traj.n_beads, traj.n_beads * traj.mass / AVOGADRO / (volume * 1e-24)


def finalise(state_dir: str | os.PathLike, aa_trajectory: str | os.PathLike,
             evaluation_metrics: str | os.PathLike, config: dict[str, Any],
             outdir: str | os.PathLike) -> dict[str, Any]:
    """Export the final model and its metrics into ``outdir``.

    ``outdir`` receives ``pair.table``, ``threebody.sw`` (+ ``angle.table`` for
    ``sw/angle/table``), ``pair.in``, ``cg_water.in`` (box of the AA system's size and density,
    the learned damping, ``seed``; run ``cd outdir && lmp -in cg_water.in -var nsteps N -var
    seed S``), ``parameters.json`` (the potential), ``dynamics.json`` and ``metrics.json`` (the
    final evaluation against AA: RDF max |Δg|, ADF total variation, MSD ratios, D ratio).
    Everything is written into a temporary directory first and each file renamed into place,
    ``metrics.json`` last.
    """
    state = load_state(state_dir)
    aa = CGTrajectory.load(aa_trajectory)
    evaluation_metrics = Path(evaluation_metrics)
    evaluation = read_json(evaluation_metrics, "evaluation metrics")
    missing = [key for key in FINAL_METRICS if key not in evaluation]
    if missing:
        raise ValueError(f"{evaluation_metrics} lacks the metrics {missing}")
    n_beads, density = _density(aa)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final.", dir=outdir.parent))
    try:
        files = export_model(state.potential, tmp, n_beads=n_beads, density=density,
                             temperature=state.dynamics.temperature, damp_fs=state.dynamics.damp,
                             seed=int(config["seed"]), timestep=state.dynamics.timestep)
        write_json(tmp / "dynamics.json", asdict(state.dynamics))
        # the deck names its directory in its header: name the final one, not the temporary one
        deck = files.deck.read_text().replace(str(tmp), str(outdir))
        write_text(files.deck, deck)
        metrics = {key: evaluation[key] for key in FINAL_METRICS}
        metrics.update({"round": state.dynamics.round, "damp_fs": state.dynamics.damp,
                        "variant": state.potential.variant, "n_beads": n_beads,
                        "density_g_cm3": density, "evaluation_seconds": evaluation.get("seconds")})
        write_json(tmp / "metrics.json", metrics)
        names = sorted(p.name for p in tmp.iterdir() if p.name != "metrics.json") + ["metrics.json"]
        for name in names:
            os.replace(tmp / name, outdir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("final %s model (round %d, damp %.1f fs) in %s: RDF max|dg| %.3f, ADF TVD %.3f, "
                "D ratio %s", state.potential.variant, state.dynamics.round, state.dynamics.damp,
                outdir, metrics["rdf_max_abs_diff"], metrics["adf_total_variation"],
                metrics["diffusion_ratio"])
    return metrics
