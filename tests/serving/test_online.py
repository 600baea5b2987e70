"""reasonrec.serving without Ray: request validation and limits, cold start, CTR and explanation inputs, and
the online answer of known users against the nightly stages run on every user in one batch."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from pydantic import ValidationError

from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.requests import gather
from reasonrec.recommend.stages import answer, ranked, retrieve_candidates, score_tools
from reasonrec.recommend.system import model_version
from reasonrec.recommend.system import resolve as resolve_system
from reasonrec.recommend.table import table_rows
from reasonrec.router.config import RouterConfig
from reasonrec.serving.api import CTRRequest, RecommendRequest
from reasonrec.serving.config import ServeConfig
from reasonrec.serving.ctr import choose_ctr_tool, ctr_probabilities, load_ctr_tool
from reasonrec.serving.explain import explain, explain_instruction
from reasonrec.serving.online import (BadRequest, Catalogue, Pending, answer_stage, cold_start, known_requests,
                                      resolve, tools_stage)
from reasonrec.tools.base import load_tool
from reasonrec.tools.data import Queries
from reasonrec.vlm.templates import EMPTY_HISTORY, render
from reasonrec.vlm.tool_labels import pad_histories
from tests.serving.conftest import CTR_TOOL

K = 5
# Thresholds that send some of the 60 users down each route (EH of the synthetic users spans ~0.2-1).
ROUTER = {"tau_low": 0.45, "tau_high": 0.6, "tau_tool": 0.0, "tau_conf": 0.5, "best_tool": {"sequential": "sasrec"}}


@pytest.fixture(scope="module")
def setup(serve_world):
    recommend = RecommendConfig(dataset=serve_world.dataset, vlm_dir=serve_world.vlm_dir, policy="config",
                                n_candidates=30, router=RouterConfig.model_validate(ROUTER))
    cfg = ServeConfig(recommend=recommend, max_k=20, max_history=8, max_ctr_items=3)
    version = model_version(recommend)
    bundle = Bundle(resolve_system(recommend))
    return cfg, bundle, Catalogue(bundle), version


def test_request_bodies_refuse_bad_input():
    with pytest.raises(ValidationError, match="give user_id, history, or both"):
        RecommendRequest.model_validate({"k": 3})
    with pytest.raises(ValidationError, match="task"):
        RecommendRequest.model_validate({"user_id": "u", "task": "direct"})
    with pytest.raises(ValidationError, match="k"):
        RecommendRequest.model_validate({"user_id": "u", "k": 0})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RecommendRequest.model_validate({"user_id": "u", "kk": 3})
    with pytest.raises(ValidationError, match="item_ids"):
        CTRRequest.model_validate({"user_id": "u", "item_ids": []})


@pytest.mark.parametrize("body, field", [
    ({"user_id": "u", "k": "5"}, "k"), ({"user_id": "u", "k": 5.0}, "k"), ({"user_id": "u", "k": True}, "k"),
    ({"user_id": "u", "k": None}, "k"), ({"user_id": 5}, "user_id"), ({"user_id": True}, "user_id"),
    ({"history": ["item_1", 2]}, "history"), ({"history": "item_1"}, "history"), ({"history": ["x" * 257]}, "history"),
    ({"user_id": "u", "task": 1}, "task")])
def test_request_types_are_strict(body, field):
    """JSON of the wrong type is refused naming the field, never coerced ("5" -> 5, true -> 1)."""
    with pytest.raises(ValidationError) as err:
        RecommendRequest.model_validate(body)
    assert {e["loc"][0] for e in err.value.errors()} == {field}


def test_ctr_and_explain_types_are_strict():
    for body in ({"user_id": 7, "item_ids": ["i"]}, {"user_id": "u", "item_ids": ["i", None]},
                 {"user_id": "u", "item_ids": [["i"]]}, {"user_id": "u", "item_ids": ["\ud800"]}):
        with pytest.raises(ValidationError):
            CTRRequest.model_validate(body)
    assert RecommendRequest.model_validate({"user_id": "u", "k": 5}).k == 5


def test_config_limits(serve_world):
    with pytest.raises(ValidationError, match="max_k 200 is above recommend.n_candidates 100"):
        ServeConfig(max_k=200)
    with pytest.raises(ValidationError, match="min_replicas 3 is above max_replicas 2"):
        ServeConfig.model_validate({"tools": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}})
    with pytest.raises(ValidationError, match="max_queued_requests must be -1"):
        ServeConfig.model_validate({"vlm": {"max_queued_requests": 0}})
    assert ServeConfig().host == "127.0.0.1"


def test_resolve_limits_and_unknown_ids(setup):
    cfg, bundle, catalogue, _ = setup
    with pytest.raises(BadRequest, match=r"k: 21 is out of range 1\.\.20"):
        resolve(RecommendRequest(user_id="user_0000001", k=21), catalogue, cfg)
    items = [str(i) for i in catalogue.item_ids[:9]]
    with pytest.raises(BadRequest, match="history: 9 items, at most 8 allowed"):
        resolve(RecommendRequest(history=items), catalogue, cfg)
    with pytest.raises(BadRequest, match="history: unknown item id\\(s\\) 'nope', 'nada'") as err:
        resolve(RecommendRequest(history=[items[0], "nope", "nada"]), catalogue, cfg)
    assert err.value.status == 422
    known = resolve(RecommendRequest(user_id="user_0000003", history=items[:2], k=4), catalogue, cfg)
    assert known.user_idx == 3 and not known.cold_start and known.history.tolist() == [0, 1]
    assert resolve(RecommendRequest(user_id="stranger"), catalogue, cfg).cold_start


def test_cold_start_is_most_popular_unseen_ranked_by_the_sequential_tool(setup):
    cfg, bundle, catalogue, version = setup
    counts = np.bincount(bundle.dataset.interactions["item_idx"], minlength=bundle.n_items)
    empty = cold_start(bundle, catalogue, resolve(RecommendRequest(user_id="stranger", k=4), catalogue, cfg), version)
    assert empty["route"] == "cold_start" and empty["risk"] == "high" and empty["cold_start"]
    assert empty["evidence_horizon"] is None and empty["model_version"] == version
    assert [i["score"] for i in empty["items"]] == sorted(counts, reverse=True)[:4]
    assert "no history" in empty["rationale"]

    history = [str(i) for i in catalogue.item_ids[catalogue.by_popularity[:2]]]   # the two most popular
    session = cold_start(bundle, catalogue, resolve(RecommendRequest(history=history, k=K), catalogue, cfg), version)
    ids = [i["item_id"] for i in session["items"]]
    assert len(ids) == K and not set(ids) & set(history)
    assert "ranked by sasrec on the given history" in session["rationale"]
    # The scores are sasrec's on the given history, over the 30 most popular unseen items.
    pool = catalogue.by_popularity[2:2 + 30]
    sasrec = bundle.tools["sasrec"]
    expected = sasrec.score(Queries(np.zeros(1, dtype=np.int64), pad_histories([np.array([
        catalogue.by_popularity[0], catalogue.by_popularity[1]])], sasrec.cfg.max_len)), pool[None])[0]
    best = pool[np.argsort(-expected, kind="stable")[:K]]
    assert ids == [str(catalogue.item_ids[i]) for i in best]


def test_online_equals_one_nightly_batch(setup):
    """Every user through tools_stage (+ answer_stage in batches of 4) gives the rows the nightly stages give
    when all users are scored in one batch (retrieve -> best tool -> answer -> ranked -> table_rows). The HTTP
    test (tests/jobs/test_serve.py) compares with jobs/score.py's published table."""
    cfg, bundle, catalogue, version = setup
    users = bundle.dataset.users.sort_values("user_idx")
    requests = retrieve_candidates(bundle, gather(bundle.everything, users["user_idx"].to_numpy(), bundle.tonight_eh))
    result = answer(bundle, requests, score_tools(bundle, requests))
    items, scores = ranked(result, requests.candidates, K)
    nightly = table_rows(users["user_id"].to_numpy(), items, scores, result.route, result.risk, requests.eh,
                         result.confidence, result.tools_consulted, result.rationale, bundle.item_ids, version,
                         dt.date(2026, 11, 22)).to_pandas()

    batch = {"user_id": users["user_id"].to_numpy().astype(str)}
    finished, pending = {}, []
    for user_id in batch["user_id"]:
        out = tools_stage(bundle, resolve(RecommendRequest(user_id=user_id, k=K), catalogue, cfg), version)
        if isinstance(out, Pending):
            pending.append(out)
        else:
            finished[user_id] = out
    for start in range(0, len(pending), 4):
        for out in answer_stage(bundle, pending[start:start + 4], version):
            finished[out["user_id"]] = out
    routes = {r["route"] for r in finished.values()}
    assert {"tool", "vlm+tools"} <= routes, f"thresholds should exercise both routes, got {routes}"
    assert pending and all(p.requests.candidates.shape == (1, 30) for p in pending)

    for user_id, rows in nightly.groupby("user_id"):
        online = finished[user_id]
        rows = rows.sort_values("rank")
        assert [i["item_id"] for i in online["items"]] == rows["item_id"].tolist(), user_id
        np.testing.assert_allclose([i["score"] for i in online["items"]], rows["score"], rtol=1e-5, atol=1e-5)
        first = rows.iloc[0]
        assert (online["route"], online["risk"], online["rationale"]) == (first["route"], first["risk"],
                                                                         first["rationale"])
        assert online["tools_consulted"] == list(first["tools_consulted"])
        assert online["model_version"] == first["model_version"] == version
        assert online["evidence_horizon"] == pytest.approx(first["evidence_horizon"], abs=1e-6)


def test_ctr_tool_choice(tmp_path, serve_world):
    assert choose_ctr_tool(serve_world.tools_dir, "xdeepfm") == "xdeepfm"   # a named tool is taken as given
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        choose_ctr_tool(str(tmp_path), "auto")
    for name in ("dlrm", "dcnv2+v"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tool.json").write_text("{}")
    rows = [{"tool": "sasrec", "task": "sequential"}, {"tool": "xdeepfm", "task": "ctr", "AUC": 0.9},
            {"tool": "dcnv2+V", "task": "ctr", "AUC": 0.8}, {"tool": "dlrm", "task": "ctr", "AUC": 0.7}]
    (tmp_path / "metrics.json").write_text(json.dumps({"rows": rows}))
    # xdeepfm has the best AUC but no trained folder here; the metrics row "dcnv2+V" lives in "dcnv2+v".
    assert choose_ctr_tool(str(tmp_path), "auto") == "dcnv2+v"

    into = str(tmp_path / "fetched")
    assert load_ctr_tool(serve_world.tools_dir, CTR_TOOL, into).task == "ctr"
    with pytest.raises(ValueError, match="ctr_tool 'sasrec' is a sequential tool, not a ctr tool"):
        load_ctr_tool(serve_world.tools_dir, "sasrec", into)
    with pytest.raises(FileNotFoundError, match="no trained tool 'dlrm'"):
        load_ctr_tool(serve_world.tools_dir, "dlrm", into)


def test_ctr_probabilities_known_and_unknown(setup, serve_world):
    _, bundle, _, _ = setup
    tool = load_tool(f"{serve_world.tools_dir}/{CTR_TOOL}")
    items = np.array([3, 10, 42])
    history = bundle.everything.items[bundle.everything.offsets[7]:bundle.everything.offsets[8]]
    logits = tool.score(Queries(np.array([7]), pad_histories([history], tool.cfg.max_len)), items[None])[0]
    known = ctr_probabilities(bundle, tool, 7, items, sample=16)
    np.testing.assert_allclose(known, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6)
    everyone = ctr_probabilities(bundle, tool, -1, items, sample=10_000)   # the sample is capped at every user
    per_user = [ctr_probabilities(bundle, tool, u, items, sample=1) for u in range(bundle.dataset.n_users)]
    np.testing.assert_allclose(everyone, np.mean(per_user, axis=0), rtol=1e-5)
    assert ((0 < everyone) & (everyone < 1)).all()
    with pytest.raises(ValueError, match="not a ctr tool"):
        ctr_probabilities(bundle, bundle.tools["sasrec"], 7, items, sample=4)


def test_explanation_prompt(setup):
    _, bundle, _, _ = setup
    known = explain_instruction(bundle, 5, 12)
    assert known.task == "explanation" and "<item_12>" in known.prompt
    assert f"{bundle.tonight_eh[5]:.2f}" in known.prompt and known.thought.startswith(f"EH: {bundle.tonight_eh[5]:.2f}")
    last = int(bundle.everything.items[bundle.everything.offsets[6] - 1])
    assert f"<item_{last}>" in known.prompt   # the user's most recent item is in the history slot
    stranger = explain_instruction(bundle, -1, 12)
    assert "none yet" in stranger.prompt and "1.00" in stranger.prompt and stranger.image_items == []
    for ins in (known, stranger):   # rendered by the one renderer, from slots that say what each holds
        assert ins.prompt == render("explanation", ins.template_id, ins.slots)
        assert ins.slots.item == bundle.item_text.item(12) and ins.slots.tool_outputs == ""
    assert stranger.slots.history == EMPTY_HISTORY and stranger.slots.eh == "1.00"
    text = explain(bundle, 5, 12, max_new_tokens=4)
    assert isinstance(text, str)


def test_a_known_user_with_a_given_history(setup):
    """The session's history replaces tonight's; EH stays the user's tonight's C(u)."""
    cfg, bundle, catalogue, version = setup
    history = [str(i) for i in catalogue.item_ids[[5, 9, 14]]]
    resolved = resolve(RecommendRequest(user_id="user_0000004", history=history, k=K), catalogue, cfg)
    requests = known_requests(bundle, resolved)
    assert requests.history(0).tolist() == [5, 9, 14] and requests.eh[0] == bundle.tonight_eh[4]
    out = tools_stage(bundle, resolved, version)
    out = answer_stage(bundle, [out], version)[0] if isinstance(out, Pending) else out
    assert len(out["items"]) == K and not {i["item_id"] for i in out["items"]} & set(history)
    assert out["evidence_horizon"] == pytest.approx(bundle.tonight_eh[4]) and not out["cold_start"]
