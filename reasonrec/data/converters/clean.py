"""The cleaning every source gets, applied once after its converter, so all datasets follow the same rules.

Rows set aside go to the quarantine with the file and line they came from (the `_file`/`_line` columns the
converters carry, see `reading`); everything else that is only worth knowing is counted in
`stats["clean"]`. Items nobody interacted with are kept: they are valid candidates for ranking.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.reading import SOURCE_COLUMNS, is_in, quarantine_rows
from reasonrec.data.errors import MAX_EXAMPLES_PER_REASON, DataFormatError, Quarantine
from reasonrec.data.schema import IMAGE_STATUSES

ITEM_COLUMNS = ("item_id", "title", "text", "image_uri", "image_status", "image_format")


def finalize(raw: RawDataset, quarantine: Quarantine, source_name: str) -> RawDataset:
    """Drop (and quarantine) rows that cannot enter the canonical tables; count what is kept but flawed."""
    _require_columns(raw)
    counts: dict[str, int] = {"interactions_in": len(raw.interactions), "items_in": len(raw.items),
                              "users_in": 0 if raw.users is None else len(raw.users)}

    items = _normalise_ids(raw.items, ["item_id"])
    items = _drop_empty_ids(items, ["item_id"], quarantine, source_name, counts)
    items = _drop_repeats(items, ["item_id"], "duplicate_item", quarantine, source_name, counts)
    items = _fill_item_text(items, counts)

    interactions = _normalise_ids(raw.interactions, ["user_id", "item_id"])
    interactions = _drop_empty_ids(interactions, ["user_id", "item_id"], quarantine, source_name, counts)
    unknown = ~is_in(interactions["item_id"], items["item_id"])
    quarantine_rows(quarantine, interactions[unknown], reason="unknown_item", field="item_id",
                    value_column="item_id", default_file=source_name)
    counts["unknown_item"] = int(unknown.sum())
    interactions = interactions[~unknown]
    interactions = _drop_repeats(interactions, _event_key(interactions), "duplicate_event", quarantine,
                                 source_name, counts)

    users = raw.users
    if users is not None:
        users = _normalise_ids(users, ["user_id"])
        users = _drop_empty_ids(users, ["user_id"], quarantine, source_name, counts)
        users = _drop_repeats(users, ["user_id"], "duplicate_user", quarantine, source_name, counts)
        inactive = ~is_in(users["user_id"], interactions["user_id"])
        quarantine_rows(quarantine, users[inactive], reason="empty_history", field="user_id",
                        value_column="user_id", default_file=source_name)
        counts["empty_history"] = int(inactive.sum())
        users = users[~inactive].drop(columns=list(SOURCE_COLUMNS), errors="ignore").reset_index(drop=True)
        with_profile = users["user_id"][users["profile"].notna()]
        active = interactions["user_id"].drop_duplicates()
        counts["users_without_profile"] = int((~is_in(active, with_profile)).sum())

    interactions = interactions.drop(columns=list(SOURCE_COLUMNS), errors="ignore").reset_index(drop=True)
    interactions["timestamp"] = interactions["timestamp"].astype(np.int64)
    items = items.drop(columns=list(SOURCE_COLUMNS), errors="ignore").reset_index(drop=True)

    counts["interactions_out"] = len(interactions)
    counts["items_out"] = len(items)
    counts["users_out"] = int(interactions["user_id"].nunique())
    counts["items_without_interactions"] = int((~is_in(items["item_id"], interactions["item_id"])).sum())
    stats = dict(raw.stats)
    stats["source"] = source_name
    stats["clean"] = counts
    stats["items_by_image_status"] = {status: int((items["image_status"] == status).sum())
                                      for status in IMAGE_STATUSES}
    return RawDataset(interactions, items, users, raw.timestamp_kind, stats)


def _require_columns(raw: RawDataset) -> None:
    """A converter that forgets a column is a bug; say which one instead of failing later in build_tables."""
    for table, frame, columns in (("interactions", raw.interactions, ("user_id", "item_id", "timestamp")),
                                  ("items", raw.items, ITEM_COLUMNS),
                                  ("users", raw.users, ("user_id", "profile"))):
        if frame is None:
            continue
        for column in columns:
            if column not in frame:
                raise DataFormatError(f"converter output lacks column '{column}'", file=table, field=column)
    if raw.timestamp_kind not in ("unix", "ordinal"):
        raise DataFormatError(f"timestamp_kind must be 'unix' or 'ordinal', got {raw.timestamp_kind!r}",
                              field="timestamp_kind")


def _normalise_ids(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Ids are strings without surrounding blanks; missing stays missing (NaN), for _drop_empty_ids."""
    frame = frame.copy()
    for column in columns:
        values = frame[column].astype(object)
        present = values.notna()
        frame[column] = values.where(~present, values[present].astype(str).str.strip()).astype("str")
    return frame


def _drop_empty_ids(frame: pd.DataFrame, columns: list[str], quarantine: Quarantine, source_name: str,
                    counts: dict[str, int]) -> pd.DataFrame:
    for column in columns:
        empty = frame[column].isna() | (frame[column] == "")
        quarantine_rows(quarantine, frame[empty], reason="empty_id", field=column, default_file=source_name)
        counts["empty_id"] = counts.get("empty_id", 0) + int(empty.sum())
        frame = frame[~empty]
    return frame


def _event_key(interactions: pd.DataFrame) -> list[str]:
    """Same user, item and time is one event. Where reviews exist, two different reviews written on the
    same day (Amazon timestamps are whole days) are two events; the same review twice is a duplicate."""
    key = ["user_id", "item_id", "timestamp"]
    return key + ["review"] if "review" in interactions else key


def _drop_repeats(frame: pd.DataFrame, key: list[str], reason: str, quarantine: Quarantine, source_name: str,
                  counts: dict[str, int]) -> pd.DataFrame:
    """Keep the first row per key (source order), quarantine the rest."""
    repeated = frame.duplicated(key, keep="first")
    rows = frame[repeated]
    if len(key) > 1:  # name the whole key in the examples: "user_id=u1 item_id=i9 timestamp=3"
        shown = [column for column in key if column != "review"]
        head = rows.iloc[:MAX_EXAMPLES_PER_REASON]
        described = [" ".join(f"{c}={v}" for c, v in zip(shown, values))
                     for values in head[shown].itertuples(index=False)]
        rows = rows.assign(_key=described + [None] * (len(rows) - len(head)))
    quarantine_rows(quarantine, rows, reason=reason, field="+".join(key),
                    value_column=key[0] if len(key) == 1 else "_key", default_file=source_name)
    counts[reason] = int(repeated.sum())
    return frame[~repeated]


def _fill_item_text(items: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    """Titles are required downstream (prompts, explanations): fall back to the id, as for ASIN-only data."""
    items = items.copy()
    title = items["title"].astype(object)
    untitled = title.isna() | (title.astype(str).str.strip() == "")
    counts["items_titled_by_id"] = int(untitled.sum())
    items["title"] = title.where(~untitled, items["item_id"]).astype("str")
    text = items["text"].astype(object)
    items["text"] = text.where(text.notna(), "").astype("str")
    return items
