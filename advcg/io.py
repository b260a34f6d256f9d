"""Atomic file output (every file advcg writes appears whole or not at all), checked output paths
and checked JSON input."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (or is a dangling link)."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _probe_writable(directory: Path, output: Path) -> None:
    """Create and remove a temporary directory in ``directory``: the one test of writability
    that holds for every user (root included) and every file system (read-only mounts)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".advcg-probe.", dir=directory))
    except OSError as exc:
        raise ValueError(f"cannot write {output}: directory {directory} is not writable "
                         f"({exc.strerror or exc})") from exc


def check_output_path(path: str | os.PathLike, kind: Literal["file", "directory"] = "file") -> Path:
    """Refuse an output path that cannot be written, before anything is computed.

    ``path`` may exist (as a ``kind``) or not; missing parent directories are created when the
    output is written. Refused: a file output that is a directory, a directory output that is a
    file, a parent that is a file, a directory that is not writable.

    Raises
    ------
    ValueError
        Naming ``path`` and what is wrong with it.
    """
    text = os.fspath(path)
    path = Path(path)
    if kind == "file" and (text.endswith(("/", os.sep)) or path.name in ("", ".", "..")):
        raise ValueError(f"output {text!r} names a directory, not a file; give a file name")
    if path.is_dir() and kind == "file":
        raise ValueError(f"output {path} is a directory; give a file name")
    if os.path.lexists(path) and not path.is_dir() and kind == "directory":
        raise ValueError(f"output directory {path} exists and is not a directory")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise ValueError(f"cannot write {path}: {existing} is not a directory")
    _probe_writable(existing, path)
    if kind == "directory" and path.is_dir():
        _probe_writable(path, path)
    return path


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing ancestors; return those created, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(exist_ok=True)   # another process may make it meanwhile
        except OSError as exc:
            _remove_empty(missing)
            raise ValueError(f"cannot create directory {created}: {exc.strerror or exc}") from exc
    return missing


def _remove_empty(directories: list[Path]) -> None:
    """Remove those of ``directories`` (deepest first) that exist and are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary path has ``path``'s own file name, in a hidden temporary directory beside
    ``path``, so writers that choose a format by the file name (matplotlib, MDAnalysis) see the
    real one. A writer that writes another name (``np.savez`` and matplotlib append a suffix to a
    name without one) is refused, not silently lost. Missing parent directories are created, and
    removed again if the block fails.

    Raises
    ------
    ValueError
        ``path`` cannot be written (see :func:`check_output_path`), or the block wrote nothing
        under the temporary path's name.
    """
    path = check_output_path(path, "file")
    created = _make_parents(path.parent)
    done = False
    try:
        try:
            workdir = Path(tempfile.mkdtemp(prefix=f".{path.name[:100]}.", dir=path.parent))
        except OSError as exc:
            raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from exc
        try:
            tmp = workdir / path.name
            yield tmp
            if not tmp.is_file():
                written = sorted(p.name for p in workdir.iterdir())
                raise ValueError(f"writing {path}: the writer produced {written or 'nothing'} "
                                 f"instead of {path.name!r} (it adds a suffix to a name without one?)")
            os.chmod(tmp, 0o666 & ~_UMASK)
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from exc
            done = True
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if not done:
            _remove_empty(created)


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
    """Save arrays in ``.npz`` format to ``path`` atomically, under exactly that name (``np.savez``
    appends ``.npz`` to a file name without it, never to an open file)."""
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


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
