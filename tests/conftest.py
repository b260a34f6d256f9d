"""Shared fixtures (helpers live in tests/helpers/)."""

from pathlib import Path

import pytest

from advcg.threads import use_threads

from helpers.rounds import make_round_files

# One thread for torch and LAMMPS before any test runs, whatever the machine or the test order:
# results of MD runs depend on the thread count (advcg.threads).
use_threads(1)


@pytest.fixture(scope="session")
def round_files(tmp_path_factory) -> dict[str, Path]:
    """State 0, its round-0 recording, features and discriminator, and an 'AA' reference."""
    return make_round_files(tmp_path_factory.mktemp("guard"))
