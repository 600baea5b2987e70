"""The outcomes loop (reasonrec.recommend.outcomes.collect) on the small world, as calibration runs it: every
validation row answered on every route, hits checked against a hand count; calibration's config checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from reasonrec.metrics.ranking import rank_of_target
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.calibration import (CalibrateConfig, fusion_examples, part_requests, split_eh,
                                             with_fusion)
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.outcomes import collect, target_columns
from reasonrec.recommend.stages import score_tools
from reasonrec.recommend.system import resolve, with_router
from reasonrec.router.fusion import fit_fusion
from reasonrec.router.policy import ROUTES

N_USERS = 24


@pytest.fixture(scope="module")
def setup(world):
    bundle = Bundle(resolve(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, policy="config",
                                            device="cpu")))
    requests = part_requests(world.data, "valid", max_users=N_USERS, seed=3)
    return bundle, requests, collect(bundle, requests, batch_size=10)   # 10 + 10 + 4 rows


def test_subset_is_seeded_and_targets_sit_in_every_list(world, setup):
    _, requests, _ = setup
    again = part_requests(world.data, "valid", max_users=N_USERS, seed=3)
    other = part_requests(world.data, "valid", max_users=N_USERS, seed=4)
    assert len(requests) == N_USERS and np.array_equal(requests.user_idx, again.user_idx)
    assert not np.array_equal(requests.user_idx, other.user_idx)
    assert np.all(np.diff(requests.user_idx) > 0)
    assert ((requests.candidates == requests.targets[:, None]).sum(axis=1) == 1).all()
    assert np.array_equal(requests.eh, split_eh(world.data)[requests.user_idx])
    assert len(part_requests(world.data, "valid")) == len(world.data.valid_candidates)


def test_shapes_and_values(setup):
    _, requests, out = setup
    n = len(requests)
    assert len(out) == n and np.array_equal(out.user_idx, requests.user_idx) and np.array_equal(out.eh, requests.eh)
    assert out.tool_names[0] == "sasrec" and set(out.tool_names) == {"sasrec", "bpr_mf"}
    for arr in (out.tool_confidence, out.vlm_confidence, out.parse_ok):
        assert arr.shape == (n,)
    assert np.isfinite(out.tool_confidence).all()
    hits = out.hits()
    for route in ROUTES:
        assert hits[route].shape == (n,) and set(np.unique(hits[route])) <= {0.0, 1.0}
        latency = out.answers[route].latency
        assert latency.shape == (n,) and (latency > 0).all()
        assert out.vlm_failures[route] == 0
        # The route each row took is recorded: the forced one (or the tool after a VLM failure: none here).
        assert set(out.answers[route].route) == {route}
    lat = out.mean_latency()
    # The VLM routes pay for the tools too; vlm+tools adds a second VLM pass to the first.
    assert lat["tool"] < lat["vlm"] and lat["tool"] < lat["vlm+tools"]
    assert out.hr5() == {r: pytest.approx(hits[r].mean()) for r in ROUTES}


def test_tool_route_hits_match_a_hand_count(setup):
    bundle, requests, out = setup
    best = score_tools(bundle, requests).scores[:, 0].astype(np.float64)
    expected = []
    for row in range(len(requests)):
        col = int(np.flatnonzero(requests.candidates[row] == requests.targets[row])[0])
        others = np.delete(best[row], col)
        expected.append(float((others >= best[row, col]).sum() < 5))   # pessimistic ties
    assert np.array_equal(out.hits()["tool"], np.array(expected))
    conf = score_tools(bundle, requests).confidence()[:, 0]
    np.testing.assert_allclose(out.tool_confidence, conf)


def test_rerun_is_deterministic(setup):
    bundle, requests, out = setup
    again = collect(bundle, requests, batch_size=10)
    for route in ROUTES:
        assert np.array_equal(out.answers[route].rank, again.answers[route].rank), route
    np.testing.assert_array_equal(out.tool_confidence, again.tool_confidence)
    np.testing.assert_array_equal(out.vlm_confidence, again.vlm_confidence)
    np.testing.assert_array_equal(out.parse_ok, again.parse_ok)


def test_hit_rules():
    candidates = np.array([[7, 8, 9, 10, 11, 12], [7, 8, 9, 10, 11, 12]])
    targets = np.array([12, 12])

    def hits(scores, targets=targets, user_idx=None):
        return list(rank_of_target(scores, target_columns(candidates, targets, user_idx)) < 5)

    tied = np.zeros((2, 6))                                   # every column ties with the target: rank 5
    assert hits(tied) == [False, False]
    padded = np.array([[-np.inf] * 5 + [0.0], [1, 2, 3, 4, 5, 0.0]])   # -inf never beats a finite target
    assert hits(padded) == [True, False]
    with pytest.raises(ValueError, match="user_idx 42: target item 99"):
        hits(tied, np.array([12, 99]), user_idx=np.array([41, 42]))


def test_collect_needs_targets(setup):
    bundle, requests, _ = setup
    tonight = requests.take(np.arange(2))
    tonight.targets[:] = -1
    with pytest.raises(ValueError, match="needs targets"):
        collect(bundle, tonight)


def test_one_live_mode_matches_the_forced_routes(setup):
    """The nightly check's form (one mode, no warm-up) runs the same loop: the tools mode alone gives the forced
    tool route's ranks row for row, and no VLM reading is invented for it."""
    bundle, requests, out = setup
    live = collect(bundle, requests, batch_size=10, modes=("tools",), warm_up=False)
    assert list(live.answers) == ["tool"]
    np.testing.assert_array_equal(live.answers["tool"].rank, out.answers["tool"].rank)
    assert np.isnan(live.vlm_confidence).all() and not live.parse_ok.any()


def test_config_checks(world):
    base = {"recommend": {"dataset": world.dataset, "vlm_dir": world.vlm_dir}}
    assert CalibrateConfig.model_validate(base).part == "valid"
    for bad, message in [({"part": "test"}, "valid"), ({"target": 1.5}, "delegation share"),
                         ({"objective": "latency_budget", "target": 0}, "latency budget"),
                         ({"tau_low": [0.2, 1.2]}, r"\[0, 1\]"), ({"tau_conf": []}, "at least one"),
                         ({"recommend": {"vlm_dir": None}}, "nothing to calibrate")]:
        with pytest.raises(ValueError, match=message):
            CalibrateConfig.model_validate({**base, **bad})


def _always_parsed(bundle: Bundle) -> Bundle:
    """The tiny test VLM rarely emits a well-formed refined answer; mark every read parsed (its scores kept) so
    the fusion path runs on every row."""
    score = bundle.scorer.score

    def parsed(instructions):
        out = score(instructions)
        return replace(out, parse_ok=np.ones(len(out.parse_ok), dtype=bool))

    bundle.scorer.score = parsed
    return bundle


def test_with_fusion_gives_the_answers_of_a_second_pass_with_the_weights(world):
    """Calibration scores each row once: the fusion weights are fit on the refine inputs that pass kept and the
    vlm+tools rows re-merged with them. That must equal answering again with the weights in the router."""
    system = resolve(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, policy="config", device="cpu"))
    requests = part_requests(world.data, "valid", max_users=N_USERS, seed=3)
    first = collect(_always_parsed(Bundle(system)), requests, batch_size=10, keep_refine_inputs=True)
    kept = first.refine_inputs
    assert np.array_equal(np.sort(kept.rows), np.arange(N_USERS)) and kept.names == ["sasrec", "bpr_mf"]
    examples = fusion_examples(first, requests)
    assert examples is not None and len(examples[0]) == N_USERS
    fusion = fit_fusion(*examples, 1.0)
    fused = with_fusion(first, requests, fusion)

    weighted = with_router(system, system.router.model_copy(update={"fusion": fusion}))
    again = collect(_always_parsed(Bundle(weighted)), requests, batch_size=10)
    for route in ROUTES:
        assert np.array_equal(fused.answers[route].rank, again.answers[route].rank), route
        assert np.array_equal(fused.answers[route].top1, again.answers[route].top1), route
    # Not vacuous: the weights moved some target, and only on the vlm+tools route.
    assert not np.array_equal(fused.answers["vlm+tools"].rank, first.answers["vlm+tools"].rank)
    assert np.array_equal(fused.answers["vlm"].rank, first.answers["vlm"].rank)


def test_with_fusion_needs_the_kept_inputs_and_nothing_parsed_fits_nothing(setup):
    _, requests, out = setup   # collected without keep_refine_inputs
    assert out.refine_inputs is None and fusion_examples(out, requests) is None
    with pytest.raises(ValueError, match="keep_refine_inputs"):
        with_fusion(out, requests, None)


def _counted(bundle: Bundle) -> list[int]:
    """Count the instructions each VLM scoring call receives (one entry per call)."""
    score, calls = bundle.scorer.score, []

    def counted(instructions):
        calls.append(len(instructions))
        return score(instructions)

    bundle.scorer.score = counted
    return calls


def test_the_first_pass_is_scored_once_per_batch_and_changes_no_outcome(world):
    """The forced VLM routes and the consult modes share one first VLM pass per batch: every outcome (rank, top-1,
    route, source, the VLM's confidence and parse) equals the loop where each scores its own, with 4 scoring
    calls per batch instead of 7 (vlm: 1; vlm+tools and two extra consult modes: a refine pass each)."""
    system = resolve(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, policy="config", device="cpu"))
    requests = part_requests(world.data, "valid", max_users=N_USERS, seed=3)
    selections = ("learned", "random", "oracle")
    runs = {}
    for share in (True, False):
        bundle = Bundle(system)
        calls = _counted(bundle)
        runs[share] = collect(bundle, requests, batch_size=10, selections=selections, warm_up=False,
                              share_first_pass=share), calls
    (shared, shared_calls), (own, own_calls) = runs[True], runs[False]
    batches = 3   # 10 + 10 + 4 rows
    assert len(shared_calls) == 4 * batches and len(own_calls) == 7 * batches
    assert sum(shared_calls) == 4 * N_USERS and sum(own_calls) == 7 * N_USERS
    assert set(shared.answers) == set(own.answers) == {"tool", "vlm", "vlm+tools", "select/learned",
                                                       "select/random", "select/oracle"}
    for name, got in shared.answers.items():
        for field_name in ("rank", "top1", "route", "source"):
            np.testing.assert_array_equal(getattr(got, field_name), getattr(own.answers[name], field_name),
                                          err_msg=f"{name}.{field_name}")
        assert (got.latency > 0).all(), name
    np.testing.assert_array_equal(shared.vlm_confidence, own.vlm_confidence)
    np.testing.assert_array_equal(shared.parse_ok, own.parse_ok)
    # Each route is still charged the shared pass: vlm+tools costs more than vlm alone on every row.
    assert (shared.answers["vlm+tools"].latency > shared.answers["vlm"].latency).all()


def test_a_shared_first_pass_is_refused_where_it_would_not_cover_the_route(setup):
    from reasonrec.recommend.stages import answer, vlm_first_pass

    bundle, requests, _ = setup
    rows = requests.take(np.arange(4))
    tools = score_tools(bundle, rows)
    passed = vlm_first_pass(bundle, rows)
    assert len(passed.instructions) == 4 and passed.seconds > 0
    with pytest.raises(ValueError, match="forced VLM routes"):
        answer(bundle, rows, tools, "routed", shared_first=passed)
    with pytest.raises(ValueError, match="3 requests"):
        answer(bundle, rows.take(np.arange(3)), score_tools(bundle, rows.take(np.arange(3))), "vlm",
               shared_first=passed)
