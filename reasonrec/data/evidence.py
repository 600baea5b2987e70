"""How thin a user's evidence is (the evidence horizon C(u)) and the paper's cold-start user groups.

Both are computed from the TRAIN part only, so nothing a model is evaluated on leaks into them.

Evidence horizon, in [0, 1], HIGH = sparse or stale evidence (the model should hedge):

    C(u)         = 1 - (w_count * s_count(u) + w_recency * s_recency(u)),   w_count + w_recency = 1
    s_count(u)   = min(1, log(1 + n_u) / log(1 + n_ref))
    s_recency(u) = exp(-(t_ref - t_last(u)) / tau)

n_u is u's number of train interactions and n_ref the `ref_quantile` (default 0.95, linear interpolation)
of n_u over users with train interactions, so a handful of very heavy users do not squash everyone else
towards 1. t_last(u) is u's last train timestamp, t_ref the last train timestamp of all, and tau the median
over users of t_ref - t_last(u) (a robust scale in the data's own units); if that median is 0, the median
of the positive gaps; if every gap is 0, s_recency = 1 for all. Log counts because the tenth interaction
says less than the second.

Ordinal timestamps (only the order within a user is known) give no wall-clock recency: then the count term
is used alone (w_count = 1, w_recency = 0), s_recency is NaN, and the manifest says so. Users without train
interactions get C = 1 (s_count = s_recency = 0).

Cold-start groups: users sorted by (n_train, user_idx) and cut into 10 near-equal groups (the first
n_users mod 10 groups get one more), group 1 = fewest train interactions; the paper reports groups 1-3 as
"Coldest", 4-6 as "Medium", 7-10 as "Normal".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from reasonrec.data.schema import Dataset
from reasonrec.data.splits import Split, read_artifact, write_artifact

N_GROUPS = 10
BUCKETS = {**{g: "Coldest" for g in (1, 2, 3)}, **{g: "Medium" for g in (4, 5, 6)},
           **{g: "Normal" for g in (7, 8, 9, 10)}}

EVIDENCE_SCHEMA = pa.schema([
    pa.field("user_idx", pa.int32(), nullable=False),
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("n_train", pa.int32(), nullable=False),
    pa.field("s_count", pa.float64(), nullable=False),
    pa.field("s_recency", pa.float64()),  # NaN (null) when timestamps are ordinal
    pa.field("evidence_horizon", pa.float64(), nullable=False),
])

COLD_START_SCHEMA = pa.schema([
    pa.field("user_idx", pa.int32(), nullable=False),
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("n_train", pa.int32(), nullable=False),
    pa.field("group", pa.int8(), nullable=False),
    pa.field("bucket", pa.string(), nullable=False),
])


def evidence_horizon(ds: Dataset, split: Split, w_count: float = 0.7, w_recency: float = 0.3,
                     ref_quantile: float = 0.95) -> pd.DataFrame:
    """C(u) for every user of `ds` (formula in the module docstring); parameters in attrs["manifest"]."""
    if w_count < 0 or w_recency < 0 or not np.isclose(w_count + w_recency, 1.0):
        raise ValueError(f"weights must be non-negative and sum to 1, got w_count={w_count}, w_recency={w_recency}")
    if not 0.0 < ref_quantile <= 1.0:
        raise ValueError(f"ref_quantile must be in (0, 1], got {ref_quantile}")
    n_train = _train_counts(ds, split)
    has_train = n_train > 0
    n_ref = float(np.quantile(n_train[has_train], ref_quantile)) if has_train.any() else 1.0
    n_ref = max(n_ref, 1.0)
    s_count = np.minimum(1.0, np.log1p(n_train) / np.log1p(n_ref))

    recency_used = ds.manifest.timestamp_kind == "unix"
    params = {"w_count": w_count, "w_recency": w_recency, "ref_quantile": ref_quantile, "n_ref": n_ref,
              "timestamp_kind": ds.manifest.timestamp_kind, "recency_used": recency_used,
              "split": split.name, "computed_from": "train"}
    if recency_used:
        s_recency, recency_params = _recency_scores(ds, split, has_train)
        params.update(recency_params)
        w_count_used, w_recency_used = w_count, w_recency
        support = w_count * s_count + w_recency * s_recency
    else:
        s_recency = np.full(ds.n_users, np.nan)
        w_count_used, w_recency_used = 1.0, 0.0
        params["note"] = ("ordinal timestamps carry no wall-clock recency: count term only "
                          "(w_count_used=1, w_recency_used=0)")
        support = s_count
    params.update({"w_count_used": w_count_used, "w_recency_used": w_recency_used})
    horizon = np.clip(1.0 - support, 0.0, 1.0)
    horizon[~has_train] = 1.0

    frame = pd.DataFrame({
        "user_idx": np.arange(ds.n_users, dtype=np.int32),
        "user_id": pd.Series(_user_ids(ds), dtype="str"),
        "n_train": n_train.astype(np.int32),
        "s_count": s_count,
        "s_recency": s_recency,
        "evidence_horizon": horizon,
    })
    frame.attrs["manifest"] = {
        "kind": "evidence_horizon", "params": params,
        "stats": {"n_users": ds.n_users, "users_without_train": int((~has_train).sum()),
                  "mean": float(horizon.mean()) if len(horizon) else None,
                  "quantiles": {str(q): float(np.quantile(horizon, q)) for q in (0.1, 0.5, 0.9)}
                  if len(horizon) else {}},
    }
    return frame


def cold_start_groups(ds: Dataset, split: Split) -> pd.DataFrame:
    """Every user's group 1..10 by train frequency (1 = fewest) and the paper's bucket; in user_idx order."""
    n_train = _train_counts(ds, split)
    user_idx = np.arange(ds.n_users)
    order = np.lexsort((user_idx, n_train))
    group = np.empty(ds.n_users, dtype=np.int8)
    for g, members in enumerate(np.array_split(order, N_GROUPS), start=1):
        group[members] = g
    frame = pd.DataFrame({
        "user_idx": user_idx.astype(np.int32),
        "user_id": pd.Series(_user_ids(ds), dtype="str"),
        "n_train": n_train.astype(np.int32),
        "group": group,
        "bucket": pd.Series([BUCKETS[g] for g in group], dtype="str"),
    })
    sizes = frame.groupby("group")["n_train"].agg(["size", "min", "max"])
    frame.attrs["manifest"] = {
        "kind": "cold_start_groups",
        "params": {"split": split.name, "n_groups": N_GROUPS, "order": "(n_train, user_idx)",
                   "buckets": {"Coldest": [1, 2, 3], "Medium": [4, 5, 6], "Normal": [7, 8, 9, 10]}},
        "stats": {"groups": {str(g): {"users": int(r["size"]), "n_train_min": int(r["min"]),
                                      "n_train_max": int(r["max"])} for g, r in sizes.iterrows()}},
    }
    return frame


def write_evidence(frame: pd.DataFrame, path: str) -> None:
    """path must end in .parquet; the parameters used go beside it as .json."""
    write_artifact(frame, EVIDENCE_SCHEMA, path)


def read_evidence(path: str) -> pd.DataFrame:
    return read_artifact(path)


def write_cold_start_groups(frame: pd.DataFrame, path: str) -> None:
    write_artifact(frame, COLD_START_SCHEMA, path)


def read_cold_start_groups(path: str) -> pd.DataFrame:
    return read_artifact(path)


def _train_counts(ds: Dataset, split: Split) -> np.ndarray:
    if split.n_users != ds.n_users:
        raise ValueError(f"split {split.name!r} has {split.n_users} users, the dataset {ds.n_users}")
    return np.bincount(split.train["user_idx"].to_numpy(), minlength=ds.n_users)


def _recency_scores(ds: Dataset, split: Split, has_train: np.ndarray) -> tuple[np.ndarray, dict]:
    """s_recency per user (0 for users without train) and the t_ref / tau that produced it."""
    users = split.train["user_idx"].to_numpy()
    timestamps = split.train["timestamp"].to_numpy()
    t_last = np.full(ds.n_users, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(t_last, users, timestamps)
    t_ref = int(timestamps.max()) if len(timestamps) else 0
    gaps = (t_ref - t_last[has_train]).astype(np.float64)
    tau = float(np.median(gaps)) if len(gaps) else 0.0
    if tau <= 0 and (gaps > 0).any():
        tau = float(np.median(gaps[gaps > 0]))
    s_recency = np.zeros(ds.n_users)
    if tau > 0:
        s_recency[has_train] = np.exp(-gaps / tau)
    else:
        s_recency[has_train] = 1.0  # every user's last train event is at t_ref: no spread to score
    return s_recency, {"t_ref": t_ref, "tau": tau}


def _user_ids(ds: Dataset) -> np.ndarray:
    if not np.array_equal(ds.users["user_idx"].to_numpy(), np.arange(ds.n_users)):
        raise ValueError("users table is not dense and sorted by user_idx")
    return ds.users["user_id"].to_numpy(dtype=object)
