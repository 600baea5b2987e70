"""What every converter returns: source rows mapped to canonical columns, before ids get indices.

A converter only *reads* its format. Row-level problems go to the Quarantine with file/line/field; whole-file
problems raise DataFormatError. Shared cleaning (duplicates, unknown items, empty histories) happens once, in
`reasonrec.data.converters.clean`, so every source gets the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class RawDataset:
    # user_id (str), item_id (str), timestamp (int64), optional rating (float), review (str),
    # review_title (str), and _file/_line (where each row came from, so `clean.finalize` can quarantine with
    # file and line). Row order is the source order and breaks timestamp ties.
    interactions: pd.DataFrame
    # item_id (str), title (str), text (str), image_uri (str|None), image_status, image_format (str|None)
    items: pd.DataFrame
    # user_id (str), profile (str|None); None when the source has no user table
    users: pd.DataFrame | None
    timestamp_kind: str  # "unix" or "ordinal"
    # Source-specific counts for the prepare report (e.g. lines read per file).
    stats: dict = field(default_factory=dict)
