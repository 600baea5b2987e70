import math

import numpy as np
import pytest
import sklearn.metrics

from reasonrec.metrics.ctr import PROB_CLIP, auc, ctr_metrics, log_loss


def test_auc_counts_concordant_pairs():
    labels = np.array([1, 0, 1, 0, 0])
    probs = np.array([0.8, 0.6, 0.4, 0.4, 0.1])
    # positives 0.8, 0.4 vs negatives 0.6, 0.4, 0.1:
    #   0.8 beats all three -> 3; 0.4 beats 0.1 (1), ties 0.4 (0.5), loses to 0.6 (0) -> 1.5
    assert auc(labels, probs) == pytest.approx((3 + 1.5) / (2 * 3))


def test_log_loss_hand_computed():
    labels = np.array([1, 0, 1])
    probs = np.array([0.9, 0.2, 0.5])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.5)) / 3
    assert log_loss(labels, probs) == pytest.approx(expected)


def test_log_loss_clips_certain_mistakes_to_a_finite_cost():
    value = log_loss(np.array([1, 0]), np.array([0.0, 0.0]))
    assert value == pytest.approx(-math.log(PROB_CLIP) / 2)
    assert math.isfinite(value)


def test_log_loss_is_defined_for_a_single_class():
    assert log_loss(np.array([1, 1]), np.array([0.5, 0.25])) == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)


def test_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    probs = rng.random(500)
    metrics = ctr_metrics(labels, probs)
    assert list(metrics) == ["AUC", "LogLoss"]
    assert metrics["AUC"] == pytest.approx(sklearn.metrics.roc_auc_score(labels, probs))
    assert metrics["LogLoss"] == pytest.approx(sklearn.metrics.log_loss(labels, probs))


def test_bool_and_float_labels_are_accepted():
    probs = np.array([0.3, 0.7, 0.6])
    assert auc(np.array([False, True, False]), probs) == auc(np.array([0.0, 1.0, 0.0]), probs) == 1.0


def test_auc_single_class_is_an_error():
    with pytest.raises(ValueError, match="AUC is undefined: all 3 labels are 0"):
        auc(np.zeros(3, dtype=int), np.array([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("labels, probs, message", [
    ([0, 1], [0.5, 1.2], "row 1: prob 1.2 is outside"),
    ([0, 1], [-0.1, 0.5], "row 0: prob -0.1 is outside"),
    ([0, 1, 1], [0.5, np.nan, 0.2], "row 1: prob is NaN"),
    ([0, np.nan], [0.5, 0.5], "row 1: label nan is not 0 or 1"),
    ([0, 2], [0.5, 0.5], "row 1: label 2.0 is not 0 or 1"),
    ([0, 1, 1], [0.5, 0.5], "length mismatch: 3 labels, 2 probs"),
    ([], [], "empty"),
])
@pytest.mark.parametrize("metric", [auc, log_loss])
def test_invalid_input(metric, labels, probs, message):
    with pytest.raises(ValueError, match=message):
        metric(np.array(labels), np.array(probs))
