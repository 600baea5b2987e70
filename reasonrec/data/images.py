"""Join item images from a folder named by item id, checking each one really decodes.

Images are opened by content, never trusted by extension (real data has PNGs named .jpg). An item without a
usable image is flagged through `image_status` and kept: text-only items are still recommendable. Files that
exist but do not decode are quarantined as "image_corrupt" with their path; a missing image is normal
(most catalogues cover only part of the items), so it is only flagged, and `clean.finalize` counts it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from PIL import Image

from reasonrec.data.errors import DataFormatError, Quarantine

# Decoding a thumbnail-sized draft proves a JPEG decodes at a fraction of the cost of a full decode.
DRAFT_SIZE = (64, 64)


def attach_images(items: pd.DataFrame, image_dir: str | None, quarantine: Quarantine,
                  *, workers: int | None = None) -> pd.DataFrame:
    """`items` with image_uri (absolute path), image_status ("ok"|"missing"|"corrupt"|"none") and
    image_format (PNG, JPEG, ... from the content) set; image_dir=None means the source has no images."""
    items = items.copy()
    if image_dir is None:
        items["image_uri"] = None
        items["image_status"] = "none"
        items["image_format"] = None
        return items
    files = index_image_folder(image_dir, quarantine)
    paths = items["item_id"].astype(str).map(files)
    candidates = sorted(set(paths.dropna()))
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        results = dict(zip(candidates, pool.map(probe_image, candidates)))

    def describe(item_id: str, path: object) -> tuple[str | None, str, str | None]:
        if not isinstance(path, str):
            return None, "missing", None
        image_format, error = results[path]
        if error is not None:
            quarantine.add(path, None, "image", "image_corrupt", f"item {item_id}: {error}")
            return None, "corrupt", None
        return path, "ok", image_format

    described = [describe(item_id, path) for item_id, path in zip(items["item_id"], paths)]
    for position, column in enumerate(("image_uri", "image_status", "image_format")):
        items[column] = pd.Series([row[position] for row in described], index=items.index, dtype=object)
    return items


def index_image_folder(image_dir: str, quarantine: Quarantine) -> dict[str, str]:
    """{file stem: absolute path}, read once. Two files with one stem (1.jpg, 1.png): the first by name wins,
    the other is quarantined as "image_ambiguous" so it is not silently ignored."""
    if not os.path.isdir(image_dir):
        raise DataFormatError("image folder not found", file=image_dir)
    root = os.path.abspath(image_dir)
    with os.scandir(root) as entries:
        names = sorted(entry.name for entry in entries if entry.is_file() and not entry.name.startswith("."))
    files: dict[str, str] = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        path = os.path.join(root, name)
        if stem in files:
            quarantine.add(path, None, "image", "image_ambiguous", f"same item id as {files[stem]}")
        else:
            files[stem] = path
    return files


def probe_image(path: str) -> tuple[str | None, str | None]:
    """(format, None) when the file decodes as an image, else (None, why not)."""
    try:
        with Image.open(path) as image:
            image_format = image.format
            if image_format == "JPEG":
                image.draft("RGB", DRAFT_SIZE)
            image.load()
        return image_format, None
    except Exception as err:  # PIL raises many types on bad data (OSError, SyntaxError, ValueError, ...)
        return None, f"{type(err).__name__}: {err}"
