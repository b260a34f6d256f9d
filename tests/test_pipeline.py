"""The Snakemake pipeline, run for real: the DAG, lint, config validation, an end-to-end run of
``config/test.yaml`` (real LAMMPS, torch), partial reruns, and kill-and-resume.

Every run happens in its own work directory holding copies of the repository's ``Snakefile``,
``workflow/``, ``config/`` and ``envs/``; the jobs call the installed ``advcg`` command. One
end-to-end run (a session fixture, a few minutes on 2 cores) is shared by the tests that need
finished results; tests that change results work on copies of it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PIPELINE_FILES = ("Snakefile", "workflow", "config", "envs")
TEST_CONFIG = ["--configfile", "config/test.yaml"]
AA_STAGES = {"aa_reference", "map", "aa_observables", "aa_features", "init", "state0"}
FINAL_FILES = ("pair.table", "threebody.sw", "pair.in", "cg_water.in", "parameters.json",
               "dynamics.json", "metrics.json")
#: The model files that must come out identical from identical seeds.
MODEL_FILES = ("pair.table", "threebody.sw", "parameters.json", "dynamics.json", "cg_water.in")
END_TO_END_TIMEOUT = 1800


def _env() -> dict[str, str]:
    """The environment of a Snakemake run: this interpreter's ``bin`` (with ``advcg``) first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _workdir(path: Path) -> Path:
    """A fresh work directory with copies of the pipeline's files."""
    path.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, path / name)
    return path


def snakemake(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``snakemake ARGS`` in ``workdir``; output (stdout + stderr) in ``.stdout``."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The ``Job stats`` table of Snakemake's output (the first one) as ``{rule: count}``."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return {}
    counts: dict[str, int] = {}
    for line in lines[start + 3:]:
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    return counts


def _default_rounds() -> int:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())["training"]["rounds"]


# -- DAG, lint and configuration: no job runs ------------------------------------------------------
def test_dry_run_of_the_default_config_lists_the_whole_dag(tmp_path: Path) -> None:
    work = _workdir(tmp_path / "work")
    result = snakemake(work, "-n", "--cores", "2")
    assert result.returncode == 0, result.stdout
    rounds = _default_rounds()
    assert job_counts(result.stdout) == {
        "aa_reference": 1, "map": 1, "aa_observables": 1, "aa_features": 1,
        "init": 1, "state0": 1, "simulate": rounds, "cg_features": rounds, "discriminate": rounds,
        "update": rounds, "evaluate": rounds + 1, "finalise": 1, "report": 1, "all": 1}
    # the rounds chain: round k starts from the state that round k - 1's update wrote
    assert "results/rounds/round_0/next_state" in result.stdout
    assert f"results/rounds/round_{rounds - 1}/next_state" in result.stdout
    assert not (work / "results").exists()


def test_lint_is_clean(tmp_path: Path) -> None:
    work = _workdir(tmp_path / "work")
    result = snakemake(work, "--lint")
    assert result.returncode == 0, result.stdout
    assert "Congratulations, your workflow is in a good condition!" in result.stdout, result.stdout


@pytest.mark.parametrize("override, key", [
    ({"training": {"roundz": 3}}, "roundz"),                        # unknown key
    ({"training": {"rounds": "many"}}, "many"),                     # wrong type
    ({"evaluation": {"run_ps": -1.0}}, "run_ps"),                   # out of range
    ({"potential": {"variant": "tersoff"}}, "tersoff"),             # not one of the variants
    ({"windows": {"n_lags": 50}}, "training.window_spacing_ps"),    # across keys (advcg.config)
])
def test_an_invalid_config_fails_before_any_job_naming_the_key(tmp_path: Path, override: dict,
                                                               key: str) -> None:
    work = _workdir(tmp_path / "work")
    (work / "config" / "bad.yaml").write_text(yaml.safe_dump(override))
    result = snakemake(work, "--cores", "2", "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert key in result.stdout, result.stdout
    assert job_counts(result.stdout) == {}
    assert not (work / "results").exists(), "a job ran although the configuration is invalid"


def test_the_wrong_type_error_names_the_key_path(tmp_path: Path) -> None:
    work = _workdir(tmp_path / "work")
    (work / "config" / "bad.yaml").write_text(yaml.safe_dump({"training": {"rounds": "many"}}))
    result = snakemake(work, "-n", "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert "training.rounds: 'many' is not of type 'integer'" in result.stdout, result.stdout


# -- one end-to-end run of config/test.yaml -----------------------------------------------------------
@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of ``config/test.yaml`` (2 rounds); returns its work directory."""
    work = _workdir(tmp_path_factory.mktemp("pipeline") / "work")
    started = time.perf_counter()
    result = snakemake(work, "--cores", "2", *TEST_CONFIG, timeout=END_TO_END_TIMEOUT)
    (work / "snakemake.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-20000:]
    print(f"\nend-to-end pipeline run of config/test.yaml: {time.perf_counter() - started:.0f} s")
    return work


def _test_rounds() -> int:
    return yaml.safe_load((REPO / "config" / "test.yaml").read_text())["training"]["rounds"]


def test_end_to_end_produces_the_final_model_and_metrics(pipeline_run: Path) -> None:
    final = pipeline_run / "results" / "final"
    for name in FINAL_FILES:
        assert (final / name).is_file(), name
    metrics = json.loads((final / "metrics.json").read_text())
    rounds = _test_rounds()
    assert metrics["round"] == rounds
    assert 0.0 <= metrics["rdf_max_abs_diff"] < 5.0
    assert 0.0 <= metrics["adf_total_variation"] <= 1.0
    ratios = dict(metrics["msd_ratios"])   # [[lag_ps, ratio], ...]: lags are numbers
    assert [lag for lag, _ in metrics["msd_ratios"]] == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    # a 2 ps evaluation has MSD ratios up to 2 ps and no D (fitted over 10-50 ps)
    assert all(0.2 < ratios[t] < 5.0 for t in (0.1, 0.2, 0.5, 1.0, 2.0))
    assert ratios[50.0] is None and metrics["diffusion_ratio"] is None
    assert "diffusion_ratio" in metrics
    # strict JSON (no NaN): missing MSD ratios are null
    evaluation = json.loads((pipeline_run / f"results/evaluate/state_{rounds}/metrics.json").read_text(),
                            parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert metrics["rdf_max_abs_diff"] == evaluation["rdf_max_abs_diff"]
    # the final parameters are the last update's state, not the initial potential
    last_state = pipeline_run / f"results/rounds/round_{rounds - 1}/next_state"
    assert json.loads((final / "parameters.json").read_text()) == json.loads(
        (last_state / "potential.json").read_text())
    assert json.loads((final / "parameters.json").read_text()) != json.loads(
        (pipeline_run / "results/init/potential.json").read_text())
    assert json.loads((final / "dynamics.json").read_text()) == json.loads(
        (last_state / "dynamics.json").read_text())
    # the deck runs from its own directory with plain lmp: include and tables by relative name
    assert re.search(r"^variable\s+pair_include index pair\.in$", (final / "cg_water.in").read_text(), re.M)
    assert "pair_coeff 1 1 table pair.table" in (final / "pair.in").read_text()


def test_end_to_end_keeps_rounds_on_disk_and_drops_the_recordings(pipeline_run: Path) -> None:
    results = pipeline_run / "results"
    for k in range(_test_rounds()):
        round_dir = results / "rounds" / f"round_{k}"
        for name in ("cg_features.pt", "discriminator.pt", "discriminator.json", "update.json"):
            assert (round_dir / name).is_file(), f"round {k}: {name}"
        state_files = {p.name for p in (round_dir / "next_state").iterdir()} - {".snakemake_timestamp"}
        umask = os.umask(0)
        os.umask(umask)
        assert (round_dir / "next_state").stat().st_mode & 0o777 == 0o777 & ~umask
        assert state_files == {"potential.json", "dynamics.json", "progress.json", "optimizer.pt"}
        assert not (round_dir / "simulate" / "recording.npz").exists(), "temp() recording was kept"
        update = json.loads((round_dir / "update.json").read_text())
        assert update["round"] == k and np.isfinite(update["global_snr"])
        assert json.loads((round_dir / "discriminator.json").read_text())["round"] == k
    for k in range(_test_rounds() + 1):
        assert (results / "evaluate" / f"state_{k}" / "observables.json").is_file()
        assert not (results / "evaluate" / f"state_{k}" / "trajectory.npz").exists()
    for log in (results / "logs").rglob("*.log"):
        assert log.stat().st_size > 0, f"empty log {log}"


def test_end_to_end_report_has_plots_and_time_per_stage(pipeline_run: Path) -> None:
    report = pipeline_run / "results" / "report"
    page = (report / "index.html").read_text()
    for figure in ("observables.png", "metrics.png", "training.png", "timing.png"):
        assert f'src="{figure}"' in page
        assert (report / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((report / "summary.json").read_text())
    rounds = _test_rounds()
    assert summary["n_rounds"] == rounds and len(summary["rounds"]) == rounds
    assert len(summary["states"]) == rounds + 1
    stages = summary["stages"]
    assert set(stages) == {"aa_reference", "map", "aa_observables", "aa_features", "init", "state0",
                           "simulate", "cg_features", "discriminate", "update", "evaluate", "finalise"}
    assert stages["simulate"]["jobs"] == rounds and stages["evaluate"]["jobs"] == rounds + 1
    with open(pipeline_run / "results/benchmarks/update/round_0.tsv", newline="") as handle:
        seconds = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    assert any(job["job"] == "update/round_0" and job["seconds"] == seconds for job in summary["jobs"])
    for entry in summary["rounds"]:
        assert 0.0 <= entry["discriminator_accuracy"] <= 1.0
        assert entry["effective_sample_size"] >= 1.0 - 1e-9
        assert entry["step_scales"]["potential"] > 0 and entry["rejected_proposals"] >= 0
        assert entry["structure_rdf_max_abs_diff"] > 0 and entry["structure_max_abs_delta"] > 0
    # the divergence guard's decisions: one row per proposal of every round
    assert "<h2>Divergence guard</h2>" in page
    proposals = sum(len(json.loads((pipeline_run / f"results/rounds/round_{k}/update.json").read_text())["guard"])
                    for k in range(rounds))
    assert page.count("<td>yes</td>") + page.count("<td>no</td>") == proposals


def test_the_final_deck_runs_in_lammps(pipeline_run: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from advcg.engine import Engine

    deck_dir = tmp_path / "final"
    shutil.copytree(pipeline_run / "results" / "final", deck_dir)
    monkeypatch.chdir(deck_dir)
    with Engine("serial", log_file=deck_dir / "log.lammps") as engine:
        engine.commands(["variable nsteps index 40", "variable dump_every index 20"])
        engine.lmp.file("cg_water.in")
        assert engine.n_atoms == json.loads((deck_dir / "metrics.json").read_text())["n_beads"]
        temperature = engine.lmp.get_thermo("temp")
    assert 100.0 < temperature < 600.0
    frames = (deck_dir / "traj.dump").read_text().count("ITEM: TIMESTEP")
    assert frames == 3


def test_a_finished_run_has_nothing_to_do(pipeline_run: Path) -> None:
    result = snakemake(pipeline_run, "-n", "--cores", "2", *TEST_CONFIG)
    assert result.returncode == 0, result.stdout
    assert "Nothing to be done" in result.stdout, result.stdout


def test_forcerun_schedules_the_stage_and_what_follows_only(pipeline_run: Path) -> None:
    rounds = _test_rounds()
    result = snakemake(pipeline_run, "-n", "--cores", "2", *TEST_CONFIG, "--forcerun", "evaluate")
    assert result.returncode == 0, result.stdout
    assert job_counts(result.stdout) == {"evaluate": rounds + 1, "finalise": 1, "report": 1, "all": 1}

    result = snakemake(pipeline_run, "-n", "--cores", "2", *TEST_CONFIG, "--forcerun", "discriminate")
    counts = job_counts(result.stdout)
    assert result.returncode == 0, result.stdout
    assert not AA_STAGES & set(counts), counts
    assert counts["discriminate"] == rounds and counts["update"] == rounds
    # state 0's evaluation does not depend on any discriminator; the others do
    assert counts["evaluate"] == rounds
    # simulate/cg_features of round 0 run again only to recreate the temporary recording that
    # round 0's update reads; rounds >= 1 depend on the forced discriminators
    assert counts["simulate"] == rounds and counts["cg_features"] == rounds
    assert {"finalise", "report", "all"} <= set(counts)


def test_a_changed_setting_reruns_the_stages_that_use_it(pipeline_run: Path) -> None:
    override = pipeline_run / "config" / "longer_evaluation.yaml"
    override.write_text(yaml.safe_dump({"evaluation": {"run_ps": 3.0}}))
    result = snakemake(pipeline_run, "-n", "--cores", "2", *TEST_CONFIG, "config/longer_evaluation.yaml")
    assert result.returncode == 0, result.stdout
    # run_ps is the length of the initial and final evaluations (the others: intermediate_run_ps)
    assert job_counts(result.stdout) == {"evaluate": 2, "finalise": 1, "report": 1, "all": 1}
    override.unlink()


def _copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_forcerun_runs_the_stage_again_and_leaves_the_rest(pipeline_run: Path, tmp_path: Path) -> None:
    work = _copy_run(pipeline_run, tmp_path / "work")
    before = _mtimes(work / "results")
    final_before = {name: (work / "results/final" / name).read_bytes() for name in MODEL_FILES}
    result = snakemake(work, "--cores", "2", *TEST_CONFIG, "--forcerun", "finalise", timeout=600)
    assert result.returncode == 0, result.stdout
    after = _mtimes(work / "results")
    changed = {path for path, mtime in after.items() if before.get(path) != mtime}
    assert changed, "nothing ran"
    assert all(path.startswith(("final/", "report/", "logs/finalise", "logs/report",
                                "benchmarks/finalise")) for path in changed), sorted(changed)
    assert {f"final/{name}" for name in FINAL_FILES} <= changed
    assert "report/index.html" in changed
    for name in MODEL_FILES:
        assert (work / "results/final" / name).read_bytes() == final_before[name], name


def test_user_aa_files_replace_the_generated_reference(pipeline_run: Path, tmp_path: Path) -> None:
    work = _workdir(tmp_path / "work")
    user = work / "user_aa"
    user.mkdir()
    for name in ("aa.data", "aa.dcd"):
        shutil.copy2(pipeline_run / "results/aa/reference" / name, user / name)
    (work / "config" / "user.yaml").write_text(yaml.safe_dump(
        {"aa": {"source": "file", "topology": "user_aa/aa.data", "trajectory": "user_aa/aa.dcd"}}))
    result = snakemake(work, "-n", "-p", "--cores", "2", *TEST_CONFIG, "config/user.yaml")
    assert result.returncode == 0, result.stdout
    counts = job_counts(result.stdout)
    assert "aa_reference" not in counts and counts["map"] == 1
    assert "--topology user_aa/aa.data --trajectory user_aa/aa.dcd" in result.stdout
    # and the mapping job itself runs on them
    result = snakemake(work, "results/aa/beads.npz", "--cores", "2", *TEST_CONFIG, "config/user.yaml")
    assert result.returncode == 0, result.stdout
    with np.load(work / "results/aa/beads.npz") as beads, \
            np.load(pipeline_run / "results/aa/beads.npz") as reference:
        np.testing.assert_array_equal(beads["positions"], reference["positions"])


# -- kill and resume ------------------------------------------------------------------------------------
def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {process.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_result(pipeline_run: Path, tmp_path: Path) -> None:
    """SIGKILL Snakemake and its jobs in the middle of round 1, resume, compare with the
    uninterrupted run: identical seeds give an identical final model."""
    work = _copy_run(pipeline_run, tmp_path / "work")
    results = work / "results"
    # keep the AA reference and the initialisation; redo the rounds
    for name in ("rounds", "evaluate", "final", "report"):
        shutil.rmtree(results / name)
    for name in ("simulate", "cg_features", "discriminate", "update", "evaluate"):
        shutil.rmtree(results / "logs" / name)
        shutil.rmtree(results / "benchmarks" / name)
    log = open(work / "interrupted.out", "w")
    process = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", *TEST_CONFIG],
                               cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        # round 1's simulation has started (its log exists): kill everything, jobs included
        _wait_for(results / "logs/simulate/round_1.log", process, timeout=900)
        time.sleep(2.0)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        log.close()
    assert process.returncode == -signal.SIGKILL
    assert not (results / "final").exists()
    assert (results / "rounds/round_0/next_state/potential.json").is_file()

    unlock = snakemake(work, "--unlock", *TEST_CONFIG)
    assert unlock.returncode == 0, unlock.stdout
    resumed = snakemake(work, "--cores", "2", *TEST_CONFIG, "--rerun-incomplete", timeout=END_TO_END_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-20000:]
    counts = job_counts(resumed.stdout)
    assert not AA_STAGES & set(counts), counts          # nothing before the rounds reran
    assert counts.get("simulate", 0) >= 1
    for name in MODEL_FILES:
        assert (results / "final" / name).read_bytes() == \
            (pipeline_run / "results/final" / name).read_bytes(), name
    assert json.loads((results / "final/metrics.json").read_text())["rdf_max_abs_diff"] == \
        json.loads((pipeline_run / "results/final/metrics.json").read_text())["rdf_max_abs_diff"]
