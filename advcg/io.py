"""Atomic file output (every file advcg writes appears whole or not at all) and checked JSON input."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file keeps ``path``'s suffix, so writers that choose a format by extension
    (``np.savez``, matplotlib, MDAnalysis) work unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays to a ``.npz`` file atomically."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON content of ``path``; errors name ``what`` it is and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from exc


def replace_marked_section(path: str | os.PathLike, section: str, block: str) -> None:
    """Replace the text between ``<!-- section:begin -->`` and ``<!-- section:end -->`` in the
    text file ``path`` with ``block`` (atomically); the markers stay."""
    path = Path(path)
    begin_marker, end_marker = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    text = path.read_text()
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin < 0 or end < begin:
        raise ValueError(f"{path} lacks the markers {begin_marker} ... {end_marker}")
    write_text(path, text[:begin + len(begin_marker)] + "\n" + block.strip("\n") + "\n" + text[end:])
