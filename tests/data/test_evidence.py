"""Evidence horizon C(u) against hand-computed values, its monotonicity and ordinal mode; cold-start groups."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from reasonrec.data.evidence import (cold_start_groups, evidence_horizon, read_cold_start_groups, read_evidence,
                                     write_cold_start_groups, write_evidence)
from reasonrec.data.schema import Dataset
from reasonrec.data.splits import Split, leave_one_out, temporal_split
from tests.data.test_splits import make_dataset


def all_in_train(ds: Dataset) -> Split:
    """A split whose train part is the whole dataset, so n_train and t_last are what the rows say."""
    empty = ds.interactions.iloc[:0]
    return Split("all_train", ds.interactions, empty, empty, {"n_users": ds.n_users, "n_items": ds.n_items})


def history(user: str, n: int, last: int) -> list[tuple[str, str, int]]:
    """n interactions of `user` ending at time `last`, one time unit apart."""
    return [(user, f"i{k:02d}", last - n + 1 + k) for k in range(n)]


def by_user(frame: pd.DataFrame, ds: Dataset) -> pd.DataFrame:
    return frame.set_index(ds.users["user_id"].to_numpy())


def test_hand_computed_values_on_leave_one_out_train(tmp_path):
    # LOO train parts: a = [100] (1 item), b = [250, 300] (2), c = [..., 500] (4)
    rows = [("a", "i00", 100), ("a", "i01", 600), ("a", "i02", 700),
            ("b", "i00", 250), ("b", "i01", 300), ("b", "i02", 800), ("b", "i03", 900),
            ("c", "i00", 200), ("c", "i01", 300), ("c", "i02", 400), ("c", "i03", 500),
            ("c", "i04", 600), ("c", "i05", 700)]
    ds = make_dataset(tmp_path / "ds", rows)
    frame = by_user(evidence_horizon(ds, leave_one_out(ds)), ds)
    # n_ref = 0.95 quantile of [1, 2, 4] (linear) = 2 + 0.9 * (4 - 2) = 3.8
    # t_ref = 500, gaps = [400, 200, 0], tau = median = 200
    expected = {
        "a": 1 - (0.7 * math.log(2) / math.log(4.8) + 0.3 * math.exp(-2)),
        "b": 1 - (0.7 * math.log(3) / math.log(4.8) + 0.3 * math.exp(-1)),
        "c": 1 - (0.7 * 1.0 + 0.3 * 1.0),  # log(5) > log(4.8): count score capped at 1
    }
    for user, value in expected.items():
        assert frame.loc[user, "evidence_horizon"] == pytest.approx(value, abs=1e-12)
    assert frame["n_train"].tolist() == [1, 2, 4]
    params = frame.attrs["manifest"]["params"]
    assert (params["n_ref"], params["t_ref"], params["tau"]) == (pytest.approx(3.8), 500, 200.0)
    assert params["recency_used"] is True and params["computed_from"] == "train"
    assert frame["evidence_horizon"].dtype == np.float64


def test_more_interactions_lower_staler_higher_and_range(tmp_path):
    rows = (history("n1", 1, 1000) + history("n3", 3, 1000) + history("n6", 6, 1000) + history("n12", 12, 1000)
            + history("fresh", 4, 1000) + history("stale", 4, 400) + history("staler", 4, 10)
            + history("x_ref", 40, 1000))  # one heavy user so n_ref sits above the others
    ds = make_dataset(tmp_path / "ds", rows)
    frame = by_user(evidence_horizon(ds, all_in_train(ds), ref_quantile=1.0), ds)
    c = frame["evidence_horizon"]
    assert c["n1"] > c["n3"] > c["n6"] > c["n12"] > c["x_ref"]  # same last time, more evidence
    assert c["fresh"] < c["stale"] < c["staler"]                # same count, older evidence
    assert ((c >= 0) & (c <= 1)).all()
    assert c["x_ref"] == pytest.approx(0.0)  # most interactions and most recent: full support


def test_users_without_train_get_one(tmp_path):
    rows = history("a", 5, 50) + [("late", "i00", 100)]  # 'late' appears only after the test cut-off
    ds = make_dataset(tmp_path / "ds", rows)
    split = temporal_split(ds, 0.5, 0.8)
    frame = by_user(evidence_horizon(ds, split), ds)
    assert frame.loc["late", "n_train"] == 0 and frame.loc["late", "evidence_horizon"] == 1.0
    assert frame.attrs["manifest"]["stats"]["users_without_train"] == 1


def test_ordinal_mode_uses_count_only(tmp_path):
    rows = history("a", 2, 1) + history("b", 5, 4) + history("c", 9, 8)
    ordinal = make_dataset(tmp_path / "ord", rows, timestamp_kind="ordinal")
    frame = by_user(evidence_horizon(ordinal, all_in_train(ordinal), w_count=0.7, w_recency=0.3), ordinal)
    n_ref = np.quantile([2, 5, 9], 0.95)
    for user, n in (("a", 2), ("b", 5), ("c", 9)):
        expected = 1 - min(1.0, math.log1p(n) / math.log1p(n_ref))
        assert frame.loc[user, "evidence_horizon"] == pytest.approx(expected, abs=1e-12)
    assert frame["s_recency"].isna().all()
    params = frame.attrs["manifest"]["params"]
    assert params["recency_used"] is False and params["w_recency_used"] == 0.0 and "ordinal" in params["note"]
    # shifting a user's positions (meaningless for ordinal time) changes nothing
    shifted = make_dataset(tmp_path / "shift", history("a", 2, 500) + rows[2:], timestamp_kind="ordinal")
    again = evidence_horizon(shifted, all_in_train(shifted))
    assert np.array_equal(again["evidence_horizon"], frame["evidence_horizon"].to_numpy())


def test_bad_weights_are_refused(tmp_path):
    ds = make_dataset(tmp_path / "ds", history("a", 3, 10))
    with pytest.raises(ValueError, match="sum to 1"):
        evidence_horizon(ds, all_in_train(ds), w_count=0.7, w_recency=0.7)
    with pytest.raises(ValueError, match="ref_quantile"):
        evidence_horizon(ds, all_in_train(ds), ref_quantile=0.0)


def test_cold_start_groups_sizes_order_and_buckets(tmp_path):
    # 25 users; user k has (k % 7) + 1 interactions, so counts tie and ties break by user_idx
    rows = [r for k in range(25) for r in history(f"u{k:02d}", k % 7 + 1, 100)]
    ds = make_dataset(tmp_path / "ds", rows)
    groups = cold_start_groups(ds, all_in_train(ds))
    sizes = groups["group"].value_counts().sort_index()
    assert sizes.tolist() == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]  # 25 = 5 groups of 3 then 5 of 2
    order = groups.sort_values(["n_train", "user_idx"], kind="stable")
    assert order["group"].is_monotonic_increasing
    # the coldest group holds the first three users with a single interaction: u00, u07, u14
    assert groups.loc[groups["group"] == 1, "user_id"].tolist() == ["u00", "u07", "u14"]
    expected_bucket = {1: "Coldest", 3: "Coldest", 4: "Medium", 6: "Medium", 7: "Normal", 10: "Normal"}
    for group, bucket in expected_bucket.items():
        assert set(groups.loc[groups["group"] == group, "bucket"]) == {bucket}
    assert groups["n_train"].tolist() == [k % 7 + 1 for k in range(25)]


def test_writers_round_trip_with_parameters(tmp_path):
    ds = make_dataset(tmp_path / "ds", history("a", 4, 10) + history("b", 6, 20))
    split = leave_one_out(ds)
    frame = evidence_horizon(ds, split, w_count=0.6, w_recency=0.4)
    write_evidence(frame, str(tmp_path / "out" / "evidence.parquet"))
    loaded = read_evidence(str(tmp_path / "out" / "evidence.parquet"))
    pd.testing.assert_frame_equal(loaded, frame, check_dtype=False)
    assert loaded.attrs["manifest"]["params"]["w_count"] == 0.6
    assert (tmp_path / "out" / "evidence.json").is_file()
    groups = cold_start_groups(ds, split)
    write_cold_start_groups(groups, str(tmp_path / "out" / "groups.parquet"))
    assert read_cold_start_groups(str(tmp_path / "out" / "groups.parquet"))["bucket"].tolist() == \
        groups["bucket"].tolist()
