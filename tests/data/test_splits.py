"""Splits: the right rows in each part, nothing lost or duplicated, seeded per user, stored round-trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reasonrec.data.errors import DataFormatError
from reasonrec.data.schema import Dataset, write_dataset
from reasonrec.data.splits import (SPLIT_PARTS, leave_one_out, load_split, random_split, temporal_split,
                                   write_split)


def make_dataset(root, rows: list[tuple[str, str, int]], *, n_items: int | None = None,
                 timestamp_kind: str = "unix", name: str = "tiny") -> Dataset:
    """A Dataset from (user_id, item_id, timestamp) rows in source order; items 'i00'.. plus any named."""
    item_ids = sorted({item for _, item, _ in rows} | {f"i{k:02d}" for k in range(n_items or 0)})
    items = pd.DataFrame({"item_id": item_ids, "title": item_ids, "text": "", "image_uri": None,
                          "image_status": "none", "image_format": None})
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    write_dataset(str(root), name=name, source="synthetic", timestamp_kind=timestamp_kind,
                  interactions=interactions, items=items)
    return Dataset.load(str(root))


def part_rows(split, part: str) -> list[tuple[str, str, int]]:
    frame = split.part(part)
    return list(zip(frame["user_id"], frame["item_id"], frame["timestamp"]))


def assert_partition(ds: Dataset, split) -> None:
    """train + valid + test is exactly the dataset: no interaction lost or duplicated."""
    together = pd.concat([split.part(p) for p in SPLIT_PARTS], ignore_index=True)
    key = ["user_idx", "timestamp", "item_idx"]
    pd.testing.assert_frame_equal(together.sort_values(key, kind="stable").reset_index(drop=True),
                                  ds.interactions.sort_values(key, kind="stable").reset_index(drop=True))
    assert sum(len(split.part(p)) for p in SPLIT_PARTS) == len(ds.interactions)


def test_leave_one_out_picks_last_two_and_breaks_ties_by_stored_order(tmp_path):
    rows = [
        # user a, source order: i03@20 listed before i02@20 and i04@20 -> canonical i01, i03, i02, i04
        ("a", "i03", 20), ("a", "i01", 10), ("a", "i02", 20), ("a", "i04", 20),
        ("b", "i05", 5), ("b", "i06", 6),               # too short: all train
        ("c", "i07", 3), ("c", "i08", 1), ("c", "i09", 2),  # exactly 3: one per part
    ]
    ds = make_dataset(tmp_path / "ds", rows)
    split = leave_one_out(ds)
    assert part_rows(split, "test") == [("a", "i04", 20), ("c", "i07", 3)]
    assert part_rows(split, "valid") == [("a", "i02", 20), ("c", "i09", 2)]
    assert part_rows(split, "train") == [("a", "i01", 10), ("a", "i03", 20), ("b", "i05", 5), ("b", "i06", 6),
                                         ("c", "i08", 1)]
    assert split.stats["users_too_short"] == 1
    assert split.stats["test_users"] == 2 and split.stats["train_users"] == 3
    assert list(split.train.columns) == list(ds.interactions.columns)
    assert_partition(ds, split)


def test_temporal_split_boundaries(tmp_path):
    # 10 interactions at t = 1..10 over two users; t_valid is the 8th (0-based) in time order, t_test the 9th
    rows = [("a", f"i{t:02d}", t) for t in (1, 3, 5, 7, 9)] + [("b", f"i{t:02d}", t) for t in (2, 4, 6, 8, 10)]
    ds = make_dataset(tmp_path / "ds", rows)
    split = temporal_split(ds, 0.8, 0.9)
    assert (split.params["t_valid"], split.params["t_test"]) == (9, 10)
    assert sorted(split.train["timestamp"]) == list(range(1, 9))
    assert list(split.valid["timestamp"]) == [9] and list(split.test["timestamp"]) == [10]
    assert_partition(ds, split)


def test_temporal_split_ties_go_to_later_part_and_cold_users_are_counted(tmp_path):
    rows = [("a", "i00", 1), ("a", "i01", 2), ("a", "i02", 3), ("b", "i03", 3), ("b", "i04", 4),
            ("c", "i05", 5)]  # c only appears after the test cut-off
    ds = make_dataset(tmp_path / "ds", rows)
    split = temporal_split(ds, 0.5, 0.8)  # floor(0.5*6)=3 -> t_valid=3; floor(0.8*6)=4 -> t_test=4
    assert (split.params["t_valid"], split.params["t_test"]) == (3, 4)
    assert sorted(split.train["timestamp"]) == [1, 2]
    assert sorted(split.valid["timestamp"]) == [3, 3]   # the tie at the cut-off stays together
    assert sorted(split.test["timestamp"]) == [4, 5]
    assert split.stats["test_users_without_train"] == 2  # b and c
    assert split.stats["valid_users_without_train"] == 1  # b
    assert_partition(ds, split)


def test_temporal_split_refuses_ordinal_and_bad_quantiles(tmp_path):
    ds = make_dataset(tmp_path / "ds", [("a", "i00", 0), ("a", "i01", 1), ("a", "i02", 2)],
                      timestamp_kind="ordinal")
    with pytest.raises(ValueError, match="ordinal"):
        temporal_split(ds)
    unix = make_dataset(tmp_path / "unix", [("a", "i00", 0), ("a", "i01", 1), ("a", "i02", 2)])
    with pytest.raises(ValueError, match="valid_quantile"):
        temporal_split(unix, 0.9, 0.8)


def _random_rows(n_per_user: dict[str, int]) -> list[tuple[str, str, int]]:
    return [(user, f"i{k:02d}", 100 + k) for user, n in n_per_user.items() for k in range(n)]


def test_random_split_ratios_and_train_never_empty(tmp_path):
    sizes = {"ten": 10, "twenty": 20, "one": 1, "two": 2, "three": 3,
             **{f"u{k:03d}": 5 + k % 13 for k in range(200)}}
    ds = make_dataset(tmp_path / "ds", _random_rows(sizes), n_items=20)
    split = random_split(ds, (0.8, 0.1, 0.1), seed=7)
    assert_partition(ds, split)
    per_part = {p: split.part(p)["user_id"].value_counts() for p in SPLIT_PARTS}
    # n * 0.1 is a whole number for 10 and 20: no rounding, exact 8:1:1
    assert [per_part[p].get("ten", 0) for p in SPLIT_PARTS] == [8, 1, 1]
    assert [per_part[p].get("twenty", 0) for p in SPLIT_PARTS] == [16, 2, 2]
    assert set(per_part["train"].index) == set(sizes)  # every user keeps at least one train interaction
    assert per_part["train"]["one"] == 1
    # stochastic rounding keeps the data-set-wide ratio close to 8:1:1 although most users have < 10
    total = len(ds.interactions)
    assert abs(len(split.valid) / total - 0.1) < 0.02 and abs(len(split.test) / total - 0.1) < 0.02
    # every part keeps the canonical (user, timestamp) order
    for p in SPLIT_PARTS:
        frame = split.part(p)
        assert frame.equals(frame.sort_values(["user_idx", "timestamp"], kind="stable"))


def test_random_split_is_seeded_per_user(tmp_path):
    sizes = {"m": 20, "p": 20, "q": 15}
    ds = make_dataset(tmp_path / "ds", _random_rows(sizes), n_items=20)
    first, again = random_split(ds, seed=1), random_split(ds, seed=1)
    other_seed = random_split(ds, seed=2)
    for p in SPLIT_PARTS:
        assert part_rows(first, p) == part_rows(again, p)
    assert any(part_rows(first, p) != part_rows(other_seed, p) for p in ("valid", "test"))

    # a new user whose id sorts first shifts every user_idx; existing users' splits must not move
    grown = make_dataset(tmp_path / "grown", _random_rows({"a_new": 12, **sizes}), n_items=20)
    grown_split = random_split(grown, seed=1)
    assert grown.users.set_index("user_id").loc["m", "user_idx"] != ds.users.set_index("user_id").loc["m",
                                                                                                     "user_idx"]
    for p in SPLIT_PARTS:
        assert part_rows(first, p) == [r for r in part_rows(grown_split, p) if r[0] != "a_new"]


def test_random_split_rejects_bad_ratios(tmp_path):
    ds = make_dataset(tmp_path / "ds", _random_rows({"a": 5}))
    for ratios in ((0.5, 0.3, 0.3), (0.0, 0.5, 0.5), (0.9, 0.1)):
        with pytest.raises(ValueError, match="ratios"):
            random_split(ds, ratios, seed=0)


def test_write_and_load_split_round_trip(tmp_path):
    ds = make_dataset(tmp_path / "ds", _random_rows({"a": 6, "b": 4, "c": 2}))
    split = leave_one_out(ds)
    folder = write_split(split, str(tmp_path / "splits"))
    assert sorted(p.name for p in (tmp_path / "splits" / "loo").iterdir()) == [
        "split.json", "test.parquet", "train.parquet", "valid.parquet"]
    assert folder.endswith("/loo")
    loaded = load_split(str(tmp_path / "splits"), "loo")
    assert (loaded.name, loaded.stats, loaded.params) == (split.name, split.stats, split.params)
    for p in SPLIT_PARTS:
        pd.testing.assert_frame_equal(loaded.part(p), split.part(p))
    with pytest.raises(DataFormatError, match="split.json"):
        load_split(str(tmp_path / "splits"), "temporal")


def test_unsorted_interactions_are_refused(tmp_path):
    ds = make_dataset(tmp_path / "ds", _random_rows({"a": 3, "b": 3}))
    ds.interactions = ds.interactions.iloc[::-1].reset_index(drop=True)
    with pytest.raises(DataFormatError, match="not sorted"):
        leave_one_out(ds)
    assert np.all(np.diff(Dataset.load(str(tmp_path / "ds")).interactions["user_idx"]) >= 0)
