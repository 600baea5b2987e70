"""BPR-MF, the reference tool: learns on synthetic and real data, '+V' works, checkpoints round-trip, and the
shared Tool behaviour (score, topk with exclusion, confidence) holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.bpr_mf import BPRMF, BPRMFConfig, bpr_batches, train_pairs
from tests.tools.contract import (check_content_round_trip, check_same_weights, check_save_load_scores,
                                  check_scores_topk_and_confidence, popularity_hr5, sampled_metrics)

torch.set_num_threads(1)
TOOLS.setdefault(BPRMF.name, BPRMF)


def fitted(data, features=None, **settings) -> BPRMF:
    tool = BPRMF(BPRMFConfig(**settings), data.n_users, data.n_items, features)
    tool.fit(data)
    return tool


@pytest.fixture(scope="module")
def tool(synthetic_data) -> BPRMF:
    return fitted(synthetic_data, seed=0)


def test_bpr_batches_cover_every_training_interaction_once(synthetic_data):
    batches = list(bpr_batches(synthetic_data, np.random.default_rng(0), batch_size=100))
    users, items = train_pairs(synthetic_data)
    drawn_users, drawn_items = (torch.cat([b[key] for b in batches]).tolist() for key in ("user", "pos"))
    assert sorted(zip(drawn_users, drawn_items)) == sorted(zip(users.tolist(), items.tolist()))
    negatives = torch.cat([b["neg"] for b in batches])
    assert len(negatives) == len(users) and 0 <= negatives.min() and negatives.max() < synthetic_data.n_items
    assert all(len(b["user"]) <= 100 for b in batches)


def test_beats_most_popular_on_synthetic(tool, synthetic_data):
    hr5, popular = sampled_metrics(tool, synthetic_data)["HR@5"], popularity_hr5(synthetic_data)
    print(f"bpr_mf synthetic HR@5 {hr5:.3f} vs most-popular {popular:.3f}")
    assert hr5 >= popular + 0.08


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
def test_beats_most_popular_on_the_beauty_slice(beauty_slice):
    tool = fitted(beauty_slice, seed=0)
    metrics, popular = sampled_metrics(tool, beauty_slice), popularity_hr5(beauty_slice)
    print(f"bpr_mf beauty_slice HR@5 {metrics['HR@5']:.3f} NDCG@5 {metrics['NDCG@5']:.3f} vs most-popular "
          f"{popular:.3f} ({len(tool.fit_history) - 1} epochs)")
    assert metrics["HR@5"] >= popular + 0.03
