"""ItemImages: decoded RGB images, a counted placeholder for anything unusable, a bounded cache."""

from __future__ import annotations

import pandas as pd
from PIL import Image

from reasonrec.data.schema import Dataset, Manifest
from reasonrec.vlm.images import PLACEHOLDER_GREY, ItemImages


def make_dataset(root) -> Dataset:
    (root / "images").mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(root / "images" / "0.png")       # relative uri
    Image.new("L", (20, 20), 50).save(root / "1.jpg")                                 # grey JPEG, absolute
    (root / "images" / "3.png").write_bytes(b"not an image at all")                   # corrupt since prepare
    items = pd.DataFrame({
        "item_id": [str(i) for i in range(6)], "item_idx": list(range(6)), "title": ["t"] * 6, "text": [""] * 6,
        "image_uri": ["images/0.png", str(root / "1.jpg"), "images/gone.png", "images/3.png", None, None],
        "image_status": ["ok", "ok", "ok", "ok", "missing", "none"],
        "image_format": ["PNG", "JPEG", "PNG", "PNG", None, None]})
    manifest = Manifest(name="toy", source="test", timestamp_kind="ordinal", n_users=0, n_items=6,
                        n_interactions=0, has_ratings=False, has_reviews=False, n_items_with_image=2)
    return Dataset(str(root), manifest, pd.DataFrame(), items, pd.DataFrame())


def test_images_decode_resize_and_fall_back(tmp_path):
    images = ItemImages(make_dataset(tmp_path), image_size=32)
    first = images[0]
    assert first.mode == "RGB" and min(first.size) == 32 and first.size == (43, 32)  # aspect kept
    assert first.getpixel((20, 16))[0] > 150                                          # it is the red image
    assert images[1].mode == "RGB" and images[1].size == (32, 32)                     # L -> RGB, upscaled
    batch = images.get_many([2, 3, 4, 5, 99])  # deleted file, corrupt file, missing, none, outside catalogue
    assert all(im.size == (32, 32) and im.getpixel((0, 0)) == PLACEHOLDER_GREY for im in batch)
    assert images.placeholders == 5 and images.failed_reads == 2
    images.get_many([2, 3, 4])  # cached or already counted: distinct items only
    assert images.placeholders == 5


def test_cache_is_bounded_and_reused(tmp_path):
    images = ItemImages(make_dataset(tmp_path), image_size=16, cache_size=2)
    a = images[0]
    assert images[0] is a                 # served from the cache
    images[1], images[4]
    assert len(images._cache) == 2 and 0 not in images._cache   # least recently used evicted
    assert images[0] is not a and images[0].size == a.size      # re-read after eviction
