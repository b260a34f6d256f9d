"""Crash and resume, stage by stage: each training stage's ``advcg`` command is killed with SIGKILL
part-way; every output it left is complete (written to a temporary file and renamed, so a file is
absent or whole), and run again it gives exactly what an uninterrupted run gives (same seeds, same
machine). The pipeline-level version (Snakemake killed
mid-round, then resumed) is ``test_pipeline.py::test_kill_and_resume_gives_the_uninterrupted_result``.

The kill comes when the stage has used 70 % of the CPU time of an uninterrupted run of itself,
read from ``/proc``: wall-clock time would be at the mercy of the machine's other load (a
reference run slowed by a busy machine once let the killed run finish first).
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers.rounds import guard_overrides

#: Keys of JSON outputs that are wall-clock times, not results.
TIMING_KEYS = {"seconds", "estimator_seconds", "structure_seconds"}


def stage_command(stage: str, files: dict[str, Path], config: Path, out: Path) -> tuple[list[str], list[Path]]:
    """The ``advcg`` arguments of ``stage`` writing into ``out``, and its output files."""
    common = ["--config", str(config), "--threads", "1"]
    if stage == "simulate":
        return (["simulate", *common, "--state", str(files["state"]), "--aa-trajectory", str(files["aa"]),
                 "--outdir", str(out)], [out / "recording.npz"])
    if stage == "features":
        return (["features", "cg", *common, "--input", str(files["recording"]),
                 "--output", str(out / "features.pt")], [out / "features.pt"])
    if stage == "discriminate":
        return (["discriminate", *common, "--round", "0", "--aa-features", str(files["work"] / "aa_features.pt"),
                 "--cg-features", str(files["cg_features"]), "--checkpoint", str(out / "d.pt"),
                 "--log-json", str(out / "d.json")], [out / "d.pt", out / "d.json"])
    if stage == "update":
        return (["update", *common, "--state", str(files["state"]), "--recording", str(files["recording"]),
                 "--cg-features", str(files["cg_features"]), "--discriminator", str(files["discriminator"]),
                 "--aa-trajectory", str(files["aa"]), "--aa-observables", str(files["aa_observables"]),
                 "--out-state", str(out / "next_state"), "--report", str(out / "update.json")],
                [out / "next_state", out / "update.json"])
    if stage == "evaluate":
        return (["evaluate", *common, "--state", str(files["state"]), "--aa-trajectory", str(files["aa"]),
                 "--aa-observables", str(files["aa_observables"]), "--outdir", str(out)],
                [out / "metrics.json", out / "observables.json", out / "trajectory.npz"])
    raise ValueError(stage)


def advcg(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "advcg.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the running process ``pid`` (Linux ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_to_end(args: list[str]) -> float:
    """Run ``advcg args`` to the end; its CPU time, s."""
    before = children_cpu_seconds()
    proc = advcg(args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return children_cpu_seconds() - before


def kill_after_cpu_seconds(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL ``proc``'s session once it has used ``seconds`` of CPU; False if it ended first."""
    while proc.poll() is None:
        try:
            used = cpu_seconds(proc.pid)
        except (FileNotFoundError, ProcessLookupError):
            break
        if used >= seconds:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    return False


def content(path: Path):
    """What a stage output holds, comparable with ==: arrays, tensors, JSON without timings."""
    if path.is_dir():
        return {p.name: content(p) for p in sorted(path.iterdir())}
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k].tobytes() for k in data.files}
    if path.suffix == ".pt":
        obj = torch.load(path, weights_only=True)
        return repr(obj) if not isinstance(obj, torch.Tensor) else obj.numpy().tobytes()
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return {k: v for k, v in data.items() if k not in TIMING_KEYS} if isinstance(data, dict) else data
    return path.read_bytes()


def strip_timings(value):
    if isinstance(value, dict):
        return {k: strip_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value


@pytest.mark.parametrize("stage", ["simulate", "features", "discriminate", "update", "evaluate"])
def test_a_stage_killed_part_way_leaves_no_partial_file_and_reruns_to_the_same_result(
        stage, round_files, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(guard_overrides()))
    reference_args, reference_outputs = stage_command(stage, round_files, config, tmp_path / "reference")
    cpu = run_to_end(reference_args)

    args, outputs = stage_command(stage, round_files, config, tmp_path / "killed")
    if not kill_after_cpu_seconds(advcg(args), 0.7 * cpu):
        pytest.fail(f"{stage} finished before it could be killed ({cpu:.1f} CPU s)")
    print(f"{stage}: killed after {0.7 * cpu:.1f} of {cpu:.1f} CPU s")
    for path, reference in zip(outputs, reference_outputs):   # absent, or complete and right
        if path.exists():
            assert strip_timings(content(path)) == strip_timings(content(reference)), path

    run_to_end(args)
    for path, reference in zip(outputs, reference_outputs):
        assert strip_timings(content(path)) == strip_timings(content(reference)), path
