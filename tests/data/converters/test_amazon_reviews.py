"""Amazon review dumps: 2018 JSON and 2014 dict-literal lines, metadata, and the real All-Beauty file."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from reasonrec.data.converters.amazon_reviews import convert
from reasonrec.data.converters.clean import finalize
from reasonrec.data.errors import DataFormatError, Quarantine

GOOD = {"reviewerID": "U1", "asin": "A1", "overall": 5.0, "unixReviewTime": 1000, "reviewText": "great",
        "summary": "Five Stars", "verified": True}


def _gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    return path


def _entries(quarantine: Quarantine) -> set[tuple]:
    return {(row.reason, os.path.basename(row.file), row.line, row.field)
            for rows in quarantine.examples.values() for row in rows}


@pytest.fixture
def reviews(tmp_path: Path) -> Path:
    return _gz(tmp_path / "Toy_5.json.gz", [
        json.dumps(GOOD),                                                       # 1
        "{'reviewerID': 'U2', 'asin': 'A2', 'overall': 4.0, 'unixReviewTime': 2000, "
        "'reviewText': 'ok', 'summary': 'fine', 'helpful': [0, 0]}",            # 2 a 2014 dict literal
        "{broken",                                                              # 3
        json.dumps({k: v for k, v in GOOD.items() if k != "overall"}),          # 4 no rating
        json.dumps({**GOOD, "unixReviewTime": "soon"}),                         # 5
        json.dumps({k: v for k, v in GOOD.items() if k != "reviewerID"}),       # 6 no user
        json.dumps(GOOD),                                                       # 7 exact duplicate of 1
        json.dumps({**GOOD, "reviewText": "another review, same day"}),         # 8 a second event
        "",                                                                     # 9
        "[1, 2]",                                                               # 10 not an object
        json.dumps({"reviewerID": "U3", "asin": "A3", "overall": 1, "unixReviewTime": 3000}),  # 11 no text
    ])


def _plain(series: pd.Series) -> list:
    return [None if pd.isna(value) else value for value in series]


def test_reviews_rows_quarantine_and_accounting(reviews: Path) -> None:
    quarantine = Quarantine()
    raw = convert(str(reviews), None, quarantine)
    out = finalize(raw, quarantine, "reviews")
    assert _entries(quarantine) == {
        ("bad_record", "Toy_5.json.gz", 3, None), ("bad_rating", "Toy_5.json.gz", 4, "rating"),
        ("bad_timestamp", "Toy_5.json.gz", 5, "timestamp"), ("empty_id", "Toy_5.json.gz", 6, "user_id"),
        ("duplicate_event", "Toy_5.json.gz", 7, "user_id+item_id+timestamp+review"),
        ("blank_line", "Toy_5.json.gz", 9, None), ("bad_record", "Toy_5.json.gz", 10, None)}
    assert raw.stats["files"][str(reviews)]["rows_read"] == 11 == len(out.interactions) + quarantine.total

    assert out.interactions[["user_id", "item_id", "rating", "timestamp"]].values.tolist() == [
        ["U1", "A1", 5.0, 1000], ["U2", "A2", 4.0, 2000], ["U1", "A1", 5.0, 1000], ["U3", "A3", 1.0, 3000]]
    assert _plain(out.interactions["review"]) == ["great", "ok", "another review, same day", None]
    assert _plain(out.interactions["review_title"]) == ["Five Stars", "fine", "Five Stars", None]
    assert out.items.set_index("item_id")["title"].to_dict() == {"A1": "A1", "A2": "A2", "A3": "A3"}
    assert (out.items["text"] == "").all() and raw.timestamp_kind == "unix" and raw.users is None


@pytest.fixture
def meta(tmp_path: Path) -> Path:
    return _gz(tmp_path / "meta_Toy.json.gz", [
        json.dumps({"asin": "A1", "title": "Blue Soap", "category": ["Beauty", "Bath"],
                    "description": ["Gentle.", "Smells of pine."]}),
        "{'asin': 'A2', 'title': 'Old Cream', 'categories': [['Beauty', 'Skin'], ['Gifts']], "
        "'description': 'From 2014.'}",
        json.dumps({"asin": "A9", "title": "Nobody Reviewed Me"}),
        "not a record",                                                          # 4
    ])


def test_metadata_titles_text_and_unreviewed_items(reviews: Path, meta: Path) -> None:
    quarantine = Quarantine()
    out = finalize(convert(str(reviews), None, quarantine, meta=str(meta)), quarantine, "reviews")
    items = out.items.set_index("item_id")
    assert items["title"].to_dict() == {"A1": "Blue Soap", "A2": "Old Cream", "A3": "A3"}
    assert items.loc["A1", "text"] == "Category: Beauty > Bath. Description: Gentle. Smells of pine."
    assert items.loc["A2", "text"] == "Category: Beauty > Skin; Gifts. Description: From 2014."
    assert out.stats["meta_items_without_reviews"] == 1 and out.stats["items_without_metadata"] == 1
    assert ("bad_record", "meta_Toy.json.gz", 4, None) in _entries(quarantine)

    kept = convert(str(reviews), None, Quarantine(), meta=str(meta), keep_unreviewed_items="true")
    assert "A9" in set(kept.items["item_id"])


def test_folder_input_skips_metadata_and_errors_are_named(reviews: Path, meta: Path, tmp_path: Path) -> None:
    raw = convert(str(tmp_path), None, Quarantine())                 # meta_Toy.json.gz is not a review file
    assert list(raw.stats["files"]) == [str(reviews)]
    with pytest.raises(DataFormatError, match="not found"):
        convert(str(tmp_path / "absent.json.gz"), None, Quarantine())
    with pytest.raises(DataFormatError, match="missing Amazon metadata file"):
        convert(str(reviews), None, Quarantine(), meta=str(tmp_path / "meta_absent.json.gz"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no review files"):
        convert(str(empty), None, Quarantine())


@pytest.mark.real_data
def test_real_all_beauty_duplicates(shared_data: Path) -> None:
    file = shared_data / "amazon2018-all-beauty-5core" / "All_Beauty_5.json.gz"
    quarantine = Quarantine()
    out = finalize(convert(str(file), None, quarantine), quarantine, "all-beauty")
    assert out.stats["files"][str(file)]["rows_read"] == 5_269
    assert dict(quarantine.counts) == {"duplicate_event": 1_053}
    assert len(out.interactions) == 5_269 - 1_053
    assert (out.interactions["user_id"].nunique(), len(out.items)) == (991, 85)
    with gzip.open(file, "rt") as handle:
        records = [json.loads(line) for line in handle]
    first_seen = {}
    for record in records:
        key = (record["reviewerID"], record["asin"], record["unixReviewTime"], record.get("reviewText"))
        first_seen.setdefault(key, record)
    assert len(first_seen) == len(out.interactions)
    # the rows without review text are kept (review = missing), not dropped
    without_text = sum("reviewText" not in record for record in first_seen.values())
    assert without_text == out.interactions["review"].isna().sum() > 0
    assert out.interactions["rating"].isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    assert out.interactions["timestamp"].between(1095724800, 1535068800).all()   # 2004-09-21 .. 2018-08-24
