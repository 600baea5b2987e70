"""PixelRec / NineRec: CSVs with aliased columns and a cover folder with lying, broken and absent images."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from reasonrec.data.converters import CONVERTERS
from reasonrec.data.converters.clean import finalize
from reasonrec.data.converters.pixelrec import convert
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.schema import Dataset, write_dataset


def _image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 9), (10, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def _entries(quarantine: Quarantine) -> set[tuple]:
    return {(row.reason, os.path.basename(row.file), row.line, row.field)
            for rows in quarantine.examples.values() for row in rows}


@pytest.fixture
def pixel(tmp_path: Path) -> Path:
    root = tmp_path / "pixel"
    root.mkdir()
    (root / "Pixel_toy.csv").write_text(
        "item_id,user_id,timestamp\n"
        "i0,u1,1600000000\n"              # 2
        "i1,u1,1600000100\n"              # 3
        "i2,u2,2020-09-13 12:26:40\n"     # 4 a date string: 1600000000
        "i3,u2,notatime\n"                # 5
        "i1,u2\n"                         # 6
        "i9,u3,1600000200\n"              # 7 no such item
        ",u3,1600000300\n"                # 8 empty item id
        "i3,u3,1600000400\n")             # 9
    (root / "item_info.csv").write_text(
        "item_id,view_number,title,tag,description\n"
        'i0,10,Cat video,cats,"A cat, playing"\n'
        "i1,5,Dog video,,dogs\n"
        "i2,7,Broken cover,x,\n"
        "i3,1,No cover,,\n"
        "i4,0,Never watched,t4,d4\n")
    covers = tmp_path / "covers"
    covers.mkdir()
    (covers / "i0.jpg").write_bytes(_image("JPEG"))
    (covers / "i1.jpg").write_bytes(_image("PNG"))          # a PNG named .jpg
    (covers / "i2.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (covers / "i4.gif").write_bytes(_image("GIF"))           # i3 has no cover at all
    return root


def test_rows_images_quarantine_and_round_trip(pixel: Path, tmp_path: Path) -> None:
    quarantine = Quarantine()
    raw = CONVERTERS["pixelrec"](str(pixel), str(tmp_path / "covers"), quarantine)
    out = finalize(raw, quarantine, "pixel")
    assert _entries(quarantine) == {
        ("bad_timestamp", "Pixel_toy.csv", 5, "timestamp"),
        ("wrong_field_count", "Pixel_toy.csv", 6, "timestamp"),
        ("unknown_item", "Pixel_toy.csv", 7, "item_id"), ("empty_id", "Pixel_toy.csv", 8, "item_id"),
        ("image_corrupt", "i2.jpg", None, "image")}
    rows_read = raw.stats["files"][str(pixel / "Pixel_toy.csv")]["rows_read"]
    image_flags = quarantine.counts["image_corrupt"]
    assert rows_read == 8 == len(out.interactions) + quarantine.total - image_flags

    assert out.interactions[["user_id", "item_id", "timestamp"]].values.tolist() == [
        ["u1", "i0", 1600000000], ["u1", "i1", 1600000100], ["u2", "i2", 1600000000], ["u3", "i3", 1600000400]]
    items = out.items.set_index("item_id")
    assert items["image_status"].to_dict() == {"i0": "ok", "i1": "ok", "i2": "corrupt", "i3": "missing",
                                               "i4": "ok"}
    assert items["image_format"].dropna().to_dict() == {"i0": "JPEG", "i1": "PNG", "i4": "GIF"}
    assert items.loc["i0", "text"] == "tag: cats; description: A cat, playing"
    assert items.loc["i1", "text"] == "description: dogs" and items.loc["i3", "text"] == ""
    assert items.loc["i4", "title"] == "Never watched"
    assert raw.timestamp_kind == "unix"
    assert raw.stats["columns"] == {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp",
                                    "rating": None, "title": "title", "text": ["tag", "description"]}

    root = tmp_path / "prepared"
    write_dataset(str(root), name="pixel-toy", source="pixelrec", timestamp_kind=out.timestamp_kind,
                  interactions=out.interactions, items=out.items, users=out.users)
    ds = Dataset.load(str(root))
    assert (ds.manifest.n_items, ds.manifest.n_items_with_image, ds.manifest.n_interactions) == (5, 3, 4)
    loaded = ds.items.set_index("item_id")
    assert loaded.loc["i1", "image_format"] == "PNG"
    assert loaded.loc["i1", "image_uri"] == str((tmp_path / "covers" / "i1.jpg").resolve())
    assert loaded.loc["i3", "image_status"] == "missing"


def test_aliases_dates_and_ordinal_order(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("uid,IID,Time\nb,x,2021-01-01T00:00:10Z\na,y,2021-01-01T00:00:00Z\n")
    (tmp_path / "info.csv").write_text("iid,name,desc\nx,Ex,about x\ny,Why,\n")
    raw = convert(str(tmp_path), None, Quarantine())
    assert raw.interactions[["user_id", "item_id", "timestamp"]].values.tolist() == [
        ["b", "x", 1609459210], ["a", "y", 1609459200]]
    assert raw.items[["item_id", "title", "text"]].values.tolist() == [
        ["x", "Ex", "desc: about x"], ["y", "Why", ""]]

    (tmp_path / "pairs.csv").write_text("user,item\nb,x\na,y\nb,y\n")     # NineRec-style: no time column
    raw = convert(str(tmp_path), None, Quarantine())
    assert raw.timestamp_kind == "ordinal"
    assert raw.interactions["timestamp"].tolist() == [0, 0, 1]


def test_file_and_column_errors(tmp_path: Path, pixel: Path) -> None:
    (pixel / "more.csv").write_text("user_id,item_id\nu,i0\n")
    with pytest.raises(DataFormatError, match="several \\(Pixel_toy.csv, more.csv\\) candidate interactions"):
        convert(str(pixel), None, Quarantine())
    raw = convert(str(pixel), None, Quarantine(), interactions="more.csv")
    assert raw.interactions["item_id"].tolist() == ["i0"] and raw.timestamp_kind == "ordinal"
    with pytest.raises(DataFormatError, match="missing PixelRec item file"):
        convert(str(pixel), None, Quarantine(), interactions="more.csv", items="absent.csv")

    (pixel / "more.csv").write_text("who,item_id\nu,i0\n")
    with pytest.raises(DataFormatError, match="no user id column") as err:
        convert(str(pixel), None, Quarantine(), interactions="more.csv", items="item_info.csv")
    assert (os.path.basename(err.value.file), err.value.line, err.value.field) == ("more.csv", 1, "user_id")
    assert "who" in str(err.value)
    os.remove(pixel / "item_info.csv")
    os.remove(pixel / "more.csv")
    with pytest.raises(DataFormatError, match="no candidate items CSV"):
        convert(str(pixel), None, Quarantine(), interactions="Pixel_toy.csv")
