"""Does adversarial training learn? (issue 4's "learning works" check)

Start from an IBI model whose Langevin friction is ``--friction-factor`` times too large (damping
time divided by that factor), run adversarial rounds in-process with the library's stages, and
print a per-round table: D_CG/D_AA, ADF total-variation distance, RDF max|Δg|, discriminator
held-out accuracy, generator loss, gradient SNR and the time per round split into simulate /
windows / discriminator / estimator / evaluate.

    python benchmarks/learning.py --aa results/aa/beads.npz --init results/init/potential.json \
        --workdir results/learning --rounds 6

Every number it prints is measured in that run. At the end (or alone, with ``--render-only``) the
rows in ``<workdir>/learning.json`` are written as a Markdown table to ``<workdir>/learning.md``;
``--update-readme`` also puts it between ``<!-- learning:begin -->`` and ``<!-- learning:end -->``
in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import time
from pathlib import Path

from advcg import stages
from advcg.config import load_config
from advcg.dynamics import LangevinDynamics
from advcg.io import replace_marked_section, write_text
from advcg.observables import compute_observables, save_observables_json
from advcg.potential import CGPotential
from advcg.state import RoundProgress, TrainingState, save_state
from advcg.threads import use_threads
from advcg.trajectory import CGTrajectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=Path, required=True, help="mapped AA trajectory (.npz)")
    parser.add_argument("--init", type=Path, required=True, help="initial potential JSON (IBI)")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--friction-factor", type=float, default=10.0)
    parser.add_argument("--damp", type=float, default=100.0, help="damping time before the factor, fs")
    parser.add_argument("--render-only", action="store_true",
                        help="only write the table of an existing <workdir>/learning.json")
    parser.add_argument("--update-readme", action="store_true",
                        help="put the table between the learning markers of benchmarks/README.md")
    args = parser.parse_args()
    if args.render_only:
        render(args.workdir, args.update_readme)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = load_config(args.config)
    use_threads(config.threads)
    work = args.workdir
    aa_obs = work / "aa_observables.json"
    aa = CGTrajectory.load(args.aa)
    half_box = float(aa.box.min()) / 2
    if not aa_obs.exists():
        save_observables_json(aa_obs, compute_observables(aa, r_max=min(12.0, half_box)))
    aa_features = work / "aa_features.pt"
    if not aa_features.exists():
        stages.aa_features(args.aa, aa_features, windows=config.windows)
    dynamics = LangevinDynamics(damp=args.damp / args.friction_factor, temperature=config.temperature,
                                timestep=config.timestep, mass=aa.mass)
    state = TrainingState(CGPotential.from_json(args.init), dynamics, RoundProgress(seed=config.seed))
    save_state(work / "state_0", state)
    rows = []
    previous = None
    state_dir = work / "state_0"
    for k in range(args.rounds + 1):
        rd = work / f"round_{k}"
        t0 = time.perf_counter()
        run_ps = None if k in (0, args.rounds) else config.evaluation.intermediate_run_ps
        metrics = stages.evaluate(state_dir, args.aa, aa_obs, rd / "eval", evaluation=config.evaluation,
                                  equilibration_ps=config.training.equilibration_ps,
                                  accelerator=config.accelerator, run_ps=run_ps)
        t_eval = time.perf_counter() - t0
        row = {"round": k, "damp_fs": metrics["dynamics"]["damp"], "D_ratio": metrics["diffusion_ratio"],
               "adf_tvd": metrics["adf_total_variation"], "rdf_max_dg": metrics["rdf_max_abs_diff"],
               "msd_ratio_1ps": metrics["msd_ratios"].get(1.0), "evaluate_s": t_eval}
        if k < args.rounds:
            result = stages.run_round(state_dir, rd, args.aa, aa_features, aa_obs, config, previous)
            up, seconds = result.update, result.seconds
            previous, state_dir = result.files.discriminator, result.files.next_state
            row.update({"d_accuracy": result.discriminator["val_accuracy"],
                        "generator_loss": up.estimate.value, "gradient_snr": up.estimate.global_snr,
                        "step_scale": up.state.progress.step_scales["potential"],
                        "friction_step_scale": up.state.progress.step_scales["dynamics"],
                        "rejected": sum(not e.accepted for e in up.events),
                        "simulate_s": seconds["simulate"], "windows_s": seconds["cg_features"],
                        "discriminator_s": seconds["discriminate"], "estimator_s": seconds["update"]})
        rows.append(row)
        (work / "learning.json").write_text(json.dumps(rows, indent=2))
        print(_format(row), flush=True)
    render(work, args.update_readme)


README = Path(__file__).resolve().parent / "README.md"
COLUMNS = [("round", "round", "d"), ("damp (fs)", "damp_fs", ".1f"), ("D_CG/D_AA", "D_ratio", ".3f"),
           ("MSD ratio 1 ps", "msd_ratio_1ps", ".3f"), ("ADF TVD", "adf_tvd", ".3f"),
           ("RDF max\\|Δg\\|", "rdf_max_dg", ".3f"), ("D accuracy", "d_accuracy", ".3f"),
           ("generator loss", "generator_loss", ".3f"), ("gradient SNR", "gradient_snr", ".2f"),
           ("rejected", "rejected", "d"), ("simulate s", "simulate_s", ".0f"), ("windows s", "windows_s", ".1f"),
           ("D s", "discriminator_s", ".1f"), ("update s (estimator, structure, guard)", "estimator_s", ".0f"),
           ("evaluate s", "evaluate_s", ".0f")]


def render(work: Path, update_readme: bool) -> None:
    """Write ``work/learning.json`` as a Markdown table (``work/learning.md``; README with ``update_readme``)."""
    rows = json.loads((work / "learning.json").read_text())
    stamp = datetime.datetime.fromtimestamp((work / "learning.json").stat().st_mtime, datetime.timezone.utc)

    def cell(row: dict, key: str, fmt: str) -> str:
        return "–" if row.get(key) is None else format(row[key], fmt)

    lines = [f"Rounds of `benchmarks/learning.py` in `{work}`, finished {stamp:%Y-%m-%d %H:%M} UTC on "
             f"{platform.node()} ({platform.processor() or platform.machine()}); every number measured in that run.",
             "", "| " + " | ".join(name for name, _, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row, key, fmt) for _, key, fmt in COLUMNS) + " |" for row in rows]
    block = "\n".join(lines) + "\n"
    write_text(work / "learning.md", block)
    print(block)
    if update_readme:
        replace_marked_section(README, "learning", block)


def _format(row: dict) -> str:
    def f(key: str, fmt: str = ".3f") -> str:
        value = row.get(key)
        return "-" if value is None else format(value, fmt)
    return (f"round {row['round']}: damp {f('damp_fs', '.1f')} fs | D ratio {f('D_ratio')} | "
            f"MSD(1 ps) ratio {f('msd_ratio_1ps')} | ADF TVD {f('adf_tvd')} | RDF max|dg| {f('rdf_max_dg')} | "
            f"D acc {f('d_accuracy')} | gen loss {f('generator_loss')} | SNR {f('gradient_snr', '.2f')} | "
            f"rejected {f('rejected', 'd')} | "
            f"s: sim {f('simulate_s', '.0f')} win {f('windows_s', '.0f')} D {f('discriminator_s', '.0f')} "
            f"est {f('estimator_s', '.0f')} eval {f('evaluate_s', '.0f')}")


if __name__ == "__main__":
    main()
