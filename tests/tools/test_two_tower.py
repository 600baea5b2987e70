"""Two-tower retrieval model: learns on synthetic and real data, '+V' works, checkpoints round-trip, and its
vectors drive faiss retrieval that agrees with the tool's own scoring."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import scipy.sparse
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.base import load_tool
from reasonrec.tools.retrieval import build_index, retrieve
from reasonrec.tools.two_tower import TwoTower, TwoTowerConfig
from tests.tools.contract import (check_content_round_trip, check_same_weights, check_save_load_scores,
                                  check_scores_topk_and_confidence, popularity_hr5, sampled_metrics)

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)
TOOLS.setdefault(TwoTower.name, TwoTower)




def fitted(data, features=None, **settings) -> TwoTower:
    tool = TwoTower(TwoTowerConfig(**settings), data.n_users, data.n_items, features)
    tool.fit(data)
    return tool


@pytest.fixture(scope="module")
def tool(synthetic_data) -> TwoTower:
    return fitted(synthetic_data, seed=0)


def test_beats_most_popular_on_synthetic(tool, synthetic_data):
    hr5, popular = sampled_metrics(tool, synthetic_data)["HR@5"], popularity_hr5(synthetic_data)
    print(f"two_tower synthetic HR@5 {hr5:.3f} vs most-popular {popular:.3f}")
    assert hr5 >= popular + 0.08


def test_training_is_deterministic_for_a_seed(synthetic_data):
    check_same_weights(*(fitted(synthetic_data, seed=1, epochs=2) for _ in range(2)))


def test_training_histories_are_the_users_items_just_before_the_positive(tool, synthetic_data):
    """As at serving time: an example's history is the user's latest items strictly before the positive."""
    batch = next(iter(tool.training_batches(synthetic_data, np.random.default_rng(0))))
    train, max_len = synthetic_data.train, tool.cfg.max_len
    for user, history, positive in zip(batch["user"].numpy(), batch["history"].numpy(), batch["pos"].numpy()):
        items = train.items[train.offsets[user]:train.offsets[user + 1]]
        real = history[history != tool.n_items]
        assert np.all(history[:max_len - len(real)] == tool.n_items)  # padding on the left only
        assert any(items[p] == positive and np.array_equal(items[max(0, p - max_len):p], real)
                   for p in range(len(items)))


def test_vectors_give_the_scores_and_faiss_retrieves_the_tools_topk(tool, synthetic_data):
    users = np.arange(40)
    queries = synthetic_data.queries(users, "train+valid", tool.cfg.max_len)
    user_vectors, item_vectors = tool.user_vectors(queries), tool.item_vectors()
    assert user_vectors.shape == (40, tool.cfg.embedding_dim) and item_vectors.shape == (tool.n_items, 64)
    np.testing.assert_allclose(tool.score_all(queries), user_vectors @ item_vectors.T, rtol=1e-4, atol=1e-4)

    seen = scipy.sparse.csr_array((np.ones(len(synthetic_data.train.items), dtype=bool),
                                   synthetic_data.train.items, synthetic_data.train.offsets),
                                  shape=(synthetic_data.n_users, tool.n_items))
    expected_items, expected_scores = tool.topk(queries, 10, exclude=seen)
    found, scores = retrieve(build_index(item_vectors), user_vectors, 10, exclude=seen[users])
    np.testing.assert_array_equal(found, expected_items)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)
    assert not seen[users].toarray()[np.arange(40)[:, None], found].any()


def test_save_load_round_trip_scores_identically(tool, synthetic_data, tmp_path):
    loaded = check_save_load_scores(tool, synthetic_data, tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.item_vectors(), tool.item_vectors())


def test_scores_topk_and_confidence_have_the_documented_shapes(tool, synthetic_data):
    check_scores_topk_and_confidence(tool, synthetic_data)


def test_content_variant_trains_scores_and_round_trips(synthetic_data, synthetic_features, tmp_path):
    tool = fitted(synthetic_data, synthetic_features, use_content=True, epochs=3, seed=0)
    before = tool.module.items.content[0].weight.detach().clone()
    queries, candidates, scores, folder = check_content_round_trip(tool, synthetic_data, synthetic_features, tmp_path)
    assert torch.equal(load_tool(folder, synthetic_features).module.items.content[0].weight, before)
    # Without features, the checkpoint's own feature buffer is used.
    np.testing.assert_array_equal(load_tool(folder).score(queries, candidates), scores)


@pytest.mark.real_data
def test_beats_most_popular_on_the_beauty_slice(beauty_slice):
    tool = fitted(beauty_slice, seed=0, epochs=20)
    metrics, popular = sampled_metrics(tool, beauty_slice), popularity_hr5(beauty_slice)
    print(f"two_tower beauty_slice HR@5 {metrics['HR@5']:.3f} NDCG@5 {metrics['NDCG@5']:.3f} vs most-popular "
          f"{popular:.3f} ({len(tool.fit_history) - 1} epochs)")
    assert metrics["HR@5"] >= popular + 0.05
