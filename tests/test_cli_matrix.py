"""Every ``advcg`` subcommand through every form of output path and every numeric option set to a
negative, zero, NaN, infinite and absurdly large value.

Each case either succeeds (the value or path is legitimate) or exits with status 2 and one message
that names the option or the file, without a traceback, leaving nothing behind. Options are
checked while the command line is parsed (options that depend on each other right after), so the
subcommands that run LAMMPS (``aa-reference``,
``init``, ``simulate``, ``update``, ``evaluate``) and those that need their inputs (``finalise``,
``report``) are only parsed here, never run; the others run for real, in-process through
:func:`advcg.cli.main`, on small real inputs built once for the module (synthetic water as LAMMPS
data + DCD, its mapped beads, observables, features, a potential, a training state, a
discriminator). The lists of subcommands, numeric options and output options come from the
parser itself: a new option or subcommand without a case here fails
:func:`test_the_matrix_covers_every_subcommand_and_option`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from advcg import cli, stages
from advcg.config import load_config

from helpers.paths import unwritable_directory
from helpers.water import water_like_potential, write_lammps_water

REPO = Path(__file__).resolve().parent.parent
TEST_CONFIG = str(REPO / "config" / "test.yaml")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


# -- real inputs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("inputs")
    files: dict[str, Path] = {}
    files["data"], files["dcd"] = write_lammps_water(d)
    other_data, other_dcd = write_lammps_water(d, "other", seed=1)
    files["beads"], other_beads = d / "beads.npz", d / "other.npz"
    assert cli.main(["map", "--topology", str(files["data"]), "--trajectory", str(files["dcd"]),
                     "--output", str(files["beads"])]) == 0
    assert cli.main(["map", "--topology", str(other_data), "--trajectory", str(other_dcd),
                     "--output", str(other_beads)]) == 0
    files["observables"] = d / "observables.json"
    assert cli.main(["observables", "--trajectory", str(files["beads"]), "--r-max", "4",
                     "--output-json", str(files["observables"])]) == 0
    config = load_config(TEST_CONFIG)
    files["aa_features"], files["cg_features"] = d / "aa.pt", d / "cg.pt"
    stages.aa_features(files["beads"], files["aa_features"], windows=config.windows)
    stages.aa_features(other_beads, files["cg_features"], windows=config.windows)
    files["potential"] = d / "potential.json"
    water_like_potential(r_cut=config.potential.r_cut).to_json(files["potential"])
    files["state"] = d / "state"
    stages.initial_state(files["potential"], files["state"], potential=config.potential,
                         dynamics=config.dynamics, temperature=config.temperature,
                         timestep=config.timestep, seed=config.seed)
    files["discriminator"] = d / "discriminator.pt"
    stages.discriminate(files["aa_features"], files["cg_features"], None, files["discriminator"],
                        d / "discriminator.json", settings=config.training.discriminator,
                        seed=config.seed, round_index=0)
    # inputs of the subcommands that are only parsed here: never read
    for name in ("recording.npz", "metrics.json", "evaluation"):
        files[name] = d / name
    return {key: str(path) for key, path in files.items()}


# -- the subcommands --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """An output option: a ``file`` or a ``directory``, its default name; ``lammps``: LAMMPS reads
    files in it by name; ``replaced``: an existing directory is replaced whole (a training state);
    ``suffix``: the file name must have it; ``refuses_non_empty``: the command refuses an existing
    non-empty directory (before anything runs)."""

    option: str
    kind: str
    name: str
    lammps: bool = False
    replaced: bool = False
    suffix: str | None = None
    refuses_non_empty: bool = False


@dataclass(frozen=True)
class Command:
    """A subcommand: its arguments (``{name}``: an input file), outputs, and whether it runs
    here (``runs``) or is only parsed (it runs LAMMPS or needs inputs that take minutes)."""

    args: tuple[str, ...]
    outputs: tuple[Output, ...]
    runs: bool


PIPELINE = ("--config", TEST_CONFIG, "--threads", "1")
COMMANDS: dict[str, Command] = {
    "aa-reference": Command(
        ("aa-reference", "--accelerator", "serial", "--n-molecules", "8", "--equilibration-ps", "0",
         "--production-ps", "0.02", "--quiet"),
        (Output("--outdir", "directory", "reference", lammps=True, refuses_non_empty=True),), runs=False),
    "map": Command(("map", "--topology", "{data}", "--trajectory", "{dcd}"),
                   (Output("--output", "file", "beads.npz"),), runs=True),
    "observables": Command(("observables", "--trajectory", "{beads}", "--r-max", "4"),
                           (Output("--output-json", "file", "obs.json"),
                            Output("--output-png", "file", "obs.png", suffix=".png")), runs=True),
    "init": Command(("init", "--config", TEST_CONFIG, "--aa-trajectory", "{beads}"),
                    (Output("--outdir", "directory", "init", lammps=True),), runs=False),
    "export": Command(("export", "--parameters", "{potential}", "--table-points", "1000"),
                      (Output("--outdir", "directory", "export"),), runs=True),
    "state-init": Command(("state-init", *PIPELINE, "--potential", "{potential}"),
                          (Output("--outdir", "directory", "state", replaced=True),), runs=True),
    "simulate": Command(("simulate", *PIPELINE, "--state", "{state}", "--aa-trajectory", "{beads}"),
                        (Output("--outdir", "directory", "simulate", lammps=True),), runs=False),
    "features": Command(("features", "aa", *PIPELINE, "--input", "{beads}"),
                        (Output("--output", "file", "features.pt"),), runs=True),
    "discriminate": Command(("discriminate", *PIPELINE, "--round", "0", "--aa-features", "{aa_features}",
                             "--cg-features", "{cg_features}"),
                            (Output("--checkpoint", "file", "d.pt"), Output("--log-json", "file", "d.json")),
                            runs=True),
    "update": Command(("update", *PIPELINE, "--state", "{state}", "--recording", "{recording.npz}",
                       "--cg-features", "{cg_features}", "--discriminator", "{discriminator}",
                       "--aa-trajectory", "{beads}", "--aa-observables", "{observables}"),
                      (Output("--out-state", "directory", "next_state", replaced=True),
                       Output("--report", "file", "update.json")), runs=False),
    "evaluate": Command(("evaluate", *PIPELINE, "--state", "{state}", "--aa-trajectory", "{beads}",
                         "--aa-observables", "{observables}", "--run-ps", "1"),
                        (Output("--outdir", "directory", "evaluate", lammps=True),), runs=False),
    "finalise": Command(("finalise", *PIPELINE, "--state", "{state}", "--aa-trajectory", "{beads}",
                         "--metrics", "{metrics.json}"),
                        (Output("--outdir", "directory", "final"),), runs=False),
    "report": Command(("report", *PIPELINE, "--aa-observables", "{observables}",
                       "--evaluations", "{evaluation}"),
                      (Output("--outdir", "directory", "report"),), runs=False),
}

#: Values tried for every numeric option (integers get integer spellings).
VALUES = {"negative": ("-5", "-5"), "zero": ("0", "0"), "nan": ("nan", "nan"), "inf": ("inf", "inf"),
          "absurd": ("1e300", "1" + "0" * 30)}
#: (subcommand, option, value) cases that are not refused while parsing: ``ok`` (legitimate), or
#: ``library``: refused when the command runs, before it reads or writes anything, by the
#: library function's own check (whose message tests/test_bad_input.py fixes).
NOT_PARSE_ERRORS = {
    ("aa-reference", "--temperature", "negative"): "library",
    ("aa-reference", "--temperature", "zero"): "library",
    ("aa-reference", "--equilibration-ps", "zero"): "ok",
    ("map", "--dt-ps", "negative"): "library",
    ("map", "--dt-ps", "zero"): "library",
    ("map", "--start", "zero"): "ok",
    ("map", "--start", "absurd"): "library",     # beyond the last frame: "start=... select nothing"
    ("map", "--stop", "absurd"): "ok",           # beyond the last frame: every frame
    ("map", "--step", "absurd"): "ok",           # the first frame only
    ("observables", "--fit-range-fs", "zero"): "ok",
    ("observables", "--step", "absurd"): "ok",
    ("discriminate", "--round", "zero"): "ok",
    **{("export", option, value): "library" for option in ("--temperature", "--timestep", "--damp", "--seed")
       for value in ("negative", "zero")},
}
#: Extra arguments with a numeric option's value (the fit range takes two numbers).
NUMBER_ARGS = {"--fit-range-fs": lambda v: [v, "50000"]}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _numeric_options(name: str) -> dict[str, str]:
    """``{option: "int" | "float"}`` of a subcommand: every option whose argparse type makes a number."""
    parser = _subparsers(cli.build_parser())[name]
    return {a.option_strings[-1]: a.type.__name__ for a in parser._actions
            if a.option_strings and getattr(a.type, "__name__", None) in ("int", "float")}


def _output_options(name: str) -> set[str]:
    parser = _subparsers(cli.build_parser())[name]
    return {a.option_strings[-1] for a in parser._actions
            if a.option_strings and str(getattr(a.type, "__name__", "")).startswith("output")}


def test_the_matrix_covers_every_subcommand_and_option(capsys) -> None:
    """The subcommands of ``advcg --help``; every numeric option has a range-checking type (not
    bare int/float); every output option of the table checks its path."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = re.search(r"\{([\w,-]+)\}", capsys.readouterr().out).group(1).split(",")
    assert sorted(listed) == sorted(COMMANDS)
    for name, command in COMMANDS.items():
        parser = _subparsers(cli.build_parser())[name]
        bare = [a.option_strings for a in parser._actions if a.type in (int, float)]
        assert not bare, f"{name}: options without a range check: {bare}"
        assert _output_options(name) == {o.option for o in command.outputs}, name


# -- running a case ---------------------------------------------------------------------------------
def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _argv(name: str, inputs: dict[str, str], outputs: dict[str, str], extra: list[str]) -> list[str]:
    return [inputs[a[1:-1]] if a.startswith("{") else a for a in COMMANDS[name].args] + \
        [item for option, path in outputs.items() for item in (option, path)] + extra


def _default_outputs(name: str, root: Path) -> dict[str, str]:
    return {o.option: str(root / "out" / o.name) for o in COMMANDS[name].outputs}


def _refused_while_parsing(argv: list[str], capsys) -> str:
    """The error argparse printed for ``argv``: exit status 2, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and "error: " in err, err
    return err


def _refused_when_run(argv: list[str], caplog) -> str:
    caplog.clear()
    assert cli.main(argv) == 2
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "advcg" and r.levelno >= logging.ERROR)


def _names(option: str) -> tuple[str, ...]:
    bare = option.lstrip("-")
    return option, bare, bare.replace("-", "_")


# -- numeric options --------------------------------------------------------------------------------
NUMERIC_CASES = [(name, option, value) for name in COMMANDS for option in sorted(_numeric_options(name))
                 for value in VALUES]


@pytest.mark.parametrize("name, option, value", NUMERIC_CASES,
                         ids=[f"{n}{o}={v}" for n, o, v in NUMERIC_CASES])
def test_numeric_option(inputs, tmp_path, capsys, caplog, name, option, value) -> None:
    kind = _numeric_options(name)[option]
    text = VALUES[value][kind == "int"]
    outputs = _default_outputs(name, tmp_path)
    argv = _argv(name, inputs, outputs, [option, *NUMBER_ARGS.get(option, lambda v: [v])(text)])
    before = _listing(tmp_path)
    outcome = NOT_PARSE_ERRORS.get((name, option, value), "parse")
    if outcome == "parse":
        message = _refused_while_parsing(argv, capsys)
        assert f"{option}" in message, message
    elif outcome == "library":
        message = _refused_when_run(argv, caplog)
        assert any(n in message for n in _names(option)), message
    elif COMMANDS[name].runs:
        caplog.clear()
        assert cli.main(argv) == 0, caplog.text
        assert all(Path(path).exists() for path in outputs.values())
        return
    else:
        cli.check_args(cli.parse_args(argv))
    assert _listing(tmp_path) == before


def test_an_inverted_or_empty_range_names_both_options(inputs, tmp_path, caplog) -> None:
    """Options that are valid alone but not together: refused before the command reads its
    inputs, both named."""
    out = str(tmp_path / "out.json")
    cases = [
        (["observables", "--trajectory", inputs["beads"], "--output-json", out, "--fit-range-fs", "50000", "10000"],
         r"--fit-range-fs 50000\.0 10000\.0: the start must be smaller than the end"),
        (["observables", "--trajectory", inputs["beads"], "--output-json", out, "--r-max", "4",
          "--rdf-bin-width", "5"], r"--rdf-bin-width 5\.0 Å must be smaller than --r-max 4\.0 Å"),
        (["observables", "--trajectory", inputs["beads"]], r"give --output-json and/or --output-png"),
        (["map", "--topology", inputs["data"], "--output", out, "--start", "5", "--stop", "5"],
         r"--stop 5 must be greater than --start 5"),
    ]
    for argv, expected in cases:
        assert re.search(expected, _refused_when_run(argv, caplog))
    assert _listing(tmp_path) == set()


# -- output paths -----------------------------------------------------------------------------------
FORMS = ("new-in-missing-parents", "existing-file", "existing-empty-directory",
         "existing-non-empty-directory", "parent-is-a-file", "unwritable-parent", "odd-characters",
         "no-suffix")
ODD = "odd name #$'ü"


def _path_for(form: str, output: Output, root: Path) -> Path | None:
    """The path of ``form`` for ``output`` (made ready under ``root``); ``None``: not applicable."""
    suffix = Path(output.name).suffix
    if form == "new-in-missing-parents":
        return root / "new" / "deeper" / output.name
    if form == "existing-file":
        (root / output.name).write_text("old")
        return root / output.name
    if form in ("existing-empty-directory", "existing-non-empty-directory"):
        (root / "dir").mkdir()
        if form == "existing-non-empty-directory":
            (root / "dir" / "keep.txt").write_text("keep")
        return root / "dir"
    if form == "parent-is-a-file":
        (root / "file").write_text("x")
        return root / "file" / output.name
    if form == "unwritable-parent":
        return unwritable_directory(root) / output.name
    if form == "odd-characters":
        return root / f"{ODD}{suffix}"
    if form == "no-suffix":
        return root / Path(output.name).stem if output.kind == "file" else None
    raise AssertionError(form)


def _expected(form: str, output: Output) -> str:
    """``ok``, ``parse`` (refused while parsing) or ``run`` (refused when the command runs)."""
    file = output.kind == "file"
    if form in ("parent-is-a-file", "unwritable-parent"):
        return "parse"
    if form == "existing-file":
        return "ok" if file else "parse"
    if form == "existing-empty-directory":
        return "parse" if file else "ok"
    if form == "existing-non-empty-directory":
        if file or output.replaced:
            return "parse"
        return "run" if output.refuses_non_empty else "ok"
    if form == "odd-characters":
        return "parse" if output.lammps else "ok"
    if form == "no-suffix":
        return "parse" if output.suffix else "ok"
    return "ok"


OUTPUT_CASES = [(name, output, form) for name, command in COMMANDS.items() for output in command.outputs
                for form in FORMS if not (form == "no-suffix" and output.kind == "directory")]


@pytest.mark.parametrize("name, output, form", OUTPUT_CASES,
                         ids=[f"{n}{o.option}={f}" for n, o, f in OUTPUT_CASES])
def test_output_path(inputs, tmp_path, capsys, caplog, name, output, form) -> None:
    path = _path_for(form, output, tmp_path)
    outputs = {**_default_outputs(name, tmp_path), output.option: str(path)}
    argv = _argv(name, inputs, outputs, [])
    before = _listing(tmp_path)
    expected = _expected(form, output)
    if expected == "parse":
        message = _refused_while_parsing(argv, capsys)
        assert f"argument {output.option}: " in message, message
        assert str(path) in message or str(path.parent) in message, message
    elif expected == "run":
        message = _refused_when_run(argv, caplog)
        assert str(path) in message, message
    elif COMMANDS[name].runs:
        caplog.clear()
        assert cli.main(argv) == 0, caplog.text
        if output.kind == "file":
            assert path.is_file() and path.read_bytes() != b"old", "the output was not written"
            assert [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")] == []
        else:
            assert path.is_dir() and set(os.listdir(path)) - {"keep.txt"}, "nothing written"
        return
    else:
        cli.check_args(cli.parse_args(argv))
    assert _listing(tmp_path) == before


def test_a_refused_output_path_in_a_shell_is_one_line(inputs, tmp_path) -> None:
    """What a user sees: status 2, argparse's line naming the option and the path, no traceback."""
    result = subprocess.run([sys.executable, "-m", "advcg.cli", "map", "--topology", inputs["data"],
                             "--trajectory", inputs["dcd"], "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"argument --output: output {tmp_path} is a directory; give a file name" in result.stderr
    assert _listing(tmp_path) == set()
