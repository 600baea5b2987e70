"""The router's dispatch on arrays with stand-in models (the VLMPasses protocol): no Bundle, no checkpoint, so
the routing rules are checked on their own; tests/recommend/test_stages.py runs it with the real models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from reasonrec.router.answer import ToolScores, answer_rows, answer_sources, ranked
from reasonrec.router.config import RouterConfig
from reasonrec.vlm.scoring import VLMOutput


@dataclass
class Rows:
    user_idx: np.ndarray
    eh: np.ndarray
    candidates: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.user_idx)

    def take(self, rows):
        return Rows(self.user_idx[rows], self.eh[rows], self.candidates[rows], self.targets[rows])


class StandInVLM:
    """Prefers the last candidate column of every row, with a stated confidence of 0.9; counts its passes."""

    pool, tool_names = ["best"], ["best"]

    def __init__(self, fail: bool = False, parsed: bool = True):
        self.fail, self.parsed, self.passes = fail, parsed, 0

    def instructions(self, rows):
        return [f"row {u}" for u in rows.user_idx]

    def score(self, instructions):
        self.passes += 1
        if self.fail:
            raise RuntimeError("out of memory")
        n, c = len(instructions), CANDIDATES.shape[1]
        scores = np.tile(np.arange(c, dtype=np.float64), (n, 1))
        return VLMOutput(scores, CANDIDATES[:n], np.full(n, 0.9), np.zeros((n, 5)), np.full(n, 0.5),
                         np.zeros((n, 2)), np.zeros(n), np.full(n, self.parsed), CANDIDATES[:n, -1])

    def score_tools(self, rows, names):
        raise AssertionError("no row here is high risk: the pool is never scored")


CANDIDATES = np.array([[10, 11, 12, 13]] * 4)
# The best tool prefers column 0 and is sure about it on every row (a steep score drop after the first item).
TOOL = ToolScores(["best"], np.tile(np.array([9.0, 1.0, 0.5, 0.1]), (4, 1))[:, None, :])
ROUTER = RouterConfig(tau_low=0.3, tau_high=0.95, tau_tool=0.0, tau_conf=0.5)


def rows(eh):
    return Rows(np.arange(4), np.asarray(eh, dtype=np.float64), CANDIDATES, np.full(4, -1))


def test_low_evidence_rows_go_to_the_tool_and_the_others_to_the_vlm():
    vlm = StandInVLM()
    out = answer_rows(ROUTER, rows([0.1, 0.2, 0.6, 0.7]), TOOL, "routed", vlm)
    assert out.route.tolist() == ["tool", "tool", "vlm", "vlm"] and vlm.passes == 1
    items, _ = ranked(out, CANDIDATES, 1)
    assert items[:, 0].tolist() == [10, 10, 13, 13]             # the tool's first column, the VLM's last
    assert out.rationale[0].endswith("best answered alone") and out.rationale[2].endswith("VLM answered alone")


def test_without_a_vlm_or_in_tools_mode_nothing_is_loaded():
    for vlm, mode in ((None, "routed"), (StandInVLM(fail=True), "tools")):
        out = answer_rows(ROUTER, rows([0.9] * 4), TOOL, mode, vlm)
        assert set(out.route) == {"tool"} and out.vlm_failures == 0
        assert vlm is None or vlm.passes == 0


def test_a_failing_vlm_leaves_its_rows_to_the_best_tool():
    out = answer_rows(ROUTER, rows([0.1, 0.6, 0.6, 0.6]), TOOL, "routed", StandInVLM(fail=True))
    assert out.route.tolist() == ["tool"] * 4 and out.vlm_failures == 3
    assert out.source.tolist() == ["tool", "tool_fallback", "tool_fallback", "tool_fallback"]
    assert "VLM failed (RuntimeError: out of memory); best answered" == out.rationale[1]
    np.testing.assert_array_equal(out.scores, TOOL.scores[:, 0])


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        answer_rows(ROUTER, rows([0.5] * 4), TOOL, "sometimes", StandInVLM())


def test_sources_say_whether_a_parsed_vlm_output_answered():
    routed = answer_rows(ROUTER, rows([0.1, 0.2, 0.6, 0.7]), TOOL, "routed", StandInVLM())
    assert answer_sources(routed.route, routed.source) == {"tool": {"tool": 1.0}, "vlm": {"vlm": 1.0}}
    # Forced onto the VLM alone, an unparsed first pass is kept, and its source says so (not "vlm").
    forced = answer_rows(ROUTER, rows([0.6] * 4), TOOL, "vlm", StandInVLM(parsed=False))
    assert forced.source.tolist() == ["vlm_unparsed"] * 4 and not forced.parse_ok.any()
    assert answer_sources(forced.route, forced.source) == {"vlm": {"vlm_unparsed": 1.0}}
    mixed = answer_sources(np.array(["vlm+tools"] * 4), np.array(["vlm", "tool_vote", "vlm", "vlm"]))
    assert mixed == {"vlm+tools": {"tool_vote": 0.25, "vlm": 0.75}}
