"""The README's one summary table: where the models stand, from the fidelity benchmark's results.

Reads every ``benchmarks/results/fidelity*.json`` that ``benchmarks/fidelity.py`` wrote and prints
one row per model and AA reference (RDF, ADF, the MSD ratio at a few lags, D ratio, goals met);
``--update-readme`` puts the table between ``<!-- summary:begin -->`` and ``<!-- summary:end -->``
in README.md. It computes nothing: every number is the fidelity run's (the full tables, with their
dates, machines and commands, are in ``benchmarks/README.md``).

    python benchmarks/summary.py --update-readme
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from advcg.io import replace_marked_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: MSD-ratio lags (ps) shown in the summary.
LAGS = (0.2, 1.0, 10.0, 50.0)
#: Reference name of each result file (the file stem after ``fidelity``).
REFERENCES = {"fidelity": "SPC/E", "fidelity_tip4p2005": "TIP4P/2005"}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_table(results: dict[str, dict]) -> str:
    """Markdown table of the models of every fidelity result (``{reference: results JSON}``)."""
    lines = ["| AA reference | model | RDF max\\|Δg\\| | ADF TVD | MSD ratio "
             + " / ".join(f"{t:g}" for t in LAGS) + " ps | D ratio | goals met |",
             "|---|---|---:|---:|---|---:|---|"]
    for reference, data in results.items():
        for model in data["models"]:
            ratios = dict((lag, ratio) for lag, ratio in model["msd_ratios"])
            met = ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in model["goals_met"].items())
            lines.append(f"| {reference} | {model['name']} | {_fmt(model['rdf_max_abs_diff'])} | "
                         f"{_fmt(model['adf_total_variation'])} | "
                         + " / ".join(_fmt(ratios.get(t), 2) for t in LAGS)
                         + f" | {_fmt(model['diffusion_ratio'], 2)} | {met} |")
    goals = next(iter(results.values()))["goals"]
    lines += ["", f"Goals: RDF ≤ {goals['rdf']}, ADF ≤ {goals['adf']}, every MSD ratio from 0.2 to 50 ps "
              f"within {goals['msd'][0]}–{goals['msd'][1]}. Full tables, plots, dates and commands: "
              "[benchmarks/README.md](benchmarks/README.md)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args()
    results = {REFERENCES.get(path.stem, path.stem): json.loads(path.read_text())
               for path in sorted(RESULTS.glob("fidelity*.json"))}
    table = summary_table(results)
    print(table)
    if args.update_readme:
        replace_marked_section(ROOT / "README.md", "summary", table)


if __name__ == "__main__":
    main()
