"""The shared row reader: line numbers that survive quoting, and quarantine for badly shaped rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from reasonrec.data.converters.reading import (
    as_bool, is_in, labelled_text, ordinal_timestamps, parse_numbers, parse_timestamps, read_table)
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
