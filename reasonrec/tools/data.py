"""What a tool trains and scores on: one split's interactions as per-user histories, plus content features.

A tool never reads Parquet itself. `ToolData.load` gathers, once, everything any tool needs (histories
for sequential models, pairs for collaborative ones, CTR rows for CTR models, the fixed validation
candidates for early stopping), so every tool in the zoo is trained and judged on exactly the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from reasonrec.data.candidates import read_candidates, read_ctr
from reasonrec.data.schema import Dataset
from reasonrec.data.splits import Split, load_split
from reasonrec.io import join, open_fs

PAD = -1  # padding value in `Queries.history` (item indices are >= 0)

# "ctr_*" scopes are the CTR split's histories: CTR rows must only ever be paired with histories of the split
# they were drawn from, or a CTR positive would sit in its own user's history (a leak).
HistoryScope = Literal["train", "train+valid", "all", "ctr_train", "ctr_train+valid"]


@dataclass
class Queries:
    """What a tool sees about the users it scores: their index and their recent history.

    history: [n, max_len] item_idx, right-aligned (most recent item last), left-padded with PAD.
    Collaborative tools read user_idx; sequential tools read history; CTR tools may read both.
    """

    user_idx: np.ndarray
    history: np.ndarray

    def __len__(self) -> int:
        return len(self.user_idx)

    def take(self, rows: slice | np.ndarray) -> "Queries":
        return Queries(self.user_idx[rows], self.history[rows])


@dataclass
class Histories:
    """Chronological item sequences per user in CSR form: user u's items are items[offsets[u]:offsets[u+1]]."""

    offsets: np.ndarray
    items: np.ndarray

    @classmethod
    def from_frames(cls, frames: list[pd.DataFrame], n_users: int) -> "Histories":
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        # lexsort is stable: for equal (user, timestamp) the earlier frame (train before valid) stays first.
        order = np.lexsort((frame["timestamp"].to_numpy(), frame["user_idx"].to_numpy())) \
            if len(frames) > 1 else np.arange(len(frame))
        users = frame["user_idx"].to_numpy()[order]
        items = frame["item_idx"].to_numpy()[order].astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))]).astype(np.int64)
        return cls(offsets, items)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def padded(self, user_idx: np.ndarray, max_len: int) -> np.ndarray:
        """[n, max_len] most recent items of each user, right-aligned, PAD on the left."""
        out = np.full((len(user_idx), max_len), PAD, dtype=np.int64)
        for row, u in enumerate(user_idx):
            seq = self.items[self.offsets[u]:self.offsets[u + 1]][-max_len:]
            if len(seq):
                out[row, max_len - len(seq):] = seq
        return out


@dataclass
class ToolData:
    """Everything the zoo trains and is evaluated on, for one dataset and one ranking split."""

    dataset: Dataset
    split: Split
    train: Histories                      # train part only: what models fit on
    train_valid: Histories                # train + valid: the history a model sees when scoring test
    everything: Histories                 # every interaction: the history for tonight's recommendations
    valid_candidates: pd.DataFrame        # fixed 1+N lists for early stopping (user_idx, target_item_idx, candidates)
    test_candidates: pd.DataFrame         # fixed 1+N lists for the reported metrics
    ctr: dict[str, pd.DataFrame] | None   # {"train","valid","test"}: user_idx, item_idx, label (CTR tools)
    ctr_histories: dict[str, Histories] | None  # {"ctr_train", "ctr_train+valid"}: the CTR split's histories
    item_features: np.ndarray | None      # [n_items, d] float32 content features (+V variants), else None

    @property
    def n_users(self) -> int:
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def histories(self, scope: HistoryScope) -> Histories:
        if scope.startswith("ctr_"):
            if self.ctr_histories is None:
                raise ValueError("this dataset has no CTR split (prepare it with the random split and CTR negatives)")
            return self.ctr_histories[scope]
        return {"train": self.train, "train+valid": self.train_valid, "all": self.everything}[scope]

    def queries(self, user_idx: np.ndarray, scope: HistoryScope, max_len: int) -> Queries:
        user_idx = np.asarray(user_idx, dtype=np.int64)
        return Queries(user_idx, self.histories(scope).padded(user_idx, max_len))

    @classmethod
    def load(cls, dataset_root: str, split: str = "loo", negatives: int = 99, ctr_split: str = "random",
             ctr_ratio: int = 4, item_features: np.ndarray | None = None) -> "ToolData":
        """Load a prepared dataset's ranking split, its fixed candidates and (if prepared) its CTR rows."""
        ds = Dataset.load(dataset_root)
        splits_root = join(dataset_root, "splits")
        ranking = load_split(splits_root, split)
        candidates_dir = join(splits_root, split, "candidates", f"neg{negatives}")
        ctr, ctr_histories = None, None
        ctr_dir = join(splits_root, ctr_split, "ctr", f"1to{ctr_ratio}")
        fs, ctr_path = open_fs(ctr_dir)
        if fs.exists(join(ctr_path, "train.parquet")):
            ctr = {part: read_ctr(join(ctr_dir, f"{part}.parquet")) for part in ("train", "valid", "test")}
            ctr_split_frames = load_split(splits_root, ctr_split)
            ctr_histories = {
                "ctr_train": Histories.from_frames([ctr_split_frames.train], ds.n_users),
                "ctr_train+valid": Histories.from_frames([ctr_split_frames.train, ctr_split_frames.valid], ds.n_users),
            }
        if item_features is not None and item_features.shape[0] != ds.n_items:
            raise ValueError(f"item_features has {item_features.shape[0]} rows, dataset has {ds.n_items} items")
        return cls(
            dataset=ds, split=ranking,
            train=Histories.from_frames([ranking.train], ds.n_users),
            train_valid=Histories.from_frames([ranking.train, ranking.valid], ds.n_users),
            everything=Histories.from_frames([ds.interactions], ds.n_users),
            valid_candidates=read_candidates(join(candidates_dir, "valid.parquet")),
            test_candidates=read_candidates(join(candidates_dir, "test.parquet")),
            ctr=ctr, ctr_histories=ctr_histories, item_features=item_features,
        )
