"""The shared row reader: line numbers that survive quoting, and quarantine for badly shaped rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from reasonrec.data.converters.reading import (
    as_bool, is_in, labelled_text, ordinal_timestamps, parse_numbers, parse_ratings, parse_timestamps, read_table)
from reasonrec.data.errors import DataFormatError, Quarantine


def test_line_numbers_survive_multiline_quotes_bom_and_crlf(tmp_path: Path) -> None:
    file = tmp_path / "t.csv"
    file.write_bytes("\ufeffid,text\r\n1,\"two\r\nlines\"\r\n2,plain\r\n\r\n3,a,b\r\n4\r\n".encode())
    quarantine = Quarantine()
    frame, n_read = read_table(str(file), quarantine)
    assert frame.columns.tolist()[:2] == ["id", "text"]          # BOM stripped from the header
    assert frame["_line"].tolist() == [2, 4]
    assert frame["text"].tolist() == ["two\r\nlines", "plain"]
    assert n_read == 5 == len(frame) + quarantine.total
    got = [(row.reason, row.line, row.field) for rows in quarantine.examples.values() for row in rows]
    assert sorted(got, key=lambda r: r[1]) == [("blank_line", 5, None), ("wrong_field_count", 6, None),
                                               ("wrong_field_count", 7, "text")]


def test_header_problems_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataFormatError, match="empty file"):
        read_table(str(tmp_path / "empty.csv"), Quarantine())
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(DataFormatError, match="repeats") as err:
        read_table(str(tmp_path / "dup.csv"), Quarantine())
    assert err.value.field == "a"
    with pytest.raises(DataFormatError, match="missing input file"):
        read_table(str(tmp_path / "absent.csv"), Quarantine())


def test_undecodable_text_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "latin.csv"
    file.write_bytes("a,b\n1,x\n2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="not valid utf-8") as err:
        read_table(str(file), Quarantine())
    assert err.value.file == str(file)
    frame, _ = read_table(str(file), Quarantine(), encoding="latin-1")
    assert frame["b"].tolist() == ["x", "café"]


@pytest.mark.parametrize("quoted", [True, False])
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_undecodable_byte_is_reported_on_its_real_line_and_offset(tmp_path: Path, quoted: bool,
                                                                 suffix: str) -> None:
    """The decoder reads 8 KB ahead, so the byte on line 3000 used to be blamed on line 1."""
    good = "".join(f"{i},caf\u00e9 {i}\n" for i in range(1, 3000)).encode()
    data = b"a,b\n" + good + b"3000,bad \xff byte\n3001,after\n"
    file = tmp_path / f"t{suffix}"
    file.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    with pytest.raises(DataFormatError, match="not valid utf-8") as err:
        read_table(str(file), Quarantine(), delimiter=",", quoted=quoted)
    assert err.value.line == 3001 and err.value.file == str(file)
    bad = b"\xff"
    assert f"byte {bad!r} at byte offset {data.index(bad)} " in str(err.value)


def test_empty_header_only_and_unreadable_tables_are_errors(tmp_path: Path) -> None:
    (tmp_path / "header.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DataFormatError, match="no data rows after the header") as err:
        read_table(str(tmp_path / "header.csv"), Quarantine())
    assert (err.value.file, err.value.line) == (str(tmp_path / "header.csv"), 2)
    frame, n_read = read_table(str(tmp_path / "header.csv"), Quarantine(), allow_empty=True)
    assert frame.empty and n_read == 0 and "userId" in frame

    (tmp_path / "empty.dat").write_text("")
    with pytest.raises(DataFormatError, match="empty file"):
        read_table(str(tmp_path / "empty.dat"), Quarantine(), columns=["u", "i"], delimiter="::", quoted=False)

    (tmp_path / "tabs.dat").write_text("1\t2\n\n3\t4\n")  # the wrong delimiter: no line has two fields
    quarantine = Quarantine()
    with pytest.raises(DataFormatError, match="none of its 3 data lines has the 2 fields") as err:
        read_table(str(tmp_path / "tabs.dat"), quarantine, columns=["u", "i"], delimiter="::", quoted=False)
    assert err.value.line == 1 and "'::'" in str(err.value)
    assert dict(quarantine.counts) == {"wrong_field_count": 2, "blank_line": 1}  # counted before the error


def test_impossible_timestamps_and_unstorable_ratings_are_quarantined(tmp_path: Path) -> None:
    file = tmp_path / "t.csv"
    file.write_text("t,r\n0,1\n-1,2\n4102444799,3\n4102444800,4\n1600000000000,1e39\n1e30,5\n"
                    "1969-12-31T23:59:59,1\n2019-01-01,-1e38\n")
    frame, _ = read_table(str(file), Quarantine())
    quarantine = Quarantine()
    times = parse_timestamps(frame, "t", quarantine)
    assert times["t"].tolist() == [0, 4102444799, 1546300800]
    assert [(r.line, r.field, r.value) for r in quarantine.examples["timestamp_out_of_range"]] == [
        (3, "t", "-1"), (5, "t", "4102444800"), (6, "t", "1600000000000"), (7, "t", "1e30"),
        (8, "t", "1969-12-31T23:59:59")]
    assert quarantine.by_file == {str(file): {"timestamp_out_of_range": 5}}
    numeric_only = parse_timestamps(frame, "t", Quarantine(), dates=False)
    assert numeric_only["t"].tolist() == [0, 4102444799]
    quarantine = Quarantine()
    ratings = parse_ratings(frame, "r", quarantine)
    assert ratings["r"].tolist() == [1, 2, 3, 4, 5, 1, -1e38]
    assert [(r.line, r.value) for r in quarantine.examples["bad_rating"]] == [(6, "1e39")]


def test_quarantine_counts_rows_per_file_beyond_the_examples(tmp_path: Path) -> None:
    quarantine = Quarantine()
    frames = []
    for name, n in (("a.csv", 30), ("b.csv", 5)):
        (tmp_path / name).write_text("x\n" + "bad\n" * n)
        frame, _ = read_table(str(tmp_path / name), Quarantine())
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    rows["_file"] = rows["_file"].astype("category")
    parse_numbers(rows, "x", quarantine, reason="bad_rating")
    assert quarantine.counts["bad_rating"] == 35 and len(quarantine.examples["bad_rating"]) == 20
    assert quarantine.by_file == {str(tmp_path / "a.csv"): {"bad_rating": 30},
                                  str(tmp_path / "b.csv"): {"bad_rating": 5}}
    assert quarantine.to_dict()["by_file"][str(tmp_path / "b.csv")] == {"bad_rating": 5}


def test_gzip_and_multichar_delimiter(tmp_path: Path) -> None:
    file = tmp_path / "r.dat.gz"
    with gzip.open(file, "wt") as handle:
        handle.write("1::10::5\n2::20\n")
    quarantine = Quarantine()
    frame, n_read = read_table(str(file), quarantine, columns=["u", "i", "r"], delimiter="::", quoted=False)
    assert frame[["u", "i", "r"]].values.tolist() == [["1", "10", "5"]]
    assert (n_read, quarantine.counts["wrong_field_count"]) == (2, 1)
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(DataFormatError, match="unreadable"):
        read_table(str(tmp_path / "bad.gz"), Quarantine())


def test_numbers_and_timestamps_quarantine_with_line_and_field(tmp_path: Path) -> None:
    file = tmp_path / "n.csv"
    file.write_text("t\n100\n1.9e2\nabc\n\u00a0\ninf\n2020-01-02T00:00:00\n2020-01-02 00:00:01+01:00\n")
    frame, _ = read_table(str(file), Quarantine())
    quarantine = Quarantine()
    numeric = parse_numbers(frame, "t", quarantine, reason="bad_rating")
    assert numeric["t"].tolist() == [100.0, 190.0]
    assert quarantine.counts["bad_rating"] == 5
    quarantine = Quarantine()
    times = parse_timestamps(frame, "t", quarantine)
    assert times["t"].tolist() == [100, 190, 1577923200, 1577919601]
    assert [(r.line, r.field, r.value) for r in quarantine.examples["bad_timestamp"]] == [
        (4, "t", "abc"), (5, "t", ""), (6, "t", "inf")]


def test_small_helpers() -> None:
    users = pd.Series(["b", "a", "b", "b", "a"])
    assert ordinal_timestamps(users).tolist() == [0, 0, 1, 2, 1]
    members = is_in(pd.Series(["x", None, "y"], dtype="str"), pd.Series(["y", "z"]))
    assert members.tolist() == [False, False, True]
    frame = pd.DataFrame({"g": ["M", "", None], "a": ["25", "18", "1"]})
    assert labelled_text(frame, {"g": "gender", "a": "age"}).tolist() == [
        "gender: M; age: 25", "age: 18", "age: 1"]
    assert as_bool("False", "x") is False and as_bool("yes", "x") is True
    with pytest.raises(DataFormatError, match="true or false"):
        as_bool("maybe", "tags")


def test_rows_are_assembled_in_chunks_without_losing_any(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reasonrec.data.converters.reading as reading

    monkeypatch.setattr(reading, "CHUNK_ROWS", 2)
    file = tmp_path / "c.csv"
    file.write_text("a,b\n" + "".join(f"{i},{i * 10}\n" if i != 3 else "bad\n" for i in range(7)))
    quarantine = Quarantine()
    frame, n_read = read_table(str(file), quarantine)
    assert frame["a"].tolist() == ["0", "1", "2", "4", "5", "6"]
    assert frame["_line"].tolist() == [2, 3, 4, 6, 7, 8] and frame.index.is_unique
    assert n_read == 7 and quarantine.counts["wrong_field_count"] == 1
