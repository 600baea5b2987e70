"""Table 4 on a hand-built case: accuracy of each side, disagreement rate, accuracy on the disagreements."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.report.conflict import conflict_row


def test_conflict_row_known_case():
    targets = np.array([1, 2, 3, 4, 5])
    tool = np.array([1, 9, 3, 9, 9])          # right on rows 0, 2
    model = np.array([1, 2, 8, 9, 5])         # right on rows 0, 1, 4; differs from the tool on rows 1, 2, 4
    row = conflict_row(tool, model, targets)
    assert row["rows"] == 5 and row["disagreements"] == 3
    assert row["tool_accuracy"] == pytest.approx(0.4) and row["model_accuracy"] == pytest.approx(0.6)
    assert row["disagreement_rate"] == pytest.approx(0.6)
    assert row["tool_accuracy_on_disagreements"] == pytest.approx(1 / 3)
    assert row["model_accuracy_on_disagreements"] == pytest.approx(2 / 3)


def test_no_disagreement_has_no_accuracy_on_disagreements():
    row = conflict_row(np.array([1, 2]), np.array([1, 2]), np.array([1, 3]))
    assert row["disagreement_rate"] == 0.0 and row["tool_accuracy_on_disagreements"] is None
    with pytest.raises(ValueError, match="shapes differ"):
        conflict_row(np.array([1]), np.array([1, 2]), np.array([1, 2]))
