"""What the benchmarks print about the machine they ran on (shared by the benchmark scripts)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_summary() -> str:
    """Host, CPU model, logical cores, OS and Python, e.g. for a benchmark table's header."""
    return (f"{platform.node()} ({cpu_model()}, {os.cpu_count()} logical cores; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()})")
