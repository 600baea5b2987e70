"""Amazon sequences as P5 prepared them: `sequential.txt` plus `datamaps.json`.

Each line of sequential.txt is `user_idx item_idx1 item_idx2 ...` in chronological order; datamaps.json maps
those indices back to the real reviewerID and ASIN, which is what we store, so the data can later be joined
with Amazon metadata or images. There are no timestamps: an event's timestamp is its position in the user's
sequence (timestamp_kind "ordinal"), and no item metadata: title = ASIN, text = "".

Accounting: events read (item tokens) = events kept + events quarantined as "unknown_user_index",
"duplicate_sequence" or "unknown_item_index"; lines without any item are quarantined as "blank_line" or
"empty_sequence".
"""

from __future__ import annotations

import json
import os

import pandas as pd

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.reading import (
    SOURCE_FILE, SOURCE_LINE, decode_error, iter_records, require_file, with_source)
from reasonrec.data.errors import DataFormatError, Quarantine, QuarantinedRow
from reasonrec.data.images import DEFAULT_MAX_IMAGE_PIXELS, attach_images


def convert(path: str, images: str | None, quarantine: Quarantine, *, sequences: str = "sequential.txt",
            datamaps: str = "datamaps.json",
            max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> RawDataset:
    """Read `path`/sequential.txt and `path`/datamaps.json (file names overridable as options)."""
    sequences_file = require_file(os.path.join(path, sequences), "P5 sequence file")
    datamaps_file = require_file(os.path.join(path, datamaps), "P5 datamaps file")
    id2user, id2item = _read_datamaps(datamaps_file)

    users, items, positions, lines = [], [], [], []
    seen_users: dict[str, int] = {}
    n_lines = n_events = 0
    for line, tokens in iter_records(sequences_file, delimiter=None, quoted=False):
        n_lines += 1
        if not tokens:
            quarantine.add(sequences_file, line, None, "blank_line")
            continue
        user_token, item_tokens = tokens[0], tokens[1:]
        n_events += len(item_tokens)
        if not item_tokens:
            quarantine.add(sequences_file, line, "item_idx", "empty_sequence", user_token)
            continue
        if user_token not in id2user:
            _set_aside_line(quarantine, sequences_file, line, "unknown_user_index", user_token,
                            len(item_tokens))
            continue
        if user_token in seen_users:  # a second sequence for one user would interleave two orders
            _set_aside_line(quarantine, sequences_file, line, "duplicate_sequence",
                            f"{user_token} (first on line {seen_users[user_token]})", len(item_tokens))
            continue
        seen_users[user_token] = line
        user_id = id2user[user_token]
        for position, token in enumerate(item_tokens):
            if token not in id2item:
                quarantine.add(sequences_file, line, "item_idx", "unknown_item_index", token)
                continue
            users.append(user_id)
            items.append(id2item[token])
            positions.append(position)
            lines.append(line)
    if n_lines == 0:
        raise DataFormatError("empty file (expected lines 'user_idx item_idx ...')", file=sequences_file, line=1)

    interactions = with_source(pd.DataFrame({"user_id": pd.Series(users, dtype="str"),
                                             "item_id": pd.Series(items, dtype="str"),
                                             "timestamp": pd.Series(positions, dtype="int64")}),
                               sequences_file, lines)
    item_table = pd.DataFrame({"item_id": pd.Series(list(id2item.values()), dtype="str")})
    item_table["title"] = item_table["item_id"]
    item_table["text"] = ""
    item_table = attach_images(item_table, images, quarantine, max_image_pixels=max_image_pixels)
    # Users named in datamaps but without a sequence are counted by clean.finalize as "empty_history".
    user_table = pd.DataFrame({"user_id": pd.Series(list(id2user.values()), dtype="str"), "profile": None})
    user_table[SOURCE_FILE] = pd.Categorical([datamaps_file] * len(user_table))
    user_table[SOURCE_LINE] = pd.array([pd.NA] * len(user_table), dtype="Int64")
    stats = {"files": {sequences_file: {"rows_read": n_lines, "events_read": n_events},
                       datamaps_file: {"users": len(id2user), "items": len(id2item)}}}
    return RawDataset(interactions, item_table, user_table, "ordinal", stats)


def _read_datamaps(file: str) -> tuple[dict[str, str], dict[str, str]]:
    """(id2user, id2item) with string keys, as P5 writes them; each must map at least one index."""
    try:
        with open(file, encoding="utf-8") as handle:
            data = json.load(handle)
    except UnicodeDecodeError as err:
        raise decode_error(file, "utf-8", err) from None
    except json.JSONDecodeError as err:
        raise DataFormatError(f"not valid JSON: {err.msg} (column {err.colno})", file=file,
                              line=err.lineno) from None
    except RecursionError:
        raise DataFormatError("not valid JSON: nested too deeply", file=file) from None
    maps = []
    for key in ("id2user", "id2item"):
        mapping = data.get(key) if isinstance(data, dict) else None
        if not isinstance(mapping, dict):
            raise DataFormatError(f"needs an object '{key}' mapping index -> real id", file=file, field=key)
        blank = [index for index, real in mapping.items() if not isinstance(real, str) or not real.strip()]
        if blank:
            raise DataFormatError(f"index {blank[0]!r} maps to no id", file=file, field=key)
        if not mapping:
            raise DataFormatError(f"'{key}' maps no index", file=file, field=key)
        maps.append({str(index): real.strip() for index, real in mapping.items()})
    return maps[0], maps[1]


def _set_aside_line(quarantine: Quarantine, file: str, line: int, reason: str, value: str,
                    n_events: int) -> None:
    """A whole line's events are set aside: count every event, keep one example for the line."""
    quarantine.add_many(reason, n_events, QuarantinedRow(file, line, "user_idx", reason, value))
