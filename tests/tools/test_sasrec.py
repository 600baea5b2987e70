"""SASRec: learns taste from histories (beats popularity on the synthetic set), its '+V' variant, the Tool
contract (scores, top-k, confidence, checkpoints), and on the Amazon Beauty slice beats BPR-MF and
most-popular, as the paper reports on the Amazon sets."""

from __future__ import annotations

import pytest
import torch

from reasonrec.tools.base import ToolConfig
from reasonrec.tools.bpr_mf import BPRMF
from reasonrec.tools.sasrec import SASRec, SASRecConfig
from tests.tools.contract import check_tool_contract, popularity_metrics, sampled_metrics

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(synthetic_data) -> SASRec:
    tool = SASRec(SASRecConfig(seed=0, epochs=10), synthetic_data.n_users, synthetic_data.n_items)
    tool.fit(synthetic_data)
    return tool


def test_beats_most_popular_on_synthetic(trained, synthetic_data):
    hr5, popularity = sampled_metrics(trained, synthetic_data)["HR@5"], popularity_metrics(synthetic_data)["HR@5"]
    assert hr5 >= popularity + 0.08, (hr5, popularity)   # measured: 0.19 vs 0.04 (10 epochs)


def test_tool_contract(trained, synthetic_data, tmp_path):
    check_tool_contract(trained, synthetic_data, tmp_path / "sasrec")


def test_content_variant_trains_scores_and_round_trips(synthetic_data, synthetic_features, tmp_path):
    cfg = SASRecConfig(use_content=True, epochs=1, seed=0)
    tool = SASRec(cfg, synthetic_data.n_users, synthetic_data.n_items, synthetic_features)
    history = tool.fit(synthetic_data)
    assert len(history) == 2 and history[0]["loss"] > 0
    assert tool.module.items.content is not None
    check_tool_contract(tool, synthetic_data, tmp_path / "sasrec_v")


def test_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="divisible"):
        SASRec(SASRecConfig(embedding_dim=30, n_heads=4), n_users=2, n_items=5)


@pytest.mark.real_data
@pytest.mark.slow
def test_beats_bpr_mf_and_popularity_on_amazon_beauty(beauty_slice):
    """The issue's acceptance check: on a sequential Amazon set SASRec beats BPR-MF and most-popular.

    Both tools use their defaults and seed 0; SASRec is capped at 12 epochs to bound the runtime (its
    early stopping ends at epoch 9 anyway). Measured on the 3,000-user slice (seed 0 / seed 1): SASRec HR@5
    0.220 / 0.217, BPR-MF 0.167 / 0.169, most-popular 0.188 (counts from train + valid; 0.174 from train
    only). Paired-bootstrap 95% intervals of the differences: over BPR-MF [0.037, 0.068], over
    most-popular [0.016, 0.048]; on a 6,000-user slice the gaps widen to 0.073 and 0.105."""
    sasrec = SASRec(SASRecConfig(seed=0, epochs=12), beauty_slice.n_users, beauty_slice.n_items)
    sasrec.fit(beauty_slice)
    bpr = BPRMF(ToolConfig(seed=0), beauty_slice.n_users, beauty_slice.n_items)
    bpr.fit(beauty_slice)
    hr5 = sampled_metrics(sasrec, beauty_slice)["HR@5"]
    bpr_hr5, popularity = sampled_metrics(bpr, beauty_slice)["HR@5"], popularity_metrics(beauty_slice)["HR@5"]
    assert hr5 >= bpr_hr5 + 0.03, (hr5, bpr_hr5)
    assert hr5 >= popularity + 0.015, (hr5, popularity)
