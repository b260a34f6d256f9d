"""The dynamics family: every integrator advcg can train and export (see :mod:`advcg.dynamics.base`).

To add one: write a :class:`Dynamics` subclass in a module of this package, add it to
:data:`DYNAMICS`, and register its name and settings in ``config/config.schema.yaml``
(``dynamics.kind`` and a ``dynamics.<kind>`` section).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from advcg.dynamics.base import CallbackIntegrator, DeckLines, Dynamics, PathTerms
from advcg.dynamics.langevin import LangevinDynamics

__all__ = ["DYNAMICS", "CallbackIntegrator", "DeckLines", "Dynamics", "LangevinDynamics", "PathTerms",
           "dynamics_from_dict", "initial_dynamics"]

#: Every dynamics by its ``kind``.
DYNAMICS: dict[str, type[Dynamics]] = {LangevinDynamics.kind: LangevinDynamics}


def _class(kind: Any, source: str) -> type[Dynamics]:
    if kind not in DYNAMICS:
        raise ValueError(f"{source}: unknown dynamics kind {kind!r}; known: {', '.join(DYNAMICS)}")
    return DYNAMICS[kind]


def initial_dynamics(kind: str, settings: Mapping[str, Any], *, temperature: float, timestep: float,
                     mass: float) -> Dynamics:
    """The dynamics ``kind`` with the initial values of its configuration section ``settings``."""
    return _class(kind, "dynamics.kind").from_settings(settings, temperature=temperature,
                                                       timestep=timestep, mass=mass)


def dynamics_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Dynamics:
    """The dynamics saved by :meth:`Dynamics.to_dict`; the file or key at fault is named.

    Raises
    ------
    ValueError
        Not a mapping, an unknown kind, missing or unknown keys, or values out of range.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: a dynamics must be a mapping of keys, got {type(data).__name__}")
    cls = _class(data.get("kind"), f"{source}: kind")
    expected = {"kind", *cls.__dataclass_fields__}
    missing = sorted(expected - set(data))
    unknown = sorted(set(data) - expected)
    if missing or unknown:
        raise ValueError(f"{source}: {cls.kind} dynamics needs the keys {sorted(expected)}; "
                         f"missing {missing}, unknown {unknown}")
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from exc
