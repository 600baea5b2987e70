"""finalize: the shared cleaning rules, their quarantine entries and their counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.clean import finalize
from reasonrec.data.converters.reading import with_source
from reasonrec.data.errors import DataFormatError, Quarantine


def _items(ids: list, titles: list | None = None) -> pd.DataFrame:
    return pd.DataFrame({"item_id": pd.Series(ids, dtype=object), "title": titles or [f"T{i}" for i in ids],
                         "text": "", "image_uri": None, "image_status": "none", "image_format": None})


def _raw() -> RawDataset:
    interactions = with_source(pd.DataFrame({
        "user_id": ["u1", "u1", " u1 ", "", "u2", "u2", "u3", None, "u3"],
        "item_id": ["a", "b", "a", "a", "zzz", "b", "b", "a", "c"],
        "timestamp": [1, 2, 1, 5, 6, 7, 8, 9, 10],
        "rating": [5.0, 4.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0],
    }), "ratings.csv", range(2, 11))
    items = with_source(_items(["a", "b", "c", "d", "b", " "], ["A", "B", None, "D", "B2", "blank"]),
                        "items.csv", range(2, 8))
    users = with_source(pd.DataFrame({"user_id": ["u1", "u2", "u3", "u9", "u1"],
                                      "profile": ["p1", None, "p3", "p9", "again"]}), "users.csv", range(2, 7))
    return RawDataset(interactions, items, users, "unix", {"files": {"ratings.csv": {"rows_read": 9}}})


def _plain(series: pd.Series) -> list:
    """Values with every kind of missing (None, NaN: pandas 3 str columns use NaN) as None."""
    return [None if pd.isna(value) else value for value in series]


def _entries(quarantine: Quarantine) -> set[tuple]:
    return {(row.reason, row.file, row.line, row.field)
            for rows in quarantine.examples.values() for row in rows}


def test_rules_quarantine_with_file_line_and_field() -> None:
    quarantine = Quarantine()
    out = finalize(_raw(), quarantine, "toy")

    assert _entries(quarantine) == {
        ("empty_id", "items.csv", 7, "item_id"),
        ("duplicate_item", "items.csv", 6, "item_id"),
        ("empty_id", "ratings.csv", 5, "user_id"),
        ("empty_id", "ratings.csv", 9, "user_id"),
        ("unknown_item", "ratings.csv", 6, "item_id"),
        ("duplicate_event", "ratings.csv", 4, "user_id+item_id+timestamp"),   # ' u1 ' is u1 once stripped
        ("duplicate_user", "users.csv", 6, "user_id"),
        ("empty_history", "users.csv", 5, "user_id"),
    }
    assert quarantine.examples["duplicate_event"][0].value == "user_id=u1 item_id=a timestamp=1"
    # source order is kept and the first of a duplicate wins (rating 5.0, not 3.0)
    assert out.interactions[["user_id", "item_id", "rating"]].values.tolist() == [
        ["u1", "a", 5.0], ["u1", "b", 4.0], ["u2", "b", 3.0], ["u3", "b", 4.0], ["u3", "c", 1.0]]
    assert "_line" not in out.interactions and "_file" not in out.items and "_file" not in out.users
    assert out.interactions["timestamp"].dtype == np.int64

    assert out.items["item_id"].tolist() == ["a", "b", "c", "d"]        # d has no interactions: kept
    assert out.items.set_index("item_id")["title"].to_dict() == {"a": "A", "b": "B", "c": "c", "d": "D"}
    assert out.users["user_id"].tolist() == ["u1", "u2", "u3"]
    assert _plain(out.users["profile"]) == ["p1", None, "p3"]

    clean = out.stats["clean"]
    assert clean == {
        "interactions_in": 9, "items_in": 6, "users_in": 5, "empty_id": 3, "duplicate_item": 1,
        "items_titled_by_id": 1, "unknown_item": 1, "duplicate_event": 1, "duplicate_user": 1,
        "empty_history": 1, "users_without_profile": 1, "interactions_out": 5, "items_out": 4, "users_out": 3,
        "items_without_interactions": 1}
    assert out.stats["files"] == {"ratings.csv": {"rows_read": 9}} and out.stats["source"] == "toy"
    assert out.stats["items_by_image_status"] == {"ok": 0, "missing": 0, "corrupt": 0, "refused": 0, "none": 4}
    # every row read is either kept or quarantined (few rows here, so every entry is an example)
    set_aside = [row.file for rows in quarantine.examples.values() for row in rows]
    assert 9 == len(out.interactions) + set_aside.count("ratings.csv")
    assert 6 == len(out.items) + set_aside.count("items.csv")
    assert 5 == len(out.users) + set_aside.count("users.csv")


def test_same_day_different_reviews_are_two_events() -> None:
    interactions = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a"] * 4, "timestamp": [7] * 4,
                                 "review": ["good", "great", "good", None], "rating": [5.0, 4.0, 5.0, 1.0]})
    quarantine = Quarantine()
    out = finalize(RawDataset(interactions, _items(["a"]), None, "unix"), quarantine, "reviews")
    assert _plain(out.interactions["review"]) == ["good", "great", None]
    assert quarantine.counts["duplicate_event"] == 1
    assert quarantine.examples["duplicate_event"][0].file == "reviews"    # no _file column: the source name
    assert quarantine.examples["duplicate_event"][0].line is None
    assert out.users is None and "users_without_profile" not in out.stats["clean"]


def test_missing_columns_and_bad_timestamp_kind_are_errors() -> None:
    interactions = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "timestamp": [1]})
    with pytest.raises(DataFormatError, match="image_status"):
        finalize(RawDataset(interactions, _items(["a"]).drop(columns="image_status"), None, "unix"),
                 Quarantine(), "x")
    with pytest.raises(DataFormatError, match="timestamp"):
        finalize(RawDataset(interactions.drop(columns="timestamp"), _items(["a"]), None, "unix"),
                 Quarantine(), "x")
    with pytest.raises(DataFormatError, match="timestamp_kind"):
        finalize(RawDataset(interactions, _items(["a"]), None, "seconds"), Quarantine(), "x")
