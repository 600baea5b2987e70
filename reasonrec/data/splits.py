"""Train/valid/test splits for the paper's three protocols, reproducible and written to disk.

- `leave_one_out`: sequential recommendation (last interaction = test, second-last = valid).
- `temporal_split`: global time cut-offs (time-shift evaluation).
- `random_split`: per-user random 8:1:1 (explanation generation and CTR).

Every split keeps each interaction exactly once (train + valid + test == all), keeps the dataset's columns
and its canonical row order (user_idx, timestamp, source order), and carries `params` (how it was made) and
`stats` (what came out), which `write_split` stores beside the Parquet files as split.json.

Randomness is per user: `user_rng(seed, purpose, user_id)` seeds a generator from the seed, a purpose tag
and a hash of the user's *id* (not the index), so a user's draw does not depend on the order of users, on
the other users, or on indices shifting when a user is added. NumPy does not promise identical Generator
streams across NumPy versions (NEP 19), so written artefacts record the NumPy version that drew them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reasonrec.data.errors import DataFormatError
from reasonrec.data.schema import INTERACTIONS_SCHEMA, Dataset, write_parquet
from reasonrec.io import join, open_fs

SPLIT_PARTS = ("train", "valid", "test")
LOO_MIN_INTERACTIONS = 3  # one each for train, valid and test


@dataclass
class Split:
    """Three interaction frames with the dataset's columns, plus how they were made and what came out."""

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    stats: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    def part(self, part: str) -> pd.DataFrame:
        if part not in SPLIT_PARTS:
            raise ValueError(f"unknown split part {part!r}; expected one of {SPLIT_PARTS}")
        return getattr(self, part)

    @property
    def n_users(self) -> int:
        return int(self.stats["n_users"])

    @property
    def n_items(self) -> int:
        return int(self.stats["n_items"])


# --------------------------------------------------------------------------------------------- seeding

def stable_int(text: str) -> int:
    """A 128-bit integer from text that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest(), "little")


def user_rng(seed: int, purpose: str, user_id: str) -> np.random.Generator:
    """The generator for one user and one purpose; independent of every other user and purpose."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), stable_int(purpose), stable_int(user_id)])


# --------------------------------------------------------------------------------------------- splits

def leave_one_out(ds: Dataset) -> Split:
    """Per user: last interaction = test, second-last = valid, the rest = train.

    "Last" is the last row of the user's run in the canonical order (timestamp, then source order), so
    timestamp ties are broken by the order the source listed them in, the same way every time. Users
    with fewer than 3 interactions cannot give one to each part: all of theirs go to train (counted in
    stats as users_too_short).
    """
    user = _checked_user_index(ds)
    counts = np.bincount(user, minlength=ds.n_users)
    ends = np.cumsum(counts)
    rank_from_end = ends[user] - np.arange(len(user))  # 1 = the user's last interaction
    long_enough = counts[user] >= LOO_MIN_INTERACTIONS
    code = np.zeros(len(user), dtype=np.int8)
    code[long_enough & (rank_from_end == 2)] = 1
    code[long_enough & (rank_from_end == 1)] = 2
    too_short = int(((counts > 0) & (counts < LOO_MIN_INTERACTIONS)).sum())
    return _build_split(ds, "loo", code, {"min_interactions": LOO_MIN_INTERACTIONS,
                                         "tie_break": "stored order (timestamp, then source order)"},
                        {"users_too_short": too_short, "users_too_short_went_to": "train"})


def temporal_split(ds: Dataset, valid_quantile: float = 0.8, test_quantile: float = 0.9) -> Split:
    """Global time cut-offs: train < t_valid <= valid < t_test <= test.

    t_q is the timestamp of the floor(q * n)-th interaction in time order (0-based), so without ties
    exactly floor(q * n) interactions fall before it; interactions tied at a cut-off all go to the later
    part. Users may appear only after a cut-off (cold users): they are counted in stats, not removed.
    """
    if ds.manifest.timestamp_kind != "unix":
        raise ValueError(
            f"temporal_split needs wall-clock timestamps, but dataset {ds.manifest.name!r} has "
            f"timestamp_kind={ds.manifest.timestamp_kind!r} (only the order within each user is known); "
            "use leave_one_out or random_split")
    if not 0.0 < valid_quantile < test_quantile < 1.0:
        raise ValueError(f"need 0 < valid_quantile < test_quantile < 1, got {valid_quantile}, {test_quantile}")
    _checked_user_index(ds)
    timestamps = ds.interactions["timestamp"].to_numpy()
    if len(timestamps) == 0:
        raise ValueError(f"dataset {ds.manifest.name!r} has no interactions to split")
    ordered = np.sort(timestamps, kind="stable")
    t_valid, t_test = (int(ordered[min(len(ordered) - 1, int(np.floor(q * len(ordered) + 1e-9)))])
                       for q in (valid_quantile, test_quantile))
    code = np.zeros(len(timestamps), dtype=np.int8)
    code[timestamps >= t_valid] = 1
    code[timestamps >= t_test] = 2
    for part_code, part in ((1, "valid"), (2, "test")):
        if not (code == part_code).any():
            raise ValueError(f"temporal_split: the {part} part is empty (t_valid={t_valid}, t_test={t_test}); "
                             "too many timestamps tie at the cut-offs for these quantiles")
    user = ds.interactions["user_idx"].to_numpy()
    in_train = np.zeros(ds.n_users, dtype=bool)
    in_train[user[code == 0]] = True
    cold = {f"{part}_users_without_train": int(len(np.setdiff1d(user[code == c], np.flatnonzero(in_train))))
            for c, part in ((1, "valid"), (2, "test"))}
    return _build_split(ds, "temporal", code, {"valid_quantile": valid_quantile, "test_quantile": test_quantile,
                                               "t_valid": t_valid, "t_test": t_test}, cold)


def random_split(ds: Dataset, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Per-user random train/valid/test in `ratios` (the explanation and CTR protocol).

    Rounding: a user with n interactions gets n*ratio valid and test interactions, rounded down and then
    rounded up with probability equal to the fractional part (drawn from the user's own generator). So each
    part's expected size is exactly n*ratio and the data-set-wide ratio is 8:1:1 even though most users have
    fewer than 10 interactions. Train gets the rest and always at least one: if valid + test would take all
    n, the larger of them (test on a tie) gives one back until train has one; this only happens for n <= 3.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not np.isclose(sum(ratios), 1.0) or ratios[0] <= 0:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1 with train > 0, got {ratios}")
    user = _checked_user_index(ds)
    counts = np.bincount(user, minlength=ds.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    user_ids = _user_ids_by_index(ds)
    code = np.zeros(len(user), dtype=np.int8)
    _, r_valid, r_test = ratios
    for u in np.flatnonzero(counts):
        n = int(counts[u])
        rng = user_rng(seed, "random_split", user_ids[u])
        jitter = rng.random(2)
        n_valid = int(np.floor(n * r_valid + jitter[0]))
        n_test = int(np.floor(n * r_test + jitter[1]))
        while n_valid + n_test > n - 1:
            if n_test >= n_valid:
                n_test -= 1
            else:
                n_valid -= 1
        order = starts[u] + rng.permutation(n)
        code[order[:n_valid]] = 1
        code[order[n_valid:n_valid + n_test]] = 2
    return _build_split(ds, "random", code, {"ratios": list(ratios), "seed": seed,
                                             "rounding": "stochastic, train keeps >= 1",
                                             "numpy": np.__version__}, {})


def _checked_user_index(ds: Dataset) -> np.ndarray:
    """user_idx as numpy, after checking the canonical order every split relies on."""
    frame = ds.interactions
    user = frame["user_idx"].to_numpy()
    timestamps = frame["timestamp"].to_numpy()
    same_user = np.diff(user) == 0
    if (np.diff(user) < 0).any() or (np.diff(timestamps)[same_user] < 0).any():
        raise DataFormatError("interactions are not sorted by (user_idx, timestamp); load the dataset with "
                              "Dataset.load so the canonical order holds", file=ds.root, field="user_idx")
    if len(user) and (user[0] < 0 or user[-1] >= ds.n_users):
        raise DataFormatError(f"user_idx outside 0..{ds.n_users - 1}", file=ds.root, field="user_idx")
    return user


def _user_ids_by_index(ds: Dataset) -> np.ndarray:
    users = ds.users
    if not np.array_equal(users["user_idx"].to_numpy(), np.arange(len(users))):
        raise DataFormatError("users table is not dense and sorted by user_idx", file=ds.root, field="user_idx")
    return users["user_id"].to_numpy(dtype=object)


def _build_split(ds: Dataset, name: str, code: np.ndarray, params: dict[str, Any],
                 extra_stats: dict[str, Any]) -> Split:
    frames = {part: ds.interactions.loc[code == c].reset_index(drop=True) for c, part in enumerate(SPLIT_PARTS)}
    stats: dict[str, Any] = {"dataset": ds.manifest.name, "n_users": ds.n_users, "n_items": ds.n_items,
                             "n_interactions": len(code)}
    for part, frame in frames.items():
        stats[f"{part}_interactions"] = len(frame)
        stats[f"{part}_users"] = int(frame["user_idx"].nunique())
    stats.update(extra_stats)
    return Split(name, frames["train"], frames["valid"], frames["test"], stats, params)


# --------------------------------------------------------------------------------------------- storage

def write_frame(frame: pd.DataFrame, schema: pa.Schema, uri: str) -> None:
    """Write `frame` with an explicit schema through the byte-stable Parquet writer (local or s3://)."""
    fs, path = open_fs(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    columns = frame[schema.names].copy(deep=False)
    columns.attrs = {}  # the manifest lives in the JSON sidecar only, not also in the Parquet metadata
    write_parquet(pa.Table.from_pandas(columns, schema=schema, preserve_index=False), path, fs)


def read_frame(uri: str) -> pd.DataFrame:
    fs, path = open_fs(uri)
    return pq.read_table(path, filesystem=fs).to_pandas()


def write_json(obj: Any, uri: str) -> None:
    """Sorted keys and fixed indentation, so the same content gives the same bytes."""
    fs, path = open_fs(uri)
    with fs.open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(uri: str) -> Any:
    fs, path = open_fs(uri)
    with fs.open(path, "r") as f:
        return json.load(f)


def sidecar_path(parquet_uri: str) -> str:
    """The JSON manifest beside an artefact: x.parquet -> x.json."""
    if not parquet_uri.endswith(".parquet"):
        raise ValueError(f"artefact path must end in .parquet, got {parquet_uri!r}")
    return parquet_uri[: -len(".parquet")] + ".json"


def write_artifact(frame: pd.DataFrame, schema: pa.Schema, path: str) -> None:
    """Write a sampled/derived frame to `path` (.parquet) and its attrs["manifest"] beside it as .json."""
    if "manifest" not in frame.attrs:
        raise ValueError("frame has no attrs['manifest']; write frames as returned by the functions that make them")
    write_frame(frame, schema, path)
    write_json(frame.attrs["manifest"], sidecar_path(path))


def read_artifact(path: str) -> pd.DataFrame:
    """Read what `write_artifact` wrote; the manifest comes back as frame.attrs["manifest"]."""
    frame = read_frame(path)
    frame.attrs["manifest"] = read_json(sidecar_path(path))
    return frame


def write_split(split: Split, root: str) -> str:
    """Write root/<name>/{train,valid,test}.parquet and split.json; returns the split's folder."""
    folder = join(root, split.name)
    fs, path = open_fs(folder)
    fs.makedirs(path, exist_ok=True)
    for part in SPLIT_PARTS:
        write_frame(split.part(part), INTERACTIONS_SCHEMA, join(folder, f"{part}.parquet"))
    write_json({"name": split.name, "params": split.params, "stats": split.stats}, join(folder, "split.json"))
    return folder


def load_split(root: str, name: str) -> Split:
    folder = join(root, name)
    fs, path = open_fs(folder)
    if not fs.exists(join(path, "split.json")):
        raise DataFormatError(f"no split {name!r} here (split.json missing); run write_split first",
                              file=join(folder, "split.json"))
    meta = read_json(join(folder, "split.json"))
    frames = {part: read_frame(join(folder, f"{part}.parquet")) for part in SPLIT_PARTS}
    return Split(meta["name"], frames["train"], frames["valid"], frames["test"], meta["stats"], meta["params"])
