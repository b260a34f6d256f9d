"""Paths for output-path tests: a directory this process cannot write to."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: a read-only directory under ``tmp_path``,
    or, for root (whom permissions do not stop), ``/sys/kernel`` (sysfs refuses new files to
    everyone). Skips the test where neither is unwritable."""
    if os.geteuid() != 0:
        directory = tmp_path / "read-only"
        directory.mkdir(exist_ok=True)
        directory.chmod(0o555)
    else:
        directory = Path("/sys/kernel")
    try:
        os.rmdir(tempfile.mkdtemp(dir=directory))
    except OSError:
        return directory
    pytest.skip(f"{directory} is writable here")
