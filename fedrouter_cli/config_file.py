"""config.toml: reading it, layering settings on a config, and writing it back.

A value from a file or an option is checked twice: here for its TOML type (TOML keeps 2.5 and "8"
as written), then by its section's dataclass for its range and choices (`fedrouter_cli.config`)."""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from fedrouter_cli.config import SECTIONS, Config
from fedrouter_cli.errors import FedrouterError


def _coerce(section: type, values: dict[str, Any], name_in_toml: str) -> dict[str, Any]:
    defaults = {f.name: f.default for f in fields(section)}
    unknown = set(values) - set(defaults)
    if unknown:
        raise FedrouterError(f"Unknown setting(s) {', '.join(sorted(unknown))} in config section of "
                             f"{section.__name__}; remove them from config.toml.")
    for name, value in values.items():
        if name not in ("n_clusters", "global_clusters"):  # 'auto', 'tasks' or a number: parse_k checks them
            _check_type(name_in_toml, name, value, defaults[name])
    return values


def _check_type(section: str, name: str, value: Any, default: Any) -> None:
    """Values from config.toml must have their setting's type (TOML keeps 2.5 and "8" as written)."""
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is tuple:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, expected)
    if not ok:
        kind = {bool: "true or false", int: "an integer", float: "a number", tuple: "a list of strings",
                str: "a string"}.get(expected, expected.__name__)
        raise FedrouterError(f"Bad value in [{section}]: {name} must be {kind}, got {value!r}; "
                             "fix config.toml or the option.")


def build_config(base: Config, *layers: dict[str, dict[str, Any]]) -> Config:
    """Apply layers of {section: {field: value}} on top of `base`, validating the result."""
    config = base
    for layer in layers:
        for section, values in layer.items():
            if section not in SECTIONS:
                raise FedrouterError(f"Unknown config section [{section}]; "
                                     f"valid sections are {', '.join(SECTIONS)}.")
            values = {k: v for k, v in values.items() if v is not None}
            if not values:
                continue
            current = getattr(config, section)
            try:
                updated = replace(current, **_coerce(SECTIONS[section], values, section))
            except TypeError as exc:
                raise FedrouterError(f"Bad value in [{section}]: {exc}; fix config.toml or the option.") from None
            config = replace(config, **{section: updated})
    return config


def load_config(path: Path) -> Config:
    return build_config(Config(), read_toml(path)) if path.exists() else Config()


def config_toml(config: Config) -> str:
    """The config as config.toml text (also how the server sends it to nodes that evaluate)."""
    return toml_text(config.to_dict())


def save_config(path: Path, config: Config) -> None:
    write_toml(path, config.to_dict())


def read_toml(path: Path) -> dict[str, Any]:
    """A run dir's TOML file (config.toml, typed.toml); a broken one is one plain error."""
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FedrouterError(f"{path} is not valid TOML ({exc}); fix or delete it.") from None


def toml_text(values: dict[str, Any]) -> str:
    import tomli_w  # only to write; reading needs nothing beyond the standard library

    return tomli_w.dumps(_toml_ready(values))


def write_toml(path: Path, values: dict[str, Any]) -> None:
    from fedrouter_cli.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(toml_text(values))


def _toml_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple):
        return list(value)
    return value
