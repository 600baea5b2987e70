"""Top-k ranking metrics for one relevant item per query: HR@k, NDCG@k, MRR@k.

Every model is judged by the 0-based rank of the held-out item among its candidates: a sampled list (target
plus negatives) or the whole catalogue minus the items the user already saw in training. The metrics are
then simple functions of that rank, so all models share one rank computation and one tie rule.

Ties are pessimistic: every other candidate scoring >= the target counts above it. A model that gives many
items the same score (a constant scorer, a saturated sigmoid, an untrained tower) therefore gets the worst
rank its ties allow, never the best; an optimistic rule would hand a constant scorer HR@1 = 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import scipy.sparse

ScoreFn = Callable[[np.ndarray], np.ndarray]


def rank_of_target(scores: np.ndarray, target_index: np.ndarray, exclude_mask: np.ndarray | None = None,
                   *, first_row: int = 0) -> np.ndarray:
    """0-based rank of each query's target among its candidates (pessimistic ties).

    scores: [n_queries, n_candidates]; target_index: [n_queries], the target's column in each row;
    exclude_mask: optional bool [n_queries, n_candidates], True for candidates to ignore (full ranking: items
    seen in training). The target itself must not be excluded. `first_row` is where this block starts in the
    caller's full query list, so errors from a batched caller name the global row.

    Works on any block of rows; for a big catalogue call it per batch of users (see `full_ranking_ranks`).
    """
    scores = np.asarray(scores)
    target_index = np.asarray(target_index)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_queries, n_candidates], got shape {scores.shape}")
    n_queries, n_candidates = scores.shape
    if n_candidates == 0:
        raise ValueError("scores has no candidate columns")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    if target_index.shape != (n_queries,):
        raise ValueError(f"target_index has shape {target_index.shape}, expected ({n_queries},) "
                         f"to match scores {scores.shape}")
    if not np.issubdtype(target_index.dtype, np.integer):
        raise ValueError(f"target_index must be integer column indices, got dtype {target_index.dtype}")
    out_of_range = (target_index < 0) | (target_index >= n_candidates)
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(f"query row {first_row + row}: target_index {int(target_index[row])} is outside "
                         f"[0, {n_candidates})")

    rows = np.arange(n_queries)
    if exclude_mask is not None:
        exclude_mask = np.asarray(exclude_mask)
        if exclude_mask.shape != scores.shape:
            raise ValueError(f"exclude_mask has shape {exclude_mask.shape}, expected {scores.shape}")
        if exclude_mask.dtype != np.bool_:
            raise ValueError(f"exclude_mask must be bool, got dtype {exclude_mask.dtype}")
        target_excluded = exclude_mask[rows, target_index]
        if target_excluded.any():
            row = int(np.flatnonzero(target_excluded)[0])
            raise ValueError(f"query row {first_row + row}: exclude_mask marks the target (column "
                             f"{int(target_index[row])}); a held-out item must not be excluded from its own "
                             f"ranking")

    considered_nan = np.isnan(scores) if np.issubdtype(scores.dtype, np.floating) else None
    if considered_nan is not None:
        if exclude_mask is not None:
            considered_nan &= ~exclude_mask
        bad_rows = np.flatnonzero(considered_nan.any(axis=1))
        if bad_rows.size:
            row = int(bad_rows[0])
            raise ValueError(f"query row {first_row + row}: scores contain NaN in "
                             f"{int(considered_nan[row].sum())} candidate(s) (first at column "
                             f"{int(np.flatnonzero(considered_nan[row])[0])}); {bad_rows.size} row(s) affected")

    target_scores = scores[rows, target_index]
    at_or_above = scores >= target_scores[:, None]
    at_or_above[rows, target_index] = False
    if exclude_mask is not None:
        at_or_above &= ~exclude_mask
    return at_or_above.sum(axis=1).astype(np.int64)


def seen_matrix(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int) -> scipy.sparse.csr_matrix:
    """Sparse bool [n_users, n_items], True where the user interacted with the item (e.g. in training).

    The exclusion set for full ranking, kept sparse so it costs O(interactions), not O(users x items).
    """
    user_idx = np.asarray(user_idx)
    item_idx = np.asarray(item_idx)
    if user_idx.shape != item_idx.shape or user_idx.ndim != 1:
        raise ValueError(f"user_idx {user_idx.shape} and item_idx {item_idx.shape} must be 1-D and equal length")
    for name, values, limit in (("user_idx", user_idx, n_users), ("item_idx", item_idx, n_items)):
        bad = np.flatnonzero((values < 0) | (values >= limit))
        if bad.size:
            raise ValueError(f"row {int(bad[0])}: {name} {int(values[bad[0]])} is outside [0, {limit})")
    ones = np.ones(len(user_idx), dtype=bool)
    return scipy.sparse.csr_matrix((ones, (user_idx, item_idx)), shape=(n_users, n_items), dtype=bool)


def full_ranking_ranks(score_fn: ScoreFn, user_idx: np.ndarray, target_item_idx: np.ndarray, n_items: int,
                       seen: scipy.sparse.spmatrix | scipy.sparse.sparray | None = None,
                       batch_size: int = 1024) -> np.ndarray:
    """Rank each target against the whole catalogue, `batch_size` queries at a time.

    score_fn(user_idx_batch) -> scores [len(batch), n_items] for every item; only one batch of scores (and of
    the dense exclusion mask) exists at a time, so memory is batch_size x n_items, not n_users x n_items.
    seen: sparse bool [n_users, n_items] (see `seen_matrix`) of items to leave out of each user's ranking; a
    target the user also saw in training is an error (drop it from `seen` or from the test split first).
    """
    user_idx = np.asarray(user_idx)
    target_item_idx = np.asarray(target_item_idx)
    if user_idx.ndim != 1 or user_idx.shape != target_item_idx.shape:
        raise ValueError(f"user_idx {user_idx.shape} and target_item_idx {target_item_idx.shape} must be 1-D "
                         f"and equal length")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if seen is not None:
        if seen.shape[1] != n_items:
            raise ValueError(f"seen has {seen.shape[1]} item columns, expected n_items={n_items}")
        bad = np.flatnonzero((user_idx < 0) | (user_idx >= seen.shape[0]))
        if bad.size:
            raise ValueError(f"query row {int(bad[0])}: user_idx {int(user_idx[bad[0]])} is outside "
                             f"[0, {seen.shape[0]}) rows of seen")
    ranks = np.empty(len(user_idx), dtype=np.int64)
    for start in range(0, len(user_idx), batch_size):
        users = user_idx[start:start + batch_size]
        scores = np.asarray(score_fn(users))
        if scores.shape != (len(users), n_items):
            raise ValueError(f"score_fn returned shape {scores.shape} for a batch of {len(users)} users, "
                             f"expected ({len(users)}, {n_items})")
        mask = None if seen is None else seen[users].toarray().astype(bool, copy=False)
        ranks[start:start + len(users)] = rank_of_target(
            scores, target_item_idx[start:start + batch_size], mask, first_row=start)
    return ranks


def _check_ranks_and_k(ranks: np.ndarray, k: int) -> np.ndarray:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks must be integers (0-based), got dtype {ranks.dtype}")
    if (ranks < 0).any():
        raise ValueError(f"ranks must be >= 0; row {int(np.flatnonzero(ranks < 0)[0])} is negative")
    return ranks


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of queries whose target is in the top k."""
    ranks = _check_ranks_and_k(ranks, k)
    return float(np.mean(ranks < k))


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item: 1/log2(rank+2) inside the top k, else 0 (the ideal DCG is 1)."""
    ranks = _check_ranks_and_k(ranks, k)
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank, 1/(rank+1) inside the top k, else 0."""
    ranks = _check_ranks_and_k(ranks, k)
    return float(np.mean(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0)))


def ranking_metrics(ranks: np.ndarray, ks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
    """{"HR@k", "NDCG@k", "MRR@k"} for each k, in the order given."""
    ks = list(ks)
    if not ks:
        raise ValueError("ks is empty; give at least one cutoff")
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"HR@{k}"] = hit_rate_at_k(ranks, k)
        metrics[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
        metrics[f"MRR@{k}"] = mrr_at_k(ranks, k)
    return metrics
