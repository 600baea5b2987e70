"""Amazon review dumps (McAuley lab): one review per line, gzip or plain.

Reads the 2018 release (JSON lines) and the 2014 one, whose older files hold a Python dict literal per line
(hence the `ast.literal_eval` fallback). reviewerID -> user_id, asin -> item_id, overall -> rating,
unixReviewTime -> timestamp, reviewText -> review, summary -> review_title. An optional metadata file
(`meta=` option, meta_<Category>.json.gz) gives items a title and text (category path + description);
without one, title = ASIN and text = "".
"""

from __future__ import annotations

import ast
import glob
import json
import os
from typing import Any

import pandas as pd

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.reading import (
    SOURCE_FILE, as_bool, is_in, iter_lines, parse_ratings, parse_timestamps, require_file, with_source)
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.images import DEFAULT_MAX_IMAGE_PIXELS, attach_images

REVIEW_FIELDS = {"user_id": "reviewerID", "item_id": "asin", "rating": "overall",
                 "timestamp": "unixReviewTime", "review": "reviewText", "review_title": "summary"}
REVIEW_PATTERNS = ("*.json.gz", "*.json", "*.jsonl", "*.jsonl.gz")


def convert(path: str, images: str | None, quarantine: Quarantine, *, meta: str | None = None,
            keep_unreviewed_items: bool | str = False, encoding: str = "utf-8",
            max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> RawDataset:
    """Read one review file, or every review file in a folder (meta_* files excluded).

    Options: meta (metadata file), keep_unreviewed_items (keep metadata items nobody reviewed as
    candidates; off by default because a category's metadata is usually far larger than its 5-core)."""
    stats: dict = {"files": {}}
    frames = []
    for file in _review_files(path):
        frame, n_read = _read_reviews(file, quarantine, encoding)
        stats["files"][file] = {"rows_read": n_read}
        frames.append(frame)
    reviews = pd.concat(frames, ignore_index=True)
    reviews[SOURCE_FILE] = reviews[SOURCE_FILE].astype("category")
    reviews = parse_ratings(reviews, "rating", quarantine)
    reviews = parse_timestamps(reviews, "timestamp", quarantine, dates=False)

    reviewed = reviews["item_id"].dropna().drop_duplicates()
    reviewed = reviewed[reviewed.str.strip() != ""]
    if meta is None:
        items = pd.DataFrame({"item_id": reviewed.to_numpy(), "title": reviewed.to_numpy(), "text": ""})
    else:
        items = _items_with_metadata(meta, reviewed, as_bool(keep_unreviewed_items, "keep_unreviewed_items"),
                                     quarantine, encoding, stats)
    items = attach_images(items, images, quarantine, max_image_pixels=max_image_pixels)
    return RawDataset(reviews.reset_index(drop=True), items, None, "unix", stats)


def _review_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataFormatError("Amazon review file or folder not found", file=path)
    files = sorted({file for pattern in REVIEW_PATTERNS for file in glob.glob(os.path.join(path, pattern))
                    if not os.path.basename(file).startswith("meta_")})
    if not files:
        raise DataFormatError(f"no review files ({', '.join(REVIEW_PATTERNS)}, not meta_*) in folder",
                              file=path)
    return files


def parse_record(text: str) -> dict[str, Any] | None:
    """A JSON object, or (2014 files) a Python dict literal; None when the line is neither."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return record if isinstance(record, dict) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _read_reviews(file: str, quarantine: Quarantine, encoding: str) -> tuple[pd.DataFrame, int]:
    """Review rows as canonical columns (numbers still raw: parse_ratings / parse_timestamps check them with
    the line). A file without a single record is a DataFormatError: an empty download, not an empty shop."""
    columns: dict[str, list] = {name: [] for name in REVIEW_FIELDS}
    lines: list[int] = []
    n_read = 0
    for line, text in iter_lines(file, encoding):
        n_read += 1
        if not text.strip():
            quarantine.add(file, line, None, "blank_line")
            continue
        record = parse_record(text)
        if record is None:
            quarantine.add(file, line, None, "bad_record", text)
            continue
        for name, source in REVIEW_FIELDS.items():
            value = record.get(source)
            columns[name].append(value if name in ("rating", "timestamp") else _text(value))
        lines.append(line)
    require_records(file, n_read, lines)
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})
    return with_source(frame, file, lines), n_read


def require_records(file: str, n_read: int, lines: list[int]) -> None:
    """A file without one readable record: an empty or wrong file, which must not pass as an empty table."""
    if not lines:
        problem = "empty file" if n_read == 0 else f"none of its {n_read} lines is a JSON object or dict literal"
        raise DataFormatError(problem, file=file, line=1)


def _items_with_metadata(meta: str, reviewed: pd.Series, keep_unreviewed: bool, quarantine: Quarantine,
                         encoding: str, stats: dict) -> pd.DataFrame:
    """Item rows from the metadata file; reviewed items it lacks get title = ASIN, text = ""."""
    require_file(meta, "Amazon metadata file (meta option)")
    ids, titles, texts, lines = [], [], [], []
    n_read = 0
    for line, text in iter_lines(meta, encoding):
        n_read += 1
        if not text.strip():
            quarantine.add(meta, line, None, "blank_line")
            continue
        record = parse_record(text)
        if record is None:
            quarantine.add(meta, line, None, "bad_record", text)
            continue
        ids.append(_text(record.get("asin")))
        titles.append(_text(record.get("title")))
        texts.append(_item_text(record))
        lines.append(line)
    require_records(meta, n_read, lines)
    items = with_source(pd.DataFrame({"item_id": pd.Series(ids, dtype=object),
                                      "title": pd.Series(titles, dtype=object),
                                      "text": pd.Series(texts, dtype=object)}), meta, lines)
    stats["files"][meta] = {"rows_read": n_read}
    unreviewed = items["item_id"].notna() & ~is_in(items["item_id"], reviewed)
    stats["meta_items_without_reviews"] = int(unreviewed.sum())
    if not keep_unreviewed:
        items = items[~unreviewed]
    missing = reviewed[~is_in(reviewed, items["item_id"])]
    stats["items_without_metadata"] = len(missing)
    bare = pd.DataFrame({"item_id": missing.to_numpy(), "title": missing.to_numpy(), "text": ""})
    return pd.concat([items, bare], ignore_index=True)


def _item_text(record: dict[str, Any]) -> str:
    """'Category: A > B. Description: ...' from the 2018 fields (category list, description list) or the
    2014 ones (categories list of paths, description string)."""
    parts = []
    category = record.get("category")
    paths = [category] if isinstance(category, list) and category else []
    categories = record.get("categories")
    if isinstance(categories, list):
        paths += [path for path in categories if isinstance(path, list) and path]
    if paths:
        parts.append("Category: " + "; ".join(" > ".join(str(name) for name in path) for path in paths))
    description = record.get("description")
    if isinstance(description, list):
        description = " ".join(str(piece) for piece in description if piece)
    if description:
        parts.append(f"Description: {str(description).strip()}")
    return ". ".join(parts)
