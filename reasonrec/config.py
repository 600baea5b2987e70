"""Typed job configs: layered YAML files validated by pydantic, with `key.sub=value` overrides from the CLI.

A job reads a list of YAML files merged in order, then its overrides (later wins), then validates. A file is
either *flat* (the whole file is one job's config, as a test writes it) or *sectioned*: one top-level section per
job plus a `paths:` section that the others refer to as `${paths.<key>}`, so a data set's paths are written once
(configs/<dataset>.yaml, overlays such as configs/overlays/quick.yaml; docs/configs.md). A file is sectioned
when its top level has `paths` or a job section (JOB_SECTIONS) holding a mapping; then every top-level key must
be one of those. Unknown keys and sections, and files of which none holds the job's section, are an error naming
the file (a typo must not silently fall back to a default), and every field carries a description so
`--help-config` and the shipped YAML comments agree.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)

JOB_SECTIONS = ("prepare", "train_tools", "train_vlm", "calibrate", "evaluate", "score", "serve")
PATHS = "paths"
FLAT = "<config>"   # where a section-less model's flat files go (never a key of a sectioned file)
REFERENCE = re.compile(r"\$\{([^${}]+)\}")


class StrictModel(BaseModel):
    """Base for every config section: unknown keys rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # The top-level section this job reads from a sectioned file (a job config sets it; None: flat files only).
    config_section: ClassVar[str | None] = None


class ConfigError(ValueError):
    """A config file or override that does not fit the job's schema; the message names the file and key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=3' -> (['a', 'b'], 3); the value is read as YAML so numbers, lists and null keep their types."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw != "" else ""


def _set(data: dict[str, Any], text: str, path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {text!r}: '{part}' is not a section")
        node = child
    node[path[-1]] = value


class Layers:
    """The merged document of several files and overrides, remembering which source set each key last."""

    def __init__(self, job: str):
        self.job, self.doc, self.origin = job, {PATHS: {}, job: {}}, {}
        self.files: list[str] = []
        self.sectioned: set[str] = set()
        self.has_job = False   # some file holds this job's config (files without it must not mean "defaults")

    def add_file(self, path: str | Path) -> None:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        self.files.append(str(path))
        if not is_sectioned(data):
            self.merge({self.job: data}, str(path))
            self.has_job = True
            return
        if self.job == FLAT:
            raise ConfigError(f"{path} is a sectioned file (top-level {', '.join(map(str, data))}); this config "
                              f"reads flat files only")
        for key, value in data.items():
            if key != PATHS and key not in JOB_SECTIONS:
                raise ConfigError(f"{path}: unknown section '{key}' (a sectioned file holds {PATHS} and "
                                  f"{', '.join(JOB_SECTIONS)})")
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{path}: section '{key}' must be a mapping, not {type(value).__name__}")
        self.sectioned.add(str(path))
        self.has_job = self.has_job or self.job in data
        self.merge({key: value for key, value in data.items() if value is not None}, str(path))   # `key:` alone: no-op

    def merge(self, layer: dict[str, Any], source: str, at: tuple = ()) -> None:
        """Mappings merge key by key; anything else (lists included) and an empty mapping `{}` replace."""
        base = self.doc
        for part in at:
            base = base[part]
        for key, value in layer.items():
            where = (*at, key)
            if isinstance(value, dict) and value and isinstance(base.get(key), dict):
                self.merge(value, source, where)
                continue
            base[key] = copy.deepcopy(value)
            for stale in [k for k in self.origin if k[:len(where)] == where]:
                del self.origin[stale]
            self.origin[where] = source

    def override_path(self, text: str) -> None:
        """`paths.<key>=v` redefines a shared path before `${...}` are resolved, so everything written with it
        follows; it must be one the files define (a typo is an error, not a new path)."""
        path, value = parse_override(text)
        if len(path) != 2 or path[1] not in self.doc[PATHS]:
            known = ", ".join(self.doc[PATHS]) or "none"
            raise ConfigError(f"override {text!r}: the config files define no such path (paths: {known})")
        self.doc[PATHS][path[1]] = value
        self.origin[tuple(path)] = f"override {text!r}"

    def override(self, data: dict[str, Any], text: str) -> None:
        """Any other `key=v` sets the job's resolved config, literally, as before layering."""
        path, value = parse_override(text)
        _set(data, text, path, value)
        self.origin[(self.job, *path)] = f"override {text!r}"

    def source(self, where: tuple) -> str:
        """The file (or override) that set `where` or the closest key above it; else every file read."""
        for end in range(len(where), 0, -1):
            if where[:end] in self.origin:
                return self.origin[where[:end]]
        return " + ".join(self.files) or "config"

    def where(self, loc: tuple) -> str:
        """'file: key' for a job-relative key; sectioned files name the section too."""
        source = self.source((self.job, *loc))
        key = ".".join(str(p) for p in loc)
        if source in self.sectioned:
            return f"{source}: {'.'.join(filter(None, (self.job, key)))}"
        return f"{source}: {key or '<root>'}"

    def resolved(self) -> dict[str, Any]:
        """The job's section with every `${dotted.key}` replaced by that key's (resolved) value: a whole-string
        reference keeps the value's type (`${evaluate.max_users}` -> 1000 or null), an embedded one is text."""
        return self._resolve(self.doc[self.job], (self.job,), ())

    def _resolve(self, node: Any, at: tuple, stack: tuple) -> Any:
        if isinstance(node, dict):
            return {k: self._resolve(v, (*at, k), stack) for k, v in node.items()}
        if isinstance(node, list):
            return [self._resolve(v, (*at, i), stack) for i, v in enumerate(node)]
        if not isinstance(node, str) or "${" not in node:
            return node
        whole = REFERENCE.fullmatch(node)
        if whole:
            return self._lookup(whole.group(1), at, stack)

        def text(match: re.Match) -> str:
            value = self._lookup(match.group(1), at, stack)
            if value is None or isinstance(value, (dict, list)):
                raise ConfigError(f"{self._name(at)}: ${{{match.group(1)}}} inside {node!r} is "
                                  f"{'null' if value is None else type(value).__name__}, not text")
            return str(value)

        return REFERENCE.sub(text, node)

    def _lookup(self, ref: str, at: tuple, stack: tuple) -> Any:
        target = tuple(ref.split("."))
        if target in stack:
            raise ConfigError(f"{self._name(at)}: ${{{ref}}} refers to itself "
                              f"({' -> '.join('.'.join(map(str, s)) for s in (*stack, target))})")
        node = self.doc
        for part in target:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{self._name(at)}: ${{{ref}}} names no key of the merged config")
            node = node[part]
        return self._resolve(node, target, (*stack, target))

    def _name(self, at: tuple) -> str:
        return f"{self.source(at)}: {'.'.join(str(p) for p in at)}"


def is_sectioned(data: dict[str, Any]) -> bool:
    """A file is sectioned when its top level has `paths` or a job section holding a mapping (a flat
    train_tools file's `evaluate: full` is a value, not a section)."""
    return PATHS in data or any(isinstance(data.get(name), dict) for name in JOB_SECTIONS)


def load_config(model: type[T], path: str | Path | Sequence[str | Path] | None = None,
                overrides: list[str] | None = None) -> T:
    """Merge the YAML files in order (none: defaults only), apply `paths.*` overrides, resolve `${...}` in the
    job's section, apply the other overrides, validate. Errors name the file (or override) and the key."""
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    layers = Layers(getattr(model, "config_section", None) or FLAT)
    for file in paths:
        layers.add_file(file)
    if paths and not layers.has_job:
        raise ConfigError(f"{' + '.join(layers.files)}: no {layers.job} section (a job never runs on defaults "
                          f"because its section is missing)")
    overrides = list(overrides or [])
    for text in overrides:
        if text.split("=", 1)[0].split(".")[0] == PATHS:
            layers.override_path(text)
    data = layers.resolved()
    for text in overrides:
        if text.split("=", 1)[0].split(".")[0] != PATHS:
            layers.override(data, text)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{layers.where(tuple(e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(problems) from None


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
