"""advcg.io: the README-section writer the benchmarks use."""

import pytest

from advcg.io import replace_marked_section


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
