"""ECE and reliability bins on hand-built cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.report.calibration import calibration_row, ece, reliability


def test_ece_of_a_known_case():
    # Bin [0.1, 0.2): conf 0.1, hit rate 0 -> gap 0.1; bin [0.9, 1.0]: conf 0.9, hit rate 1 -> gap 0.1.
    assert ece(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(0.1)
    # Overconfident: conf 0.8 on 4 rows, 1 hit -> |0.25 - 0.8|.
    assert ece(np.full(4, 0.8), np.array([1, 0, 0, 0])) == pytest.approx(0.55)


def test_perfect_calibration_is_zero_and_weights_are_shares():
    conf = np.array([0.25] * 4 + [0.75] * 4)
    hit = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert ece(conf, hit) == pytest.approx(0.0)
    # 2 rows at 0.05 with no hit (gap 0.05) and 8 perfectly calibrated rows: 0.2 * 0.05.
    assert ece(np.r_[[0.05, 0.05], conf], np.r_[[0, 0], hit]) == pytest.approx(0.01)


def test_bins_edges_nan_and_clipping():
    bins = reliability(np.array([0.0, 0.1, 0.5, 1.0, 1.2, np.nan]), np.array([0, 1, 1, 1, 0, 1]), bins=10)
    counts = [b["count"] for b in bins]
    assert counts == [1, 1, 0, 0, 0, 1, 0, 0, 0, 2]     # 1.0 and a clipped 1.2 land in the last bin; NaN left out
    assert bins[9]["accuracy"] == 0.5 and bins[9]["confidence"] == 1.0
    assert bins[2]["confidence"] is None and bins[2]["accuracy"] is None
    assert ece(np.array([np.nan]), np.array([1])) is None
    with pytest.raises(ValueError, match="differ in shape"):
        reliability(np.zeros(3), np.zeros(2))


def test_calibration_row_counts_readable_rows():
    row = calibration_row("forced vlm", np.array([0.9, np.nan, 0.9]), np.array([1, 0, 0]), bins=5)
    assert row["rows"] == 3 and row["readable"] == 2 and row["mean_confidence"] == pytest.approx(0.9)
    assert row["accuracy"] == pytest.approx(1 / 3)     # the hit rate of every row, the one NaN included
    assert row["ECE"] == pytest.approx(abs(0.5 - 0.9)) and len(row["bins"]) == 5
