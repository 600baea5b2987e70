"""faiss retrieval: exact search equals a torch top-k of the same matmul, exclusion, IVF recall vs exact."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import scipy.sparse
import torch

from reasonrec.tools.retrieval import build_index, default_nlist, recall_against, retrieve

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    """(items [2000, 32], queries [300, 32]): items in 20 clusters, as trained item vectors tend to be."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    items = centres[rng.integers(0, 20, 2000)] + 0.5 * rng.normal(size=(2000, 32))
    queries = rng.normal(size=(300, 32))
    return items.astype(np.float32), queries.astype(np.float32)


def torch_topk(items: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None):
    scores = torch.from_numpy(queries) @ torch.from_numpy(items).T
    if exclude is not None:
        scores = scores.masked_fill(torch.from_numpy(exclude), float("-inf"))
    top = torch.topk(scores, k, dim=1)
    return top.indices.numpy(), top.values.numpy()


def test_flat_search_equals_torch_topk_of_the_same_matmul(vectors):
    items, queries = vectors
    found, scores = retrieve(build_index(items), queries, 10)
    expected, expected_scores = torch_topk(items, queries, 10)
    assert found.dtype == np.int64 and scores.dtype == np.float32 and found.shape == (300, 10)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)


def test_excluded_items_are_never_returned_and_the_rest_keep_the_exact_order(vectors):
    items, queries = vectors
    rng = np.random.default_rng(1)
    exclude = np.zeros((len(queries), len(items)), dtype=bool)
    exact, _ = torch_topk(items, queries, 10)
    exclude[:, :] = rng.random(exclude.shape) < 0.01
    exclude[np.arange(len(queries)), exact[:, 0]] = True  # always hide each query's best item
    exclude[0, :1900] = True  # one heavy row: 100 items left
    found, scores = retrieve(build_index(items), queries, 10, exclude=scipy.sparse.csr_array(exclude))
    expected, expected_scores = torch_topk(items, queries, 10, exclude)
    assert not exclude[np.arange(len(queries))[:, None], found].any()
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    # A dense bool mask is accepted too and gives the same answer.
    np.testing.assert_array_equal(retrieve(build_index(items), queries, 10, exclude=exclude)[0], expected)


def test_ivf_recall_against_flat_is_high_and_grows_with_nprobe(vectors):
    items, queries = vectors
    exact, _ = retrieve(build_index(items), queries, 10)
    nlist = default_nlist(len(items))
    recalls = {}
    for nprobe in (1, max(1, nlist // 8), nlist):
        found, scores = retrieve(build_index(items, "ivf", nlist=nlist, nprobe=nprobe), queries, 10)
        recalls[nprobe] = recall_against(found, exact)
        assert np.all(np.diff(np.where(found >= 0, scores, -1e30), axis=1) <= 1e-6)  # best first, -1 last
    print(f"IVF nlist={nlist} recall@10 vs flat by nprobe: {recalls}")
    assert recalls[nlist] == 1.0  # visiting every cell is exact search
    assert recalls[max(1, nlist // 8)] >= 0.8  # the default nprobe
    assert recalls[1] <= recalls[max(1, nlist // 8)]


def test_ivf_is_deterministic_for_a_seed(vectors):
    items, queries = vectors
    first = retrieve(build_index(items, "ivf", nlist=16, nprobe=2, seed=3), queries, 5)
    second = retrieve(build_index(items, "ivf", nlist=16, nprobe=2, seed=3), queries, 5)
    np.testing.assert_array_equal(first[0], second[0])


def test_an_ivf_search_that_finds_too_few_items_pads_with_minus_one():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(200, 8)).astype(np.float32)
    index = build_index(items, "ivf", nlist=5, nprobe=1)
    found, scores = retrieve(index, rng.normal(size=(20, 8)).astype(np.float32), 150)  # one cell < 150 items
    assert (found == -1).any() and np.all(np.isneginf(scores[found == -1]))
    assert all(len(set(row[row >= 0])) == (row >= 0).sum() for row in found)


def test_bad_input_gets_a_clear_error(vectors):
    items, queries = vectors
    index = build_index(items)
    with pytest.raises(ValueError, match="k must be an integer"):
        retrieve(index, queries, 0)
    with pytest.raises(ValueError, match="dimension 8"):
        retrieve(index, queries[:, :8], 5)
    with pytest.raises(ValueError, match="NaN"):
        build_index(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="kind must be"):
        build_index(items, "hnsw")
    with pytest.raises(ValueError, match="nprobe must be"):
        build_index(items, "ivf", nlist=4, nprobe=5)
    with pytest.raises(ValueError, match="only apply to kind='ivf'"):
        build_index(items, nlist=4)
    with pytest.raises(ValueError, match="exclude must be"):
        retrieve(index, queries, 5, exclude=np.zeros((2, 2), dtype=bool))
    too_many = np.zeros((len(queries), len(items)), dtype=bool)
    too_many[7, 3:] = True
    with pytest.raises(ValueError, match="query row 7 excludes"):
        retrieve(index, queries, 5, exclude=too_many)
