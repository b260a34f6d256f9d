"""The ``advcg`` command line: parse, load, call one library function, save.

Each subcommand is a ``_cmd_<name>(args)`` function registered in :func:`build_parser`.
Errors in user input (:class:`ValueError`, :class:`FileNotFoundError`, :class:`advcg.engine.EngineError`)
print one clear line and exit with status 2; nothing is left half-written because every writer in
advcg writes to a temporary file and renames it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

logger = logging.getLogger("advcg")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="advcg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRY:
        register(sub)
    return parser


# Each entry adds one subparser and sets ``func``; modules' commands are appended below.
_REGISTRY: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``advcg`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    from advcg.engine import EngineError

    try:
        args.func(args)
    except (ValueError, FileNotFoundError, EngineError) as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
