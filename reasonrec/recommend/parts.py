"""A night's Parquet parts under its staging folder: table rows in part files, quarantined users in
_quarantine/, each named from the users it holds (reasonrec.recommend.completeness reads them back)."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq

from reasonrec.io import join, open_fs
from reasonrec.recommend.completeness import QUARANTINE_DIR
from reasonrec.recommend.table import QUARANTINE_SCHEMA, TABLE_COLUMNS


def part_name(user_ids: pa.ChunkedArray | pa.Array) -> str | None:
    """A part's file name from the users it holds: the same batch (a retried task) overwrites its own file
    instead of adding a second copy, and two different batches never share a name, whatever their user_idx
    (many unknown users share one). A night's user_ids are distinct, so distinct batches hold distinct sets."""
    users = sorted(set(user_ids.to_pylist()))
    if not users:
        return None
    digest = hashlib.sha256("\0".join(users).encode()).hexdigest()[:20]
    return f"part-{digest}-{len(users):06d}.parquet"


def write_table_part(staging: str, rows: pa.Table) -> str | None:
    """rows (TABLE_COLUMNS and any extra columns) -> <staging>/<part_name>; None when there is no row."""
    name = part_name(rows["user_id"])
    if name is None:
        return None
    fs, root = open_fs(staging)
    with fs.open(join(root, name), "wb") as f:
        pq.write_table(rows.select(TABLE_COLUMNS), f)
    return name


def write_quarantine_part(staging: str, held: pa.Table) -> str | None:
    """Quarantined users (QUARANTINE_SCHEMA) -> <staging>/_quarantine/<part_name>; None when there is none."""
    name = part_name(held["user_id"])
    if name is None:
        return None
    fs, root = open_fs(staging)
    fs.makedirs(join(root, QUARANTINE_DIR), exist_ok=True)
    with fs.open(join(root, QUARANTINE_DIR, name), "wb") as f:
        pq.write_table(held.select(QUARANTINE_SCHEMA.names), f)
    return name
