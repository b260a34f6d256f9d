"""Same configuration and seeds, same outputs: the training stages rerun in fresh processes (as
Snakemake reruns them) give identical files on this machine.

A tiny system (216 beads at water density, the ``config/test.yaml`` settings with one thread)
goes through the real command line, each run in its own ``python -m advcg.cli`` process (fresh
interpreter, fresh hash seed, fresh LAMMPS):

* ``simulate`` twice: ``recording.npz`` holds identical arrays and the exported model files are
  identical bytes; a third run with another seed differs (so the equality means something);
* ``evaluate`` twice: identical ``metrics.json`` (but for its wall-clock ``seconds``), identical
  trajectory and observables;
* ``export`` twice: identical table, ``.sw``, include and parameter files, byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from advcg import cli
from advcg.observables import msd_ratios_from_json
from advcg.potential import CGPotential
from advcg.trajectory import CGTrajectory
from advcg.units import WATER_MASS, number_density

from helpers.systems import water_like_potential

REPO = Path(__file__).resolve().parent.parent
N_BEADS = 216
#: Keys of metrics.json that measure wall-clock time, not the model.
TIMING_KEYS = {"seconds"}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def advcg(*args: object) -> None:
    """``advcg ARGS`` in a fresh interpreter, one thread; fails the test on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONHASHSEED", None)   # each process draws its own: order must not depend on it
    result = subprocess.run([sys.executable, "-m", "advcg.cli", *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


def _aa_beads() -> CGTrajectory:
    """216 beads at 1 g/cm³: a jittered lattice diffusing a little, 101 frames 20 fs apart."""
    edge = (N_BEADS / number_density(1.0)) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rng = np.random.default_rng(0)
    start = grid * edge / 6 + rng.normal(0, 0.1, grid.shape)
    positions = start + np.cumsum(rng.normal(0, 0.05, (101, N_BEADS, 3)), axis=0)
    return CGTrajectory(positions, np.full((101, 3), edge), 20.0 * np.arange(101), WATER_MASS)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    files = {"potential": d / "potential.json", "aa": d / "aa.npz", "aa_obs": d / "aa_obs.json",
             "state": d / "state0"}
    water_like_potential().to_json(files["potential"])
    _aa_beads().save(files["aa"])
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["threads"] = 1
    for name, seed in (("config", config["seed"]), ("other_seed", config["seed"] + 1)):
        files[name] = d / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump({**config, "seed": seed}))
    assert cli.main(["observables", "--trajectory", str(files["aa"]), "--r-max", "9",
                     "--output-json", str(files["aa_obs"])]) == 0
    advcg("state-init", "--config", files["config"], "--potential", files["potential"],
          "--outdir", files["state"])
    files["other_state"] = d / "state0_other_seed"
    advcg("state-init", "--config", files["other_seed"], "--potential", files["potential"],
          "--outdir", files["other_state"])
    return files


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _same_model_files(a: Path, b: Path) -> None:
    """Identical exported model files in directories ``a`` and ``b``, byte for byte once each
    directory's own path is replaced (the deck names its directory in a comment; the
    ``sw/angle/table`` ``.sw`` file names the angle table by its absolute path)."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"pair.table", "threebody.sw", "pair.in", "parameters.json", "cg_water.in"} <= set(names)
    for name in names:
        left = (a / name).read_bytes().replace(str(a).encode(), b"DIR")
        right = (b / name).read_bytes().replace(str(b).encode(), b"DIR")
        assert left == right, f"{name} differs between {a} and {b}"


def test_simulate_twice_gives_identical_recordings(inputs, tmp_path) -> None:
    runs = [tmp_path / "first", tmp_path / "second", tmp_path / "other_seed"]
    for outdir, config, state in zip(runs, ("config", "config", "other_seed"),
                                     ("state", "state", "other_state")):
        advcg("simulate", "--config", inputs[config], "--threads", "1", "--state", inputs[state],
              "--aa-trajectory", inputs["aa"], "--outdir", outdir)
    first, second, other = (_arrays(outdir / "recording.npz") for outdir in runs)
    assert sorted(first) == sorted(second)
    for key in first:
        assert first[key].dtype == second[key].dtype, key
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    paths = first["paths"]
    assert paths.shape[0] == 4 and np.all(np.isfinite(paths)) and np.ptp(paths[:, -1] - paths[:, 0]) > 0
    # the seed drives the run: another seed, other paths (the same windows and box)
    assert other["paths"].shape == paths.shape and not np.array_equal(other["paths"], paths)
    _same_model_files(runs[0] / "model", runs[1] / "model")


def test_evaluate_twice_gives_identical_metrics(inputs, tmp_path) -> None:
    runs = [tmp_path / "first", tmp_path / "second"]
    for outdir in runs:
        advcg("evaluate", "--config", inputs["config"], "--threads", "1", "--state", inputs["state"],
              "--aa-trajectory", inputs["aa"], "--aa-observables", inputs["aa_obs"], "--outdir", outdir)
    metrics = [json.loads((outdir / "metrics.json").read_text()) for outdir in runs]
    assert sorted(metrics[0]) == sorted(metrics[1])
    differing = {key for key in metrics[0] if metrics[0][key] != metrics[1][key]}
    assert differing <= TIMING_KEYS, {key: (metrics[0][key], metrics[1][key]) for key in differing}
    assert np.isfinite(metrics[0]["rdf_max_abs_diff"]) and msd_ratios_from_json(metrics[0]["msd_ratios"])[1.0] > 0
    first, second = (_arrays(outdir / "trajectory.npz") for outdir in runs)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    observables = [json.loads((outdir / "observables.json").read_text()) for outdir in runs]
    for record in observables:
        for key in TIMING_KEYS:
            record["comparison"].pop(key, None)
    assert observables[0] == observables[1]
    _same_model_files(runs[0] / "model", runs[1] / "model")


@pytest.mark.parametrize("variant", ["sw", "sw/angle/table"])
def test_export_twice_gives_identical_bytes(tmp_path, variant) -> None:
    potential = water_like_potential()
    if variant != "sw":
        potential = CGPotential(potential.pair, CGPotential.default(variant).threebody)
    parameters = tmp_path / "parameters.json"
    potential.to_json(parameters)
    runs = [tmp_path / "first", tmp_path / "second"]
    advcg("export", "--parameters", parameters, "--outdir", runs[0], "--n-beads", N_BEADS,
          "--density", "1.0", "--seed", "7")
    assert cli.main(["export", "--parameters", str(parameters), "--outdir", str(runs[1]),
                     "--n-beads", str(N_BEADS), "--density", "1.0", "--seed", "7"]) == 0
    _same_model_files(*runs)
    for name in ("pair.table", "pair.in", "parameters.json") + (("angle.table",) if variant != "sw" else ()):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name   # no path inside
