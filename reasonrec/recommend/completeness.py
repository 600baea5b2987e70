"""What a night must cover, and the check that its staging folder covers exactly that before it is published.

The nightly job's promise is that a published partition is complete and exact: every requested user appears
once, either with its ranked rows (ranks 1..r, r <= k) or once in `_quarantine/` with a reason. Counting the
write tasks' own statistics cannot prove that (two tasks writing the same file name both report success), so
`verify_staging` reads back what is on disk, the user ids and ranks of every part, and refuses the night when
anything is missing, doubled or unrequested.

Requested users are keyed by `user_id`. A user listed twice in tonight's users file is scored once (the first
row wins) and counted in `duplicates`; a row without a user_id or user_idx is an error naming the file and row
(the part and its row, when tonight's users are a folder of Parquet parts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reasonrec.io import join, open_fs

QUARANTINE_DIR = "_quarantine"
USER_COLUMNS = ("user_id", "user_idx")


class IncompleteNight(RuntimeError):
    """The staging folder does not hold every requested user exactly once: the night must not be published."""


@dataclass(frozen=True)
class RequestedUsers:
    """Tonight's users in file order, de-duplicated on user_id (the first row of each id is kept)."""

    table: pa.Table            # user_id (string), user_idx (int64)
    duplicates: int            # rows dropped because their user_id was listed earlier in the file
    duplicate_examples: list   # up to 5 of the repeated user_ids, for the log

    @property
    def n(self) -> int:
        return self.table.num_rows


def read_requested(uri: str, max_users: int | None = None) -> RequestedUsers:
    """The users a night must cover: the user_id and user_idx columns of `uri` (one Parquet file, or a folder of
    Parquet parts read in name order, as an upstream export writes them), checked, de-duplicated, and cut to the
    first `max_users` distinct users. Raises ValueError naming the file (the part), row and field on a bad row or
    an unreadable part: nothing is scored from a users list with a hole in it."""
    fs, path = open_fs(uri)
    if fs.isdir(path):
        parts = sorted(p for p in fs.ls(path, detail=False)
                       if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith(("_", ".")))
        if not parts:
            raise ValueError(f"{uri}: tonight's users folder holds no .parquet part")
        table = pa.concat_tables(_read_users(fs, part, join(uri, part.rsplit("/", 1)[-1])) for part in parts)
    else:
        table = _read_users(fs, path, uri)
    ids = table["user_id"].to_numpy(zero_copy_only=False).astype(str)
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    repeated = np.setdiff1d(np.arange(len(ids)), keep)
    if max_users is not None:
        keep = keep[:max_users]
    deduped = table.take(pa.array(keep))
    examples = list(dict.fromkeys(ids[repeated].tolist()))[:5]
    return RequestedUsers(deduped, int(len(repeated)), examples)


def _read_users(fs, path: str, where: str) -> pa.Table:
    """One users file's (user_id string, user_idx int64) columns; ValueError naming `where`, row and field."""
    try:
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            missing = [c for c in USER_COLUMNS if c not in names]
            if missing:
                raise ValueError(f"{where}: tonight's users file lacks column(s) {missing} (it has {names})")
            table = parquet.read(columns=list(USER_COLUMNS))
    except (pa.ArrowInvalid, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise ValueError(f"{where}: tonight's users file does not exist") from e
        raise ValueError(f"{where}: not a readable Parquet file ({e})") from e
    for column in USER_COLUMNS:
        nulls = np.flatnonzero(table[column].is_null().to_numpy(zero_copy_only=False))
        if len(nulls):
            raise ValueError(f"{where}: row {int(nulls[0])}, field {column!r} is null ({len(nulls)} such rows); "
                             "every user needs a user_id and a user_idx")
    try:
        return pa.table({"user_id": table["user_id"].cast(pa.string()),
                         "user_idx": table["user_idx"].cast(pa.int64())})
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ValueError(f"{where}: user_id must be a string and user_idx an integer column ({e})") from e


@dataclass(frozen=True)
class NightOnDisk:
    """What the staging folder holds, counted from the files themselves."""

    users: int          # scored users (each with ranks 1..r)
    rows: int           # table rows
    quarantined: int    # users in _quarantine/
    short_lists: int    # scored users with fewer than k rows (fewer candidates left than k)
    files: int          # table part files


def verify_staging(staging: str, requested: RequestedUsers, k: int) -> NightOnDisk:
    """Read back every part under `staging`; raise IncompleteNight unless each requested user is there exactly
    once (rows with ranks 1..r, 1 <= r <= k, or one quarantine row) and nothing else is."""
    fs, root = open_fs(staging)
    try:
        files = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
    except FileNotFoundError:
        files = []
    quarantine_prefix = join(root, QUARANTINE_DIR) + "/"
    held_files = [p for p in files if p.startswith(quarantine_prefix)]
    table_files = [p for p in files if not p.startswith(quarantine_prefix)]
    ids = requested.table["user_id"]
    index = pd.Index(ids.to_numpy().astype(object))   # unique: read_requested de-duplicated it
    problems: list[str] = []

    # seen[user, rank]: is each (user, rank) row on disk never, once or more (0/1/2); n x (k + 1) bytes (11 MB at
    # 1M users, k=10), where collecting every row's key would take 80 MB and a sort
    seen = np.zeros((requested.n, k + 1), dtype=np.uint8)
    flat = seen.reshape(-1)   # a view: seen[user, rank] is flat[user * (k + 1) + rank]
    for path in table_files:
        part = _read(fs, path, ["user_id", "rank"])
        position, known = _positions(part["user_id"], index, fs.unstrip_protocol(path), problems)
        rank = part["rank"].to_numpy().astype(np.int64)[known]
        if ((rank < 1) | (rank > k)).any():
            problems.append(f"{fs.unstrip_protocol(path)}: rank outside 1..{k}")
            rank = np.clip(rank, 0, k)   # out-of-range ranks counted at 0 (ignored) or k: the night fails anyway
        keys, counts = np.unique(position * (k + 1) + rank, return_counts=True)
        flat[keys] = np.minimum(flat[keys] + counts.clip(max=2), 2)   # 0, 1 or 2 = "more than once"
    doubled = int((seen[:, 1:] > 1).sum())
    if doubled:
        problems.append(f"{doubled} (user, rank) rows appear more than once")
    present = seen[:, 1:] > 0
    rows_per_user = present.sum(axis=1)
    # ranks 1..r exactly: r ranks present and the highest present is r (no gap below it)
    top_rank = np.where(present.any(axis=1), k - np.argmax(present[:, ::-1], axis=1), 0)
    scored = rows_per_user > 0
    gaps = np.flatnonzero(scored & (top_rank != rows_per_user))
    if len(gaps) and not doubled:
        problems.append(f"{len(gaps)} users' ranks are not 1..r, e.g. {ids[int(gaps[0])].as_py()!r}")

    held = np.zeros(requested.n, dtype=np.int64)
    for path in held_files:
        held_ids = _read(fs, path, ["user_id"])["user_id"]
        position, _ = _positions(held_ids, index, fs.unstrip_protocol(path), problems)
        np.add.at(held, position, 1)
    _describe(problems, ids, np.flatnonzero(held > 1), "quarantined more than once")
    _describe(problems, ids, np.flatnonzero(scored & (held > 0)), "both scored and quarantined")
    _describe(problems, ids, np.flatnonzero(~scored & (held == 0)), "missing (neither scored nor quarantined)")
    if problems:
        raise IncompleteNight(f"{staging}: the night is not complete and exact: " + "; ".join(problems))
    return NightOnDisk(users=int(scored.sum()), rows=int(rows_per_user.sum()), quarantined=int(held.sum()),
                       short_lists=int((scored & (rows_per_user < k)).sum()), files=len(table_files))


def check_night(staging: str, requested: RequestedUsers, k: int, parts: list[dict]) -> NightOnDisk:
    """The commit gate: the staging folder read back (every requested user exactly once, scored or quarantined),
    and the write tasks' statistics (one dict per part: users, rows) agreeing with it (they feed the summary's
    route shares and latencies)."""
    on_disk = verify_staging(staging, requested, k)
    reported = (sum(p["users"] for p in parts), sum(p["rows"] for p in parts))
    if reported != (on_disk.users, on_disk.rows):
        raise IncompleteNight(f"{staging}: the write tasks reported (users, rows) = {reported}, the files hold "
                              f"{(on_disk.users, on_disk.rows)}")
    return on_disk


def _read(fs, path: str, columns: list[str]) -> pa.Table:
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def _positions(user_id: pa.ChunkedArray, requested: pd.Index, where: str,
               problems: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's position in the requested users, and which rows have one: rows of users nobody asked for are
    reported and skipped. `requested` is a pandas Index so its hash table is built once, not once per part."""
    position = requested.get_indexer(user_id.to_numpy().astype(object))
    known = position >= 0
    if not known.all():
        example = user_id.filter(pa.array(~known))[0].as_py()
        problems.append(f"{where}: {int((~known).sum())} rows of users not requested tonight, e.g. {example!r}")
    return position[known].astype(np.int64), known


def _describe(problems: list[str], ids: pa.ChunkedArray, positions: np.ndarray, what: str) -> None:
    if len(positions):
        examples = ", ".join(repr(ids[int(p)].as_py()) for p in positions[:3])
        problems.append(f"{len(positions)} users {what}, e.g. {examples}")
