"""advcg.io: the README-section writer the benchmarks use; the atomic writers on every form of
output path (new, existing, directory, missing or file parent, unwritable, odd characters, no
suffix)."""

import json
from pathlib import Path

import numpy as np
import pytest

from advcg.io import (
    atomic_open,
    atomic_path,
    check_output_path,
    replace_marked_section,
    save_npz,
    write_json,
)

from helpers.paths import unwritable_directory


def test_replace_marked_section_keeps_the_markers_and_the_rest(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- speed:begin -->\nold\n<!-- speed:end -->\noutro\n")
    replace_marked_section(readme, "speed", "| a |\n|---|\n")
    assert readme.read_text() == "intro\n<!-- speed:begin -->\n| a |\n|---|\n<!-- speed:end -->\noutro\n"


def test_missing_markers_name_the_file_and_leave_it_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match=r"README\.md lacks the markers <!-- learning:begin -->"):
        replace_marked_section(readme, "learning", "table")
    assert readme.read_text() == "no markers\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


# -- atomic writers: every output path form -------------------------------------------------------
def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_an_npz_without_its_suffix_is_written_under_exactly_that_name(tmp_path):
    """np.savez appends .npz to a file name without it: the data must not go elsewhere."""
    save_npz(tmp_path / "beads", a=np.arange(4))
    assert _listing(tmp_path) == {"beads"}
    with np.load(tmp_path / "beads") as data:
        np.testing.assert_array_equal(data["a"], np.arange(4))


def test_odd_characters_and_missing_parents_are_written(tmp_path):
    name = "a b#$'\"ü;&.json"
    write_json(tmp_path / "new" / "deeper" / name, {"x": 1})
    assert json.loads((tmp_path / "new" / "deeper" / name).read_text()) == {"x": 1}
    write_json(tmp_path / "new" / "deeper" / name, {"x": 2})        # an existing file is replaced
    assert json.loads((tmp_path / "new" / "deeper" / name).read_text()) == {"x": 2}
    assert _listing(tmp_path) == {"new", "new/deeper", f"new/deeper/{name}"}


@pytest.mark.parametrize("form, expected", [
    ("directory", r"output \S+ is a directory; give a file name"),
    ("trailing-slash", r"names a directory, not a file"),
    ("parent-is-a-file", r"cannot write \S+/file/x\.npz: \S+/file is not a directory"),
    ("grandparent-is-a-file", r"cannot write \S+/file/sub/x\.npz: \S+/file is not a directory"),
    ("unwritable", r"cannot write \S+x\.npz: directory \S+ is not writable"),
])
def test_unwritable_outputs_are_refused_naming_the_path(tmp_path, form, expected):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    target = {"directory": tmp_path / "dir", "trailing-slash": f"{tmp_path / 'new'}/",
              "parent-is-a-file": tmp_path / "file" / "x.npz",
              "grandparent-is-a-file": tmp_path / "file" / "sub" / "x.npz",
              "unwritable": unwritable_directory(tmp_path) / "x.npz"}[form]
    before = _listing(tmp_path)
    with pytest.raises(ValueError, match=expected):
        save_npz(target, a=np.arange(3))
    with pytest.raises(ValueError, match=expected):
        check_output_path(target)
    assert _listing(tmp_path) == before
    assert (tmp_path / "file").read_text() == "x"


def test_a_failed_writer_leaves_nothing_not_even_the_parents_it_made(tmp_path):
    target = tmp_path / "made" / "for" / "it.txt"
    with pytest.raises(RuntimeError, match="boom"), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert _listing(tmp_path) == set()


def test_a_writer_that_adds_a_suffix_is_refused_not_lost(tmp_path):
    """matplotlib, like np.savez, appends its format's suffix to a name without one."""
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match=r"plot: the writer produced \['plot\.png'\] instead of 'plot'"), \
            atomic_path(tmp_path / "plot") as tmp:
        Figure().savefig(tmp)
    assert _listing(tmp_path) == set()


def test_directory_outputs(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_output_path(tmp_path / "new" / "dir", "directory") == tmp_path / "new" / "dir"
    assert check_output_path(tmp_path, "directory") == tmp_path
    with pytest.raises(ValueError, match=r"output directory \S+/file exists and is not a directory"):
        check_output_path(tmp_path / "file", "directory")
    with pytest.raises(ValueError, match=r"\S+/file is not a directory"):
        check_output_path(tmp_path / "file" / "dir", "directory")
    assert _listing(tmp_path) == {"file"}
