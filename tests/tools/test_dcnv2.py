"""DCN-V2 (reasonrec/tools/dcnv2.py): full-rank cross layers beside (or under) a DNN, trained on the synthetic
CTR rows and a real MovieLens slice."""

from __future__ import annotations

import pytest
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.ctr_fields import CTRInputs
from reasonrec.tools.dcnv2 import DCNv2, DCNv2Head, CrossNetworkV2
from tests.tools.contract import (check_round_trip, check_scoring_interface, constant_log_loss,
                                         held_out_metrics, popularity_auc)

torch.set_num_threads(1)
TOOLS.setdefault(DCNv2.name, DCNv2)


@pytest.fixture(scope="module")
def trained(synthetic_data) -> DCNv2:
    tool = DCNv2(DCNv2.config_class(epochs=10, patience=2), synthetic_data.n_users, synthetic_data.n_items)
    tool.fit(synthetic_data)
    return tool


def test_cross_layers_follow_the_paper():
    torch.manual_seed(0)
    cross = CrossNetworkV2(width=6, n_layers=2)
    x0 = torch.randn(4, 6)
    x1 = x0 * (x0 @ cross.layers[0].weight.T + cross.layers[0].bias) + x0
    x2 = x0 * (x1 @ cross.layers[1].weight.T + cross.layers[1].bias) + x1
    torch.testing.assert_close(cross(x0), x2)
    assert cross.layers[0].weight.shape == (6, 6)  # full rank, not DCN's rank-one vector


def test_parallel_and_stacked_structures():
    torch.manual_seed(0)
    fields = torch.randn(3, 5, 4)
    parallel = DCNv2Head(20, 2, "parallel", [8], dropout=0.0)
    stacked = DCNv2Head(20, 2, "stacked", [8], dropout=0.0)
    assert parallel.output.in_features == 20 + 8 and stacked.output.in_features == 8
    x0 = fields.flatten(1)
    torch.testing.assert_close(stacked(CTRInputs(fields, None)),
                               stacked.output(stacked.deep(stacked.cross(x0))).squeeze(-1))
    torch.testing.assert_close(parallel(CTRInputs(fields, None)), parallel.output(
        torch.cat([parallel.cross(x0), parallel.deep(x0)], 1)).squeeze(-1))


def test_beats_popularity_and_the_constant_predictor_on_synthetic(trained, synthetic_data):
    metrics = held_out_metrics(trained, synthetic_data)
    assert metrics["AUC"] > 0.62
    assert metrics["AUC"] > popularity_auc(synthetic_data) + 0.1
    assert metrics["LogLoss"] < constant_log_loss(synthetic_data) - 0.01


def test_scoring_interface(trained, synthetic_data):
    check_scoring_interface(trained, synthetic_data)


def test_save_load_round_trip(trained, synthetic_data, tmp_path):
    check_round_trip(trained, synthetic_data, tmp_path / "dcnv2")


def test_content_variant_trains_and_round_trips(synthetic_data, synthetic_features, tmp_path):
    tool = DCNv2(DCNv2.config_class(use_content=True, epochs=2, structure="stacked"), synthetic_data.n_users,
                 synthetic_data.n_items, synthetic_features)
    tool.fit(synthetic_data)
    assert held_out_metrics(tool, synthetic_data)["AUC"] > 0.55
    check_round_trip(tool, synthetic_data, tmp_path / "dcnv2_v")


@pytest.mark.real_data
def test_movielens_slice_beats_popularity(movielens_slice):
    tool = DCNv2(DCNv2.config_class(epochs=2), movielens_slice.n_users, movielens_slice.n_items)
    tool.fit(movielens_slice)
    metrics = held_out_metrics(tool, movielens_slice)
    assert metrics["AUC"] > popularity_auc(movielens_slice) + 0.01
    assert metrics["LogLoss"] < constant_log_loss(movielens_slice) - 0.1
