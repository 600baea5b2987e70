"""The most-popular baseline and a sampled-candidate evaluation helper.

MostPopular scores every item by its training interaction count, the same for every user. It is the sanity
floor: a learned model that does not beat it is not learning from the user.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse

from reasonrec.metrics.ranking import rank_of_target, ranking_metrics


class Scorer(Protocol):
    def score(self, user_idx: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Scores [n, c] for candidates [n, c] (item idx) of users user_idx [n]; higher is better."""
        ...


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; has {list(frame.columns)}")


def _checked_item_idx(values: np.ndarray, n_items: int, what: str) -> np.ndarray:
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must be integer item indices, got dtype {values.dtype}")
    bad = np.argwhere((values < 0) | (values >= n_items))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise ValueError(f"{what} at {where if len(where) > 1 else where[0]}: item_idx {int(values[where])} "
                         f"is outside [0, {n_items})")
    return values


class MostPopular:
    """Score = train count + a tie-break in [0, 1) that favours the lower item_idx.

    The tie-break makes the order total and deterministic, so the baseline's ranks never depend on the
    pessimistic tie rule in `rank_of_target`; it is smaller than one interaction, so counts still decide.
    """

    def __init__(self) -> None:
        self.item_scores: np.ndarray | None = None

    def fit(self, train: pd.DataFrame, n_items: int) -> "MostPopular":
        _require_columns(train, ("user_idx", "item_idx"), "train frame")
        if n_items <= 0:
            raise ValueError(f"n_items must be positive, got {n_items}")
        items = _checked_item_idx(train["item_idx"].to_numpy(), n_items, "train row")
        counts = np.bincount(items, minlength=n_items).astype(np.float64)
        # Distinct float64 scores need spacing 1/(n_items+1) to exceed the float spacing at the top count.
        if (counts.max() + 1) * (n_items + 1) >= 2.0 ** 52:
            raise ValueError(f"counts up to {int(counts.max())} with {n_items} items exceed float64 precision "
                             f"for the tie-break")
        tie_break = (n_items - np.arange(n_items)) / (n_items + 1.0)
        self.item_scores = counts + tie_break
        return self

    @property
    def n_items(self) -> int:
        return len(self._fitted())

    def _fitted(self) -> np.ndarray:
        if self.item_scores is None:
            raise RuntimeError("MostPopular is not fitted; call fit(train, n_items) first")
        return self.item_scores

    def score(self, user_idx: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Scores [n, c] for candidate item indices [n, c]; user_idx only fixes n (the score ignores the user)."""
        item_scores = self._fitted()
        user_idx = np.asarray(user_idx)
        candidates = np.asarray(candidates)
        if candidates.ndim != 2 or user_idx.shape != (candidates.shape[0],):
            raise ValueError(f"candidates must be [n, c] with user_idx [n]; got {candidates.shape} and "
                             f"{user_idx.shape}")
        candidates = _checked_item_idx(candidates, len(item_scores), "candidates")
        return item_scores[candidates]

    def score_all_items(self, user_idx: np.ndarray) -> np.ndarray:
        """Scores [n, n_items] for every item: the `score_fn` for `full_ranking_ranks`."""
        item_scores = self._fitted()
        return np.broadcast_to(item_scores, (len(np.asarray(user_idx)), len(item_scores)))

    def topk(self, user_idx: np.ndarray, k: int,
             exclude: scipy.sparse.spmatrix | scipy.sparse.sparray | np.ndarray | None = None) -> np.ndarray:
        """Top-k item indices [n, k] per user, best first, skipping items marked in `exclude`.

        exclude: bool [n_users, n_items] (sparse, e.g. `seen_matrix` of the training split, or dense), rows
        indexed by user_idx. Only the first k + (most items any of these users excludes) items of the global
        order are examined, so memory stays small for a big catalogue.
        """
        item_scores = self._fitted()
        n_items = len(item_scores)
        user_idx = np.asarray(user_idx)
        if user_idx.ndim != 1:
            raise ValueError(f"user_idx must be 1-D, got shape {user_idx.shape}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k <= n_items:
            raise ValueError(f"k must be an integer in [1, {n_items}], got {k!r}")
        order = np.argsort(-item_scores, kind="stable")
        if exclude is None:
            return np.tile(order[:k], (len(user_idx), 1))
        if exclude.shape[1] != n_items:
            raise ValueError(f"exclude has {exclude.shape[1]} item columns, expected {n_items}")
        rows = exclude[user_idx]
        if scipy.sparse.issparse(rows):
            per_user_excluded = np.asarray(rows.sum(axis=1)).ravel()
        else:
            per_user_excluded = np.asarray(rows, dtype=bool).sum(axis=1)
        available = n_items - per_user_excluded
        short = np.flatnonzero(available < k)
        if short.size:
            row = int(short[0])
            raise ValueError(f"user_idx {int(user_idx[row])} has only {int(available[row])} items left after "
                             f"exclusion, fewer than k={k}")
        head = order[:min(n_items, k + int(per_user_excluded.max(initial=0)))]
        excluded = rows[:, head]
        excluded = excluded.toarray() if scipy.sparse.issparse(excluded) else np.asarray(excluded)
        # Stable sort puts each row's non-excluded items first, still in popularity order.
        keep = np.argsort(excluded.astype(bool), axis=1, kind="stable")[:, :k]
        return head[keep]


def evaluate_sampled(scorer: Scorer, candidates_frame: pd.DataFrame,
                     ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """HR/NDCG/MRR@k of `scorer` on sampled candidate lists.

    candidates_frame: columns user_idx, target_item_idx, candidates (a list/array of item idx per row, all
    the same length, containing the target exactly once).
    """
    _require_columns(candidates_frame, ("user_idx", "target_item_idx", "candidates"), "candidates frame")
    if len(candidates_frame) == 0:
        raise ValueError("candidates frame is empty")
    lists = candidates_frame["candidates"].tolist()
    lengths = np.array([len(c) if isinstance(c, list | tuple | np.ndarray) else -1 for c in lists])
    bad = np.flatnonzero(lengths != lengths[0])
    if lengths[0] <= 0 or bad.size:
        row = int(bad[0]) if bad.size else 0
        raise ValueError(f"candidates frame row {row}, field 'candidates': {lists[row]!r} — every row needs a "
                         f"non-empty list of the same length ({lengths[0]} in row 0)")
    candidates = np.asarray(lists)
    if not np.issubdtype(candidates.dtype, np.integer):
        raise ValueError(f"field 'candidates' must hold integer item idx, got dtype {candidates.dtype}")
    targets = candidates_frame["target_item_idx"].to_numpy()
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"field 'target_item_idx' must hold integer item idx, got dtype {targets.dtype}")
    is_target = candidates == targets[:, None]
    target_count = is_target.sum(axis=1)
    bad = np.flatnonzero(target_count != 1)
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"candidates frame row {row}, field 'candidates': target_item_idx {int(targets[row])} "
                         f"appears {int(target_count[row])} times, expected exactly once "
                         f"({bad.size} bad row(s))")
    target_column = is_target.argmax(axis=1)
    scores = scorer.score(candidates_frame["user_idx"].to_numpy(), candidates)
    return ranking_metrics(rank_of_target(scores, target_column), ks)
