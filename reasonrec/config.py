"""Typed job configs: YAML files validated by pydantic, with `key.sub=value` overrides from the CLI.

Unknown keys are an error (a typo must not silently fall back to a default), and every field carries a
description so `--help-config` and the shipped YAML comments say the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A config file or override that does not fit the job's schema; the message names the key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=3' -> (['a', 'b'], 3); the value is read as YAML so numbers, lists and null keep their types."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(model: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Read YAML (optional), apply overrides, validate. Errors name the file and the offending key."""
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    data = apply_overrides(data, list(overrides or []))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path or 'config'}: {problems}") from None


def describe(model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per key, 'key: type — description', for --help-config."""
    lines = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.extend(describe(annotation, f"{prefix}{name}."))
            continue
        type_name = getattr(annotation, "__name__", str(annotation)).replace("typing.", "")
        default = field.get_default(call_default_factory=True)  # default_factory fields show their value
        lines.append(f"{prefix}{name}: {type_name} = {default!r} — {field.description or ''}")
    return lines
