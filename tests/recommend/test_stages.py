"""The recommendation stages on the small world: candidates, tool scores, each routing decision, the refine
pass, malformed VLM output, a failing VLM, and the table rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from reasonrec.data.evidence import evidence_horizon
from reasonrec.data.splits import Split
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.system import model_version, resolve
from reasonrec.recommend.system import with_router as replace_router
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.requests import gather, split_requests
from reasonrec.recommend.stages import answer, ranked, retrieve_candidates, score_tools
from reasonrec.recommend.table import TABLE_SCHEMA, table_rows
from reasonrec.router.config import RouterConfig
from reasonrec.vlm.instructions import read_split_evidence

USERS = np.arange(12)


@pytest.fixture(scope="module")
def bundle(world) -> Bundle:
    return Bundle(resolve(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, policy="config",
                                          n_candidates=30)))


@pytest.fixture(scope="module")
def tonight(bundle):
    requests = retrieve_candidates(bundle, gather(bundle.everything, USERS, bundle.tonight_eh))
    return requests, score_tools(bundle, requests, list(bundle.tools))


def with_router(bundle: Bundle, **thresholds) -> Bundle:
    """The same loaded bundle with other thresholds (the router is read per call)."""
    bundle.system = replace_router(bundle.system, RouterConfig(**thresholds))
    return bundle


def test_candidates_are_unseen_distinct_and_seeded(bundle, tonight):
    requests, _ = tonight
    assert requests.candidates.shape == (len(USERS), 30)
    for row in range(len(USERS)):
        cands = requests.candidates[row]
        assert (cands >= 0).all() and len(set(cands.tolist())) == 30
        assert not set(cands.tolist()) & set(requests.history(row).tolist())
    again = retrieve_candidates(bundle, gather(bundle.everything, USERS, bundle.tonight_eh))
    np.testing.assert_array_equal(again.candidates, requests.candidates)


def test_tonight_eh_is_computed_on_every_interaction(bundle, world):
    ds = bundle.dataset
    empty = ds.interactions.iloc[:0]
    split = Split("all", ds.interactions, empty, empty, {"n_users": ds.n_users, "n_items": ds.n_items})
    np.testing.assert_allclose(bundle.tonight_eh, evidence_horizon(ds, split)["evidence_horizon"])
    # Not the split's (train-part) EH: tonight counts the valid and test interactions too.
    split_eh = read_split_evidence(world.data).sort_values("user_idx")["evidence_horizon"].to_numpy()
    assert not np.allclose(bundle.tonight_eh, split_eh)


def test_tool_scores_best_tool_first_and_match_the_tool(bundle, tonight):
    requests, tools = tonight
    best_only = score_tools(bundle, requests)          # the default: what a tool-route row needs
    assert best_only.names == ["sasrec"]
    np.testing.assert_array_equal(best_only.scores[:, 0], tools.scores[:, 0])
    assert tools.names[0] == "sasrec" and set(tools.names) == {"sasrec", "bpr_mf"}
    assert tools.scores.shape == (len(USERS), 2, 30)
    from reasonrec.tools.data import Queries
    from reasonrec.vlm.tool_labels import pad_histories

    sasrec = bundle.tools["sasrec"]
    direct = sasrec.score(Queries(requests.user_idx, pad_histories(requests.histories(), sasrec.cfg.max_len)),
                          requests.candidates)
    np.testing.assert_allclose(tools.scores[:, 0], direct, rtol=1e-6)


def test_low_risk_rows_take_the_tool_route_and_never_reach_the_vlm(bundle, tonight, monkeypatch):
    requests, tools = tonight
    with_router(bundle, tau_low=1.0, tau_high=1.0, tau_tool=0.0)
    monkeypatch.setattr(type(bundle), "scorer", property(lambda self: pytest.fail("VLM called on tool rows")))
    result = answer(bundle, requests, tools)
    assert (result.route == "tool").all() and (result.risk == "low").all()
    np.testing.assert_allclose(result.scores, tools.scores[:, 0])
    assert all("sasrec answered alone" in line for line in result.rationale)


def test_thresholds_decide_at_their_inequalities(bundle, tonight):
    requests, tools = tonight
    tool_conf = tools.confidence()[:, 0]
    cut = float(np.sort(tool_conf)[len(tool_conf) // 2])   # a real value: rows exactly at it are sure enough
    with_router(bundle, tau_low=1.0, tau_high=1.0, tau_tool=cut, tau_conf=0.0)
    result = answer(bundle, requests, tools)
    np.testing.assert_array_equal(result.route == "tool", tool_conf >= cut)
    # The VLM is untrained: its outputs do not parse, so every VLM row is escalated and consults tools.
    vlm_rows = result.route != "tool"
    assert (result.route[vlm_rows] == "vlm+tools").all()


def test_malformed_vlm_output_consults_tools(bundle, tonight):
    requests, _ = tonight
    with_router(bundle, tau_low=0.0, tau_high=1.0, tau_conf=0.0, n_consult=2)   # nothing is high by EH or conf
    result = answer(bundle, requests, score_tools(bundle, requests))   # the pool is scored for high rows only
    assert not result.parse_ok.any()                      # untrained tiny VLM: malformed thoughts
    assert (result.route == "vlm+tools").all()
    assert all(names == ["sasrec", "bpr_mf"] for names in result.tools_consulted)
    assert all("VLM output malformed" in line and "consulted" in line for line in result.rationale)
    # The refined pass is malformed too, so the consulted tools' vote answers.
    assert (result.source == "tool_vote").all()


def test_a_parsed_confident_vlm_answers_alone(bundle, tonight, monkeypatch):
    """With a VLM whose output parses and is sure, medium rows take the vlm route and no tool is consulted."""
    requests, tools = tonight
    scorer = bundle.scorer
    real_score = scorer.score

    def parsed(instructions):
        out = real_score(instructions)
        out.parse_ok[:] = True
        out.confidence[:] = 0.9
        return out

    monkeypatch.setattr(scorer, "score", parsed)
    with_router(bundle, tau_low=0.0, tau_high=1.0, tau_conf=0.5)
    result = answer(bundle, requests, tools)
    assert (result.route == "vlm").all() and (result.source == "vlm").all()
    assert all(names == [] for names in result.tools_consulted)
    np.testing.assert_allclose(result.confidence, 0.9)


def test_a_failing_vlm_falls_back_to_the_tool_and_is_counted(bundle, tonight, monkeypatch):
    requests, tools = tonight

    def broken(instructions):
        raise RuntimeError("CUDA error: device-side assert")

    monkeypatch.setattr(bundle.scorer, "score", broken)
    with_router(bundle, tau_low=0.0)
    result = answer(bundle, requests, tools)
    assert result.vlm_failures == len(USERS)
    assert (result.route == "tool").all() and (result.source == "tool_fallback").all()
    np.testing.assert_allclose(result.scores, tools.scores[:, 0])
    assert all("VLM failed (RuntimeError" in line for line in result.rationale)


def test_forced_modes(bundle, tonight):
    requests, tools = tonight
    with_router(bundle)
    assert (answer(bundle, requests, tools, "tools").route == "tool").all()
    assert (answer(bundle, requests, tools, "vlm").route == "vlm").all()
    both = answer(bundle, requests, tools, "vlm+tools")
    assert (both.route == "vlm+tools").all() and all(len(names) == 2 for names in both.tools_consulted)
    assert all(line.startswith("forced route (vlm+tools mode)") for line in both.rationale)


def test_table_rows_rank_and_schema(bundle, tonight):
    requests, tools = tonight
    with_router(bundle, tau_low=1.0, tau_high=1.0, tau_tool=0.0)
    result = answer(bundle, requests, tools)
    items, scores = ranked(result, requests.candidates, 5)
    assert (np.diff(scores, axis=1) <= 0).all()
    table = table_rows(bundle.user_ids[requests.user_idx], items, scores, result.route, result.risk, requests.eh,
                       result.confidence, result.tools_consulted, result.rationale, bundle.item_ids, "v@1",
                       dt.date(2026, 11, 22))
    assert table.schema == TABLE_SCHEMA and table.num_rows == len(USERS) * 5
    frame = table.to_pandas()
    assert frame.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    # A user with fewer candidates than k gets fewer rows, never a padding item.
    items[0, 3:] = -1
    short = table_rows(bundle.user_ids[requests.user_idx], items, scores, result.route, result.risk, requests.eh,
                       result.confidence, result.tools_consulted, result.rationale, bundle.item_ids, "v@1",
                       dt.date(2026, 11, 22)).to_pandas()
    assert len(short) == len(USERS) * 5 - 2 and "-1" not in set(short["item_id"])


def test_split_requests_hold_their_targets(world):
    eh = read_split_evidence(world.data).sort_values("user_idx")["evidence_horizon"].to_numpy()
    for part, histories in [("valid", world.data.train), ("test", world.data.train_valid)]:
        requests = split_requests(world.data, part, eh)
        assert ((requests.candidates == requests.targets[:, None]).sum(axis=1) == 1).all()
        row = 3
        u = requests.user_idx[row]
        np.testing.assert_array_equal(requests.history(row), histories.items[histories.offsets[u]:histories.offsets[u + 1]])


def test_model_version_names_the_weights(world, tmp_path):
    cfg = RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir)
    version = model_version(cfg)
    assert version.startswith("vlm@") and len(version.split("@")[1]) == 12
    assert model_version(cfg) == version


def test_offline_vote_is_the_reports_majority_vote_on_the_same_lists(bundle, world):
    from reasonrec.metrics.ranking import rank_of_target, ranking_metrics
    from reasonrec.recommend.calibration import part_requests
    from reasonrec.recommend.evaluate import vote_metrics
    from reasonrec.recommend.outcomes import target_columns
    from reasonrec.tools.ensemble import MajorityVote

    requests = part_requests(world.data, "test", 60, seed=1)
    members = list(bundle.tools.values())
    queries = [world.data.queries(requests.user_idx, "train+valid", t.cfg.max_len) for t in members]
    scores = MajorityVote(members).score(queries, requests.candidates)
    expected = ranking_metrics(rank_of_target(scores, target_columns(requests.candidates, requests.targets)), (5, 10))
    got = vote_metrics(bundle, requests)
    for key in ("HR@5", "NDCG@5", "HR@10"):
        assert got[key] == pytest.approx(expected[key])
