"""Candidate retrieval with faiss: maximum-inner-product search of query vectors over item vectors.

The nightly job cannot let every tool score the whole catalogue for every user, so a retrieval model (the
two-tower tool) gives one vector per item and one per user, faiss finds each user's best items, and the
heavier tools rerank only those. Exact search (`IndexFlatIP`) is the default and the reference; the
inverted-file index ("ivf") trades recall for speed on big catalogues, and `recall_against` measures what
it loses against the exact result.
"""

from __future__ import annotations

import math
from typing import Literal

import faiss
import numpy as np
import scipy.sparse

IndexKind = Literal["flat", "ivf"]
MIN_POINTS_PER_LIST = 39  # faiss k-means wants at least this many training points per centroid


def default_nlist(n_items: int) -> int:
    """About 4 * sqrt(n) inverted lists (the faiss rule of thumb), capped so k-means has enough points."""
    return max(1, min(int(4 * math.sqrt(n_items)), n_items // MIN_POINTS_PER_LIST))


def build_index(item_vectors: np.ndarray, kind: IndexKind = "flat", nlist: int | None = None,
                nprobe: int | None = None, seed: int = 0) -> faiss.Index:
    """An inner-product faiss index over `item_vectors` [n_items, d]; row i of the matrix is item_idx i.

    kind="flat": exact search. kind="ivf": `nlist` k-means cells (default `default_nlist`), of which a
    query visits the `nprobe` nearest (default nlist // 8, at least 1); k-means is seeded with `seed`.
    """
    vectors = _float32_matrix(item_vectors, "item_vectors")
    n_items, dim = vectors.shape
    if n_items == 0:
        raise ValueError("item_vectors has no rows")
    if kind == "flat":
        if nlist is not None or nprobe is not None:
            raise ValueError("nlist and nprobe only apply to kind='ivf'")
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index
    if kind != "ivf":
        raise ValueError(f"kind must be 'flat' or 'ivf', got {kind!r}")
    nlist = default_nlist(n_items) if nlist is None else nlist
    if not 1 <= nlist <= n_items:
        raise ValueError(f"nlist must be in [1, n_items={n_items}], got {nlist}")
    nprobe = max(1, nlist // 8) if nprobe is None else nprobe
    if not 1 <= nprobe <= nlist:
        raise ValueError(f"nprobe must be in [1, nlist={nlist}], got {nprobe}")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.min_points_per_centroid = 1  # small catalogues: no warning spam, the cap above keeps cells filled
    index.train(vectors)
    index.add(vectors)
    index.nprobe = nprobe
    return index


def retrieve(index: faiss.Index, query_vectors: np.ndarray, k: int,
             exclude: scipy.sparse.sparray | scipy.sparse.spmatrix | np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(items [n, k] int64, scores [n, k] float32), best first, for each row of `query_vectors` [n, d].

    exclude: optional bool [n, n_items] aligned with the query rows (e.g. the users' histories), items never
    to return. faiss is asked for k + (most items any row excludes) and the excluded ones are dropped. An
    approximate index can find fewer than k items for a query; the missing slots are item -1, score -inf.
    """
    queries = _float32_matrix(query_vectors, "query_vectors")
    n_items = index.ntotal
    if queries.shape[1] != index.d:
        raise ValueError(f"query_vectors have dimension {queries.shape[1]}, the index has {index.d}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k <= n_items:
        raise ValueError(f"k must be an integer in [1, {n_items}], got {k!r}")
    mask = None
    extra = 0
    if exclude is not None:
        mask = scipy.sparse.csr_array(exclude, dtype=bool)
        mask.eliminate_zeros()
        if mask.shape != (len(queries), n_items):
            raise ValueError(f"exclude must be [n_queries={len(queries)}, n_items={n_items}], got {mask.shape}")
        per_row = np.diff(mask.indptr)
        short = np.flatnonzero(n_items - per_row < k)
        if short.size:
            row = int(short[0])
            raise ValueError(f"query row {row} excludes {int(per_row[row])} of {n_items} items, leaving fewer "
                             f"than k={k}")
        extra = int(per_row.max(initial=0))
    scores, items = index.search(queries, min(n_items, k + extra))
    if mask is not None:
        # (row, item) pairs as one int64 code, so membership in the mask is a single sorted lookup.
        excluded_codes = np.repeat(np.arange(len(queries), dtype=np.int64), per_row) * n_items + mask.indices
        found_codes = np.arange(len(queries), dtype=np.int64)[:, None] * n_items + items
        drop = np.isin(found_codes, excluded_codes) | (items < 0)
        # Stable sort moves the kept items to the front without changing their (best-first) order.
        keep = np.argsort(drop, axis=1, kind="stable")[:, :k]
        items = np.take_along_axis(np.where(drop, -1, items), keep, axis=1)
        scores = np.take_along_axis(np.where(drop, -np.inf, scores), keep, axis=1)
    items, scores = items[:, :k].astype(np.int64), scores[:, :k].astype(np.float32)
    scores[items < 0] = -np.inf
    return items, scores


def recall_against(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k items [n, k] that an approximate search [n, k'] also returned."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found has {found.shape[0]} rows, exact has {exact.shape[0]}")
    hits = sum(len(np.intersect1d(f[f >= 0], e[e >= 0])) for f, e in zip(found, exact))
    total = int((exact >= 0).sum())
    return hits / total if total else 1.0


def _float32_matrix(values: np.ndarray, what: str) -> np.ndarray:
    matrix = np.ascontiguousarray(values, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"{what} must be a 2-D [n, d] matrix with d >= 1, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return matrix
