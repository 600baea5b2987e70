"""Validation during VLM training: the first-pass instructions it scores, the summed metrics ranks add up, and
which step is kept."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reasonrec.metrics.ranking import ranking_metrics
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.validation import ValidationTrack, means, validation_counts, validation_instructions


def test_validation_instructions_are_the_vlm_only_first_pass_on_seeded_validation_users(vlm_data):
    cfg = InstructionConfig(max_history=7)
    rows = validation_instructions(vlm_data.dataset.root, "loo", 99, cfg, max_users=50, seed=3)
    again = validation_instructions(vlm_data.dataset.root, "loo", 99, cfg, max_users=50, seed=3)
    assert [r.to_row() for r in rows] == [r.to_row() for r in again]          # seeded
    assert len(rows) == 50 and len({r.user_idx for r in rows}) == 50
    valid = vlm_data.valid_candidates.set_index("user_idx")
    for r in rows:
        assert r.task == "sequential" and r.consulted_tools == [] and r.slots.tool_outputs == ""   # no tool hints
        assert r.target_item == valid.loc[r.user_idx, "target_item_idx"]
        assert r.candidates == [int(c) for c in valid.loc[r.user_idx, "candidates"]]
        train = vlm_data.train.items[vlm_data.train.offsets[r.user_idx]:vlm_data.train.offsets[r.user_idx + 1]]
        assert r.slots.history.split(" ")[0] == f"<item_{train[-min(7, len(train))]}>"  # train history only
    assert len(validation_instructions(vlm_data.dataset.root, "loo", 99, cfg, None, 0)) == len(valid)


class FixedScorer:
    """Scores each row's candidates so that the target lands at a chosen rank."""

    def __init__(self, ranks: list[int]):
        self.ranks = ranks

    def score(self, rows: list[Instruction]):
        width = max(len(r.candidates) for r in rows)
        candidates = np.full((len(rows), width), -1)
        scores = np.full((len(rows), width), -np.inf)
        for i, (r, rank) in enumerate(zip(rows, self.ranks)):
            others = [c for c in r.candidates if c != r.target_item]
            order = others[:rank] + [r.target_item] + others[rank:]
            candidates[i, :len(order)] = order
            scores[i, :len(order)] = -np.arange(len(order), dtype=float)
        return SimpleNamespace(candidates=candidates, scores=scores)


def test_counts_are_sums_that_give_the_shared_metrics_once_divided():
    rows = [Instruction(user_idx=u, task="sequential", template_id=0, evidence_horizon=0.5, image_items=[],
                        prompt="p", thought="t", answer="", target_item=u, candidates=list(range(20)))
            for u in range(6)]
    ranks = [0, 3, 4, 5, 9, 15]
    halves = [validation_counts(FixedScorer(ranks[:3]), rows[:3]), validation_counts(FixedScorer(ranks[3:]), rows[3:])]
    total = means({k: halves[0][k] + halves[1][k] for k in halves[0]})
    expected = ranking_metrics(np.array(ranks), (5, 10))
    assert total["n"] == 6
    for key in ("HR@5", "NDCG@5", "HR@10", "NDCG@10"):
        assert total[key] == pytest.approx(expected[key])
    assert validation_counts(FixedScorer([]), [])["n"] == 0


def test_track_keeps_the_first_best_step_and_survives_a_resume():
    track = ValidationTrack("NDCG@5")
    assert track.add(100, {"NDCG@5": 0.2}) and track.add(200, {"NDCG@5": 0.3})
    assert not track.add(300, {"NDCG@5": 0.3}) and not track.add(400, {"NDCG@5": 0.1})   # a tie keeps step 200
    assert (track.best_step, track.best_value) == (200, 0.3)
    again = ValidationTrack.from_dict(track.as_dict(), "NDCG@5")
    assert again.as_dict() == track.as_dict()
    assert not again.add(500, {"NDCG@5": 0.25}) and again.add(600, {"NDCG@5": 0.31})
    assert ValidationTrack.from_dict(None, "HR@5").as_dict() == {"metric": "HR@5", "curve": [], "best_step": None,
                                                                "best_value": None}


def test_patience_counts_the_passes_since_the_best():
    track = ValidationTrack("HR@5")
    assert not track.patience_spent(1)
    track.add(10, {"HR@5": 0.5})
    assert not track.patience_spent(1) and not track.patience_spent(None)
    track.add(20, {"HR@5": 0.4})
    assert track.patience_spent(1) and not track.patience_spent(2)
    track.add(30, {"HR@5": 0.6})
    assert not track.patience_spent(1)
