"""The config loader (layered files, sections, `${...}`, overrides), and every shipped config: each combination
the README, the Makefile and the configs' own headers run validates with the values it should have, and every key
carries a comment."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from reasonrec.cli import job_parser
from reasonrec.config import (JOB_SECTIONS, PATHS, ConfigError, StrictModel, describe, is_sectioned, load_config,
                              parse_override)
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.recommend.calibration import CalibrateConfig
from reasonrec.report.config import EvaluateConfig
from reasonrec.scoring import ScoreConfig
from reasonrec.serving.config import ServeConfig
from reasonrec.tools.train_config import TrainToolsConfig
from reasonrec.vlm.train_config import TrainVLMConfig
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
MODELS = (PrepareConfig, TrainToolsConfig, TrainVLMConfig, CalibrateConfig, EvaluateConfig, ScoreConfig, ServeConfig)
SCHEMA = {model.config_section: model for model in MODELS}
SCRIPTS = {"prepare_data.py": PrepareConfig, "train_tools.py": TrainToolsConfig, "train_vlm.py": TrainVLMConfig,
           "calibrate.py": CalibrateConfig, "evaluate.py": EvaluateConfig, "score.py": ScoreConfig,
           "serve.py": ServeConfig}
QUICK, SLICE = "configs/overlays/quick.yaml", "configs/overlays/slice.yaml"
REPORT_JOBS = ["prepare", "train_tools", "train_vlm", "calibrate", "evaluate"]
# What each data set's file runs (README, docs, its header): every job it has a section for.
FULL = {"synthetic": list(JOB_SECTIONS), "ml-latest-small": list(JOB_SECTIONS), "beauty": REPORT_JOBS,
        "sports": REPORT_JOBS, "beauty-sports": REPORT_JOBS, "all-beauty": ["prepare", "train_vlm"]}
# `make report-quick DATASET=...`: the five report jobs over the quick overlay (a single source also sliced).
QUICK_SETS = {"ml-latest-small": [QUICK, SLICE], "beauty": [QUICK, SLICE], "sports": [QUICK, SLICE],
              "beauty-sports": [QUICK]}


def combinations() -> list[tuple[str, str, tuple[str, ...]]]:
    full = [(name, job, (f"configs/{name}.yaml",)) for name, jobs in FULL.items() for job in jobs]
    quick = [(name, job, (f"configs/{name}.yaml", *overlays)) for name, overlays in QUICK_SETS.items()
             for job in REPORT_JOBS]
    return full + quick


def load(job: str, files, overrides=()):
    return load_config(SCHEMA[job], [REPO_ROOT / f for f in files], list(overrides))


def shipped_files() -> list[Path]:
    return sorted(CONFIGS.rglob("*.yaml"))


# ----------------------------------------------------------------------------------------- the loader itself

class Tiny(StrictModel):
    size: int = 3
    name: str = "a"


class Outer(StrictModel):
    inner: Tiny = Tiny()
    ratio: float = 0.5


class Job(StrictModel):
    """A job config with a section, as the seven job configs have."""

    config_section = "train_tools"

    inner: Tiny = Tiny()
    tags: list[str] = ["x"]
    extra: dict[str, dict] = {}
    out: str = "o"
    limit: int | None = 5


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_unknown_key_is_an_error(tmp_path):
    path = write(tmp_path, "c.yaml", "inner:\n  sise: 4\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: inner\.sise"):
        load_config(Outer, path)


def test_overrides_are_typed_and_nested():
    cfg = load_config(Outer, None, ["inner.size=7", "ratio=0.25", "inner.name=xyz"])
    assert cfg.inner.size == 7 and cfg.ratio == 0.25 and cfg.inner.name == "xyz"
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_bad_override_and_bad_type():
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(Outer, None, ["ratio"])
    with pytest.raises(ConfigError, match="override 'ratio=abc': ratio"):
        load_config(Outer, None, ["ratio=abc"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(Outer, None, ["ratio=1", "ratio.x=1"])


def test_file_then_override_order(tmp_path):
    path = write(tmp_path, "c.yaml", {"inner": {"size": 5}})
    assert load_config(Outer, path, ["inner.size=9"]).inner.size == 9
    assert load_config(Outer, path).inner.size == 5


def test_files_merge_in_order_mappings_by_key_lists_whole_and_empty_mapping_clears(tmp_path):
    base = write(tmp_path, "base.yaml", {"paths": {"root": "r"}, "train_tools": {
        "inner": {"size": 1, "name": "base"}, "tags": ["a", "b"], "extra": {"k": {"v": 1}}, "out": "base"}})
    top = write(tmp_path, "top.yaml", {"train_tools": {"inner": {"size": 2}, "tags": ["c"], "extra": {}}})
    cfg = load_config(Job, [base, top])
    assert (cfg.inner.size, cfg.inner.name, cfg.tags, cfg.extra, cfg.out) == (2, "base", ["c"], {}, "base")
    assert load_config(Job, [top, base]).inner.size == 1           # later wins
    empty = write(tmp_path, "empty.yaml", "paths:\ntrain_tools:\n")   # a section with every key commented out
    assert load_config(Job, [base, empty]).out == "base"
    assert load_config(Job, [base, top], ["inner.size=9", "tags=[z]"]).inner.size == 9


def test_a_flat_file_layers_over_a_sectioned_one_as_the_jobs_section(tmp_path):
    sectioned = write(tmp_path, "s.yaml", {"paths": {"root": "r"}, "train_tools": {"out": "${paths.root}/t"},
                                           "prepare": {"anything": 1}})
    flat = write(tmp_path, "flat.yaml", {"limit": 7})
    cfg = load_config(Job, [sectioned, flat])
    assert (cfg.out, cfg.limit) == ("r/t", 7)   # and the prepare section is not this job's to validate


def test_interpolation_whole_values_keep_their_type_embedded_ones_are_text(tmp_path):
    path = write(tmp_path, "s.yaml", {
        "paths": {"name": "ds", "root": "art", "data": "${paths.root}/data/${paths.name}"},
        "prepare": {"n": None, "tags": ["p", "q"]},
        "train_tools": {"out": "${paths.data}", "limit": "${prepare.n}", "tags": "${prepare.tags}",
                        "inner": {"name": "${paths.name}-${paths.root}"}}})
    cfg = load_config(Job, path)
    assert (cfg.out, cfg.limit, cfg.tags, cfg.inner.name) == ("art/data/ds", None, ["p", "q"], "ds-art")
    moved = load_config(Job, path, ["paths.root=/elsewhere"])
    assert (moved.out, moved.inner.name) == ("/elsewhere/data/ds", "ds-/elsewhere")


@pytest.mark.parametrize("section, message", [
    ({"out": "${paths.nope}/x"}, r"s\.yaml: train_tools\.out: \$\{paths\.nope\} names no key"),
    ({"out": "a/${prepare.tags}"}, r"train_tools\.out: \$\{prepare\.tags\} inside 'a/\$\{prepare\.tags\}' is list"),
    ({"out": "${paths.loop}"}, r"refers to itself \(paths\.loop -> paths\.back -> paths\.loop\)"),
])
def test_bad_references_name_the_file_and_key(tmp_path, section, message):
    path = write(tmp_path, "s.yaml", {"paths": {"loop": "${paths.back}", "back": "${paths.loop}"},
                                      "prepare": {"tags": [1]}, "train_tools": section})
    with pytest.raises(ConfigError, match=message):
        load_config(Job, path)


def test_unknown_sections_and_keys_in_a_section_name_the_file(tmp_path):
    typo = write(tmp_path, "typo.yaml", {"paths": {}, "train_tool": {"out": "x"}})
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown section 'train_tool'"):
        load_config(Job, typo)
    base = write(tmp_path, "base.yaml", {"train_tools": {"out": "x"}})
    bad = write(tmp_path, "bad.yaml", {"train_tools": {"inner": {"sise": 1}}})
    with pytest.raises(ConfigError, match=r"bad\.yaml: train_tools\.inner\.sise: Extra inputs"):
        load_config(Job, [base, bad])
    not_mapping = write(tmp_path, "nm.yaml", {"paths": {}, "train_tools": [1]})
    with pytest.raises(ConfigError, match=r"nm\.yaml: section 'train_tools' must be a mapping"):
        load_config(Job, not_mapping)


def test_the_error_names_the_file_that_set_the_bad_value(tmp_path):
    first = write(tmp_path, "first.yaml", {"train_tools": {"inner": {"size": 1}, "limit": 2}})
    second = write(tmp_path, "second.yaml", {"train_tools": {"limit": "many"}})
    with pytest.raises(ConfigError, match=r"second\.yaml: train_tools\.limit") as err:
        load_config(Job, [first, second])
    assert "first.yaml" not in str(err.value)
    with pytest.raises(ConfigError, match=r"override 'limit=lots': limit"):
        load_config(Job, [first, second], ["limit=lots"])


def test_a_job_whose_section_no_file_holds_is_an_error():
    """`jobs/score.py --config configs/beauty.yaml` must not score the synthetic defaults."""
    with pytest.raises(ConfigError, match=r"configs/beauty\.yaml: no score section"):
        load("score", ["configs/beauty.yaml"])
    with pytest.raises(ConfigError, match=r"all-beauty\.yaml: no evaluate section"):
        load("evaluate", ["configs/all-beauty.yaml"])
    with pytest.raises(ConfigError, match=r"quick\.yaml: no prepare section"):
        load("prepare", [QUICK])
    assert load("prepare", ["configs/beauty.yaml", QUICK]).name == "beauty"   # the overlay need not have it


def test_a_paths_override_must_name_a_path_the_files_define(tmp_path):
    path = write(tmp_path, "s.yaml", {"paths": {"root": "r"}, "train_tools": {"out": "${paths.root}"}})
    with pytest.raises(ConfigError, match=r"override 'paths\.rot=x': the config files define no such path "
                                          r"\(paths: root\)"):
        load_config(Job, path, ["paths.rot=x"])
    with pytest.raises(ConfigError, match="no such path"):
        load_config(Job, None, ["paths.root=x"])


def test_job_overrides_apply_to_the_resolved_config_literally(tmp_path):
    """A section taken by reference (serve's recommend = score's) still takes `recommend.x=` overrides, and an
    override does not move what another key's reference resolved to (as before layering)."""
    path = write(tmp_path, "s.yaml", {"paths": {}, "prepare": {"inner": {"size": 4, "name": "n"}, "lim": 3},
                                      "train_tools": {"inner": "${prepare.inner}", "limit": "${prepare.lim}"}})
    cfg = load_config(Job, path, ["inner.size=8", "out=${paths.x}"])
    assert (cfg.inner.size, cfg.inner.name, cfg.limit, cfg.out) == (8, "n", 3, "${paths.x}")


def test_what_makes_a_file_sectioned(tmp_path):
    assert is_sectioned({"paths": {}}) and is_sectioned({"evaluate": {"quick": True}})
    assert not is_sectioned({"evaluate": "full", "tools": ["sasrec"]})     # a flat train_tools file
    flat = write(tmp_path, "tools.yaml", {"evaluate": "sampled", "epochs": 2})
    cfg = load_config(TrainToolsConfig, flat)
    assert (cfg.evaluate, cfg.epochs) == ("sampled", 2)
    sectioned = write(tmp_path, "s.yaml", {"paths": {}, "prepare": {}})
    with pytest.raises(ConfigError, match=r"s\.yaml is a sectioned file .* reads flat files only"):
        load_config(Outer, sectioned)


def test_no_job_config_has_a_field_that_reads_as_a_section():
    """The sectioned-file rule relies on it: no job config has a `paths` field, and one named like a section
    (train_tools' `evaluate`) never holds a mapping."""
    assert {model.config_section for model in MODELS} == set(JOB_SECTIONS)
    for model in MODELS:
        assert PATHS not in model.model_fields, model.__name__
        for name in set(model.model_fields) & set(JOB_SECTIONS):
            with pytest.raises(ConfigError):
                load_config(model, None, [f"{name}={{a: 1}}"])


def test_config_is_repeatable_on_the_command_line():
    args = job_parser("x").parse_args(["--config", "a.yaml", "--config", "b.yaml", "k=1", "j.x=2"])
    assert args.config == ["a.yaml", "b.yaml"] and args.overrides == ["k=1", "j.x=2"]
    assert job_parser("x").parse_args([]).config is None


def test_every_config_field_is_described():
    for model in MODELS:
        for line in describe(model):
            assert not line.endswith("— "), f"{model.__name__}: undocumented key {line}"


# ------------------------------------------------------------------------------------------ shipped configs

def test_the_shipped_files_are_one_per_data_set_and_the_overlays():
    assert [p.relative_to(CONFIGS).as_posix() for p in shipped_files()] == sorted(
        [f"{name}.yaml" for name in FULL] + ["overlays/quick.yaml", "overlays/slice.yaml"])


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_section_of_a_shipped_file_is_a_combination_below(path):
    data = yaml.safe_load(path.read_text())
    assert is_sectioned(data), path
    name = path.relative_to(CONFIGS).as_posix()
    run = {job for ds, job, files in combinations() if name in {Path(f).relative_to("configs").as_posix()
                                                               for f in files}}
    assert set(data) - {PATHS} <= run, f"{name}: sections no test loads: {set(data) - {PATHS} - run}"


@pytest.mark.parametrize("name, job, files", combinations(), ids=lambda v: v if isinstance(v, str) else
                         "+".join(Path(f).stem for f in v))
def test_shipped_combination_validates_with_its_paths_and_presets(name, job, files):
    cfg = load(job, files)
    quick = QUICK in files
    root = "artifacts/quick" if quick else "artifacts"
    dataset = f"{root}/datasets/{name}"
    if job == "prepare":
        assert (cfg.name, cfg.out) == (name, dataset)
        assert cfg.max_users == (80 if SLICE in files else None)
    elif job == "train_tools":
        assert (cfg.dataset, cfg.out) == (dataset, f"{root}/tools/{name}")
        if quick:
            ctr = ["dlrm"] if SLICE in files else []
            assert (cfg.tools, cfg.epochs, cfg.evaluate, cfg.tool_configs) == (["sasrec", "bpr_mf", *ctr], 1,
                                                                               "sampled", {})
    elif job == "train_vlm":
        assert (cfg.dataset, cfg.out) == (dataset, f"{root}/vlm/{name}")
        if quick:
            assert (cfg.max_steps, cfg.num_workers, cfg.model.preset) == (4, 1, "tiny")
            assert (cfg.tools_dir, cfg.model.item_embedding_tool) == (f"{root}/tools/{name}",
                                                                      f"{root}/tools/{name}/sasrec")
    elif job in ("calibrate", "evaluate", "score", "serve"):
        assert (cfg.recommend.dataset, cfg.recommend.vlm_dir) == (dataset, f"{root}/vlm/{name}")
    if job == "calibrate":
        assert cfg.max_users == (24 if quick else {"ml-latest-small": None, "synthetic": None}.get(name, 1000))
    if job == "evaluate":
        assert cfg.out == (f"artifacts/quick/reports/{name}" if quick else
                           "report/synthetic" if name == "synthetic" else f"docs/reports/{name}")
        assert cfg.quick_users == (24 if quick else 40)
        if name == "beauty-sports":
            assert [(d.name, d.dataset, d.vlm_dir, d.max_rows) for d in cfg.multi_domain] == [
                (d, f"{root}/datasets/{d}", f"{root}/vlm/{d}", None if quick else 1000) for d in ("beauty", "sports")]
    if job == "serve":
        assert cfg.recommend == load("score", files).recommend   # online and nightly: one version, one policy


def test_the_demo_bootstrap_reads_the_synthetic_file():
    """`make demo` (jobs/score.py, no config): the bootstrap's four jobs read configs/synthetic.yaml's sections,
    which write where the nightly job's defaults read."""
    score = ScoreConfig()
    boot = score.bootstrap
    assert {boot.prepare_config, boot.train_tools_config, boot.train_vlm_config, boot.calibrate_config} == {
        "configs/synthetic.yaml"}
    assert load("prepare", [boot.prepare_config]).out == score.recommend.dataset
    assert load("train_tools", [boot.train_tools_config]).out == "artifacts/tools/synthetic"
    assert load("train_vlm", [boot.train_vlm_config]).out == score.recommend.vlm_dir
    assert load("calibrate", [boot.calibrate_config]).recommend.vlm_dir == score.recommend.vlm_dir
    assert load("score", ["configs/synthetic.yaml"]).model_dump(exclude={"run_date"}) == score.model_dump(
        exclude={"run_date"})


def job_commands(text: str) -> list[tuple[str, list[str], list[str]]]:
    """(script, config files, key=value overrides) of each `python jobs/<x>.py ... --config ...` line in text;
    a flag counts as its config key where it is one (--quick), other flags and their values are skipped, and a
    command with a placeholder ($VAR, <...>) is left out."""
    found = []
    for match in re.finditer(r"python (jobs/\w+\.py)([^`\n|]*)", text):
        rest = match.group(2).split(" #")[0].rstrip(" \\")
        try:
            words = shlex.split(rest)
        except ValueError:
            continue
        if "--config" not in words or any("$" in w or "<" in w or "..." in w for w in words):
            continue
        files, overrides, i = [], [], 0
        while i < len(words):
            word = words[i]
            if word == "--config":
                files.append(words[i + 1])
                i += 2
                continue
            if word == "--quick":
                overrides.append("quick=true")
            elif word.startswith("--"):
                i += 1 if i + 1 < len(words) and not words[i + 1].startswith("--") and "=" not in words[i + 1] else 0
            elif "=" in word:
                overrides.append(word)
            i += 1
        found.append((Path(match.group(1)).name, files, overrides))
    return found


def documented_commands():
    sources = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
               *sorted((REPO_ROOT / "docs" / "reports").glob("*/README.md")), *shipped_files(),
               *sorted((REPO_ROOT / "jobs").glob("*.py")), *sorted((REPO_ROOT / "benchmarks").glob("*.py"))]
    return [(source.relative_to(REPO_ROOT).as_posix(), *command) for source in sources
            for command in job_commands(source.read_text())]


def test_documented_commands_are_found():
    commands = documented_commands()
    assert len(commands) > 40
    readme = {(script, tuple(files)) for source, script, files, _ in commands if source == "README.md"}
    assert ("train_vlm.py", ("configs/ml-latest-small.yaml",)) in readme


@pytest.mark.parametrize("source, script, files, overrides", documented_commands(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_documented_command_loads(source, script, files, overrides):
    """Every command the README, docs, report notes, config headers and job docstrings show: its files exist and
    its config (files + overrides) validates."""
    assert all((REPO_ROOT / f).is_file() for f in files), f"{source}: {files}"
    load_config(SCRIPTS[script], [REPO_ROOT / f for f in files], overrides)


@pytest.mark.parametrize("dataset", list(QUICK_SETS))
def test_makefile_report_quick_runs_the_quick_combinations_under_its_root(dataset, tmp_path):
    """`make report-quick`: the five jobs, each over the data set's file and its quick overlays, every folder
    they name under QUICK (the folders the target deletes first)."""
    printed = subprocess.run(["make", "-n", "-o", ".venv/.installed", "report-quick", f"DATASET={dataset}",
                              f"QUICK={tmp_path}", "PY=python"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout
    commands = job_commands(printed)
    assert [script for script, _, _ in commands] == ["prepare_data.py", "train_tools.py", "train_vlm.py",
                                                     "calibrate.py", "evaluate.py"]
    for (script, files, overrides), job in zip(commands, REPORT_JOBS):
        assert files == [f"configs/{dataset}.yaml", *QUICK_SETS[dataset]]
        cfg = load_config(SCRIPTS[script], [REPO_ROOT / f for f in files], overrides)
        assert cfg.model_dump() == load(job, files, [f"paths.root={tmp_path}",
                                                     *(["quick=true"] if job == "evaluate" else [])]).model_dump()
        written = {"prepare": lambda c: c.out, "train_tools": lambda c: c.out, "train_vlm": lambda c: c.out,
                   "calibrate": lambda c: c.recommend.vlm_dir, "evaluate": lambda c: c.out}[job](cfg)
        kind = {"prepare": "datasets", "train_tools": "tools", "train_vlm": "vlm", "calibrate": "vlm",
                "evaluate": "reports"}[job]
        assert written == f"{tmp_path}/{kind}/{dataset}", (job, written)
        assert f"rm -rf {tmp_path}/datasets/{dataset} " in printed and f"{tmp_path}/{kind}/{dataset}" in printed
    if dataset == "beauty-sports":
        prepare = load_config(PrepareConfig, [REPO_ROOT / f for f in commands[0][1]], commands[0][2])
        assert prepare.source.merge == {d: f"{tmp_path}/datasets/{d}" for d in ("beauty", "sports")}


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_key_is_commented(path):
    """Each `key:` line has a trailing comment, or a comment line right above it."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\s*(- )?[A-Za-z_][\w-]*:", line):
            above = lines[number - 1].strip() if number else ""
            assert "#" in line or above.startswith("#"), f"{path.name}:{number + 1} has no comment: {line!r}"


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_header_shows_launch_command(path):
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and f"--config configs/{path.relative_to(CONFIGS).as_posix()}" in header


@pytest.mark.parametrize("path", [p for p in shipped_files() if p.parent == CONFIGS], ids=lambda p: p.name)
def test_each_section_shows_its_launch_command(path):
    """Right above each job section: the command that runs it with this file."""
    lines = path.read_text().splitlines()
    script = {model.config_section: script for script, model in SCRIPTS.items()}
    for number, line in enumerate(lines):
        section = line.split(":")[0]
        if section in JOB_SECTIONS and not line.startswith(" "):
            block = []
            for above in reversed(lines[:number]):
                if not above.startswith("#"):
                    break
                block.append(above)
            assert any(f"python jobs/{script[section]} --config configs/{path.name}" in b for b in block), \
                f"{path.name}: section {section} has no launch command above it"
