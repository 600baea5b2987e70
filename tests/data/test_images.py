"""attach_images: content-based formats, decode checks, flags that keep the item."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.images import attach_images, probe_image


def _image_bytes(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "covers"
    folder.mkdir()
    (folder / "jpeg.jpg").write_bytes(_image_bytes("JPEG"))
    (folder / "png_named_jpg.jpg").write_bytes(_image_bytes("PNG"))   # extension lies
    (folder / "gif.bin").write_bytes(_image_bytes("GIF"))              # any extension
    (folder / "text.jpg").write_bytes(b"this is not an image at all")
    jpeg = _image_bytes("JPEG", (200, 200))
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "twice.jpg").write_bytes(_image_bytes("JPEG"))
    (folder / "twice.png").write_bytes(_image_bytes("PNG"))            # same stem: the .jpg wins by name
    (folder / ".hidden.jpg").write_bytes(_image_bytes("JPEG"))
    (folder / "subdir").mkdir()
    return folder


def test_statuses_formats_and_quarantine(image_folder: Path) -> None:
    ids = ["jpeg", "png_named_jpg", "gif", "text", "truncated", "twice", "absent"]
    items = pd.DataFrame({"item_id": ids, "title": ids, "text": ""})
    quarantine = Quarantine()
    out = attach_images(items, str(image_folder), quarantine, workers=2).set_index("item_id")

    assert out["image_status"].to_dict() == {
        "jpeg": "ok", "png_named_jpg": "ok", "gif": "ok", "text": "corrupt", "truncated": "corrupt",
        "twice": "ok", "absent": "missing"}
    assert out.loc["png_named_jpg", "image_format"] == "PNG"
    assert out.loc["jpeg", "image_format"] == "JPEG"
    assert out.loc["gif", "image_format"] == "GIF"
    assert out.loc["twice", "image_uri"] == str(image_folder.resolve() / "twice.jpg")
    assert out.loc["gif", "image_uri"] == str(image_folder.resolve() / "gif.bin")
    assert out.loc[["text", "truncated", "absent"], "image_uri"].isna().all()
    assert out.loc[["text", "truncated", "absent"], "image_format"].isna().all()
    assert len(out) == len(items)  # flagged items are kept

    assert dict(quarantine.counts) == {"image_corrupt": 2, "image_ambiguous": 1}
    corrupt = {Path(row.file).name for row in quarantine.examples["image_corrupt"]}
    assert corrupt == {"text.jpg", "truncated.jpg"}
    assert Path(quarantine.examples["image_ambiguous"][0].file).name == "twice.png"


def test_no_image_folder_means_status_none() -> None:
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"], "text": ""})
    out = attach_images(items, None, Quarantine())
    assert out["image_status"].tolist() == ["none", "none"]
    assert out["image_uri"].isna().all() and out["image_format"].isna().all()


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": ["a"], "title": ["A"], "text": ""})
    with pytest.raises(DataFormatError, match="image folder not found"):
        attach_images(items, str(tmp_path / "nope"), Quarantine())


def test_only_catalogue_items_are_decoded(image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []
    import reasonrec.data.images as images

    def spy(path: str, max_pixels: int):
        opened.append(Path(path).name)
        return probe_image(path, max_pixels)

    monkeypatch.setattr(images, "probe_image", spy)
    items = pd.DataFrame({"item_id": ["jpeg"], "title": ["x"], "text": ""})
    attach_images(items, str(image_folder), Quarantine())
    assert opened == ["jpeg.jpg"]


@pytest.mark.real_data
def test_real_poster_that_is_a_png(shared_data: Path) -> None:
    poster = shared_data / "movielens-posters" / "posters" / "3575.jpg"
    assert probe_image(str(poster)) == ("PNG", None)
    assert probe_image(str(poster.with_name("1.jpg"))) == ("JPEG", None)


def _png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose IHDR (with a valid CRC) declares width x height: what a huge image's header says,
    without the test having to build hundreds of MB of pixels."""
    png = _image_bytes("PNG", (8, 8))
    start = png.index(b"IHDR")
    fields = struct.pack(">II", width, height) + png[start + 12:start + 17]
    return png[:start] + b"IHDR" + fields + struct.pack(">I", zlib.crc32(b"IHDR" + fields)) + png[start + 21:]


def test_links_out_of_the_folder_are_refused_not_followed(tmp_path: Path) -> None:
    folder, outside = tmp_path / "covers", tmp_path / "private"
    folder.mkdir(), outside.mkdir()
    (outside / "secret.png").write_bytes(_image_bytes("PNG"))
    (folder / "inside.png").write_bytes(_image_bytes("PNG"))
    (folder / "abs.png").symlink_to(outside / "secret.png")                  # absolute link out
    (folder / "dotdot.png").symlink_to(Path("..") / "private" / "secret.png")  # relative, through ..
    (folder / "alias.png").symlink_to("inside.png")                          # a link that stays inside: fine
    linked = tmp_path / "linked-covers"
    linked.symlink_to(folder)                                                # the folder itself may be a link
    ids = ["inside", "abs", "dotdot", "alias"]
    items = pd.DataFrame({"item_id": ids, "title": ids, "text": ""})
    quarantine = Quarantine()
    out = attach_images(items, str(linked), quarantine).set_index("item_id")
    assert out["image_status"].to_dict() == {"inside": "ok", "abs": "refused", "dotdot": "refused", "alias": "ok"}
    assert out.loc[["abs", "dotdot"], "image_uri"].isna().all()
    assert dict(quarantine.counts) == {"image_outside_folder": 2}
    assert all(str(outside / "secret.png") in row.value for row in quarantine.examples["image_outside_folder"])


def test_oversized_images_are_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "covers"
    folder.mkdir()
    (folder / "huge.png").write_bytes(_png_declaring(12000, 12000))   # 144 MP: PIL itself would only warn
    (folder / "bomb.png").write_bytes(_png_declaring(20000, 20000))   # 400 MP: PIL's DecompressionBombError
    (folder / "fine.png").write_bytes(_image_bytes("PNG", (100, 50)))
    (folder / "wide.png").write_bytes(_image_bytes("PNG", (200, 100)))
    loaded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append(self.size) or real_load(self))
    ids = ["huge", "bomb", "fine", "wide"]
    items = pd.DataFrame({"item_id": ids, "title": ids, "text": ""})
    quarantine = Quarantine()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning escapes
        out = attach_images(items, str(folder), quarantine, max_image_pixels=10_000).set_index("item_id")
    assert out["image_status"].to_dict() == {"huge": "refused", "bomb": "refused", "fine": "ok", "wide": "refused"}
    assert quarantine.counts == {"image_too_large": 3}
    assert set(loaded) == {(100, 50)}  # nothing above the limit was decoded
    details = {Path(row.file).name: row.value for row in quarantine.examples["image_too_large"]}
    assert "144000000 pixels" in details["huge.png"] and "max_image_pixels=10000" in details["huge.png"]
    assert "200 x 100 = 20000 pixels, above max_image_pixels=10000" in details["wide.png"]
    assert probe_image(str(folder / "huge.png"))[1].reason == "image_too_large"  # the 25 MP default too
