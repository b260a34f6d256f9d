"""A user's AA files whose frames the configured windows cannot use stop the pipeline in its
``map`` job, before the initialisation, the evaluations or anything else expensive, naming the
configuration key and the numbers (``advcg map --config``, :func:`advcg.windows.check_frame_spacing`).

The user files are real: synthetic water written as a LAMMPS data file and a DCD with frames 40 fs
(or 120 fs) apart, as a TIP4P/2005 run dumped every 40 fs would be; the default configuration's
windows have a lag of 100 fs. The pipeline is real Snakemake in a copy of the repository's
pipeline files, run until it stops.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advcg import cli

from helpers.water import write_lammps_water

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "config" / "config.yaml"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _map(caplog, topology: Path, trajectory: Path, output: Path) -> tuple[int, str]:
    caplog.clear()
    status = cli.main(["map", "--config", str(DEFAULT_CONFIG), "--topology", str(topology),
                       "--trajectory", str(trajectory), "--output", str(output)])
    return status, "\n".join(r.getMessage() for r in caplog.records
                             if r.name == "advcg" and r.levelno >= logging.ERROR)


@pytest.mark.parametrize("frame_dt, n_frames, expected", [
    (40.0, 40, (r"lag 100\.0 fs is not a whole number of the trajectory's 40\.0 fs frame spacing "
                r"\(2\.5 frames\): set windows\.lag_fs to a multiple of 40\.0 fs \(e\.g\. 80 or 120\)")),
    (120.0, 40, r"frames are 120\.0 fs apart, coarser than the window lag windows\.lag_fs = 100\.0 fs"),
    (50.0, 8, (r"a window of 500\.0 fs is longer than the trajectory \(350\.0 fs, 8 frames\): lower "
               r"windows\.n_lags or windows\.lag_fs")),
    (20.0, 4, r"a window has n_lags \+ 1 = 6 frames"),
])
def test_map_refuses_frames_the_windows_cannot_use(tmp_path, caplog, frame_dt, n_frames, expected) -> None:
    topology, trajectory = write_lammps_water(tmp_path, frame_dt_fs=frame_dt, n_frames=n_frames)
    out = tmp_path / "beads.npz"
    status, message = _map(caplog, topology, trajectory, out)
    assert status == 2
    assert f"{topology} + {trajectory} cannot be used with the configuration {DEFAULT_CONFIG}" in message
    assert re.search(expected, message), message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["water.data", "water.dcd"]


def test_map_accepts_frames_the_windows_can_use(tmp_path, caplog) -> None:
    topology, trajectory = write_lammps_water(tmp_path, frame_dt_fs=20.0, n_frames=40)
    assert _map(caplog, topology, trajectory, tmp_path / "beads.npz") == (0, "")
    assert (tmp_path / "beads.npz").is_file()


# -- the pipeline -------------------------------------------------------------------------------------
def _workdir(path: Path, frame_dt: float) -> Path:
    """A copy of the pipeline files, and user AA files with frames ``frame_dt`` fs apart."""
    path.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "envs"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, path / name)
    (path / "user").mkdir()
    write_lammps_water(path / "user", "aa", n_side=4, n_frames=60, frame_dt_fs=frame_dt)
    (path / "config" / "user.yaml").write_text(yaml.safe_dump(
        {"aa": {"source": "file", "topology": "user/aa.data", "trajectory": "user/aa.dcd"}}))
    return path


def _snakemake(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--printshellcmds",
                           "--configfile", "config/user.yaml"], cwd=workdir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                          check=False)


def _started(output: str) -> set[str]:
    """The advcg subcommands of the jobs Snakemake started (their shell commands, --printshellcmds)."""
    return set(re.findall(r"^Shell command: advcg ([\w-]+) ", output, re.MULTILINE))


def test_the_pipeline_stops_in_the_map_job_naming_the_key(tmp_path) -> None:
    """The default pipeline on a user's trajectory dumped every 40 fs (lag 100 fs): the map job
    fails, and no other job starts (it used to run IBI and a 100 ps evaluation first)."""
    work = _workdir(tmp_path / "work", frame_dt=40.0)
    result = _snakemake(work)
    assert result.returncode != 0, result.stdout
    assert _started(result.stdout) == {"map"}, result.stdout
    log = (work / "results" / "logs" / "map.log").read_text()
    assert "Traceback" not in log, log
    assert re.search(r"user/aa\.data \+ user/aa\.dcd cannot be used with the configuration \S+: windows: "
                     r"lag 100\.0 fs is not a whole number of the trajectory's 40\.0 fs frame spacing "
                     r"\(2\.5 frames\): set windows\.lag_fs to a multiple of 40\.0 fs", log), log
    assert [str(p.relative_to(work / "results")) for p in (work / "results").rglob("*")
            if p.is_file()] == ["logs/map.log"]


def test_the_pipeline_maps_a_user_trajectory_the_windows_can_use(tmp_path) -> None:
    """The control: frames every 20 fs map through the same job."""
    work = _workdir(tmp_path / "work", frame_dt=20.0)
    result = _snakemake(work, "results/aa/beads.npz")
    assert result.returncode == 0, result.stdout
    assert _started(result.stdout) == {"map"}
    assert (work / "results" / "aa" / "beads.npz").is_file()
