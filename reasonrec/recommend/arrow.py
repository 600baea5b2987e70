"""The Arrow form of a batch between the nightly job's two actor stages (actors/recommend.py).

The candidate stage hands on, per scorable user: its history (list<int64>: CSR on the wire, read back without a
copy per row), EH, the candidate list and the best tool's score of each candidate (fixed-size list columns,
Arrow's own type: no tensor extension between stages), and its share of the stage's seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from reasonrec.recommend.requests import Requests
from reasonrec.router.answer import ToolScores


def rows_of(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """A [n, w] matrix as a fixed-size list column."""
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def matrix_of(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    return array.flatten().to_numpy().reshape(len(array), array.type.list_size)


def candidate_batch(user_id: np.ndarray, requests: Requests, best_tool: np.ndarray, seconds: np.ndarray) -> pa.Table:
    """The candidate stage's output. best_tool: float32 [n, C], the best tool's score of each candidate column."""
    return pa.table({
        "user_id": pa.array(np.asarray(user_id).astype(str), pa.string()), "user_idx": pa.array(requests.user_idx),
        "eh": pa.array(requests.eh), "history": pa.ListArray.from_arrays(pa.array(requests.offsets.astype(np.int32)),
                                                                       pa.array(requests.items, pa.int64())),
        "candidates": rows_of(requests.candidates), "best_tool_scores": rows_of(best_tool),
        "tool_seconds": pa.array(seconds)})


def batch_requests(batch: pa.Table, best_tool: str) -> tuple[Requests, ToolScores]:
    """The candidate stage's output read back: the rows as Requests (no targets: tonight) and the best tool's
    scores as ToolScores (one tool column, named `best_tool`)."""
    history = batch["history"].combine_chunks()
    offsets = history.offsets.to_numpy().astype(np.int64)
    requests = Requests(batch["user_idx"].to_numpy().astype(np.int64), offsets - offsets[0],
                        history.flatten().to_numpy().astype(np.int64), batch["eh"].to_numpy().astype(np.float64),
                        matrix_of(batch["candidates"]).astype(np.int64), np.full(batch.num_rows, -1, dtype=np.int64))
    scores = matrix_of(batch["best_tool_scores"]).astype(np.float32)[:, None, :]
    return requests, ToolScores([best_tool], scores, float(batch["tool_seconds"].to_numpy().sum()))
