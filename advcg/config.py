"""The configuration: ``config/config.yaml`` validated against ``config/config.schema.yaml``.

Snakemake validates the same file with the same schema (``snakemake.utils.validate``), so the
pipeline and the ``advcg`` command line never disagree. Defaults live in the schema only.
:func:`load_config` returns a frozen :class:`Config` tree of the sections' own settings classes
(:class:`~advcg.windows.WindowSpec`, :class:`~advcg.estimator.EstimatorSpec`,
:class:`~advcg.guard.GuardSettings`, ...); each library function takes the sections it uses.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from advcg.discriminator import DiscriminatorSettings
from advcg.dynamics import Dynamics, initial_dynamics
from advcg.estimator import EstimatorSpec
from advcg.guard import GuardSettings
from advcg.structure import StructureSettings
from advcg.windows import WindowSpec

#: The JSON schema (YAML) of the configuration.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "config.schema.yaml"
#: The shipped default configuration.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "config.yaml"


class ConfigError(ValueError):
    """A configuration file or value is not what the schema allows."""


def _with_defaults(validator_class: type) -> type:
    """A validator class that fills in ``default`` values while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def schema() -> dict[str, Any]:
    """The configuration schema."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Validate ``config`` and return a copy with every default filled in.

    Raises
    ------
    ConfigError
        Naming the key path (e.g. ``training.windows_per_round``) and what was expected.
    """
    data = copy.deepcopy(config) if config is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping of keys, got {type(data).__name__}")
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            lines.append(f"{key}: {error.message}")
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(lines))
    _check_finite(data, source)
    _check_consistency(data, source)
    return data


#: Keys that may be infinite (YAML ``.inf``): an infinite localisation radius is the exact
#: global score. Every other number must be finite; NaN never is allowed.
INFINITE_ALLOWED = ("training.localisation_radius", "training.dynamics_localisation_radius")


def _check_finite(config: dict[str, Any], source: str) -> None:
    """Refuse NaN and infinite numbers, which JSON-schema bounds let through (NaN compares false)."""
    lines: list[str] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, path + [str(key)])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, path + [str(i)])
        elif isinstance(node, float) and not math.isfinite(node):
            key = ".".join(path)
            if not (math.isinf(node) and key in INFINITE_ALLOWED):
                lines.append(f"{key}: {node} is not a finite number")

    walk(config, [])
    if lines:
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(lines))


def _check_consistency(config: dict[str, Any], source: str) -> None:
    """Rules across keys that a JSON schema cannot state."""
    aa, windows, training = config["aa"], config["windows"], config["training"]
    if aa["source"] == "file" and not (aa["topology"] and aa["trajectory"]):
        raise ConfigError(f"{source}: aa.source is 'file', so aa.topology and aa.trajectory are required")
    window_ps = windows["n_lags"] * windows["lag_fs"] / 1000.0
    if window_ps > training["window_spacing_ps"]:
        raise ConfigError(f"{source}: training.window_spacing_ps ({training['window_spacing_ps']}) is "
                          f"shorter than a window (windows.n_lags * windows.lag_fs = {window_ps} ps)")
    for name in ("lag_fs", "stride_fs"):
        ratio = windows[name] / config["timestep"]
        if abs(ratio - round(ratio)) > 1e-9:
            raise ConfigError(f"{source}: windows.{name} ({windows[name]}) must be a multiple of "
                              f"timestep ({config['timestep']} fs)")


# -- the typed tree ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AASettings:
    """``aa``: the all-atom reference (generated, or the user's files)."""

    source: str
    model: str
    n_molecules: int
    density: float
    equilibration_ps: float
    production_ps: float
    dump_interval_fs: float
    topology: str | None
    trajectory: str | None
    format: str | None
    dt_ps: float | None


@dataclass(frozen=True)
class PotentialSettings:
    """``potential``: the CG potential's form."""

    variant: str
    r_min: float
    r_cut: float
    knot_spacing: float


@dataclass(frozen=True)
class InitSettings:
    """``init``: the structural initialisation (Boltzmann inversion, then IMC/IBI)."""

    ibi_iterations: int
    ibi_run_ps: float
    damp_fs: float


@dataclass(frozen=True)
class DynamicsSettings:
    """``dynamics``: which dynamics the model has (``kind``) and each kind's initial values."""

    kind: str
    sections: Mapping[str, Mapping[str, Any]]

    def initial(self, *, temperature: float, timestep: float, mass: float) -> Dynamics:
        """The initial dynamics of the model (state 0)."""
        return initial_dynamics(self.kind, self.sections[self.kind], temperature=temperature,
                                timestep=timestep, mass=mass)


@dataclass(frozen=True)
class TrainingSettings:
    """``training``: the adversarial rounds."""

    rounds: int
    equilibration_ps: float
    windows_per_round: int
    window_spacing_ps: float
    estimator: EstimatorSpec
    learning_rates: Mapping[str, float]
    momentum: float
    gradient_noise_threshold: float
    discriminator: DiscriminatorSettings
    structure_correction: StructureSettings
    guard: GuardSettings


@dataclass(frozen=True)
class EvaluationSettings:
    """``evaluation``: the evaluation runs of each state."""

    run_ps: float
    intermediate_run_ps: float
    frame_interval_fs: float
    rdf_r_max: float


@dataclass(frozen=True)
class Config:
    """The whole configuration, validated, defaults filled in (see ``config/config.schema.yaml``
    for every key, its unit and default). ``raw`` is the validated mapping (for reports and for
    the pipeline's rerun triggers)."""

    seed: int
    temperature: float
    accelerator: str
    threads: int
    timestep: float
    aa: AASettings
    potential: PotentialSettings
    init: InitSettings
    dynamics: DynamicsSettings
    windows: WindowSpec
    training: TrainingSettings
    evaluation: EvaluationSettings
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A copy of the validated mapping, as plain dicts and lists."""
        return _thawed(self.raw)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of ``mapping`` and of every mapping inside it."""
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in mapping.items()})


def _thawed(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _thawed(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in mapping.items()}


def build_config(data: dict[str, Any]) -> Config:
    """The typed tree of a configuration that :func:`validate_config` returned."""
    t, w = data["training"], data["windows"]
    training = TrainingSettings(
        rounds=t["rounds"], equilibration_ps=t["equilibration_ps"],
        windows_per_round=t["windows_per_round"], window_spacing_ps=t["window_spacing_ps"],
        estimator=EstimatorSpec(localisation_radius=t["localisation_radius"],
                                dynamics_localisation_radius=t["dynamics_localisation_radius"]),
        learning_rates=_frozen(t["learning_rates"]), momentum=t["momentum"],
        gradient_noise_threshold=t["gradient_noise_threshold"],
        discriminator=DiscriminatorSettings(**{**t["discriminator"], "hidden": tuple(t["discriminator"]["hidden"])}),
        structure_correction=StructureSettings(**t["structure_correction"]),
        guard=GuardSettings(**t["guard"]))
    dynamics = {k: v for k, v in data["dynamics"].items() if k != "kind"}
    return Config(
        seed=data["seed"], temperature=data["temperature"], accelerator=data["accelerator"],
        threads=data["threads"], timestep=data["timestep"], aa=AASettings(**data["aa"]),
        potential=PotentialSettings(**data["potential"]), init=InitSettings(**data["init"]),
        dynamics=DynamicsSettings(kind=data["dynamics"]["kind"], sections=_frozen(dynamics)),
        windows=WindowSpec(n_lags=w["n_lags"], lag=w["lag_fs"], stride=w["stride_fs"]),
        training=training, evaluation=EvaluationSettings(**data["evaluation"]),
        raw=_frozen(data))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read, merge ``overrides`` (nested dict) into, and validate a configuration file (the
    shipped default when ``path`` is ``None``); returns the typed tree.

    Raises
    ------
    FileNotFoundError, ConfigError
        Naming the file, and the key path and what was expected.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.exists():
        raise FileNotFoundError(f"configuration file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable YAML configuration file ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    data = data or {}
    if overrides:
        data = _merge(data, overrides)
    data = validate_config(data, str(path))
    try:
        return build_config(data)
    except ValueError as exc:   # a section's own range checks, beyond the schema's
        raise ConfigError(f"{path}: invalid configuration: {exc}") from exc


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
