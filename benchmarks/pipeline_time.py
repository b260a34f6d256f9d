"""Time to a trained model: the whole default pipeline, end to end, on a fresh clone.

Clones the repository's committed state into ``--workdir`` (default: a temporary directory),
runs ``snakemake --cores N`` there (the embedded default: AA reference, mapping, initialisation,
the training rounds, evaluations, export and report) and prints the wall time against the goal
(≤ 30 min on 2 cores), the largest resident memory of any job, the time per stage summed from
the jobs' Snakemake benchmark files (``results/benchmarks/``) and the trained model's metrics
(``results/final/metrics.json``).

    python benchmarks/pipeline_time.py --cores 2 --update-readme

Every number printed is measured in that run. The Markdown goes to ``--out`` (default
``benchmarks/results/pipeline_time.md``); ``--update-readme`` also puts it between
``<!-- pipeline-time:begin -->`` and ``<!-- pipeline-time:end -->`` in benchmarks/README.md. Run it on an
otherwise idle machine: the number is a wall time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from advcg.io import replace_marked_section, write_text

from machine import machine_summary

ROOT = Path(__file__).resolve().parent.parent
GOAL_MINUTES = 30.0
README_SECTION = "pipeline-time"
#: Row order of the stage table; a job's stage is its benchmark file's folder (``update/round_3.tsv``)
#: or, at the top level, the file's name (``init.tsv``).
STAGE_ORDER = ("aa_reference", "map", "aa_features", "aa_observables", "init", "state0", "simulate",
               "cg_features", "discriminate", "update", "evaluate", "finalise", "report")


def git(*args: str, cwd: Path = ROOT) -> str:
    """Output of a git command in ``cwd``."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def stage_times(benchmarks: Path) -> dict[str, dict[str, float]]:
    """Per stage: number of jobs, summed wall seconds and largest ``max_rss`` (MiB)."""
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0, "max_rss": 0.0})
    for tsv in sorted(benchmarks.rglob("*.tsv")):
        stage = tsv.parent.name if tsv.parent != benchmarks else tsv.stem
        with open(tsv, newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                stages[stage]["jobs"] += 1
                stages[stage]["seconds"] += float(row["s"])
                rss = row.get("max_rss", "NA")
                if re.fullmatch(r"[0-9.]+", rss):
                    stages[stage]["max_rss"] = max(stages[stage]["max_rss"], float(rss))
    order = {name: k for k, name in enumerate(STAGE_ORDER)}
    return dict(sorted(stages.items(), key=lambda item: order.get(item[0], len(order))))


def _learned(dynamics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in dynamics.items()
                     if k not in ("kind", "temperature", "timestep", "mass"))


def _fmt(value: float | None) -> str:
    return "n/a (run too short)" if value is None else f"{value:.3f}"


def render(result: dict) -> str:
    """The Markdown block of one measured run."""
    minutes = result["wall_seconds"] / 60.0
    if result["configfile"]:
        verdict = "not the default configuration: the goal does not apply"
    else:
        verdict = "met" if minutes <= GOAL_MINUTES else "**not met**"
    final = result["final_metrics"]
    lines = [f"**Time to a trained model** — measured {result['started']} by `benchmarks/pipeline_time.py` "
             f"on {result['machine']}, load average {result['load_before']:.2f} before the run.", "",
             f"`{result['command']}` on a fresh clone of commit `{result['commit']}` (default "
             f"configuration{', plus ' + result['configfile'] if result['configfile'] else ''}): "
             f"**{minutes:.1f} min** wall (goal ≤ {GOAL_MINUTES:g} min: {verdict}), largest job "
             f"{result['max_rss_mib']:.0f} MiB resident.", "",
             "| stage | jobs | wall s (sum) | largest max_rss (MiB) |", "|---|---:|---:|---:|"]
    for stage, t in result["stages"].items():
        lines.append(f"| {stage} | {t['jobs']:.0f} | {t['seconds']:.0f} | {t['max_rss']:.0f} |")
    total = sum(t["seconds"] for t in result["stages"].values())
    lines += [f"| all jobs | {sum(t['jobs'] for t in result['stages'].values()):.0f} | {total:.0f} | |", "",
              f"Trained model (round {final['round']}, `results/final/metrics.json`, "
              f"{final['variant']}, {final['dynamics']['kind']} dynamics {_learned(final['dynamics'])}): RDF max|Δg| "
              f"{_fmt(final['rdf_max_abs_diff'])}, ADF TVD {_fmt(final['adf_total_variation'])}, "
              f"D_CG/D_AA {_fmt(final['diffusion_ratio'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", type=Path, default=None,
                        help="extra configuration merged over config/config.yaml (default: none)")
    parser.add_argument("--workdir", type=Path, default=None, help="clone here (default: temporary)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline_time.md")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="advcg_pipeline_") as scratch:
        workdir = (args.workdir or Path(scratch) / "advcg").resolve()
        if workdir.exists() and any(workdir.iterdir()):
            sys.exit(f"--workdir {workdir}: exists and is not empty; give a new directory")
        git("clone", "--quiet", str(ROOT), str(workdir))
        command = ["snakemake", "--cores", str(args.cores)]
        if args.configfile:
            command += ["--configfile", "config/config.yaml", str(args.configfile.resolve())]
        environment = dict(os.environ, PYTHONPATH=str(workdir))
        load_before = os.getloadavg()[0]
        started = datetime.datetime.now().astimezone()
        clock = time.perf_counter()
        with open(workdir / "pipeline_time.log", "w") as log:
            completed = subprocess.run(command, cwd=workdir, env=environment, stdout=log,
                                       stderr=subprocess.STDOUT)
        wall = time.perf_counter() - clock
        if completed.returncode != 0:
            sys.exit(f"{' '.join(command)} failed with status {completed.returncode}: "
                     f"see {workdir / 'pipeline_time.log'} (use --workdir to keep it)")
        result = {
            "started": f"{started:%Y-%m-%d %H:%M %Z}", "machine": machine_summary(),
            "load_before": load_before, "command": " ".join(command[:3]),
            "configfile": str(args.configfile) if args.configfile else "",
            "commit": git("rev-parse", "--short", "HEAD", cwd=workdir), "wall_seconds": wall,
            # ru_maxrss of the children: the largest single process, in KiB on Linux
            "max_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
            "stages": stage_times(workdir / "results" / "benchmarks"),
            "final_metrics": json.loads((workdir / "results" / "final" / "metrics.json").read_text()),
        }
    block = render(result)
    print(block)
    write_text(args.out, block)
    write_text(args.out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    if args.update_readme:
        replace_marked_section(args.readme, README_SECTION, block)
        print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
