"""The pipeline through a running SLURM cluster: every job submitted by ``sbatch`` with the
profiles ``workflow/profiles/slurm`` (the workflow's side) and ``workflow/profiles/slurm-local``
(the local cluster's side), the same final model and metrics as a local run with the same seeds,
GPU requests accepted on the GPU partition, and a job cancelled by ``scancel`` detected, retried
or reported, and resumed to the same result.

Marked ``slurm`` (deselected by default): ``pytest -m slurm tests/test_slurm.py`` once
``workflow/slurm/local-cluster.sh up`` runs (docs/cluster.md). Skipped, with the reason, when no
cluster answers. Every run happens in its own work directory holding copies of the repository's
``Snakefile``, ``workflow/``, ``config/`` and ``envs/`` (as in tests/test_pipeline.py); the jobs
call the installed ``advcg`` command of this interpreter's environment, which SLURM passes on
(``sbatch --export=ALL``).
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
PIPELINE_FILES = ("Snakefile", "workflow", "config", "envs")
TEST_CONFIG = ["--configfile", "config/test.yaml"]
SLURM_PROFILES = ["--workflow-profile", "workflow/profiles/slurm",
                  "--profile", "workflow/profiles/slurm-local"]
#: The local cluster's account (workflow/slurm/local-cluster.sh, workflow/profiles/slurm-local).
ACCOUNT = "advcg"
#: The rules whose jobs ask for a GPU (workflow/profiles/slurm set-resources).
GPU_RULES = ("simulate", "evaluate")
AA_STAGES = {"aa_reference", "map", "aa_observables", "aa_features", "init", "state0"}
#: The model files that must come out identical from identical seeds.
MODEL_FILES = ("pair.table", "threebody.sw", "parameters.json", "dynamics.json", "cg_water.in")
RUN_TIMEOUT = 3600
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+)")


# -- the cluster -----------------------------------------------------------------------------------
def _query(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=20)


def cluster_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None when a cluster with accounting answers."""
    start = "start one with `workflow/slurm/local-cluster.sh up` (docs/cluster.md)"
    for tool in ("sinfo", "sbatch", "squeue", "scancel", "sacct", "sacctmgr"):
        if shutil.which(tool) is None:
            return f"no SLURM: `{tool}` is not installed; {start}"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'"
    try:
        sinfo = _query("sinfo", "-h", "-o", "%a %T")
        sacct = _query("sacct", "-n", "-X", "-S", "now")
        assoc = _query("sacctmgr", "-n", "-P", "show", "assoc", f"where user={getpass.getuser()}",
                       f"account={ACCOUNT}", "format=user")
    except subprocess.TimeoutExpired as exc:
        return f"SLURM does not answer (`{' '.join(exc.cmd)}` timed out); {start}"
    if sinfo.returncode != 0 or not re.search(r"^up (idle|mixed|allocated)$", sinfo.stdout, re.M):
        return f"no SLURM cluster with an idle node answers (sinfo: {sinfo.stdout.strip()!r}); {start}"
    if sacct.returncode != 0:
        return f"SLURM job accounting does not answer (sacct: {sacct.stdout.strip()!r}); {start}"
    if not assoc.stdout.strip():
        return f"the SLURM account {ACCOUNT!r} of the local cluster has no association for " \
               f"{getpass.getuser()!r}; {start}"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    """Skip unless a SLURM cluster with job accounting and the local cluster's account runs."""
    problem = cluster_problem()
    if problem:
        pytest.skip(problem)


def sacct_jobs(job_ids: list[str]) -> list[dict[str, str]]:
    """The accounting records of SLURM jobs (allocations only, no steps), in job-id order."""
    fields = ("JobID", "State", "Partition", "Account", "AllocTRES", "Comment", "ExitCode")
    result = _query("sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", ",".join(fields))
    assert result.returncode == 0, result.stdout
    records = [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines() if line]
    return sorted(records, key=lambda record: int(record["JobID"]))


def rule_of(record: dict[str, str]) -> str:
    """The rule of a job the SLURM executor submitted (its comment: rule_<name>_wildcards_...)."""
    match = re.fullmatch(r"rule_(.+?)(_wildcards_.*)?", record["Comment"])
    assert match, f"job {record['JobID']}: unexpected comment {record['Comment']!r}"
    return match.group(1)


# -- Snakemake -----------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    """The environment of a Snakemake run: this interpreter's ``bin`` (with ``advcg``) first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def workdir(path: Path) -> Path:
    """A fresh work directory with copies of the pipeline's files."""
    path.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, path / name)
    return path


def snakemake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


def snakemake(work: Path, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``snakemake ARGS`` in ``work``; output (stdout + stderr) in ``.stdout``."""
    return subprocess.run(snakemake_command(*args), cwd=work, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


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


# -- results ---------------------------------------------------------------------------------------
def metrics(work: Path) -> dict:
    """The final metrics without wall-clock times."""
    data = json.loads((work / "results/final/metrics.json").read_text())
    return {key: value for key, value in data.items() if not key.endswith("seconds")}


def assert_same_result(work: Path, reference: Path) -> None:
    """The final model files byte for byte and the final metrics number by number."""
    for name in MODEL_FILES:
        assert (work / "results/final" / name).read_bytes() == \
            (reference / "results/final" / name).read_bytes(), name
    got, expected = metrics(work), metrics(reference)
    assert set(got) == set(expected)
    differing = {key: (got[key], expected[key]) for key in expected if got[key] != expected[key]}
    assert not differing, f"final metrics differ (got, expected): {differing}"


@pytest.fixture(scope="module")
def local_run(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished local run of ``config/test.yaml`` (``--cores 2``); returns its work directory."""
    work = workdir(tmp_path_factory.mktemp("local") / "work")
    started = time.perf_counter()
    result = snakemake(work, "--cores", "2", *TEST_CONFIG)
    (work / "snakemake.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-20000:]
    print(f"\nlocal run of config/test.yaml: {time.perf_counter() - started:.0f} s")
    return work


@pytest.fixture(scope="module")
def slurm_run(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished run of ``config/test.yaml`` through SLURM; its work directory and output."""
    work = workdir(tmp_path_factory.mktemp("slurm") / "work")
    started = time.perf_counter()
    result = snakemake(work, *SLURM_PROFILES, *TEST_CONFIG)
    (work / "snakemake.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-20000:]
    print(f"\nSLURM run of config/test.yaml: {time.perf_counter() - started:.0f} s")
    return work, result.stdout


# -- one run through SLURM -----------------------------------------------------------------------------
def command_threads(output: str) -> dict[str, int]:
    """Per SLURM job id of a run's output: the threads its shell command uses (``--threads N``
    or ``OMP_NUM_THREADS=N``; 1 for a command that sets neither)."""
    threads: dict[str, int] = {}
    by_snakemake_job: dict[str, int] = {}
    current = None
    for line in output.splitlines():
        if header := re.match(r"Job (\d+): ", line):
            current = header.group(1)
        elif line.startswith("Shell command:") and current is not None:
            found = re.search(r"--threads (\d+)|OMP_NUM_THREADS=(\d+)", line)
            by_snakemake_job[current] = int(next(g for g in found.groups() if g)) if found else 1
        elif submitted := re.match(r"Job (\d+) has been submitted with SLURM jobid (\d+)", line):
            threads[submitted.group(2)] = by_snakemake_job[submitted.group(1)]
    return threads


def test_every_job_goes_through_sbatch_with_the_profiles_resources(slurm_run: tuple[Path, str]) -> None:
    work, output = slurm_run
    counts = job_counts(output)
    # `all` has no command: Snakemake finishes it itself; every other job is one sbatch job
    expected = {rule: n for rule, n in counts.items() if rule != "all"}
    job_ids = SUBMITTED.findall(output)
    assert len(job_ids) == sum(expected.values()), output[-20000:]
    threads = command_threads(output)
    records = sacct_jobs(job_ids)
    assert [r["JobID"] for r in records] == sorted(job_ids, key=int)
    submitted: dict[str, int] = {}
    for record in records:
        rule = rule_of(record)
        submitted[rule] = submitted.get(rule, 0) + 1
        assert record["State"] == "COMPLETED" and record["ExitCode"] == "0:0", record
        assert record["Account"] == ACCOUNT, record
        tres = dict(item.split("=", 1) for item in record["AllocTRES"].split(","))
        # --cpus-per-task is the rule's threads, which its command uses
        assert int(tres["cpu"]) == threads[record["JobID"]], (record, threads[record["JobID"]])
        if rule in GPU_RULES:
            assert record["Partition"] == "gpu" and tres.get("gres/gpu") == "1", record
        else:
            assert record["Partition"] == "cpu" and "gres/gpu" not in tres, record
    assert submitted == expected
    assert max(threads.values()) == 2           # threads: 2 in config/test.yaml
    # the rules' own logs are where a local run writes them
    for rule in expected:
        assert any((work / "results/logs").glob(f"{rule}*")), rule


def test_slurm_run_gives_the_local_result(slurm_run: tuple[Path, str], local_run: Path) -> None:
    work, _ = slurm_run
    assert_same_result(work, local_run)
    assert json.loads((work / "results/final/metrics.json").read_text())["round"] == 2


# -- a job cancelled by SLURM ------------------------------------------------------------------------
def redo_round_1(source: Path, target: Path) -> Path:
    """A copy of a finished run without round 1 and what follows it (state 2's evaluation,
    the final model, the report), with their logs and benchmarks."""
    shutil.copytree(source, target, symlinks=True)
    results = target / "results"
    for path in ("rounds/round_1", "evaluate/state_2", "final", "report"):
        shutil.rmtree(results / path)
    for kind, suffix in (("logs", "log"), ("benchmarks", "tsv")):
        for rule in ("simulate", "cg_features", "discriminate", "update"):
            (results / kind / rule / f"round_1.{suffix}").unlink()
        (results / kind / "evaluate" / f"state_2.{suffix}").unlink()
        (results / kind / f"finalise.{suffix}").unlink(missing_ok=True)
        (results / kind / f"report.{suffix}").unlink(missing_ok=True)
    return target


def cancel_when_running(work: Path, process: subprocess.Popen, rule: str, wildcard: str,
                        log: Path, timeout: float = 900) -> str:
    """Wait until the SLURM job of ``rule`` (``wildcard``) runs its command (its rule log exists),
    then ``scancel`` it; returns its job id."""
    comment = f"rule_{rule}_wildcards_{wildcard}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {process.returncode}) before {comment} ran")
        if time.monotonic() > deadline:
            raise AssertionError(f"{comment} did not run within {timeout} s")
        queue = _query("squeue", "-h", "-o", "%i|%T|%k").stdout.splitlines()
        running = [line.split("|")[0] for line in queue if line.endswith(f"|RUNNING|{comment}")]
        if running and log.exists():
            break
        time.sleep(0.5)
    time.sleep(2.0)                  # the advcg command is part-way
    cancel = _query("scancel", running[0])
    assert cancel.returncode == 0, cancel.stdout
    return running[0]


def run_and_cancel(work: Path, extra: list[str], rule: str, wildcard: str,
                   log: Path) -> tuple[int, str, str]:
    """Start the SLURM run of ``work``, cancel the job of ``rule`` when it runs, wait for the
    end; returns Snakemake's exit status and output and the cancelled job's id."""
    out = work / "cancelled.out"
    with open(out, "w") as stream:
        process = subprocess.Popen(snakemake_command(*SLURM_PROFILES, *TEST_CONFIG, *extra),
                                   cwd=work, env=_env(), stdout=stream, stderr=subprocess.STDOUT)
        try:
            job_id = cancel_when_running(work, process, rule, wildcard, log)
            process.wait(timeout=RUN_TIMEOUT)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=120)
    return process.returncode, out.read_text(), job_id


def test_a_job_cancelled_by_scancel_is_retried_to_the_same_result(slurm_run: tuple[Path, str],
                                                                  tmp_path: Path) -> None:
    """scancel kills round 1's simulation: Snakemake sees the job CANCELLED in sacct, submits it
    again (retries: 1 in the profile) and ends with the uninterrupted run's model."""
    reference, _ = slurm_run
    work = redo_round_1(reference, tmp_path / "work")
    rc, output, job_id = run_and_cancel(work, [], "simulate", "1",
                                        work / "results/logs/simulate/round_1.log")
    assert rc == 0, output[-20000:]
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in output, output[-20000:]
    counts = job_counts(output)
    assert not AA_STAGES & set(counts), counts      # nothing before round 1 ran again
    attempts = [record for record in sacct_jobs(SUBMITTED.findall(output))
                if record["Comment"] == "rule_simulate_wildcards_1"]
    assert [r["State"].split()[0] for r in attempts] == ["CANCELLED", "COMPLETED"], attempts
    assert attempts[0]["JobID"] == job_id
    assert_same_result(work, reference)


def test_a_cancelled_job_without_retries_stops_the_run_and_the_rerun_resumes(
        slurm_run: tuple[Path, str], tmp_path: Path) -> None:
    """With --retries 0 the cancelled job (round 1's update) fails the run with SLURM's reason;
    `snakemake` run again resumes from round 1 and ends with the uninterrupted run's model."""
    reference, _ = slurm_run
    work = redo_round_1(reference, tmp_path / "work")
    rc, output, job_id = run_and_cancel(work, ["--retries", "0"], "update", "1",
                                        work / "results/logs/update/round_1.log")
    assert rc != 0, output[-20000:]
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in output, output[-20000:]
    assert not (work / "results/final").exists()
    assert not (work / "results/rounds/round_1/next_state").exists()
    assert (work / "results/rounds/round_1/discriminator.pt").is_file()

    resumed = snakemake(work, *SLURM_PROFILES, *TEST_CONFIG)
    assert resumed.returncode == 0, resumed.stdout[-20000:]
    counts = job_counts(resumed.stdout)
    assert not AA_STAGES & set(counts), counts
    assert counts.get("update") == 1 and "discriminate" not in counts, counts
    assert_same_result(work, reference)
