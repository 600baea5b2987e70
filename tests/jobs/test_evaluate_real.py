"""The evaluation report end to end on real data: `make report-quick` — prepare_data -> train_tools -> train_vlm
-> calibrate -> evaluate --quick over configs/<dataset>.yaml with the tiny presets configs/overlays/quick.yaml (and
configs/overlays/slice.yaml) — on seeded 80-user slices
of ml-latest-small with its posters, Amazon Beauty and Amazon Sports (P5), read from ../shared/data, and on the
Beauty + Sports merge of the two slices (`make report-quick-models` once both slices are prepared, alongside their
runs; `make report-quick-evaluate` once both are done: its report compares with their models). CI runs
ml-latest-small and Beauty; RR_QUICK_REPORTS=all (or a comma list) runs the others too (see QUICK_REPORTS_ENV).

The test runs the Makefile targets themselves, so the documented commands are the ones CI checks. The data
sets run at the same time and every Ray job joins one local cluster started here (RAY_ADDRESS): on 2 cores
these jobs are mostly start-up (imports, Ray workers), and a fresh local cluster per job costs about 20 CPU
seconds more per data set. Each test then reads what its data set's run left behind: the slice, the tools,
the VLM run and its policy, and the report (sections, finite numbers in range, provenance, real PNGs).

Known hazard (Ray 2.60, upstream: ray-project/ray#65447 review, "is_actor_alive treats a missing State API result
as dead"): Ray Train's PlacementGroupCleaner asks the State API whether the train controller is alive, and with
RAY_ADDRESS unset in its process that client resolves a local address by itself (/tmp/ray/ray_current_cluster, then
the running GCS processes), so with two clusters on the machine it can ask the wrong one, get "not found", remove
the live run's placement group, and the job fails with "Destroying worker since its placement group was removed".
Timing decides: a 900-step train_vlm run survived a second cluster started mid-training (2026-12-07, 16:39-16:58
UTC), but the same day a suite with two Ray lanes (this module beside the other Ray tests) lost both quick reports'
VLM runs this way. So every Ray test runs in one xdist group, one at a time, and CI runs nothing beside the suite;
on a shared dev machine, run this file while no other Ray cluster starts."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrec.config import load_config
from reasonrec.data.prepare_config import PrepareConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)

DATASETS = ["ml-latest-small", "beauty", "sports", "beauty-sports"]
MERGES = {"beauty-sports": ("beauty", "sports")}   # a merged set's run reads its domains' quick runs
# Which quick reports run: a comma list of DATASETS or "all". The default, the two converters (MovieLens with
# posters, Amazon P5), keeps CI's suite near its ~35-minute budget; sports (Beauty's code path on other data) and
# the Beauty + Sports merge add about 5 minutes on 2 cores: RR_QUICK_REPORTS=all make test runs them too.
QUICK_REPORTS_ENV, QUICK_REPORTS_DEFAULT = "RR_QUICK_REPORTS", "ml-latest-small,beauty"
USERS, QUICK_USERS, VLM_STEPS = 80, 24, 4   # what the -quick configs say (checked below against the outputs)
JOBS = ["prepare_data.py", "train_tools.py", "train_vlm.py", "calibrate.py", "evaluate.py"]
PNGS = ["reliability.png", "cold_start.png", "a9.png"]
SECTIONS = ["## Sequential recommendation (HR@5, NDCG@5)", "## CTR (AUC, LogLoss)", "## Cold start (EH groups)",
            "### Table A9: routing vs always-on", "### Table A6: tool ensemble only", "### Table A7: tool selection",
            "### Table 4: conflict analysis", "## Confidence calibration", "## Not in this report yet"]
# Keys whose numbers are ranking/CTR metrics, accuracies, confidences, shares or thresholds: within [0, 1].
UNIT_KEY = re.compile(r"(HR|NDCG)@\d|^AUC$|^ECE$|accuracy|confidence$|^delegated$|^consulted$|_rate$|^tau_")


def missing_sources(dataset: str) -> list[str]:
    """The source folders configs/<dataset>.yaml's prepare section reads (relative to the repo) that are absent;
    a merge's are its domains'."""
    if dataset in MERGES:
        return [path for domain in MERGES[dataset] for path in missing_sources(domain)]
    source = load_config(PrepareConfig, REPO_ROOT / "configs" / f"{dataset}.yaml").source
    paths = [path for path in (source.path, source.images) if path]
    return [path for path in paths if not (REPO_ROOT / path).exists()]


def selected() -> list[str]:
    """The data sets RR_QUICK_REPORTS asks for, a merge's domains included (its report reads their runs)."""
    value = os.environ.get(QUICK_REPORTS_ENV, QUICK_REPORTS_DEFAULT).strip()
    names = DATASETS if value == "all" else [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        raise pytest.UsageError(f"{QUICK_REPORTS_ENV}={value!r}: unknown {unknown}; use 'all' or some of {DATASETS}")
    wanted = set(names) | {domain for name in names for domain in MERGES.get(name, ())}
    return [d for d in DATASETS if d in wanted]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> dict[str, dict]:
    """`make report-quick` for every selected data set whose sources are present, all at once on one local Ray
    cluster."""
    present = [d for d in selected() if not missing_sources(d)]
    if not present:
        return {}
    import ray

    root = tmp_path_factory.mktemp("quick")
    auth = os.environ.get("RAY_AUTH_MODE")
    # 4 logical CPUs on 2 cores: three VLM workers (0.5 CPU each) still leave room for their Ray Data ingest.
    # A new local cluster turns on token auth (RAY_AUTH_MODE=token in os.environ, the token in ~/.ray): the
    # jobs inherit both and join with it.
    context = ray.init(num_cpus=4, include_dashboard=False)
    env = {**os.environ, "RAY_ADDRESS": context.address_info["gcs_address"], "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONUNBUFFERED": "1"}
    runs, started = {}, time.perf_counter()

    def start(dataset: str, target: str = "report-quick") -> None:
        log = root / f"{dataset}.log"
        # -o: never (re)build the venv from here; PY: the interpreter running the tests.
        command = ["make", "--no-print-directory", "-o", ".venv/.installed", target, f"DATASET={dataset}",
                   f"QUICK={root}", f"PY={sys.executable}"]
        with log.open("a") as out:     # a merge's two phases write one log
            runs[dataset] = {"process": subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out,
                                                         stderr=subprocess.STDOUT, start_new_session=True),
                             "log": log, "root": root}

    def stop(run: dict) -> None:
        if "process" in run and run["process"].poll() is None:
            os.killpg(run["process"].pid, signal.SIGKILL)
            run["process"].wait()

    # A merge runs `make report-quick-models` once its domains' slices are prepared (alongside their runs), then
    # `make report-quick-evaluate` once their runs are done (its report compares with their models).
    waiting = {d: "slices" for d in present if d in MERGES}
    try:
        for dataset in present:
            if dataset not in MERGES:
                start(dataset)
        while any("returncode" not in run for run in runs.values()) or waiting:
            for run in runs.values():
                if "returncode" not in run and run["process"].poll() is not None:
                    run["returncode"] = run["process"].returncode
            for merged, phase in list(waiting.items()):
                domains = MERGES[merged]
                codes = [runs[d].get("returncode") for d in domains]
                failed = {d: code for d, code in zip(domains, codes) if code not in (None, 0)}
                if failed:
                    if merged in runs:
                        stop(runs[merged])
                    runs[merged] = {"returncode": f"not run: a domain failed ({failed})",
                                    "log": root / f"{merged}.log", "root": root}
                    runs[merged]["log"].touch()
                    del waiting[merged]
                elif phase == "slices":
                    if all((root / "datasets" / d / "prepare_report.json").exists() for d in domains):
                        start(merged, "report-quick-models")
                        waiting[merged] = "models"
                elif "returncode" in runs[merged]:
                    if runs[merged]["returncode"] != 0:
                        del waiting[merged]                      # its own failure stands
                    elif all(code == 0 for code in codes):
                        start(merged, "report-quick-evaluate")
                        del waiting[merged]
            if time.perf_counter() - started > 1200:
                for run in runs.values():
                    run.setdefault("returncode", "timed out after 1200 s")
                waiting.clear()
            time.sleep(1.0)
    finally:
        for run in runs.values():   # make and the jobs it started: one process group per data set
            stop(run)
        ray.shutdown()
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth
    return runs


def numbers(tree, path: str = ""):
    """(path, key, value) of every int/float leaf of a JSON tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, (dict, list)):
                yield from numbers(value, f"{path}.{key}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield f"{path}.{key}", str(key), value
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield f"{path}[{i}]", "", value
            else:
                yield from numbers(value, f"{path}[{i}]")


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
def test_report_quick_end_to_end_on_real_data(dataset, quick_runs):
    if dataset not in selected():
        pytest.skip(f"not in {QUICK_REPORTS_ENV} (default {QUICK_REPORTS_DEFAULT}; {QUICK_REPORTS_ENV}=all runs it)")
    absent = missing_sources(dataset)
    if absent:
        pytest.skip(f"configs/{dataset}.yaml reads {', '.join(absent)}, which is absent")
    run = quick_runs[dataset]
    log = run["log"].read_text()
    assert run["returncode"] == 0, f"make report-quick DATASET={dataset}: {run['returncode']}\n{log[-6000:]}"
    # The five jobs ran in order, each from the data set's file and the quick overlay.
    configs = f"--config configs/{dataset}.yaml --config configs/overlays/quick.yaml"
    positions = [log.find(f"jobs/{job} {configs}") for job in JOBS]
    assert -1 not in positions and positions == sorted(positions), positions
    root = Path(run["root"])
    data, tools, vlm, out = (root / kind / dataset for kind in ("datasets", "tools", "vlm", "reports"))

    # The slice: a seeded 80-user subset of the real source (ml-latest-small with its posters); a merge: its
    # domains' slices, ids prefixed.
    prepared = json.loads((data / "prepare_report.json").read_text())
    users = USERS * len(MERGES.get(dataset, (dataset,)))
    assert prepared["manifest"]["name"] == dataset and prepared["manifest"]["n_users"] == users
    if dataset in MERGES:
        assert prepared["manifest"]["domains"] == list(MERGES[dataset])
    else:
        assert prepared["subsample"]["users_kept"] == USERS
    if dataset == "ml-latest-small":
        assert prepared["manifest"]["n_items_with_image"] > 3000
    # Three tools for one epoch; a 4-step VLM on one Ray Train worker; its calibrated policy.
    tool_rows = {row["spec"]: row for row in json.loads((tools / "metrics.json").read_text())["rows"] if "spec" in row}
    ctr_tools = set() if dataset in MERGES else {"dlrm"}     # the merge has no CTR rows
    assert set(tool_rows) == {"sasrec", "bpr_mf", *ctr_tools} and all(r["epochs"] == 1 for r in tool_rows.values())
    settings = json.loads((vlm / "run.json").read_text())["settings"]
    assert (settings["num_workers"], settings["max_steps"], settings["model"]["preset"]) == (1, VLM_STEPS, "tiny")
    train = json.loads((vlm / "metrics.json").read_text())["train"]
    assert train["step"] == VLM_STEPS and math.isfinite(train["loss"])
    policy = json.loads((vlm / "policy.json").read_text())

    # The report: its files, sections and provenance.
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", *PNGS}
    report, md = json.loads((out / "report.json").read_text()), (out / "report.md").read_text()
    h = report["header"]
    assert (h["dataset_name"], h["seed"], h["quick"], h["users"], h["users_total"]) == (dataset, 0, True,
                                                                                       QUICK_USERS, users)
    assert h["model_version"].startswith(f"{dataset}@") and h["model_version"] == policy["model_version"]
    assert h["policy_source"] == f"policy.json ({h['model_version']})"
    assert h["command"].startswith(f"python jobs/evaluate.py {configs}")
    assert h["command"].endswith("--quick")
    machine = h["machine"]
    assert machine["cpus"] >= 1 and machine["platform"] and machine["torch"] and machine["device"]
    assert md.startswith(f"# ReasonRec evaluation report: {dataset}\n")
    for text in ("(seed 0, quick mode)", f"Model {h['model_version']}", f"Machine: {machine['platform']}",
                 f"torch {machine['torch']}", *SECTIONS):
        assert text in md, text
    assert "Not computed in this run" in md    # the ablations: the quick run trains no ablation VLMs

    # Every number is finite; shares, rates and metrics lie in [0, 1]; route shares sum to 1.
    found = list(numbers(report))
    assert len(found) > 100
    for where, key, value in found:
        assert math.isfinite(value), where
        if key.startswith("delta_"):      # a difference of two such numbers (multi-domain: merged - single)
            assert -1.0 <= value <= 1.0, (where, value)
        elif UNIT_KEY.search(key) or ".route_shares." in where:
            assert 0.0 <= value <= 1.0, (where, value)
    main = {row["model"]: row for row in report["main"]}
    assert {"sasrec", "bpr_mf", "most_popular", "majority_vote", "VLM-only", "VLM+tools always",
            "ReasonRec (routed)"} <= set(main)
    assert all(row["users"] == QUICK_USERS for row in main.values())
    assert sum(main["ReasonRec (routed)"]["route_shares"].values()) == pytest.approx(1.0)
    ctr = {row["model"]: row for row in report["ctr"]}
    if ctr_tools:
        assert ctr["dlrm"]["rows"] > 0 and 0.0 < ctr["dlrm"]["LogLoss"] < 10
    else:
        assert ctr == {} and "The dataset has no CTR split" in md
    if dataset in MERGES:
        check_multi_domain(report, md, MERGES[dataset], root)
    assert sum(group["users"] for group in report["cold_start"]["aggregates"]) == QUICK_USERS
    assert [row["selection"] for row in report["a7"]] == ["learned", "random", "oracle"]
    assert report["conflict"]["rows"] == QUICK_USERS
    assert all(row["seconds_per_user"] >= 0 for row in report["a9"])

    # The plots are real PNG images.
    from PIL import Image

    for name in PNGS:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 100, name
            image.load()   # decodes every pixel: a truncated file fails here


def check_multi_domain(report: dict, md: str, domains: tuple[str, ...], root: Path) -> None:
    """The merged report's multi-domain section: the main table by domain, and per domain both systems on the
    domain's own lists. The single-domain side scores the same seeded users with the same models and policy as
    that domain's own quick report, so its numbers must equal that report's main table, row for row."""
    assert "## Multi-domain (merged training)" in md
    assert "Multi-domain (Beauty + Sports merged)" not in report["not_yet"]
    by_domain = {row["domain"]: row for row in report["by_domain"]}
    assert set(by_domain) == {*domains, "all"} and by_domain["all"]["users"] == QUICK_USERS
    assert sum(by_domain[d]["users"] for d in domains) == QUICK_USERS
    tables = {t["name"]: t for t in report["multi_domain"]}
    assert list(tables) == list(domains)
    for domain, table in tables.items():
        assert f"### {domain}: trained on {domain} alone vs on the merge" in md
        assert (table["users_scored"], table["users_total"]) == (QUICK_USERS, USERS)
        assert table["model_version"].startswith(f"{domain}@")
        assert table["policy_source"] == f"policy.json ({table['model_version']})"
        rows = {row["model"]: row for row in table["rows"]}
        assert {"sasrec", "bpr_mf", "most_popular", "majority_vote", "VLM-only", "VLM+tools always",
                "ReasonRec (routed)"} <= set(rows)
        own = {row["model"]: row for row in json.loads((root / "reports" / domain / "report.json").read_text())["main"]}
        for model, row in rows.items():
            assert row["single_HR@5"] == pytest.approx(own[model]["HR@5"]), (domain, model)
            assert row["single_NDCG@5"] == pytest.approx(own[model]["NDCG@5"]), (domain, model)
            assert row["delta_HR@5"] == pytest.approx(row["merged_HR@5"] - row["single_HR@5"])
        assert rows["sasrec"]["single_training"].startswith("1 ep, epoch budget")
        assert rows["sasrec"]["merged_training"].startswith("1 ep, epoch budget")
