"""P5 sequences: real reviewer/ASIN ids, ordinal time, and the real Beauty and Sports files."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from reasonrec.data.converters.amazon_p5 import convert
from reasonrec.data.converters.clean import finalize
from reasonrec.data.errors import DataFormatError, Quarantine

DATAMAPS = {"id2user": {"1": "A1USER", "2": "A2USER", "3": "A3USER", "4": "A4USER", "5": "A5USER"},
            "id2item": {"1": "B000000001", "2": "B000000002", "3": "B000000003", "4": "B000000004"}}


def _entries(quarantine: Quarantine) -> set[tuple]:
    return {(row.reason, os.path.basename(row.file), row.line, row.field, row.value)
            for rows in quarantine.examples.values() for row in rows}


@pytest.fixture
def p5(tmp_path: Path) -> Path:
    (tmp_path / "datamaps.json").write_text(json.dumps(DATAMAPS))
    (tmp_path / "sequential.txt").write_bytes(
        b"1 1 2 3\r\n"      # 1
        b"2 3 9 1\r\n"      # 2 item index 9 is not in id2item
        b"7 1 2\r\n"        # 3 user index 7 is not in id2user (2 events)
        b"3\r\n"            # 4 a user without items
        b"\r\n"             # 5 blank
        b"1 4 4\r\n"        # 6 a second sequence for user 1 (2 events)
        b"4 2 2\r\n")       # 7 repeats are real events at different positions
    return tmp_path


def test_sequences_ids_positions_and_accounting(p5: Path) -> None:
    quarantine = Quarantine()
    raw = convert(str(p5), None, quarantine)
    out = finalize(raw, quarantine, "p5")
    assert _entries(quarantine) == {
        ("unknown_item_index", "sequential.txt", 2, "item_idx", "9"),
        ("unknown_user_index", "sequential.txt", 3, "user_idx", "7"),
        ("empty_sequence", "sequential.txt", 4, "item_idx", "3"),
        ("blank_line", "sequential.txt", 5, None, None),
        ("duplicate_sequence", "sequential.txt", 6, "user_idx", "1 (first on line 1)"),
        ("empty_history", "datamaps.json", None, "user_id", "A3USER"),
        ("empty_history", "datamaps.json", None, "user_id", "A5USER")}
    assert quarantine.counts["unknown_user_index"] == 2 and quarantine.counts["duplicate_sequence"] == 2

    stats = raw.stats["files"][str(p5 / "sequential.txt")]
    assert stats == {"rows_read": 7, "events_read": 12}
    event_reasons = ("unknown_item_index", "unknown_user_index", "duplicate_sequence")
    assert stats["events_read"] == len(out.interactions) + sum(quarantine.counts[r] for r in event_reasons)

    assert raw.timestamp_kind == "ordinal"
    assert out.interactions[["user_id", "item_id", "timestamp"]].values.tolist() == [
        ["A1USER", "B000000001", 0], ["A1USER", "B000000002", 1], ["A1USER", "B000000003", 2],
        ["A2USER", "B000000003", 0], ["A2USER", "B000000001", 2],           # position 1 was index 9
        ["A4USER", "B000000002", 0], ["A4USER", "B000000002", 1]]
    assert sorted(out.items["item_id"]) == sorted(DATAMAPS["id2item"].values())   # B..4 kept, never seen
    assert (out.items["title"] == out.items["item_id"]).all() and (out.items["text"] == "").all()
    assert set(out.items["image_status"]) == {"none"}
    assert out.stats["clean"]["items_without_interactions"] == 1


def test_images_folder_named_by_asin(p5: Path, tmp_path: Path) -> None:
    folder = tmp_path / "img"
    folder.mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    (folder / "B000000001.jpg").write_bytes(buffer.getvalue())
    raw = convert(str(p5), str(folder), Quarantine())
    status = raw.items.set_index("item_id")["image_status"]
    assert status["B000000001"] == "ok" and status["B000000002"] == "missing"
    assert raw.items.set_index("item_id").loc["B000000001", "image_format"] == "PNG"


def test_missing_files_and_keys_are_errors(p5: Path) -> None:
    with pytest.raises(DataFormatError, match="missing P5 sequence file"):
        convert(str(p5), None, Quarantine(), sequences="seq.txt")
    (p5 / "datamaps.json").write_text(json.dumps({"id2user": DATAMAPS["id2user"]}))
    with pytest.raises(DataFormatError) as err:
        convert(str(p5), None, Quarantine())
    assert err.value.field == "id2item"
    (p5 / "datamaps.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        convert(str(p5), None, Quarantine())
    os.remove(p5 / "datamaps.json")
    with pytest.raises(DataFormatError, match="missing P5 datamaps file"):
        convert(str(p5), None, Quarantine())


@pytest.mark.real_data
def test_real_beauty(shared_data: Path) -> None:
    folder = shared_data / "amazon-p5" / "beauty"
    datamaps = json.loads((folder / "datamaps.json").read_text())
    quarantine = Quarantine()
    out = finalize(convert(str(folder), None, quarantine), quarantine, "beauty")
    assert quarantine.total == 0
    assert (out.interactions["user_id"].nunique(), len(out.items), len(out.interactions)) == (
        22_363, 12_101, 198_502)
    assert set(out.interactions["user_id"]) == set(datamaps["id2user"].values())
    assert set(out.items["item_id"]) == set(datamaps["id2item"].values())
    assert out.items["item_id"].map(lambda asin: bool(re.fullmatch(r"[0-9A-Z]{10}", asin))).all()
    first_line = (folder / "sequential.txt").read_text().split("\n", 1)[0].split()
    first_user = datamaps["id2user"][first_line[0]]
    history = out.interactions[out.interactions["user_id"] == first_user]
    assert history["item_id"].tolist() == [datamaps["id2item"][i] for i in first_line[1:]]
    assert history["timestamp"].tolist() == list(range(len(first_line) - 1))


@pytest.mark.real_data
def test_real_sports_converts_quickly(shared_data: Path) -> None:
    started = time.perf_counter()
    quarantine = Quarantine()
    out = finalize(convert(str(shared_data / "amazon-p5" / "sports"), None, quarantine), quarantine, "sports")
    assert time.perf_counter() - started < 15
    assert (out.interactions["user_id"].nunique(), len(out.items), len(out.interactions)) == (
        35_598, 18_357, 296_337)
