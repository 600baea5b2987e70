"""RecBole atomic files: typed headers, optional item/user files, ordinal time when there is none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reasonrec.data.converters.clean import finalize
from reasonrec.data.converters.recbole import convert
from reasonrec.data.errors import DataFormatError, Quarantine


def _entries(quarantine: Quarantine) -> set[tuple]:
    return {(row.reason, os.path.basename(row.file), row.line, row.field)
            for rows in quarantine.examples.values() for row in rows}


def _tsv(path: Path, rows: list[str]) -> None:
    path.write_text("".join(row.replace("|", "\t") + "\n" for row in rows))


@pytest.fixture
def atomic(tmp_path: Path) -> Path:
    _tsv(tmp_path / "ml.inter", [
        "user_id:token|item_id:token|rating:float|timestamp:float",
        "1|10|5|978300760",            # 2
        "1|20|3.5|978302109.0",        # 3 float timestamps are RecBole's default type
        "2|10|x|978300000",            # 4 bad rating
        "2|20|4|",                     # 5 bad (empty) timestamp
        "2|30|4",                      # 6 wrong field count
        "3|10|4|978300001",            # 7
        "3|99|4|978300002",            # 8 item 99 not in ml.item
    ])
    _tsv(tmp_path / "ml.item", [
        "item_id:token|movie_title:token_seq|release_year:token|genre:token_seq",
        "10|Toy Story|1995|Animation Children's Comedy",
        "20|Heat|1995|Action Crime Thriller",
        "30|Sabrina|1995|",            # no genre: empty text, still a candidate
    ])
    _tsv(tmp_path / "ml.user", [
        "user_id:token|age:token|gender:token|occupation:token|zip_code:token",
        "1|24|M|technician|85711",
        "2|53|F||94043",               # user 2 has no valid interaction
        "3||||",                       # no profile fields at all
    ])
    return tmp_path


def test_atomic_files_rows_quarantine_and_accounting(atomic: Path) -> None:
    quarantine = Quarantine()
    raw = convert(str(atomic), None, quarantine)
    out = finalize(raw, quarantine, "recbole")
    assert _entries(quarantine) == {
        ("bad_rating", "ml.inter", 4, "rating"), ("bad_timestamp", "ml.inter", 5, "timestamp"),
        ("wrong_field_count", "ml.inter", 6, "timestamp:float"),  # the header field as written
        ("unknown_item", "ml.inter", 8, "item_id"),
        ("empty_history", "ml.user", 3, "user_id")}
    rows_read = raw.stats["files"][str(atomic / "ml.inter")]["rows_read"]
    assert rows_read == 7 == len(out.interactions) + 4

    assert raw.timestamp_kind == "unix"
    assert out.interactions[["user_id", "item_id", "rating", "timestamp"]].values.tolist() == [
        ["1", "10", 5.0, 978300760], ["1", "20", 3.5, 978302109], ["3", "10", 4.0, 978300001]]
    items = out.items.set_index("item_id")
    assert items["title"].to_dict() == {"10": "Toy Story", "20": "Heat", "30": "Sabrina"}
    assert items.loc["10", "text"] == "genre: Animation Children's Comedy"
    assert items.loc["30", "text"] == ""
    assert raw.stats["title_field"] == "movie_title" and raw.stats["text_fields"] == ["genre"]
    profiles = out.users.set_index("user_id")["profile"]
    assert profiles["1"] == "age: 24; gender: M; occupation: technician; zip_code: 85711"
    assert profiles.isna()["3"]


def test_without_timestamp_the_file_order_is_ordinal(tmp_path: Path) -> None:
    _tsv(tmp_path / "seq.inter", ["user_id:token|item_id:token", "b|1", "a|2", "b|3", "b|1", "a|4"])
    quarantine = Quarantine()
    raw = convert(str(tmp_path), None, quarantine)
    out = finalize(raw, quarantine, "recbole")
    assert raw.timestamp_kind == "ordinal" and quarantine.total == 0
    assert out.interactions[["user_id", "item_id", "timestamp"]].values.tolist() == [
        ["b", "1", 0], ["a", "2", 0], ["b", "3", 1], ["b", "1", 2], ["a", "4", 1]]
    # no .item file: the items are those the interactions name, titled by id
    assert out.items.set_index("item_id")["title"].to_dict() == {"1": "1", "2": "2", "3": "3", "4": "4"}
    assert "rating" not in out.interactions and out.users is None


def test_format_errors_name_file_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no \\*.inter file"):
        convert(str(tmp_path), None, Quarantine())
    _tsv(tmp_path / "a.inter", ["user_id:token|item_id:identifier", "1|2"])
    with pytest.raises(DataFormatError) as err:
        convert(str(tmp_path), None, Quarantine())
    assert (err.value.line, err.value.field) == (1, "item_id:identifier")
    _tsv(tmp_path / "a.inter", ["user_id:token|movie:token", "1|2"])
    with pytest.raises(DataFormatError) as err:
        convert(str(tmp_path), None, Quarantine())
    assert (os.path.basename(err.value.file), err.value.field) == ("a.inter", "item_id")
    renamed = convert(str(tmp_path), None, Quarantine(), item_field="movie")
    assert renamed.interactions["item_id"].tolist() == ["2"]
    _tsv(tmp_path / "b.inter", ["user_id:token|item_id:token", "1|2"])
    with pytest.raises(DataFormatError, match="several \\*.inter files"):
        convert(str(tmp_path), None, Quarantine())
    assert len(convert(str(tmp_path), None, Quarantine(), name="b").interactions) == 1
    with pytest.raises(DataFormatError, match="missing RecBole interaction file"):
        convert(str(tmp_path), None, Quarantine(), name="c")
