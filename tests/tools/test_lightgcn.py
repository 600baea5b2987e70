"""LightGCN: the normalised graph is right and sparse, the model learns on synthetic and real data, '+V' works,
and a checkpoint (weights + edge list) scores exactly like the trained tool."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.bpr_mf import train_pairs
from reasonrec.tools.lightgcn import LightGCN, LightGCNConfig
from tests.tools.contract import (check_content_round_trip, check_same_weights, check_save_load_scores,
                                  check_scores_topk_and_confidence, popularity_hr5, sampled_metrics)

torch.set_num_threads(1)
TOOLS.setdefault(LightGCN.name, LightGCN)


def fitted(data, features=None, **settings) -> LightGCN:
    tool = LightGCN(LightGCNConfig(**settings), data.n_users, data.n_items, features)
    tool.fit(data)
    return tool


@pytest.fixture(scope="module")
def tool(synthetic_data) -> LightGCN:
    return fitted(synthetic_data, seed=0)


def test_adjacency_is_the_symmetric_normalised_bipartite_graph():
    module = LightGCN(LightGCNConfig(), n_users=3, n_items=4).module
    module.set_graph(np.array([0, 0, 1, 2, 0]), np.array([0, 1, 1, 3, 0]))  # (0, 0) twice: one edge
    adjacency = module.adjacency()
    assert adjacency.layout == torch.sparse_coo and adjacency._nnz() == 8
    dense = adjacency.to_dense().numpy()
    a = np.zeros((7, 7))
    for u, i in [(0, 0), (0, 1), (1, 1), (2, 3)]:
        a[u, 3 + i] = a[3 + i, u] = 1
    degree = a.sum(1)
    inv_sqrt = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0)
    np.testing.assert_allclose(dense, inv_sqrt[:, None] * a * inv_sqrt[None, :], rtol=1e-6)


def test_propagation_is_the_layer_mean_of_repeated_sparse_products(tool):
    m = tool.module
    with torch.no_grad():
        adjacency = m.adjacency().to_dense()
        layer = m.layer0()
        layers = [layer]
        for _ in range(m.n_layers):
            layer = adjacency @ layer
            layers.append(layer)
        expected = torch.stack(layers).mean(0)
        users, items = m.propagate()
    torch.testing.assert_close(torch.cat([users, items]), expected, rtol=1e-5, atol=1e-6)


def test_beats_most_popular_on_synthetic(tool, synthetic_data):
    hr5, popular = sampled_metrics(tool, synthetic_data)["HR@5"], popularity_hr5(synthetic_data)
    print(f"lightgcn synthetic HR@5 {hr5:.3f} vs most-popular {popular:.3f}")
    assert hr5 >= popular + 0.08


def test_the_graph_is_the_distinct_training_pairs(tool, synthetic_data):
    users, items = train_pairs(synthetic_data)
    expected = set(zip(users.tolist(), items.tolist()))
    edges = tool.module.edges.numpy()
    assert edges.shape == (2, len(expected)) and set(zip(*edges.tolist())) == expected


def test_training_is_deterministic_for_a_seed(synthetic_data):
    check_same_weights(*(fitted(synthetic_data, seed=1, epochs=2) for _ in range(2)))


def test_save_load_round_trip_scores_identically(tool, synthetic_data, tmp_path):
    loaded = check_save_load_scores(tool, synthetic_data, tmp_path / "ckpt")
    assert torch.equal(loaded.module.edges, tool.module.edges)


def test_an_unfitted_tool_says_it_has_no_graph(synthetic_data):
    unfitted = LightGCN(LightGCNConfig(), synthetic_data.n_users, synthetic_data.n_items)
    with pytest.raises(RuntimeError, match="no graph"):
        unfitted.score(synthetic_data.queries(np.arange(2), "train", 5), np.zeros((2, 3), dtype=np.int64))


def test_scoring_never_reuses_embeddings_from_before_a_weight_change(synthetic_data):
    tool = fitted(synthetic_data, seed=0, epochs=1)
    queries = synthetic_data.queries(np.arange(5), "train", tool.cfg.max_len)
    candidates = np.tile(np.arange(10), (5, 1))
    before = tool.score(queries, candidates)
    state = {k: v.clone() for k, v in tool.module.state_dict().items()}
    state["users.weight"] += 1.0
    tool.module.load_state_dict(state)
    assert not np.allclose(tool.score(queries, candidates), before)


def test_scores_topk_and_confidence_have_the_documented_shapes(tool, synthetic_data):
    check_scores_topk_and_confidence(tool, synthetic_data)


def test_content_variant_trains_scores_and_round_trips(synthetic_data, synthetic_features, tmp_path):
    tool = fitted(synthetic_data, synthetic_features, use_content=True, epochs=3, seed=0)
    check_content_round_trip(tool, synthetic_data, synthetic_features, tmp_path)


@pytest.mark.real_data
def test_beats_most_popular_on_the_beauty_slice(beauty_slice):
    tool = fitted(beauty_slice, seed=0, epochs=20)
    metrics, popular = sampled_metrics(tool, beauty_slice), popularity_hr5(beauty_slice)
    print(f"lightgcn beauty_slice HR@5 {metrics['HR@5']:.3f} NDCG@5 {metrics['NDCG@5']:.3f} vs most-popular "
          f"{popular:.3f} ({len(tool.fit_history) - 1} epochs)")
    assert metrics["HR@5"] >= popular + 0.05
