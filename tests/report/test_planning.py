"""The routed answer read from the one pass (each row's outcome on the route the policy picks), and Tables
A9 / A7 built from hand-made outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.recommend.outcomes import Outcome, PartOutcomes
from reasonrec.report.planning import a7_rows, a9_rows
from reasonrec.router.config import RouterConfig

# tau_low 0.3 / tau_tool 0.3 / tau_conf 0.3 / tau_high 0.7 (RouterConfig defaults):
# row 0: EH 0.1, tool conf 0.9 -> tool; row 1: EH 0.5, VLM conf 0.8 -> vlm; row 2: EH 0.9 -> vlm+tools;
# row 3: EH 0.5, VLM conf 0.1 -> vlm+tools.
CFG = RouterConfig()


def outcome(rank, latency) -> Outcome:
    rank = np.asarray(rank)
    return Outcome(rank, 100 + rank, np.asarray(latency, dtype=float))


@pytest.fixture
def outcomes() -> PartOutcomes:
    return PartOutcomes(
        user_idx=np.arange(4), eh=np.array([0.1, 0.5, 0.9, 0.5]), targets=np.full(4, 100),
        tool_confidence=np.array([0.9, 0.1, 0.9, 0.9]), vlm_confidence=np.array([0.9, 0.8, 0.9, 0.1]),
        parse_ok=np.ones(4, dtype=bool), best_tool="sasrec",
        answers={"tool": outcome([0, 9, 9, 9], [0.01] * 4), "vlm": outcome([9, 1, 9, 9], [0.1] * 4),
                 "vlm+tools": outcome([9, 9, 2, 3], [0.3] * 4),
                 "select/learned": outcome([9, 9, 2, 3], [0.3] * 4),
                 "select/oracle": outcome([0, 0, 0, 9], [0.3] * 4)})


def test_routed_takes_each_rows_outcome_on_its_route(outcomes):
    routed, route = outcomes.routed(CFG)
    assert route.tolist() == ["tool", "vlm", "vlm+tools", "vlm+tools"]
    assert routed.rank.tolist() == [0, 1, 2, 3] and routed.top1.tolist() == [100, 101, 102, 103]
    assert routed.latency.tolist() == [0.01, 0.1, 0.3, 0.3]


def test_a9_rows(outcomes):
    rows = a9_rows(outcomes, {"routed": CFG})
    assert [r["answer"] for r in rows] == ["best tool alone (sasrec)", "VLM-only", "VLM+tools always", "routed"]
    assert rows[0]["HR@5"] == 0.25 and rows[3]["HR@5"] == 1.0
    assert rows[3]["NDCG@5"] == pytest.approx(np.mean([1, 1 / np.log2(3), 1 / np.log2(4), 1 / np.log2(5)]))
    assert rows[3]["seconds_per_user"] == pytest.approx(0.71 / 4)
    assert rows[3]["route_shares"] == {"tool": 0.25, "vlm": 0.25, "vlm+tools": 0.5}
    assert "route_shares" not in rows[1]


def test_a7_swaps_the_consulting_rows_only(outcomes):
    rows = {r["selection"]: r for r in a7_rows(outcomes, CFG)}
    assert set(rows) == {"learned", "oracle"}
    assert rows["learned"]["routed_HR@5"] == 1.0 and rows["learned"]["always_HR@5"] == 0.5
    # oracle: rows 2 and 3 consult -> ranks 0 and 9; rows 0 and 1 keep tool 0 and vlm 1.
    assert rows["oracle"]["always_HR@5"] == 0.75 and rows["oracle"]["routed_HR@5"] == 0.75
    assert rows["oracle"]["consulting_users"] == 2
