"""Join item images from a folder named by item id, checking each one really decodes.

Images are opened by content, never trusted by extension (real data has PNGs named .jpg). An item without a
usable image is flagged through `image_status` and kept: text-only items are still recommendable. Files that
exist but do not decode are quarantined as "image_corrupt" with their path; files that are never decoded on
purpose are quarantined too and flagged "refused": "image_outside_folder" (a symlink, possibly through `..`,
that resolves outside the image folder: the catalogue must not read whatever a link points at) and
"image_too_large" (declared width x height above `max_image_pixels`, checked from the header before any
pixel is decoded: a 12000 x 12000 PNG would otherwise take ~432 MB per worker). A missing image is normal
(most catalogues cover only part of the items), so it is only flagged, and `clean.finalize` counts it.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pandas as pd
from PIL import Image

from reasonrec.data.errors import DataFormatError, Quarantine

# Decoding a thumbnail-sized draft proves a JPEG decodes at a fraction of the cost of a full decode.
DRAFT_SIZE = (64, 64)
# Default pixel limit: 25 MP (5000 x 5000) is far above any cover or poster the models use (they resize to a
# few hundred pixels) and bounds one worker's decode to ~100 MB (RGBA).
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000
# Quarantine reasons that flag an item's image (the item is kept, marked in image_status), not set a row aside.
IMAGE_FLAG_REASONS = frozenset({"image_missing", "image_corrupt", "image_ambiguous", "image_outside_folder",
                                "image_too_large"})
# Image.open runs PIL's own decompression-bomb check, which only *warns* between MAX_IMAGE_PIXELS and twice
# that. Turning the warning into an error needs the (process-wide, not thread-safe) warnings filters, so
# the header reads that may trigger it take turns; decoding, the expensive part, stays parallel.
_OPEN_LOCK = threading.Lock()


class ImageProblem(NamedTuple):
    """Why an image file is not used: the quarantine reason and a human detail."""
    reason: str   # "image_corrupt" or "image_too_large"
    detail: str


def attach_images(items: pd.DataFrame, image_dir: str | None, quarantine: Quarantine,
                  *, workers: int | None = None,
                  max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> pd.DataFrame:
    """`items` with image_uri (absolute path), image_status ("ok"|"missing"|"corrupt"|"refused"|"none") and
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
    inside = {path for path in candidates if is_inside(path, image_dir)}
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        decodable = sorted(inside)
        results = dict(zip(decodable, pool.map(lambda path: probe_image(path, max_image_pixels), decodable)))

    def describe(item_id: str, path: object) -> tuple[str | None, str, str | None]:
        if not isinstance(path, str):
            return None, "missing", None
        if path not in inside:
            quarantine.add(path, None, "image", "image_outside_folder",
                           f"item {item_id}: resolves to {os.path.realpath(path)}")
            return None, "refused", None
        image_format, problem = results[path]
        if problem is not None:
            quarantine.add(path, None, "image", problem.reason, f"item {item_id}: {problem.detail}")
            return None, "corrupt" if problem.reason == "image_corrupt" else "refused", None
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


def is_inside(path: str, image_dir: str) -> bool:
    """Whether `path`, with every symlink and `..` resolved, is still a file under `image_dir` (itself
    resolved, so a linked image folder is fine; only links that lead out of it are not)."""
    root = os.path.realpath(image_dir)
    target = os.path.realpath(path)
    return target != root and os.path.commonpath([root, target]) == root


def probe_image(path: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[str | None, ImageProblem | None]:
    """(format, None) when the file decodes as an image of at most `max_pixels`, else (None, why not).

    The size comes from the header, which Image.open reads without decoding, so an oversized image is
    refused before its pixels cost any memory."""
    try:
        with _open_header(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                return None, ImageProblem("image_too_large", f"{width} x {height} = {width * height} pixels, "
                                                             f"above max_image_pixels={max_pixels}")
            image_format = image.format
            if image_format == "JPEG":
                image.draft("RGB", DRAFT_SIZE)
            image.load()
        return image_format, None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # PIL's own, larger limit
        return None, ImageProblem("image_too_large", f"{err} (max_image_pixels={max_pixels})")
    except Exception as err:  # PIL raises many types on bad data (OSError, SyntaxError, ValueError, ...)
        return None, ImageProblem("image_corrupt", f"{type(err).__name__}: {err}")


def _open_header(path: str) -> Image.Image:
    """Image.open (header only) with PIL's decompression-bomb warning raised as an error, not printed."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)
