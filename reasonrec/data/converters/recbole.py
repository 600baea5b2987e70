"""RecBole atomic files: `<name>.inter`, optional `<name>.item` and `<name>.user` in one folder.

Each file is tab-separated with a typed header (`user_id:token`, `genre:token_seq`, `rating:float`, ...), the
format RecBole ships dozens of public datasets in. Field names follow RecBole's defaults (USER_ID_FIELD,
ITEM_ID_FIELD, TIME_FIELD, RATING_FIELD) and can be overridden as options. Without a time field the file
order of each user's rows is the order of events (timestamp_kind "ordinal").
"""

from __future__ import annotations

import glob
import os

import pandas as pd

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.reading import (
    SOURCE_COLUMNS, labelled_text, ordinal_timestamps, parse_ratings, parse_timestamps, read_table, require_columns,
    require_file)
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.images import DEFAULT_MAX_IMAGE_PIXELS, attach_images

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_FIELDS = ("title", "movie_title")


def convert(path: str, images: str | None, quarantine: Quarantine, *, name: str | None = None,
            user_field: str = "user_id", item_field: str = "item_id", time_field: str = "timestamp",
            rating_field: str = "rating", encoding: str = "utf-8",
            max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> RawDataset:
    """Read the atomic files of dataset `name` (default: the only *.inter file in `path`)."""
    name = name or _dataset_name(path)
    stats: dict = {"files": {}, "name": name}

    def atomic(suffix: str, required: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
        file = os.path.join(path, f"{name}.{suffix}")
        frame, n_read = read_table(file, quarantine, delimiter="\t", quoted=False, encoding=encoding)
        types = _field_types(frame.columns, file)
        frame = frame.rename(columns={column: column.split(":")[0] for column in types})
        require_columns(frame.columns, required, file)
        stats["files"][file] = {"rows_read": n_read}
        return frame, {column.split(":")[0]: kind for column, kind in types.items()}

    require_file(os.path.join(path, f"{name}.inter"), "RecBole interaction file")
    inter, inter_types = atomic("inter", [user_field, item_field])
    columns = {"user_id": user_field, "item_id": item_field}
    if rating_field in inter_types:
        inter = parse_ratings(inter, rating_field, quarantine)
        columns["rating"] = rating_field
    timestamp_kind = "unix" if time_field in inter_types else "ordinal"
    if timestamp_kind == "unix":
        inter = parse_timestamps(inter, time_field, quarantine, dates=False)
        columns["timestamp"] = time_field
    interactions = pd.DataFrame({canonical: inter[field] for canonical, field in columns.items()})
    if timestamp_kind == "ordinal":
        interactions["timestamp"] = ordinal_timestamps(interactions["user_id"])
    for column in SOURCE_COLUMNS:
        interactions[column] = inter[column]
    stats["timestamp_field"] = time_field if timestamp_kind == "unix" else None

    if os.path.isfile(os.path.join(path, f"{name}.item")):
        frame, types = atomic("item", [item_field])
        title_field = next((field for field in TITLE_FIELDS if field in types), None)
        text_fields = [field for field, kind in types.items()
                       if kind == "token_seq" and field not in (item_field, title_field)]
        items = pd.DataFrame({
            "item_id": frame[item_field],
            "title": frame[title_field] if title_field else frame[item_field],
            "text": labelled_text(frame, {field: field for field in text_fields}),
            **{column: frame[column] for column in SOURCE_COLUMNS}})
        stats["title_field"], stats["text_fields"] = title_field, text_fields
    else:  # no item file: the items are whatever the interactions name, titled by id
        ids = interactions["item_id"].drop_duplicates()
        items = pd.DataFrame({"item_id": ids, "title": ids, "text": ""})
        stats["title_field"], stats["text_fields"] = None, []

    users = None
    if os.path.isfile(os.path.join(path, f"{name}.user")):
        frame, types = atomic("user", [user_field])
        profile_fields = [field for field in types if field != user_field]
        users = pd.DataFrame({"user_id": frame[user_field],
                              "profile": labelled_text(frame, {field: field for field in profile_fields}),
                              **{column: frame[column] for column in SOURCE_COLUMNS}})
        users.loc[users["profile"] == "", "profile"] = None
    items = attach_images(items, images, quarantine, max_image_pixels=max_image_pixels)
    return RawDataset(interactions, items, users, timestamp_kind, stats)


def _dataset_name(path: str) -> str:
    """The stem of the single *.inter file; ambiguity or absence is an error that names the candidates."""
    if not os.path.isdir(path):
        raise DataFormatError("RecBole dataset folder not found", file=path)
    inter_files = glob.glob(os.path.join(path, "*.inter"))
    found = sorted(os.path.basename(file)[: -len(".inter")] for file in inter_files)
    if len(found) != 1:
        problem = "no *.inter file" if not found else f"several *.inter files {found}; set the name option"
        raise DataFormatError(problem, file=path, field="name")
    return found[0]


def _field_types(columns: pd.Index, file: str) -> dict[str, str]:
    """{'user_id:token': 'token', ...}; a header field without a known RecBole type is a format error."""
    types = {}
    for column in columns:
        if column in SOURCE_COLUMNS:
            continue
        field, _, kind = column.partition(":")
        if not field or kind not in FIELD_TYPES:
            raise DataFormatError(f"header field {column!r} is not 'name:type' with type in {FIELD_TYPES}",
                                  file=file, line=1, field=column)
        types[column] = kind
    if len({column.split(":")[0] for column in types}) != len(types):
        raise DataFormatError("header repeats a field name with different types", file=file, line=1)
    return types
