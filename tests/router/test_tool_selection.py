"""Which tools a high-risk row consults: learned from the VLM's tool tokens, seeded random, oracle, fixed."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.router.config import RouterConfig
from reasonrec.router.tool_selection import (best_tool, best_tools_from_traces, consulted_names, fixed, learned,
                                             oracle, random_choice, select_tools)
from reasonrec.vlm.records import Instruction

NAMES = ["bpr_mf", "gru4rec", "lightgcn", "sasrec"]          # ToolOutputs column order
PROB_NAMES = ["sasrec", "gru4rec", "bpr_mf", "lightgcn"]     # the scorer's tool_names order (+ <tool_none>)


def test_learned_maps_columns_excludes_none_and_breaks_ties_low():
    probs = np.array([
        [0.30, 0.10, 0.05, 0.05, 0.50],   # <tool_none> is likeliest but never chosen: sasrec, gru4rec
        [0.00, 0.00, 0.40, 0.40, 0.20],   # bpr_mf == lightgcn: both (n=2)
        [0.25, 0.25, 0.25, 0.25, 0.00],   # four-way tie: the two lowest columns of NAMES
    ])
    mask = learned(probs, PROB_NAMES, NAMES, n_consult=2)
    assert consulted_names(mask, NAMES) == [["gru4rec", "sasrec"], ["bpr_mf", "lightgcn"], ["bpr_mf", "gru4rec"]]
    one = learned(probs, PROB_NAMES, NAMES, n_consult=1)
    assert consulted_names(one, NAMES) == [["sasrec"], ["bpr_mf"], ["bpr_mf"]]


def test_learned_never_picks_a_tool_the_vlm_has_no_token_for():
    probs = np.array([[0.9, 0.1]])  # the VLM knows only sasrec (+ <tool_none>)
    mask = learned(probs, ["sasrec"], NAMES, n_consult=2)
    assert consulted_names(mask, NAMES) == [["sasrec"]]
    with pytest.raises(ValueError, match="tool_probs must be"):
        learned(np.ones((1, 4)), PROB_NAMES, NAMES, 2)


def test_random_is_seeded_per_user_and_independent_of_the_batch():
    users = np.arange(3000)
    a = random_choice(users, NAMES, 2, seed=7, task="sequential")
    assert (a.sum(axis=1) == 2).all()
    shuffled = np.random.default_rng(0).permutation(users)
    b = random_choice(shuffled, NAMES, 2, seed=7, task="sequential")
    assert np.array_equal(b, a[shuffled])                   # a user's draw does not depend on its neighbours
    # Column order does not matter either: the hash is on the tool name.
    c = random_choice(users, NAMES[::-1], 2, seed=7, task="sequential")
    assert np.array_equal(c[:, ::-1], a)
    other_seed = random_choice(users, NAMES, 2, seed=8, task="sequential")
    assert 0.5 < (other_seed != a).any(axis=1).mean() < 0.95   # 5 of 6 pairs differ by chance
    # Every tool is drawn about half the time (2 of 4), every pair about 1/6 of the time.
    assert np.allclose(a.mean(axis=0), 0.5, atol=0.04)
    pairs = np.unique(a, axis=0, return_counts=True)[1] / len(users)
    assert len(pairs) == 6 and np.allclose(pairs, 1 / 6, atol=0.03)


def test_oracle_needs_targets_and_picks_usable_most_confident():
    usable = np.array([[True, False, True, True], [False, False, False, False], [False, True, False, False]])
    conf = np.array([[0.2, 0.9, 0.8, 0.5], [0.9, 0.9, 0.9, 0.9], [0.1, 0.0, 0.9, 0.9]])
    mask = oracle(usable, np.array([3, 4, 5]), 2, conf)
    assert consulted_names(mask, NAMES) == [["lightgcn", "sasrec"], [], ["gru4rec"]]
    with pytest.raises(ValueError, match="evaluation only"):
        oracle(usable, None, 2)
    with pytest.raises(ValueError, match="real target"):
        oracle(usable, np.array([3, -1, 5]), 2)


def test_fixed_takes_the_first_available_tools():
    mask = fixed(["sasrec", "two_tower", "bpr_mf", "gru4rec"], NAMES, 2, n_consult=2)
    assert consulted_names(mask, NAMES) == [["bpr_mf", "sasrec"]] * 2


def test_select_tools_dispatches_on_the_config():
    users = np.array([5, 6])
    probs = np.array([[0.1, 0.6, 0.2, 0.05, 0.05], [0.5, 0.1, 0.1, 0.2, 0.1]])
    learned_cfg = RouterConfig(n_consult=1)
    assert consulted_names(select_tools(learned_cfg, "sequential", NAMES, users, tool_probs=probs,
                                        prob_names=PROB_NAMES), NAMES) == [["gru4rec"], ["sasrec"]]
    with pytest.raises(ValueError, match="tool_probs"):
        select_tools(learned_cfg, "sequential", NAMES, users)
    fixed_cfg = RouterConfig(tool_selection="fixed")
    assert consulted_names(select_tools(fixed_cfg, "direct", NAMES, users), NAMES) == [["bpr_mf", "lightgcn"]] * 2
    assert not select_tools(fixed_cfg, "explanation", NAMES, users).any()
    random_cfg = RouterConfig(tool_selection="random", seed=3)
    assert np.array_equal(select_tools(random_cfg, "sequential", NAMES, users),
                          random_choice(users, NAMES, 2, 3, "sequential"))
    with pytest.raises(ValueError, match="evaluation only"):
        select_tools(RouterConfig(tool_selection="oracle"), "sequential", NAMES, users)


def _ins(task: str, usable: list[str]) -> Instruction:
    return Instruction(user_idx=0, task=task, template_id=0, evidence_horizon=0.5, image_items=[], prompt="",
                       thought="", answer="", usable_tools=usable)


def test_best_tool_from_config_and_from_traces():
    cfg = RouterConfig()
    assert best_tool(cfg, "sequential") == "sasrec" and best_tool(cfg, "explanation") is None
    traces = [_ins("sequential", ["sasrec", "gru4rec"]), _ins("sequential", ["gru4rec"]),
              _ins("direct", ["lightgcn", "bpr_mf"]), _ins("direct", []), _ins("ctr", [])]
    assert best_tools_from_traces(traces) == {"sequential": "gru4rec", "direct": "bpr_mf"}  # tie -> lower name
