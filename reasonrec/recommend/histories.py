"""Tonight's histories as a Parquet file the nightly stream reads in pieces, so no scoring actor holds every
user's history (memory bounded by the batch, not by the data set).

    <dataset>/tonight/histories.parquet    one row per user, sorted by (dense) user_idx, row groups of
                                           ROW_GROUP_USERS users:
        user_id           string
        user_idx          int64
        history           list<int64>   item_idx, oldest first: every interaction (Bundle.everything)
        evidence_horizon  float64       C(u) over every interaction (Bundle.tonight_eh)

`ensure_histories` writes it once per dataset (jobs/score.py's setup; rewritten when the dataset's manifest or
interactions.parquet changed) from three interaction columns only; `HistoryReader` reads the row groups a batch
of users falls in. Bundle.everything / tonight_eh and this file are computed by the same two functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reasonrec.data.evidence import evidence_horizon
from reasonrec.data.schema import Dataset
from reasonrec.data.splits import Split
from reasonrec.io import join, open_fs, replaced_whole
from reasonrec.tools.data import Histories

ROW_GROUP_USERS = 8192          # a batch of ~1k sorted users touches one or two row groups
SOURCE_KEY = b"reasonrec.source"  # file metadata: what the file was made from (a stale file is rewritten)
HISTORIES_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("user_idx", pa.int64(), nullable=False),
    pa.field("history", pa.list_(pa.int64()), nullable=False),
    pa.field("evidence_horizon", pa.float64(), nullable=False),
])


def histories_path(dataset: str) -> str:
    return join(dataset, "tonight", "histories.parquet")


def everything(ds: Dataset, interactions: pd.DataFrame) -> Histories:
    """Every interaction, oldest first per user (interactions.parquet is stored in that order)."""
    return Histories.from_frames([interactions], ds.n_users)


def tonight_eh(ds: Dataset, interactions: pd.DataFrame) -> np.ndarray:
    """C(u) over every interaction (a split's evidence.parquet describes only its train part). `interactions`
    needs user_idx and timestamp."""
    empty = interactions.iloc[:0]
    split = Split("all", interactions, empty, empty, {"n_users": ds.n_users, "n_items": ds.n_items})
    return evidence_horizon(ds, split)["evidence_horizon"].to_numpy(dtype=np.float64)


def _source(ds: Dataset) -> str:
    """The manifest and the interactions file's size: re-preparing a dataset changes one of them."""
    fs, path = open_fs(ds.table_path("interactions"))
    return json.dumps({"manifest": ds.manifest.model_dump(mode="json"), "interactions_bytes": fs.size(path)},
                      sort_keys=True)


def build_histories(ds: Dataset) -> pa.Table:
    """The file's table, from three interaction columns (the reviews and ratings are never read)."""
    fs, path = open_fs(ds.table_path("interactions"))
    frame = pq.read_table(path, filesystem=fs, columns=["user_idx", "item_idx", "timestamp"]).to_pandas()
    hist, eh = everything(ds, frame), tonight_eh(ds, frame)
    users = ds.users.sort_values("user_idx")
    return pa.table({
        "user_id": pa.array(users["user_id"].to_numpy().astype(str), pa.string()),
        "user_idx": pa.array(np.arange(ds.n_users, dtype=np.int64)),
        "history": pa.ListArray.from_arrays(pa.array(hist.offsets.astype(np.int32)), pa.array(hist.items)),
        "evidence_horizon": pa.array(eh, pa.float64()),
    }, schema=HISTORIES_SCHEMA)


def ensure_histories(dataset: str) -> str:
    """Write <dataset>/tonight/histories.parquet unless an up-to-date one is there; returns its URI."""
    ds = Dataset.load(dataset)
    uri, source = histories_path(dataset), _source(ds)
    fs, path = open_fs(uri)
    if fs.exists(path):
        with fs.open(path, "rb") as f:
            made_from = (pq.ParquetFile(f).schema_arrow.metadata or {}).get(SOURCE_KEY, b"").decode()
        if made_from == source:
            return uri
    table = build_histories(ds).replace_schema_metadata({SOURCE_KEY: source.encode()})
    with replaced_whole(fs, path) as f:
        pq.write_table(table, f, compression="zstd", row_group_size=ROW_GROUP_USERS)
    return uri


@dataclass
class UserHistories:
    """What the file says about a batch of users, in the order asked: CSR histories and C(u)."""

    user_id: np.ndarray     # str [n]
    offsets: np.ndarray     # int64 [n + 1]
    items: np.ndarray       # int64
    eh: np.ndarray          # float64 [n]


class HistoryReader:
    """Reads the histories of a batch of users from the row groups they fall in (rows are dense and sorted by
    user_idx, so row group g holds users starts[g] <= u < starts[g + 1]: no statistics, no scan)."""

    def __init__(self, dataset: str):
        self.uri = histories_path(dataset)
        self.fs, self.path = open_fs(self.uri)
        with self.fs.open(self.path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        self.n_users = meta.num_rows
        self.starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])

    def read(self, user_idx: np.ndarray) -> UserHistories:
        """Every user_idx must be in 0..n_users-1 (quarantine the others first)."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        if not len(user_idx):
            return UserHistories(np.zeros(0, dtype=str), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                                 np.zeros(0))
        if (user_idx.min() < 0 or user_idx.max() >= self.n_users):
            raise IndexError(f"{self.uri}: user_idx outside 0..{self.n_users - 1}")
        groups = np.unique(np.searchsorted(self.starts, user_idx, side="right") - 1)
        with self.fs.open(self.path, "rb") as f:
            table = pq.ParquetFile(f).read_row_groups(groups.tolist())
        # Row of user u in the table read: its row within its group plus the rows of the groups read before it.
        before = np.cumsum([0] + [self.starts[g + 1] - self.starts[g] for g in groups])
        group_of = np.searchsorted(groups, np.searchsorted(self.starts, user_idx, side="right") - 1)
        rows = table.take(pa.array(before[group_of] + user_idx - self.starts[groups[group_of]]))
        got = rows["user_idx"].to_numpy()
        if not np.array_equal(got, user_idx):
            raise ValueError(f"{self.uri}: row for user_idx {user_idx[got != user_idx][0]} holds another user "
                             "(not dense and sorted by user_idx; delete it to rewrite)")
        history = rows["history"].combine_chunks()
        offsets = history.offsets.to_numpy().astype(np.int64)
        return UserHistories(rows["user_id"].to_numpy(zero_copy_only=False).astype(str), offsets - offsets[0],
                             history.flatten().to_numpy().astype(np.int64), rows["evidence_horizon"].to_numpy())
