"""Reusable work buffers for the allocation-free inner loops of the potential.

On CPU, every tensor of 128 KiB or more is a fresh ``mmap`` that page-faults on first touch and is
returned to the system when freed: an out-of-place op on a 64k-element float64 block costs
3–7 ns per element, against about 0.3 ns for the same op written into an existing buffer
(``out=`` or in-place). The hot loops therefore write every temporary into a :class:`Scratch`
buffer; :func:`shared_scratch` keeps one per thread and device alive between calls, so that
first-touch page faults (0.3–0.5 ns per byte here, ten times the cost of writing) are paid once.
"""

from __future__ import annotations

import math
import threading

import torch

__all__ = ["Scratch", "shared_scratch"]

_LOCAL = threading.local()


class Scratch:
    """Named flat buffers, grown on demand and handed out as views of the requested shape.

    Parameters
    ----------
    device
        Where the buffers live.

    Examples
    --------
    >>> scratch = Scratch(torch.device("cpu"))
    >>> s = scratch.get("s", (3, 100))            # float64 view of a reused buffer
    >>> torch.mul(a, b, out=s)
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """A contiguous tensor of ``shape`` (uninitialised) backed by buffer ``name``.

        Two names never share memory; one name's views from earlier calls are overwritten.
        """
        numel = math.prod(shape)
        key = (name, dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=dtype, device=self.device)
            self._buffers[key] = buffer
        return buffer[:numel].view(shape)


def shared_scratch(device: torch.device) -> Scratch:
    """This thread's :class:`Scratch` for ``device``, kept between calls.

    Callers must not hold views across calls of other users of the same buffer names; the
    evaluation kernels use disjoint name prefixes and never run nested.
    """
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = _LOCAL.pool = {}
    device = torch.device(device)
    if device not in pool:
        pool[device] = Scratch(device)
    return pool[device]
