"""The time-shift table's own parts: the split guard on hand-written run.json / metrics.json / tool.json, the
cut-offs and counts read from a really prepared temporal split, and the two-column rows from hand-made rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.report.config import EvaluateConfig
from reasonrec.report.time_shift import SplitMismatch, check_split, cutoff_text, shift_rows, split_summary
from reasonrec.report.writer import time_shift_section


def write(path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


@pytest.fixture
def trained(tmp_path):
    """A VLM run folder and a tools folder, all saying split temporal, as train_vlm / train_tools write them."""
    vlm, tools = tmp_path / "vlm", tmp_path / "tools"
    write(vlm / "run.json", {"settings": {"split": "temporal", "tools_dir": str(tools)}, "plan": {}})
    write(tools / "metrics.json", {"config": {"split": "temporal"}, "rows": []})
    write(tools / "sasrec" / "tool.json", {"tool": "sasrec", "task": "sequential", "split": "temporal"})
    write(tools / "bpr_mf" / "tool.json", {"tool": "bpr_mf", "task": "sequential"})   # Tool.save: no split
    return vlm, tools


def test_check_split_passes_when_every_recorded_split_agrees(trained):
    vlm, tools = trained
    check_split("temporal", str(vlm), str(tools), ["sasrec", "bpr_mf"])


def test_check_split_refuses_a_vlm_of_another_split_naming_run_json(trained):
    vlm, tools = trained
    with pytest.raises(SplitMismatch, match=rf"{vlm / 'run.json'} says the VLM trained on split 'temporal', the "
                                            r"entry scores split 'loo'"):
        check_split("loo", str(vlm), str(tools), [])
    write(vlm / "run.json", {"settings": {"tools_dir": str(tools)}})   # a run that does not say: cannot be checked
    with pytest.raises(SplitMismatch, match="split None"):
        check_split("temporal", str(vlm), str(tools), [])
    with pytest.raises(FileNotFoundError, match="run.json not found"):
        check_split("temporal", str(tools / "nowhere"), str(tools), [])


def test_check_split_refuses_tools_of_another_split_naming_the_file(trained):
    vlm, tools = trained
    write(tools / "metrics.json", {"config": {"split": "loo"}, "rows": []})
    with pytest.raises(SplitMismatch, match=rf"{tools / 'metrics.json'} says the tools trained on split 'loo'"):
        check_split("temporal", str(vlm), str(tools), ["sasrec"])
    (tools / "metrics.json").unlink()                                   # a folder without metrics.json: tool.json
    write(tools / "sasrec" / "tool.json", {"tool": "sasrec", "task": "sequential", "split": "loo"})
    with pytest.raises(SplitMismatch, match=rf"{tools / 'sasrec' / 'tool.json'} says tool 'sasrec' trained on "
                                            r"split 'loo'"):
        check_split("temporal", str(vlm), str(tools), ["bpr_mf", "sasrec"])


def test_split_summary_reads_the_cut_offs_and_counts_of_a_prepared_temporal_split(tmp_path):
    root = tmp_path / "dataset"
    prepare(PrepareConfig.model_validate({
        "out": str(root), "name": "synthetic",
        "source": {"kind": "synthetic", "synthetic": {"n_users": 40, "n_items": 60}},
        "splits": {"protocols": ["temporal"]}, "candidates": {"ranking_negatives": [9]}}))
    summary = split_summary(str(root), "temporal")
    parts = {p: pd.read_parquet(root / "splits" / "temporal" / f"{p}.parquet") for p in ("train", "valid", "test")}
    assert [summary[f"{p}_interactions"] for p in parts] == [len(f) for f in parts.values()]
    assert summary["test_users"] == parts["test"]["user_idx"].nunique()
    cold = set(parts["test"]["user_idx"]) - set(parts["train"]["user_idx"])
    assert summary["test_users_without_train"] == len(cold)
    p = summary["params"]
    assert parts["train"]["timestamp"].max() < p["t_valid"] <= parts["valid"]["timestamp"].min()
    assert parts["valid"]["timestamp"].max() < p["t_test"] <= parts["test"]["timestamp"].min()
    assert f"t_valid = {p['t_valid']}" in cutoff_text(summary) and "0.9 quantile" in cutoff_text(summary)
    with pytest.raises(FileNotFoundError, match="splits/loo/split.json not found"):
        split_summary(str(root), "loo")


def test_cutoff_text_says_when_a_split_has_no_cut_offs():
    text = cutoff_text({"params": {"min_interactions": 3}})
    assert text == 'No time cut-offs recorded (params {"min_interactions": 3}).'


MAIN = [{"model": "sasrec", "kind": "tool", "HR@5": 0.6, "NDCG@5": 0.4, "users": 671},
        {"model": "lightsans", "kind": "tool", "HR@5": 0.61, "NDCG@5": 0.41, "users": 671},
        {"model": "most_popular", "kind": "baseline", "HR@5": 0.38, "NDCG@5": 0.27, "users": 671},
        {"model": "ReasonRec (routed)", "kind": "vlm", "HR@5": 0.59, "NDCG@5": 0.43, "users": 671,
         "route_shares": {"tool": 1.0, "vlm": 0.0, "vlm+tools": 0.0}}]
SHIFTED = [{"model": "sasrec", "kind": "tool", "HR@5": 0.3, "NDCG@5": 0.2, "users": 40},
           {"model": "gru4rec", "kind": "tool", "HR@5": 0.25, "NDCG@5": 0.15, "users": 40},
           {"model": "most_popular", "kind": "baseline", "HR@5": 0.2, "NDCG@5": 0.1, "users": 40},
           {"model": "VLM-only", "kind": "vlm", "HR@5": 0.1, "NDCG@5": 0.05, "users": 40},
           {"model": "ReasonRec (routed)", "kind": "vlm", "HR@5": 0.3, "NDCG@5": 0.2, "users": 40,
            "route_shares": {"tool": 0.75, "vlm": 0.25, "vlm+tools": 0.0}}]


def test_shift_rows_pair_each_shifted_model_with_the_main_row_of_the_same_name():
    rows = shift_rows(MAIN, SHIFTED)
    assert [r["model"] for r in rows] == ["sasrec", "gru4rec", "most_popular", "VLM-only", "ReasonRec (routed)"]
    by = {r["model"]: r for r in rows}
    assert (by["sasrec"]["main_HR@5"], by["sasrec"]["HR@5"], by["sasrec"]["rows"]) == (0.6, 0.3, 40)
    assert by["gru4rec"]["main_HR@5"] is None and by["VLM-only"]["main_NDCG@5"] is None   # not in the main table
    assert by["ReasonRec (routed)"]["route_shares"]["tool"] == 0.75 and "route_shares" not in by["sasrec"]
    assert "lightsans" not in by                                         # a main-only tool is not a shifted row


def test_markdown_section_states_the_split_and_the_two_columns():
    summary = {"file": "d/splits/temporal/split.json", "params": {"t_valid": 0, "t_test": 86400, "valid_quantile": 0.8,
                                                                  "test_quantile": 0.9},
               "train_interactions": 8, "valid_interactions": 1, "test_interactions": 1, "train_users": 3,
               "test_users": 1, "test_users_without_train": 0}
    table = {"name": "temporal cut-off", "split": "temporal", "negatives": 99, "vlm_dir": "v", "tools_dir": "t",
             "model_version": "v@abc", "policy_source": "the router config (policy=config)", "rows_scored": 40,
             "rows_total": 1000, "users_scored": 12, "summary": summary, "vlm_failures": {"vlm": 0},
             "rows": shift_rows(MAIN, SHIFTED)}
    md = "\n".join(time_shift_section([table], {"split": "loo", "users": 671, "seed": 0, "quick": True}))
    assert "## Time shift (temporal cut-off)" in md and "### temporal cut-off" in md
    assert "| model | kind | loo HR@5 | loo NDCG@5 | temporal HR@5 | temporal NDCG@5 |" in md
    assert "| sasrec | tool | 0.6000 | 0.4000 | 0.3000 | 0.2000 |" in md and "| gru4rec | tool | — | — |" in md
    assert "t_test = 86400 (1970-01-02" in md and "40 of 1000 test rows from 12 users (seed 0, quick mode)" in md
    assert "8 train / 1 valid / 1 test interactions" in md
    assert "route shares tool / vlm / vlm+tools: 0.75 / 0.25 / 0.00" in md
    assert time_shift_section([], {}) == []


def test_config_names_must_differ():
    entry = {"name": "t", "vlm_dir": "v"}
    assert EvaluateConfig(time_shift=[entry]).time_shift[0].split == "temporal"
    with pytest.raises(ValueError, match="time_shift: names must differ"):
        EvaluateConfig(time_shift=[entry, entry])
