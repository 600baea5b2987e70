"""BPR-MLP (NCF's MLP tower trained with BPR): learns on synthetic and real data, chunked full-catalogue scoring
equals candidate scoring, '+V' works, checkpoints round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reasonrec.tools import TOOLS, bpr_mlp
from reasonrec.tools.bpr_mlp import BPRMLP, BPRMLPConfig
from tests.tools.contract import (check_content_round_trip, check_same_weights, check_save_load_scores,
                                  check_scores_topk_and_confidence, popularity_hr5, sampled_metrics)

torch.set_num_threads(1)
TOOLS.setdefault(BPRMLP.name, BPRMLP)


def fitted(data, features=None, **settings) -> BPRMLP:
    tool = BPRMLP(BPRMLPConfig(**settings), data.n_users, data.n_items, features)
    tool.fit(data)
    return tool


@pytest.fixture(scope="module")
def tool(synthetic_data) -> BPRMLP:
    return fitted(synthetic_data, seed=0)


def test_beats_most_popular_on_synthetic(tool, synthetic_data):
    hr5, popular = sampled_metrics(tool, synthetic_data)["HR@5"], popularity_hr5(synthetic_data)
    print(f"bpr_mlp synthetic HR@5 {hr5:.3f} vs most-popular {popular:.3f}")
    assert hr5 >= popular + 0.08


def test_split_first_layer_equals_the_mlp_over_the_concatenation(tool):
    """W [u; i] + b computed as (W_u u + b) + W_i i: the trick that makes full-catalogue scoring cheap."""
    m = tool.module
    users, items = m.users.weight[:5], m.items(torch.arange(5))
    with torch.no_grad():
        whole = m.upper(m.first(torch.cat([users, items], dim=-1))).squeeze(-1)
        split = torch.diagonal(m.pair_scores(m.user_part(users), m.item_part(items)))
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)


def test_chunked_full_catalogue_scores_equal_candidate_scores(tool, synthetic_data, monkeypatch):
    queries = synthetic_data.queries(np.arange(7), "train", tool.cfg.max_len)
    every_item = np.tile(np.arange(tool.n_items), (7, 1))
    monkeypatch.setattr(bpr_mlp, "PAIRS_PER_CHUNK", 7 * 41)  # 41 items per chunk: uneven last chunk
    np.testing.assert_allclose(tool.score_all(queries), tool.score(queries, every_item), rtol=1e-5, atol=1e-6)


def test_training_is_deterministic_for_a_seed(synthetic_data):
    check_same_weights(*(fitted(synthetic_data, seed=1, epochs=2) for _ in range(2)))


def test_save_load_round_trip_scores_identically(tool, synthetic_data, tmp_path):
    check_save_load_scores(tool, synthetic_data, tmp_path / "ckpt")


def test_scores_topk_and_confidence_have_the_documented_shapes(tool, synthetic_data):
    check_scores_topk_and_confidence(tool, synthetic_data)


def test_content_variant_trains_scores_and_round_trips(synthetic_data, synthetic_features, tmp_path):
    tool = fitted(synthetic_data, synthetic_features, use_content=True, epochs=3, seed=0)
    check_content_round_trip(tool, synthetic_data, synthetic_features, tmp_path)


@pytest.mark.real_data
def test_beats_most_popular_on_the_movielens_slice(movielens_slice):
    """MovieLens, not Beauty: on the 3,000-user Beauty slice (1.7 training interactions per item) the MLP
    only reaches popularity (HR@5 0.174 vs 0.174); it needs the denser data (full Beauty: 0.243 vs 0.172)."""
    tool = fitted(movielens_slice, seed=0)
    metrics, popular = sampled_metrics(tool, movielens_slice), popularity_hr5(movielens_slice)
    print(f"bpr_mlp movielens_slice HR@5 {metrics['HR@5']:.3f} NDCG@5 {metrics['NDCG@5']:.3f} vs most-popular "
          f"{popular:.3f} ({len(tool.fit_history) - 1} epochs)")
    assert metrics["HR@5"] >= popular + 0.06
