"""DLRM (reasonrec/tools/dlrm.py): pairwise dot-product interaction, trained on the synthetic CTR rows and
a real MovieLens slice."""

from __future__ import annotations

import pytest
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.ctr_fields import CTRInputs
from reasonrec.tools.dlrm import DLRM, DLRMHead
from tests.tools.contract import (check_round_trip, check_scoring_interface, constant_log_loss,
                                         held_out_metrics, popularity_auc)

torch.set_num_threads(1)
TOOLS.setdefault(DLRM.name, DLRM)


@pytest.fixture(scope="module")
def trained(synthetic_data) -> DLRM:
    tool = DLRM(DLRM.config_class(epochs=5), synthetic_data.n_users, synthetic_data.n_items)
    tool.fit(synthetic_data)
    return tool


def test_top_mlp_reads_the_dense_vector_and_every_pairwise_dot_product():
    torch.manual_seed(0)
    head = DLRMHead(n_fields=3, dim=2, top_units=[4], dropout=0.0)
    fields = torch.randn(5, 3, 2)
    seen = {}

    def keep_input(module, args, output):
        seen["input"] = args[0]

    head.top.register_forward_hook(keep_input)
    head(CTRInputs(fields, None))
    dot = lambda i, j: (fields[:, i] * fields[:, j]).sum(-1, keepdim=True)  # noqa: E731
    expected = torch.cat([fields[:, 0], dot(0, 1), dot(0, 2), dot(1, 2)], dim=1)
    torch.testing.assert_close(seen["input"], expected)


def test_beats_popularity_and_the_constant_predictor_on_synthetic(trained, synthetic_data):
    metrics = held_out_metrics(trained, synthetic_data)
    assert metrics["AUC"] > 0.65
    assert metrics["AUC"] > popularity_auc(synthetic_data) + 0.15
    assert metrics["LogLoss"] < constant_log_loss(synthetic_data) - 0.02


def test_scoring_interface(trained, synthetic_data):
    check_scoring_interface(trained, synthetic_data)


def test_save_load_round_trip(trained, synthetic_data, tmp_path):
    check_round_trip(trained, synthetic_data, tmp_path / "dlrm")


def test_content_variant_trains_and_round_trips(synthetic_data, synthetic_features, tmp_path):
    tool = DLRM(DLRM.config_class(use_content=True, epochs=2), synthetic_data.n_users, synthetic_data.n_items,
                synthetic_features)
    tool.fit(synthetic_data)
    assert held_out_metrics(tool, synthetic_data)["AUC"] > 0.55
    check_round_trip(tool, synthetic_data, tmp_path / "dlrm_v")


@pytest.mark.real_data
def test_movielens_slice_beats_popularity(movielens_slice):
    tool = DLRM(DLRM.config_class(epochs=2), movielens_slice.n_users, movielens_slice.n_items)
    tool.fit(movielens_slice)
    metrics = held_out_metrics(tool, movielens_slice)
    assert metrics["AUC"] > popularity_auc(movielens_slice) + 0.015
    assert metrics["LogLoss"] < constant_log_loss(movielens_slice) - 0.1
