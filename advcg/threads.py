"""Thread counts of torch and LAMMPS, set together for the whole process.

torch and the LAMMPS library share the process's OpenMP runtime. A LAMMPS instance started while
``OMP_NUM_THREADS`` is unset sets that runtime to one thread, and ``package omp N`` (the OpenMP
accelerator) sets it to N; either silently changes torch's thread count too. Since the order of
floating-point sums depends on the thread count, and MD is chaotic, results would then depend on
whether a LAMMPS instance had been started earlier in the same process. :func:`use_threads` sets
both to one number before any work, and :mod:`advcg.engine` keeps LAMMPS from changing it.
"""

from __future__ import annotations

import os


def use_threads(n_threads: int) -> None:
    """Run torch and LAMMPS (OpenMP) with ``n_threads`` threads from now on in this process."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n_threads!r}")
    os.environ["OMP_NUM_THREADS"] = str(n_threads)   # read by advcg.engine and by LAMMPS at start
    import torch

    torch.set_num_threads(n_threads)
