"""EH groups (equal sizes, group 1 = coldest) and their Coldest / Medium / Normal aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.report.cold_start import cold_start_rows, eh_groups


def test_groups_have_equal_sizes_and_group_one_is_the_highest_eh():
    eh = np.linspace(0.0, 0.95, 20)[::-1].copy()       # row 0 has the highest EH
    groups = eh_groups(eh)
    assert np.bincount(groups, minlength=11)[1:].tolist() == [2] * 10
    assert groups[:2].tolist() == [1, 1] and groups[-2:].tolist() == [10, 10]
    shuffled = np.random.default_rng(0).permutation(20)
    assert (eh_groups(eh[shuffled]) == groups[shuffled]).all()   # by value, not by row position


def test_nan_eh_is_coldest_and_ties_keep_row_order():
    eh = np.array([0.5] * 9 + [np.nan])
    groups = eh_groups(eh)
    assert groups[9] == 1                               # unknown evidence: the coldest group
    assert groups[:9].tolist() == list(range(2, 11))    # equal EH: split by row order, still 1 per group


def test_aggregates_hits_and_route_shares():
    eh = np.arange(30, dtype=float)[::-1].copy()        # rows 0-8 Coldest (groups 1-3), 9-20 Medium, 21-29 Normal
    tool_hit = np.r_[np.zeros(9), np.ones(12), np.ones(9)]
    model_hit = np.r_[np.ones(9), np.zeros(21)]
    route = np.array(["vlm+tools"] * 9 + ["vlm"] * 6 + ["tool"] * 6 + ["tool"] * 9)
    out = cold_start_rows(eh, {"sasrec": tool_hit, "ReasonRec": model_hit}, route)
    assert [g["users"] for g in out["groups"]] == [3] * 10
    coldest, medium, normal = out["aggregates"]
    assert (coldest["group"], coldest["users"], medium["users"], normal["users"]) == ("Coldest", 9, 12, 9)
    assert coldest["HR@5/sasrec"] == 0.0 and coldest["HR@5/ReasonRec"] == 1.0
    assert coldest["consulted"] == 1.0 and coldest["delegated"] == 0.0
    assert medium["delegated"] == pytest.approx(0.5) and medium["consulted"] == 0.0
    assert normal["delegated"] == 1.0 and (normal["eh_min"], normal["eh_max"]) == (0.0, 8.0)
    assert (coldest["eh_min"], coldest["eh_max"]) == (21.0, 29.0)
