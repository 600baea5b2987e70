"""The config loader, and every shipped config: it validates, and every key carries a comment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from reasonrec.config import ConfigError, StrictModel, describe, load_config, parse_override
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.recommend.calibration import CalibrateConfig
from reasonrec.report.config import EvaluateConfig
from reasonrec.scoring import ScoreConfig
from reasonrec.serving.config import ServeConfig
from reasonrec.tools.train_config import TrainToolsConfig
from reasonrec.vlm.train_config import TrainVLMConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCHEMA_BY_FOLDER = {"prepare": PrepareConfig, "train_tools": TrainToolsConfig, "train_vlm": TrainVLMConfig,
                    "calibrate": CalibrateConfig, "score": ScoreConfig, "evaluate": EvaluateConfig,
                    "serve": ServeConfig}


def shipped_configs() -> list[Path]:
    return sorted(CONFIGS.rglob("*.yaml"))


def schema_for(path: Path):
    folder = path.parent.relative_to(CONFIGS).as_posix()
    return SCHEMA_BY_FOLDER[folder]


def test_there_are_shipped_configs():
    names = {p.name for p in shipped_configs()}
    assert {"synthetic.yaml", "ml-latest-small.yaml", "beauty.yaml", "sports.yaml"} <= names
    assert {p.parent.name for p in shipped_configs()} == set(SCHEMA_BY_FOLDER)


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_shipped_config_validates(path):
    load_config(schema_for(path), path)


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_key_is_commented(path):
    """Each `key:` line has a trailing comment, or a comment line right above it."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_][\w-]*:", line):
            above = lines[number - 1].strip() if number else ""
            assert "#" in line or above.startswith("#"), f"{path.name}:{number + 1} has no comment: {line!r}"


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_header_shows_launch_command(path):
    assert "python jobs/" in path.read_text().split("\n\n")[0] or "python jobs/" in path.read_text()[:600]


def test_every_config_field_is_described():
    for model in (PrepareConfig, ScoreConfig, TrainToolsConfig):
        for line in describe(model):
            assert not line.endswith("— "), f"{model.__name__}: undocumented key {line}"


class Tiny(StrictModel):
    size: int = 3
    name: str = "a"


class Outer(StrictModel):
    inner: Tiny = Tiny()
    ratio: float = 0.5


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  sise: 4\n")
    with pytest.raises(ConfigError, match=r"inner\.sise"):
        load_config(Outer, path)


def test_overrides_are_typed_and_nested():
    cfg = load_config(Outer, None, ["inner.size=7", "ratio=0.25", "inner.name=xyz"])
    assert cfg.inner.size == 7 and cfg.ratio == 0.25 and cfg.inner.name == "xyz"
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_bad_override_and_bad_type():
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(Outer, None, ["ratio"])
    with pytest.raises(ConfigError, match="ratio"):
        load_config(Outer, None, ["ratio=abc"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(Outer, None, ["ratio=1", "ratio.x=1"])


def test_file_then_override_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"inner": {"size": 5}}))
    assert load_config(Outer, path, ["inner.size=9"]).inner.size == 9
    assert load_config(Outer, path).inner.size == 5
