"""The configuration: ``config/config.yaml`` validated against ``config/config.schema.yaml``.

Snakemake validates the same file with the same schema (``snakemake.utils.validate``), so the
pipeline and the ``advcg`` command line never disagree. Defaults come from the schema.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

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
INFINITE_ALLOWED = ("training.localisation_radius", "training.friction_localisation_radius")


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


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read, merge ``overrides`` (nested dict) into, and validate a configuration file."""
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
    return validate_config(data, str(path))


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
