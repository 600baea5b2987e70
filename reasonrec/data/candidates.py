"""Fixed evaluation candidates and CTR negatives, drawn once, seeded, and written to disk.

Sampled ranking (1+99 on Amazon, 1+9 on Pixel) must score every model on the *same* lists, so the lists
are an artefact, not something each evaluator re-draws. Negatives are drawn uniformly without replacement
from the items the user never interacted with in any part of the split (train, valid or test), so a
negative is never a hidden positive.

Sampling from "items the user never touched" without building that set: draw distinct ranks r in
[0, n_items - |seen|) and map each to the r-th unseen item, r + #{seen items s_j : s_j - j <= r} (seen
sorted). Each user (and purpose) has its own generator (`user_rng`), so a user's lists do not depend on
other users or on the order they are processed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse

from reasonrec.data.schema import Dataset
from reasonrec.data.splits import SPLIT_PARTS, Split, read_artifact, user_rng, write_artifact

CANDIDATES_SCHEMA = pa.schema([
    pa.field("user_idx", pa.int32(), nullable=False),
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("target_item_idx", pa.int32(), nullable=False),
    pa.field("target_position", pa.int32(), nullable=False),  # where the target sits in `candidates`
    pa.field("candidates", pa.list_(pa.int32()), nullable=False),
])

CTR_SCHEMA = pa.schema([
    pa.field("user_idx", pa.int32(), nullable=False),
    pa.field("item_idx", pa.int32(), nullable=False),
    pa.field("label", pa.int8(), nullable=False),
])


# --------------------------------------------------------------------------------------------- sampled ranking

def sample_candidates(ds: Dataset, split: Split, part: Literal["valid", "test"], n_negatives: int, seed: int,
                      on_too_few: Literal["raise", "skip"] = "raise") -> pd.DataFrame:
    """One row per interaction in `part`: the target plus `n_negatives` unseen items, in random order.

    The negatives come out of the generator in random order and the target is inserted at a uniformly
    random position, which is the same distribution as shuffling the whole list. A user with fewer than
    `n_negatives` unseen items raises (default) or, with on_too_few="skip", is left out and listed in the
    manifest (frame.attrs["manifest"]["stats"]["skipped_users"]); lists are never shortened.
    """
    if part not in ("valid", "test"):
        raise ValueError(f"candidates are for 'valid' or 'test', got {part!r}")
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    if on_too_few not in ("raise", "skip"):
        raise ValueError(f"on_too_few must be 'raise' or 'skip', got {on_too_few!r}")
    _check_split_matches(ds, split)
    seen_offsets, seen_items = user_item_sets(split)
    targets = split.part(part)
    target_users = targets["user_idx"].to_numpy()
    target_items = targets["item_idx"].to_numpy()
    user_ids = ds.users["user_id"].to_numpy(dtype=object)

    slates = np.empty((len(targets), n_negatives + 1), dtype=np.int32)
    positions = np.empty(len(targets), dtype=np.int32)
    keep = np.ones(len(targets), dtype=bool)
    skipped: list[str] = []
    for u, first, count in zip(*_runs(target_users)):
        seen = seen_items[seen_offsets[u]:seen_offsets[u + 1]]
        n_unseen = ds.n_items - len(seen)
        if n_unseen < n_negatives:
            message = (f"user {user_ids[u]!r} (user_idx {u}) never interacted with only {n_unseen} of "
                       f"{ds.n_items} items, fewer than the {n_negatives} negatives a {part} list needs")
            if on_too_few == "raise":
                raise ValueError(message + "; pass on_too_few='skip' to leave such users out (they are listed)")
            keep[first:first + count] = False
            skipped.append(str(user_ids[u]))
            continue
        rng = user_rng(seed, f"candidates/{split.name}/{part}", user_ids[u])
        for row in range(first, first + count):
            negatives = _sample_unseen(seen, n_unseen, n_negatives, rng)
            position = int(rng.integers(n_negatives + 1))
            slates[row, :position] = negatives[:position]
            slates[row, position] = target_items[row]
            slates[row, position + 1:] = negatives[position:]
            positions[row] = position

    frame = pd.DataFrame({
        "user_idx": target_users[keep].astype(np.int32),
        "user_id": pd.Series(user_ids[target_users[keep]], dtype="str"),
        "target_item_idx": target_items[keep].astype(np.int32),
        "target_position": positions[keep],
        "candidates": list(slates[keep]),
    })
    frame.attrs["manifest"] = {
        "kind": "candidates",
        "params": {"split": split.name, "part": part, "n_negatives": n_negatives, "seed": seed,
                   "on_too_few": on_too_few, "negatives_from": "items never seen in train/valid/test",
                   "numpy": np.__version__},
        "stats": {"n_rows": len(frame), "n_users": int(frame["user_idx"].nunique()),
                  "n_skipped_users": len(skipped), "skipped_users": skipped},
    }
    return frame


def candidate_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The candidate lists as one (rows, 1 + n_negatives) int32 array, for batched scoring."""
    if len(frame) == 0:
        return np.empty((0, 0), dtype=np.int32)
    return np.stack(frame["candidates"].to_numpy()).astype(np.int32, copy=False)


# --------------------------------------------------------------------------------------------- full ranking

@dataclass
class FullRankingTargets:
    """Targets of a part and the items a scorer must mask out (seen in earlier parts).

    `exclude` is a (n_users, n_items) boolean CSR array: row u marks u's train items (train + valid for
    the test part). Targets the user had already seen before are *not* unmasked (that would point at
    them); `targets.target_seen_before` flags them so an evaluator can count or drop them.
    """

    targets: pd.DataFrame  # user_idx, target_item_idx, target_seen_before
    exclude: sparse.csr_array


def full_ranking_targets(split: Split, part: Literal["valid", "test"]) -> FullRankingTargets:
    if part not in ("valid", "test"):
        raise ValueError(f"full ranking is for 'valid' or 'test', got {part!r}")
    earlier = [split.train] + ([split.valid] if part == "test" else [])
    users = np.concatenate([f["user_idx"].to_numpy() for f in earlier])
    items = np.concatenate([f["item_idx"].to_numpy() for f in earlier])
    exclude = sparse.coo_array((np.ones(len(users), dtype=np.int32), (users, items)),
                               shape=(split.n_users, split.n_items)).tocsr()
    exclude.sum_duplicates()
    exclude = exclude.astype(bool)
    targets = split.part(part)
    target_users = targets["user_idx"].to_numpy().astype(np.int32)
    target_items = targets["item_idx"].to_numpy().astype(np.int32)
    seen_before = _contains(exclude, target_users, target_items)
    frame = pd.DataFrame({"user_idx": target_users, "target_item_idx": target_items,
                          "target_seen_before": seen_before})
    return FullRankingTargets(frame, exclude)


# --------------------------------------------------------------------------------------------- CTR

def sample_ctr(ds: Dataset, split: Split, part: Literal["train", "valid", "test"], negatives_per_positive: int,
               seed: int) -> pd.DataFrame:
    """Each interaction of `part` as a positive (label 1), followed by its `negatives_per_positive` negatives.

    Negatives exclude every item of the user's train/valid/test. A user's negatives (all positives together)
    are drawn without replacement; only when the user has fewer unseen items than needed are the unseen
    items cycled (each round a fresh permutation), so the label ratio stays exact. Such users are counted
    in the manifest (users_with_repeated_negatives).
    """
    if part not in SPLIT_PARTS:
        raise ValueError(f"unknown split part {part!r}; expected one of {SPLIT_PARTS}")
    if negatives_per_positive < 1:
        raise ValueError(f"negatives_per_positive must be >= 1, got {negatives_per_positive}")
    _check_split_matches(ds, split)
    seen_offsets, seen_items = user_item_sets(split)
    positives = split.part(part)
    pos_users = positives["user_idx"].to_numpy()
    pos_items = positives["item_idx"].to_numpy()
    user_ids = ds.users["user_id"].to_numpy(dtype=object)
    k = negatives_per_positive
    negatives = np.empty((len(positives), k), dtype=np.int32)
    repeated = 0
    for u, first, count in zip(*_runs(pos_users)):
        seen = seen_items[seen_offsets[u]:seen_offsets[u + 1]]
        n_unseen = ds.n_items - len(seen)
        if n_unseen == 0:
            raise ValueError(f"user {user_ids[u]!r} (user_idx {u}) interacted with every item; "
                             "no CTR negatives can be drawn")
        rng = user_rng(seed, f"ctr/{split.name}/{part}", user_ids[u])
        full_rounds, rest = divmod(count * k, n_unseen)
        repeated += count * k > n_unseen
        ranks = [rng.permutation(n_unseen) for _ in range(full_rounds)]
        ranks.append(rng.choice(n_unseen, size=rest, replace=False))
        drawn = _ranks_to_items(seen, np.concatenate(ranks))
        negatives[first:first + count] = drawn.reshape(count, k)

    items = np.column_stack([pos_items.astype(np.int32), negatives]).ravel()
    labels = np.tile(np.array([1] + [0] * k, dtype=np.int8), len(positives))
    frame = pd.DataFrame({"user_idx": np.repeat(pos_users, k + 1).astype(np.int32), "item_idx": items,
                          "label": labels})
    frame.attrs["manifest"] = {
        "kind": "ctr",
        "params": {"split": split.name, "part": part, "negatives_per_positive": k, "seed": seed,
                   "negatives_from": "items never seen in train/valid/test", "numpy": np.__version__},
        "stats": {"n_rows": len(frame), "n_positives": len(positives), "n_negatives": len(positives) * k,
                  "users_with_repeated_negatives": int(repeated)},
    }
    return frame


# --------------------------------------------------------------------------------------------- storage

def write_candidates(frame: pd.DataFrame, path: str) -> None:
    """path must end in .parquet; the manifest (seed, params, stats) goes beside it as .json."""
    write_artifact(frame, CANDIDATES_SCHEMA, path)


def read_candidates(path: str) -> pd.DataFrame:
    return read_artifact(path)


def write_ctr(frame: pd.DataFrame, path: str) -> None:
    write_artifact(frame, CTR_SCHEMA, path)


def read_ctr(path: str) -> pd.DataFrame:
    return read_artifact(path)


# --------------------------------------------------------------------------------------------- helpers

def user_item_sets(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, items) CSR of each user's distinct items over train + valid + test, items sorted."""
    frames = [split.part(p) for p in SPLIT_PARTS]
    users = np.concatenate([f["user_idx"].to_numpy() for f in frames]).astype(np.int64)
    items = np.concatenate([f["item_idx"].to_numpy() for f in frames]).astype(np.int64)
    keys = np.unique(users * split.n_items + items)
    key_users, key_items = np.divmod(keys, split.n_items)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(key_users, minlength=split.n_users))])
    return offsets, key_items.astype(np.int32)


def _sample_unseen(seen: np.ndarray, n_unseen: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct items not in `seen` (sorted), uniformly, in random order."""
    return _ranks_to_items(seen, rng.choice(n_unseen, size=k, replace=False))


def _ranks_to_items(seen: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Map rank r to the r-th item (0-based) that is not in the sorted array `seen`."""
    shifted = seen.astype(np.int64) - np.arange(len(seen))
    return (ranks + np.searchsorted(shifted, ranks, side="right")).astype(np.int32)


def _runs(sorted_users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, first row, row count) for each run of equal user_idx in a user-sorted array."""
    if len(sorted_users) and (np.diff(sorted_users) < 0).any():
        raise ValueError("split part is not sorted by user_idx; use frames produced by reasonrec.data.splits")
    users, first, counts = np.unique(sorted_users, return_index=True, return_counts=True)
    return users, first, counts


def _contains(matrix: sparse.csr_array, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(matrix[rows, cols]).ravel().astype(bool)


def _check_split_matches(ds: Dataset, split: Split) -> None:
    if (split.n_users, split.n_items) != (ds.n_users, ds.n_items):
        raise ValueError(f"split {split.name!r} was made for {split.n_users} users / {split.n_items} items, "
                         f"but the dataset has {ds.n_users} / {ds.n_items}")
    if not np.array_equal(ds.users["user_idx"].to_numpy(), np.arange(ds.n_users)):
        raise ValueError("users table is not dense and sorted by user_idx")
