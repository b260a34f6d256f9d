"""The pipeline's report: one self-contained directory with an HTML page and its figures.

======================  =============================================================
file                    content
======================  =============================================================
``index.html``          final metrics, per-round table, the figures, time per stage
``observables.png``     RDF, ADF and MSD of the initial and the final model against AA
``metrics.png``         evaluation metrics of every state (0 = initial, last = final)
``training.png``        per round: discriminator accuracy, generator loss, gradient SNR,
                        effective sample size
``timing.png``          wall time per stage (Snakemake benchmark files), summed over rounds
``summary.json``        every number shown, for scripts
======================  =============================================================

Inputs are the files the pipeline wrote (evaluation ``metrics.json``/``observables.json``,
discriminator logs, update reports, Snakemake ``benchmark`` TSV files); nothing is recomputed.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advcg import units
from advcg.io import atomic_path, read_json, write_json, write_text
from advcg.observables import Observables, load_observables_json, msd_ratios_from_json, msd_ratios_to_json

logger = logging.getLogger(__name__)

#: MSD-ratio lags (ps) drawn in the per-state metrics figure.
PLOTTED_MSD_TIMES = (0.1, 1.0, 10.0, 50.0)
#: Keys of a ``dynamics.json`` that are not learned (the rest are shown per state).
_FIXED_DYNAMICS_KEYS = ("kind", "temperature", "timestep", "mass")


def learned_dynamics(dynamics: dict[str, Any] | None) -> dict[str, float]:
    """The learned values of a saved dynamics (e.g. ``{"damp": 97.6}`` for Langevin)."""
    return {k: v for k, v in (dynamics or {}).items() if k not in _FIXED_DYNAMICS_KEYS}

ROUND_HEADER = ["round", "D accuracy", "generator loss", "± SE", "gradient SNR", "ESS", "windows",
                "dynamics after", "step scales", "round frames' RDF max |Δg|",
                "structure correction max |Δc| (kcal/mol)", "rejected"]
GUARD_HEADER = ["round", "attempt", "step scales", "accepted", "probe RDF max |Δg|", "probe generator loss",
                "reasons"]


@dataclass(frozen=True)
class StageTime:
    """Wall time of one pipeline job, from its Snakemake benchmark file."""

    stage: str       # the rule
    job: str         # the rule and its wildcards, e.g. ``simulate/round_1``
    seconds: float


def read_benchmark(path: str | os.PathLike, benchmarks_root: str | os.PathLike | None = None) -> StageTime:
    """A Snakemake benchmark TSV (column ``s``: wall seconds, mean over repeats).

    The stage is the first path component below ``benchmarks_root`` (default: the directory
    named ``benchmarks`` above the file), the job the whole relative path without ``.tsv``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} does not exist")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path} is not a Snakemake benchmark file (no column 's')")
    seconds = float(np.mean([float(row["s"]) for row in rows]))
    root = Path(benchmarks_root) if benchmarks_root is not None else next(
        (p for p in path.parents if p.name == "benchmarks"), path.parent)
    relative = path.relative_to(root).with_suffix("")
    return StageTime(stage=relative.parts[0], job=relative.as_posix(), seconds=seconds)


def _finite(value: Any) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else float("nan")


def _plot_observables(path: Path, aa: Observables, initial: Observables, final: Observables,
                      n_rounds: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    series = [(aa, "AA", dict(color="black", ls="--")),
              (initial, "initial (BI + IBI)", dict(color="tab:blue")),
              (final, f"final (after {n_rounds} rounds)", dict(color="tab:red"))]
    for obs, label, style in series:
        axes[0].plot(obs.rdf.r, obs.rdf.g, label=label, **style)
        axes[1].plot(obs.adf.theta, obs.adf.density, label=label, **style)
        if obs.msd is not None and len(obs.msd.times) > 1:
            axes[2].loglog(obs.msd.times[1:] / units.FS_PER_PS, obs.msd.msd[1:], label=label, **style)
    axes[0].set(xlabel="r (Å)", ylabel="g(r)", title="RDF")
    axes[1].set(xlabel="θ (degrees)", ylabel="p(θ) (1/degree)", title="ADF")
    axes[2].set(xlabel="t (ps)", ylabel="MSD (Å²)", title="MSD")
    for ax in axes:
        ax.legend(fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def _plot_metrics(path: Path, evaluations: list[dict[str, Any]]) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    states = np.arange(len(evaluations))
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].plot(states, [_finite(e["rdf_max_abs_diff"]) for e in evaluations], "o-", label="RDF max |Δg|")
    axes[0].plot(states, [_finite(e["adf_total_variation"]) for e in evaluations], "s-", label="ADF TVD")
    axes[0].set(xlabel="state (0 = initial)", title="structure vs AA")
    for t in PLOTTED_MSD_TIMES:
        axes[1].plot(states, [_finite(e["msd_ratios"].get(t)) for e in evaluations], "o-",
                     label=f"MSD ratio {t} ps")
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set(xlabel="state (0 = initial)", title="MSD_CG / MSD_AA")
    axes[2].plot(states, [_finite(e["diffusion_ratio"]) for e in evaluations], "o-", label="D_CG / D_AA")
    first = learned_dynamics(evaluations[0].get("dynamics"))
    for name, start in first.items():
        axes[2].plot(states, [_finite(learned_dynamics(e.get("dynamics")).get(name)) / start
                              for e in evaluations], "s-", label=f"{name} / state 0's")
    axes[2].axhline(1.0, color="grey", lw=0.8)
    axes[2].set(xlabel="state (0 = initial)", title="diffusion and the learned dynamics")
    for ax in axes:
        ax.legend(fontsize="small")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def _plot_training(path: Path, discriminators: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rounds = np.arange(len(updates))
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    axes = fig.subplots(1, 4)
    axes[0].plot(rounds, [_finite(d["val_accuracy"]) for d in discriminators], "o-", label="both")
    axes[0].plot(rounds, [_finite(d["val_accuracy_real"]) for d in discriminators], ".--", label="AA")
    axes[0].plot(rounds, [_finite(d["val_accuracy_generated"]) for d in discriminators], ".--", label="CG")
    axes[0].axhline(0.5, color="grey", lw=0.8)
    axes[0].set(xlabel="round", title="discriminator held-out accuracy", ylim=(0, 1))
    axes[1].errorbar(rounds, [_finite(u["generator_loss"]) for u in updates],
                     yerr=[_finite(u["generator_loss_se"]) for u in updates], fmt="o-")
    axes[1].axhline(math.log(2.0), color="grey", lw=0.8, label="log 2 (D = 1/2)")
    axes[1].set(xlabel="round", title="generator loss −log D")
    axes[2].plot(rounds, [_finite(u["global_snr"]) for u in updates], "o-")
    axes[2].axhline(1.0, color="grey", lw=0.8)
    axes[2].set(xlabel="round", title="gradient SNR (whole vector)")
    axes[3].plot(rounds, [_finite(u["effective_sample_size"]) for u in updates], "o-", label="ESS")
    axes[3].plot(rounds, [u["n_windows"] for u in updates], "--", color="grey", label="windows")
    axes[3].set(xlabel="round", title="effective sample size of the step")
    for ax in (axes[0], axes[1], axes[3]):
        ax.legend(fontsize="small")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def _stage_totals(times: Sequence[StageTime]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for t in times:
        entry = totals.setdefault(t.stage, {"seconds": 0.0, "jobs": 0})
        entry["seconds"] += t.seconds
        entry["jobs"] += 1
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]["seconds"]))


def _plot_timing(path: Path, totals: dict[str, dict[str, float]]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.4 * max(len(totals), 3) + 1.2), layout="constrained")
    ax = fig.subplots()
    names = list(totals)[::-1]
    ax.barh(names, [totals[n]["seconds"] for n in names])
    ax.set(xlabel="wall time, summed over jobs (s)", title="time per stage")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def _named(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in values.items())


def _scales(scales: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in scales.items())


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}g}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(outdir: str | os.PathLike, aa_observables: str | os.PathLike,
                 evaluation_dirs: Sequence[str | os.PathLike],
                 discriminator_logs: Sequence[str | os.PathLike],
                 update_reports: Sequence[str | os.PathLike],
                 benchmarks: Sequence[str | os.PathLike] = (),
                 config: dict[str, Any] | None = None) -> Path:
    """Write the report (see the module docstring) into ``outdir``; returns ``index.html``.

    Parameters
    ----------
    evaluation_dirs
        Evaluation directories of states 0, 1, ..., R (each with ``metrics.json`` and
        ``observables.json``); the first is the initial model, the last the final one.
    discriminator_logs, update_reports
        Per round 0, ..., R − 1: the discriminator's training log and the update report.
    benchmarks
        Snakemake benchmark files of the jobs (any order).
    config
        The resolved configuration, shown on the page.

    Raises
    ------
    ValueError
        The numbers of evaluations, discriminator logs and update reports do not fit together.
    """
    if not evaluation_dirs:
        raise ValueError("report: need at least the evaluation of the initial state")
    n_rounds = len(evaluation_dirs) - 1
    if len(discriminator_logs) != n_rounds or len(update_reports) != n_rounds:
        raise ValueError(f"report: {len(evaluation_dirs)} evaluations need {n_rounds} discriminator "
                         f"logs and update reports, got {len(discriminator_logs)} and {len(update_reports)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    aa = load_observables_json(aa_observables)
    evaluations = [read_json(Path(d) / "metrics.json", "evaluation metrics") for d in evaluation_dirs]
    for evaluation in evaluations:
        evaluation["msd_ratios"] = msd_ratios_from_json(evaluation.get("msd_ratios", []))
    initial = load_observables_json(Path(evaluation_dirs[0]) / "observables.json")
    final = load_observables_json(Path(evaluation_dirs[-1]) / "observables.json")
    discriminators = [read_json(p, "discriminator log") for p in discriminator_logs]
    updates = [read_json(p, "update report") for p in update_reports]
    times = [read_benchmark(p) for p in benchmarks]
    totals = _stage_totals(times)

    _plot_observables(outdir / "observables.png", aa, initial, final, n_rounds)
    _plot_metrics(outdir / "metrics.png", evaluations)
    _plot_training(outdir / "training.png", discriminators, updates)
    _plot_timing(outdir / "timing.png", totals)

    per_state = [{"state": k, "dynamics": learned_dynamics(e.get("dynamics")),
                  **{key: e.get(key) for key in ("rdf_max_abs_diff", "adf_total_variation",
                                                 "diffusion_ratio", "msd_ratios", "seconds")}}
                 for k, e in enumerate(evaluations)]
    per_round = [{"round": k, "discriminator_accuracy": d.get("val_accuracy"),
                  "discriminator_seconds": d.get("seconds"),
                  "generator_loss": u.get("generator_loss"), "generator_loss_se": u.get("generator_loss_se"),
                  "gradient_snr": u.get("global_snr"), "effective_sample_size": u.get("effective_sample_size"),
                  "n_windows": u.get("n_windows"), "dynamics_after": learned_dynamics(u.get("dynamics")),
                  "update_seconds": u.get("seconds"), "step_scales": u.get("step_scales", {}),
                  "structure_rdf_max_abs_diff": (u.get("structure_correction") or {}).get("rdf_max_abs_diff"),
                  "structure_max_abs_delta": (u.get("structure_correction") or {}).get("max_abs_delta"),
                  "rejected_proposals": sum(not e["accepted"] for e in u.get("guard", []))}
                 for k, (d, u) in enumerate(zip(discriminators, updates))]
    guard_rows = [[k, e["attempt"], _scales(e["step_scales"]), "yes" if e["accepted"] else "no",
                   (e.get("probe") or {}).get("rdf_max_abs_diff"),
                   (e.get("probe") or {}).get("generator_loss"), "; ".join(e["reasons"])]
                  for k, u in enumerate(updates) for e in u.get("guard", [])]
    summary_states = [{**s, "msd_ratios": msd_ratios_to_json(s["msd_ratios"])} for s in per_state]
    summary = {"n_rounds": n_rounds, "final": summary_states[-1], "initial": summary_states[0],
               "states": summary_states, "rounds": per_round,
               "stages": totals, "jobs": [t.__dict__ for t in times],
               "total_job_seconds": sum(t.seconds for t in times)}
    write_json(outdir / "summary.json", summary)

    msd_header = sorted(evaluations[-1]["msd_ratios"])   # lags are numbers: 0.1, 0.2, ..., 50
    state_rows = [[s["state"], s["rdf_max_abs_diff"], s["adf_total_variation"], s["diffusion_ratio"],
                   _named(s["dynamics"]), *[s["msd_ratios"].get(t) for t in msd_header]] for s in per_state]
    round_rows = [[r["round"], r["discriminator_accuracy"], r["generator_loss"], r["generator_loss_se"],
                   r["gradient_snr"], r["effective_sample_size"], r["n_windows"], _named(r["dynamics_after"]),
                   _scales(r["step_scales"]), r["structure_rdf_max_abs_diff"],
                   r["structure_max_abs_delta"], r["rejected_proposals"]]
                  for r in per_round]
    time_rows = [[name, v["jobs"], v["seconds"]] for name, v in totals.items()]
    state_header = ["state", "RDF max |Δg|", "ADF TVD", "D ratio", "learned dynamics",
                    *[f"MSD ratio {t:g} ps" for t in msd_header]]
    config_text = html.escape(json.dumps(config, indent=1)) if config is not None else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>advcg report</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:1em auto}}
table{{border-collapse:collapse;margin:0.5em 0}}td,th{{border:1px solid #bbb;padding:2px 8px;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>advcg: adversarial CG water</h1>
<p>{n_rounds} adversarial round(s). State 0 is the initial model (Boltzmann inversion + IBI),
state {n_rounds} the final one (<code>results/final/</code>). Metrics are against the mapped AA
reference: RDF max |Δg| over 2–12 Å, ADF total variation distance, MSD and D ratios CG/AA.</p>
<h2>Structure and dynamics: initial and final model vs AA</h2>
<img src="observables.png" alt="RDF, ADF, MSD">
<h2>Metrics per state</h2>
{_table(state_header, state_rows)}
<img src="metrics.png" alt="metrics per state">
<h2>Training per round</h2>
{_table(ROUND_HEADER, round_rows)}
<img src="training.png" alt="training curves">
<h2>Divergence guard</h2>
<p>Every proposed update is checked by a probe run before it is accepted (RDF max |Δg| against
AA, generator loss under the round's discriminator); a rejected one is retried with a smaller
step from the last good parameters. {sum(r["rejected_proposals"] for r in per_round)} proposal(s)
rejected in {n_rounds} round(s).</p>
{_table(GUARD_HEADER, guard_rows)}
<h2>Time per stage</h2>
{_table(["stage", "jobs", "seconds"], time_rows)}
<p>Sum over jobs: {_fmt(summary["total_job_seconds"], 4)} s (jobs may run in parallel).</p>
<img src="timing.png" alt="time per stage">
<h2>Configuration</h2><pre>{config_text}</pre>
</body></html>
"""
    index = outdir / "index.html"
    write_text(index, page)
    logger.info("report in %s (%d rounds, %d timed jobs)", index, n_rounds, len(times))
    return index
