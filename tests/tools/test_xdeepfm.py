"""xDeepFM (reasonrec/tools/xdeepfm.py): linear part + Compressed Interaction Network + DNN, trained on the
synthetic CTR rows and a real MovieLens slice."""

from __future__ import annotations

import pytest
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.ctr_fields import CTRInputs
from reasonrec.tools.xdeepfm import CompressedInteractionNetwork, XDeepFM, XDeepFMHead
from tests.tools.contract import (check_round_trip, check_scoring_interface, constant_log_loss,
                                         held_out_metrics, popularity_auc)

torch.set_num_threads(1)
TOOLS.setdefault(XDeepFM.name, XDeepFM)


@pytest.fixture(scope="module")
def trained(synthetic_data) -> XDeepFM:
    tool = XDeepFM(XDeepFM.config_class(epochs=4), synthetic_data.n_users, synthetic_data.n_items)
    tool.fit(synthetic_data)
    return tool


def paper_cin(cin: CompressedInteractionNetwork, x0: torch.Tensor) -> torch.Tensor:
    """Eq. 6 of the paper written out: X^k_h = sum_ij W^{k,h}_ij (X^{k-1}_i * X^0_j), sum-pooled (Eq. 8)."""
    pooled, x = [], x0
    for k, layer in enumerate(cin.layers):
        weight = layer.weight.view(layer.out_features, x.shape[1], x0.shape[1])
        maps = torch.einsum("hij,nid,njd->nhd", weight, x, x0) + layer.bias[None, :, None]
        to_next = cin.to_next[k]
        x, direct = (maps[:, :to_next], maps[:, to_next:]) if to_next < maps.shape[1] else (maps, maps)
        pooled.append(direct.sum(-1))
    return torch.cat(pooled, 1)


@pytest.mark.parametrize("split_half", [True, False])
def test_cin_follows_the_paper(split_half):
    torch.manual_seed(0)
    cin = CompressedInteractionNetwork(n_fields=5, layer_sizes=[8, 6, 4], split_half=split_half)
    x0 = torch.randn(3, 5, 7)
    torch.testing.assert_close(cin(x0), paper_cin(cin, x0))
    assert cin.out_width == (4 + 3 + 4 if split_half else 8 + 6 + 4)


def test_cin_rejects_odd_hidden_layers_when_splitting_in_half():
    with pytest.raises(ValueError, match="even"):
        CompressedInteractionNetwork(5, [7, 4], split_half=True)


def test_logit_is_linear_plus_cin_plus_dnn():
    torch.manual_seed(0)
    head = XDeepFMHead(n_fields=5, dim=4, cin_layers=[6, 4], split_half=True, hidden_units=[8], dropout=0.0)
    fields, linear = torch.randn(3, 5, 4), torch.randn(3)
    expected = (linear + head.cin_output(head.cin(fields)).squeeze(-1)
                + head.deep_output(head.deep(fields.flatten(1))).squeeze(-1))
    torch.testing.assert_close(head(CTRInputs(fields, linear)), expected)


def test_beats_popularity_and_the_constant_predictor_on_synthetic(trained, synthetic_data):
    metrics = held_out_metrics(trained, synthetic_data)
    assert metrics["AUC"] > 0.65
    assert metrics["AUC"] > popularity_auc(synthetic_data) + 0.15
    assert metrics["LogLoss"] < constant_log_loss(synthetic_data) - 0.02


def test_scoring_interface(trained, synthetic_data):
    check_scoring_interface(trained, synthetic_data)


def test_save_load_round_trip(trained, synthetic_data, tmp_path):
    check_round_trip(trained, synthetic_data, tmp_path / "xdeepfm")


def test_content_variant_trains_and_round_trips(synthetic_data, synthetic_features, tmp_path):
    tool = XDeepFM(XDeepFM.config_class(use_content=True, epochs=2), synthetic_data.n_users,
                   synthetic_data.n_items, synthetic_features)
    tool.fit(synthetic_data)
    assert held_out_metrics(tool, synthetic_data)["AUC"] > 0.55
    check_round_trip(tool, synthetic_data, tmp_path / "xdeepfm_v")


@pytest.mark.real_data
@pytest.mark.slow
def test_movielens_slice_beats_popularity(movielens_slice):
    tool = XDeepFM(XDeepFM.config_class(epochs=2), movielens_slice.n_users, movielens_slice.n_items)
    tool.fit(movielens_slice)
    metrics = held_out_metrics(tool, movielens_slice)
    assert metrics["AUC"] > popularity_auc(movielens_slice) + 0.015
    assert metrics["LogLoss"] < constant_log_loss(movielens_slice) - 0.1
