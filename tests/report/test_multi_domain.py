"""The multi-domain table's own parts on really prepared and merged data sets: each domain's fixed test lists
mapped into the merged id space item for item, the guards against a data set the merge was not built from, the
training notes read from tool.json, and the side-by-side rows and section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.recommend.calibration import part_requests, split_eh
from reasonrec.report.config import EvaluateConfig
from reasonrec.report.multi_domain import (DomainMismatch, by_domain_rows, compare_rows, domain_of_users,
                                           domains_of, to_merged, training_notes)
from reasonrec.report.writer import multi_domain_section
from reasonrec.tools.data import ToolData


def _prepare(root, source: dict) -> str:
    prepare(PrepareConfig.model_validate({
        "out": str(root), "name": root.name, "source": source, "splits": {"protocols": ["loo"]},
        "candidates": {"ranking_negatives": [9], "ctr_negatives_per_positive": []}}))
    return str(root)


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """Two synthetic domains (different generator seeds, same id spelling) and their merge, as
    configs/beauty-sports.yaml builds it."""
    tmp = tmp_path_factory.mktemp("multi-domain")
    domains = {name: _prepare(tmp / name, {"kind": "synthetic", "synthetic": {"n_users": 30, "n_items": 120,
                                                                               "seed": seed}})
               for name, seed in (("beauty", 1), ("sports", 2))}
    root = _prepare(tmp / "merged", {"kind": "merge", "merge": domains})
    return {name: ToolData.load(path, "loo", 9) for name, path in {**domains, "merged": root}.items()}


def _ids(data: ToolData, what: str, idx: np.ndarray) -> np.ndarray:
    frame = data.dataset.users if what == "user" else data.dataset.items
    return frame.sort_values(f"{what}_idx")[f"{what}_id"].to_numpy()[idx]


@pytest.mark.parametrize("domain", ["beauty", "sports"])
def test_lists_map_into_the_merged_ids_item_for_item(merged, domain):
    single, joint = merged[domain], merged["merged"]
    requests = part_requests(single, "test", 12, seed=3)
    eh = split_eh(joint)
    mapped = to_merged(requests, single, joint, eh, domain)
    assert len(mapped) == 12
    assert list(_ids(joint, "user", mapped.user_idx)) == [f"{domain}:{u}" for u in _ids(single, "user", requests.user_idx)]
    assert list(_ids(joint, "item", mapped.targets)) == [f"{domain}:{i}" for i in _ids(single, "item", requests.targets)]
    for row in range(len(requests)):
        got, want = mapped.candidates[row], requests.candidates[row]
        assert list(_ids(joint, "item", got[got >= 0])) == [f"{domain}:{i}" for i in _ids(single, "item", want[want >= 0])]
        assert list(_ids(joint, "item", mapped.history(row))) == [
            f"{domain}:{i}" for i in _ids(single, "item", requests.history(row))]
    np.testing.assert_array_equal(mapped.eh, eh[mapped.user_idx])       # the merged system's own EH
    assert set(domain_of_users(joint.dataset, mapped.user_idx)) == {domain}
    assert domains_of(joint.dataset) == ["beauty", "sports"] and domains_of(single.dataset) == []


def test_a_domain_the_merge_was_not_built_from_is_refused(merged):
    requests = part_requests(merged["beauty"], "test", 5, seed=0)
    eh = split_eh(merged["merged"])
    with pytest.raises(DomainMismatch, match="no user 'toys:"):
        to_merged(requests, merged["beauty"], merged["merged"], eh, "toys")
    # The same id spelling in both domains: Beauty's lists read as Sports' find every id, but not the histories.
    with pytest.raises(DomainMismatch, match="another train \\+ valid history"):
        to_merged(requests, merged["beauty"], merged["merged"], eh, "sports")


def test_training_notes_say_how_each_fit_ended(tmp_path):
    def tool(name, history, cfg):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tool.json").write_text(json.dumps({"fit_history": history, "config": cfg}))

    tool("sasrec", [{"epoch": 1, "seconds": 300.0}, {"epoch": 2, "seconds": 650.0}, {"best": {"epoch": 2}}],
         {"epochs": 200, "max_train_seconds": 600.0})
    tool("gru4rec", [{"epoch": e, "seconds": 10.0 * e} for e in range(1, 9)] + [{"best": {"epoch": 3}}],
         {"epochs": 40, "max_train_seconds": 600.0})
    tool("bpr_mf", [{"epoch": 1, "seconds": 5.0}, {"epoch": 2, "seconds": 9.0}], {"epochs": 2, "max_train_seconds": 600})
    (tmp_path / "metrics.json").write_text(json.dumps({"rows": [{"tool": "gru4rec", "device": "cuda"}]}))
    assert training_notes(str(tmp_path), ["sasrec", "gru4rec", "bpr_mf", "missing"]) == {
        "sasrec": "2 ep, time budget", "gru4rec": "8 ep, early stop, cuda", "bpr_mf": "2 ep, epoch budget"}


def test_rows_side_by_side_and_the_section():
    single = [{"model": "sasrec", "kind": "tool", "HR@5": 0.30, "NDCG@5": 0.20},
              {"model": "most_popular", "kind": "baseline", "HR@5": 0.21, "NDCG@5": 0.14},
              {"model": "ReasonRec (routed)", "kind": "vlm", "HR@5": 0.34, "NDCG@5": 0.24,
               "route_shares": {"tool": 0.3, "vlm": 0.0, "vlm+tools": 0.7}}]
    merged = [{"model": "sasrec", "kind": "tool", "HR@5": 0.40, "NDCG@5": 0.28},
              {"model": "two_tower", "kind": "tool", "HR@5": 0.35, "NDCG@5": 0.25},
              {"model": "most_popular", "kind": "baseline", "HR@5": 0.21, "NDCG@5": 0.14},
              {"model": "ReasonRec (routed)", "kind": "vlm", "HR@5": 0.31, "NDCG@5": 0.22,
               "route_shares": {"tool": 1.0, "vlm": 0.0, "vlm+tools": 0.0}}]
    rows = compare_rows(single, merged, {"single": {"sasrec": "2 ep, time budget"}, "merged": {}})
    assert [r["model"] for r in rows] == ["sasrec", "two_tower", "most_popular", "ReasonRec (routed)"]
    assert rows[0]["delta_HR@5"] == pytest.approx(0.10) and rows[0]["single_training"] == "2 ep, time budget"
    assert rows[1]["single_HR@5"] is None and rows[1]["delta_HR@5"] is None
    assert rows[3]["delta_HR@5"] == pytest.approx(-0.03) and rows[3]["merged_route_shares"]["tool"] == 1.0

    by_domain = by_domain_rows(np.array(["beauty", "sports", "sports"], dtype=object),
                               {"sasrec": np.array([True, False, True]), "ReasonRec": np.array([False, True, True])})
    assert by_domain == [{"domain": "beauty", "users": 1, "HR@5/sasrec": 1.0, "HR@5/ReasonRec": 0.0},
                         {"domain": "sports", "users": 2, "HR@5/sasrec": 0.5, "HR@5/ReasonRec": 1.0},
                         {"domain": "all", "users": 3, "HR@5/sasrec": pytest.approx(2 / 3),
                          "HR@5/ReasonRec": pytest.approx(2 / 3)}]
    table = {"name": "sports", "users_scored": 3, "users_total": 9, "negatives": 99, "files": ["lists.parquet"],
             "vlm_dir": "vlm/sports", "model_version": "v1", "tools_dir": "tools/sports",
             "policy_source": "policy.json (v1)", "vlm_failures": {"single": {}, "merged": {}}, "rows": rows}
    md = "\n".join(multi_domain_section([table], by_domain, {"negatives": 99, "seed": 0, "quick": False,
                                                             "vlm_dir": "vlm/merged", "tools_dir": "tools/merged"}))
    assert "## Multi-domain (merged training)" in md and "### sports: trained on sports alone vs on the merge" in md
    assert "| sasrec | tool | 0.3000 | 0.4000 | 0.1000 |" in md and "2 ep, time budget" in md
    assert "(tool / vlm / vlm+tools: 0.30 / 0.00 / 0.70)" in md and "| all | 3 |" in md
    assert multi_domain_section([], [], {}) == []


def test_entry_names_must_differ():
    entry = {"name": "beauty", "dataset": "d", "vlm_dir": "v"}
    with pytest.raises(ValueError, match="multi_domain: names must differ"):
        EvaluateConfig.model_validate({"recommend": {"vlm_dir": "v"}, "multi_domain": [entry, entry]})
