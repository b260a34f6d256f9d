"""The learned parameters ϑ by name: one :class:`ParameterSpace` for the potential and the dynamics.

ϑ is one flat vector: the potential's θ (:meth:`advcg.potential.CGPotential.parameter_names`
order), then the parameters of the dynamics (:meth:`advcg.dynamics.Dynamics.parameters`). Every
part of training that treats parameters differently asks the space, never an index:

* **blocks** (``potential``, ``dynamics``): the guard shrinks each block's steps on its own and can
  move the dynamics block alone (it leaves the equilibrium structure as it is);
* **learning-rate groups** (``pair``, ``threebody``, ``lambda``, and each dynamics' own, e.g.
  ``log_gamma``): the configuration's ``training.learning_rates`` gives one Adam step size per
  group;
* **bounds**: what LAMMPS requires (``sw`` needs λ ≥ 0); Adam steps are projected into them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: The blocks of ϑ, in order.
BLOCKS = ("potential", "dynamics")


@dataclass(frozen=True)
class Parameter:
    """One learned parameter: its ``name``, learning-rate ``group`` and bounds ``[lower, upper]``."""

    name: str
    group: str
    lower: float = -math.inf
    upper: float = math.inf

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"parameter {self.name}: lower bound {self.lower} is not below {self.upper}")


#: Learning-rate groups and bounds of the potential's parameters that differ from their
#: prefix's (``pair.*`` → ``pair``, ``threebody.*`` → ``threebody``): the ``sw`` strength λ is
#: O(10) where cos θ0 is O(0.1), and LAMMPS refuses λ < 0.
_POTENTIAL_SPECIAL = {"threebody.lambda": Parameter("threebody.lambda", "lambda", 0.0, math.inf)}


def potential_parameters(names: Sequence[str]) -> tuple[Parameter, ...]:
    """The :class:`Parameter` of each potential parameter name (``pair.c[k]``, ``threebody.*``)."""
    out = []
    for name in names:
        if name in _POTENTIAL_SPECIAL:
            out.append(_POTENTIAL_SPECIAL[name])
        elif name.startswith(("pair.", "threebody.")):
            out.append(Parameter(name, name.split(".", 1)[0]))
        else:
            raise ValueError(f"unknown potential parameter {name!r}")
    return tuple(out)


class ParameterSpace:
    """Names, blocks, learning-rate groups and bounds of ϑ (module docstring).

    Parameters
    ----------
    blocks
        Parameters of each block in :data:`BLOCKS` order, e.g.
        ``{"potential": potential_parameters(names), "dynamics": dynamics.parameters()}``.
    """

    def __init__(self, blocks: Mapping[str, Sequence[Parameter]]) -> None:
        unknown = set(blocks) - set(BLOCKS)
        if unknown:
            raise ValueError(f"unknown parameter blocks {sorted(unknown)}; known: {BLOCKS}")
        self.parameters: tuple[Parameter, ...] = tuple(p for b in BLOCKS for p in blocks.get(b, ()))
        self._slices: dict[str, slice] = {}
        start = 0
        for block in BLOCKS:
            n = len(blocks.get(block, ()))
            self._slices[block] = slice(start, start + n)
            start += n
        self.names: list[str] = [p.name for p in self.parameters]
        if len(set(self.names)) != len(self.names):
            raise ValueError("parameter names must be unique")
        self._index = {name: k for k, name in enumerate(self.names)}

    @property
    def size(self) -> int:
        """Length of ϑ."""
        return len(self.parameters)

    @property
    def groups(self) -> list[str]:
        """The learning-rate group of every parameter, in order."""
        return [p.group for p in self.parameters]

    def block(self, name: str) -> slice:
        """Where block ``name`` sits in ϑ."""
        if name not in self._slices:
            raise KeyError(f"unknown parameter block {name!r}; known: {BLOCKS}")
        return self._slices[name]

    def index(self, name: str) -> int:
        """Position of parameter ``name`` in ϑ."""
        if name not in self._index:
            raise KeyError(f"unknown parameter {name!r}")
        return self._index[name]

    def learning_rates(self, rates: Mapping[str, float],
                       block_scales: Mapping[str, float] | None = None) -> np.ndarray:
        """The Adam step size of every parameter: its group's rate times its block's scale.

        Raises
        ------
        ValueError
            A group of this space has no rate in ``rates`` (the message names the group and the
            configuration key ``training.learning_rates``).
        """
        missing = sorted({g for g in self.groups if g not in rates})
        if missing:
            raise ValueError(f"training.learning_rates has no rate for the parameter group(s) "
                             f"{missing} (known: {sorted(rates)})")
        scales = block_scales or {}
        out = np.array([float(rates[g]) for g in self.groups])
        for block, scale in scales.items():
            out[self.block(block)] *= float(scale)
        return out

    def project(self, vector: np.ndarray) -> np.ndarray:
        """``vector`` with every parameter clipped into its bounds."""
        vector = np.asarray(vector, dtype=float)
        lower = np.array([p.lower for p in self.parameters])
        upper = np.array([p.upper for p in self.parameters])
        return np.minimum(np.maximum(vector, lower), upper)
