"""PixelRec / NineRec: an interaction CSV, an item-information CSV and a folder of cover images.

The releases differ in file and column names (item_id / item / iid, timestamp / time / ...), so files can be
named as options and columns are found through aliases; a required column that no alias matches is a
DataFormatError that lists the header. Title from `title`, text from whatever of tag / description / category
exists. Timestamps may be unix numbers or date strings; without a time column, file order is the order of
events (timestamp_kind "ordinal").
"""

from __future__ import annotations

import glob
import os
from contextlib import closing

import pandas as pd

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.reading import (
    SOURCE_COLUMNS, iter_records, labelled_text, ordinal_timestamps, parse_ratings, parse_timestamps,
    read_table, require_file)
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.images import DEFAULT_MAX_IMAGE_PIXELS, attach_images

USER_ALIASES = ("user_id", "user", "uid", "userid", "user_idx")
ITEM_ALIASES = ("item_id", "item", "iid", "itemid", "item_idx", "video_id")
TIME_ALIASES = ("timestamp", "time", "ts", "datetime", "date", "time_stamp")
RATING_ALIASES = ("rating", "score")
TITLE_ALIASES = ("title", "name")
TEXT_ALIASES = ("tag", "tags", "description", "desc", "category", "categories")


def convert(path: str, images: str | None, quarantine: Quarantine, *, interactions: str | None = None,
            items: str | None = None, encoding: str = "utf-8", delimiter: str = ",",
            max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> RawDataset:
    """Read `path`. Options: interactions / items (CSV file names in `path`, or paths; default: the one CSV
    whose header has user and item columns, and the one with an item but no user column)."""
    if not os.path.isdir(path):
        raise DataFormatError("PixelRec folder not found", file=path)
    interactions_file, items_file = _locate_files(path, interactions, items, encoding, delimiter)
    stats: dict = {"files": {}}

    frame, n_read = read_table(interactions_file, quarantine, delimiter=delimiter, encoding=encoding)
    stats["files"][interactions_file] = {"rows_read": n_read}
    user = find_column(frame.columns, USER_ALIASES, interactions_file, "user id")
    item = find_column(frame.columns, ITEM_ALIASES, interactions_file, "item id")
    time = find_column(frame.columns, TIME_ALIASES, interactions_file, "timestamp", required=False)
    rating = find_column(frame.columns, RATING_ALIASES, interactions_file, "rating", required=False)
    if rating:
        frame = parse_ratings(frame, rating, quarantine)
    if time:
        frame = parse_timestamps(frame, time, quarantine)
    events = pd.DataFrame({"user_id": frame[user], "item_id": frame[item]})
    events["timestamp"] = frame[time] if time else ordinal_timestamps(frame[user])
    if rating:
        events["rating"] = frame[rating]
    for column in SOURCE_COLUMNS:
        events[column] = frame[column]
    stats["columns"] = {"user_id": user, "item_id": item, "timestamp": time, "rating": rating}

    info, n_read = read_table(items_file, quarantine, delimiter=delimiter, encoding=encoding)
    stats["files"][items_file] = {"rows_read": n_read}
    item_column = find_column(info.columns, ITEM_ALIASES, items_file, "item id")
    title = find_column(info.columns, TITLE_ALIASES, items_file, "title", required=False)
    text_columns = [column for alias in TEXT_ALIASES for column in info.columns if column.lower() == alias]
    item_table = pd.DataFrame({
        "item_id": info[item_column],
        "title": info[title] if title else info[item_column],
        "text": labelled_text(info, {column: column.lower() for column in text_columns}),
        **{column: info[column] for column in SOURCE_COLUMNS}})
    stats["columns"].update({"title": title, "text": text_columns})
    item_table = attach_images(item_table, images, quarantine, max_image_pixels=max_image_pixels)
    return RawDataset(events, item_table, None, "unix" if time else "ordinal", stats)


def find_column(columns: pd.Index, aliases: tuple[str, ...], file: str, what: str,
                required: bool = True) -> str | None:
    """The header column matching the first alias (case-insensitive)."""
    lowered = {column.lower(): column for column in columns}
    for alias in aliases:
        if alias in lowered:
            return lowered[alias]
    if required:
        header = [column for column in columns if column not in SOURCE_COLUMNS]
        raise DataFormatError(f"no {what} column (looked for {', '.join(aliases)}) in header {header}",
                              file=file, line=1, field=aliases[0])
    return None


def _header(file: str, encoding: str, delimiter: str) -> set[str]:
    """Lower-cased column names of a CSV's first record (empty for an empty file)."""
    with closing(iter_records(file, delimiter=delimiter, encoding=encoding)) as records:
        _, names = next(records, (1, []))
    return {name.strip().lstrip("\ufeff").lower() for name in names}


def _locate_files(path: str, interactions: str | None, items: str | None, encoding: str,
                  delimiter: str) -> tuple[str, str]:
    """Named files win; otherwise classify every CSV in `path` by its header."""
    def named(name: str, what: str) -> str:
        return require_file(name if os.path.isabs(name) else os.path.join(path, name), what)

    if interactions and items:
        return named(interactions, "PixelRec interaction file"), named(items, "PixelRec item file")
    csv_files = sorted(glob.glob(os.path.join(path, "*.csv")))
    headers = {file: _header(file, encoding, delimiter) for file in csv_files}
    has_user = {file for file, header in headers.items() if header & set(USER_ALIASES)}
    has_item = {file for file, header in headers.items() if header & set(ITEM_ALIASES)}
    found = {
        "interactions": [named(interactions, "PixelRec interaction file")] if interactions
        else sorted(has_user & has_item),
        "items": [named(items, "PixelRec item file")] if items else sorted(has_item - has_user),
    }
    for role, files in found.items():
        if len(files) != 1:
            problem = "no" if not files else f"several ({', '.join(os.path.basename(f) for f in files)})"
            raise DataFormatError(f"{problem} candidate {role} CSV; set the '{role}' option", file=path,
                                  field=role)
    return found["interactions"][0], found["items"][0]
