"""evaluate_ranking / evaluate_ctr on hand-built VLMOutputs with known answers; the seeded user subset of a
run's test table."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from reasonrec.vlm.evaluate import confidence_halves, evaluate_ctr, evaluate_ranking, ranks, subset_users
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.scoring import VLMOutput


def record(target: int, candidates: list[int], label: float = float("nan")) -> Instruction:
    return Instruction(user_idx=0, task="direct", template_id=0, evidence_horizon=0.5, image_items=[], prompt="",
                       thought="", answer="", target_item=target, candidates=candidates, label=label)


def output(scores, candidates, confidence, answer_prob=None, ctr_prob=None) -> VLMOutput:
    scores = np.asarray(scores, dtype=np.float32)
    n = len(scores)
    return VLMOutput(scores=scores, candidates=np.asarray(candidates), confidence=np.asarray(confidence, float),
                     conf_probs=np.zeros((n, 10)), answer_prob=np.asarray(
                         answer_prob if answer_prob is not None else np.zeros(n), float),
                     tool_probs=np.zeros((n, 2)), ctr_prob=np.asarray(
                         ctr_prob if ctr_prob is not None else np.full(n, 0.5), float),
                     parse_ok=np.array([True] * (n - 1) + [False]), top_item=np.zeros(n, dtype=np.int64))


def test_ranks_use_the_target_column_pessimistic_ties_and_ignore_padding():
    inf = -np.inf
    out = output(scores=[[0.0, 1.0, 2.0, inf],      # target 11 (col 1): one above it -> rank 1
                         [1.0, 1.0, 0.0, 0.0],      # target 20 (col 0) tied with col 1 -> rank 1 (pessimistic)
                         [5.0, 0.0, inf, inf]],     # target 31 (col 1) below the only other real column
                 candidates=[[10, 11, 12, -1], [20, 21, 22, 23], [30, 31, -1, -1]], confidence=[0.1, 0.2, 0.3])
    records = [record(11, [10, 11, 12]), record(20, [20, 21, 22, 23]), record(31, [30, 31])]
    assert ranks(out, records).tolist() == [1, 1, 1]
    metrics = evaluate_ranking(out, records)
    assert metrics["HR@1"] == 0.0 and metrics["HR@5"] == 1.0
    assert metrics["NDCG@5"] == pytest.approx(1 / np.log2(3))
    assert metrics["parse_ok_rate"] == pytest.approx(2 / 3)


def test_confidence_halves_on_a_known_split():
    # 6 rows: ranks 0,0,9,0,9,9; confidence puts rows 0,1,3 on top -> top half HR@5 = 1, bottom = 0.
    row_ranks = np.array([0, 0, 9, 0, 9, 9])
    halves = confidence_halves(np.array([0.9, 0.8, 0.1, 0.7, 0.2, np.nan]), row_ranks)
    assert halves["n"] == 5  # the NaN row is left out; 5 // 2 = 2 rows on top
    assert halves["top_half"] == 1.0 and halves["bottom_half"] == pytest.approx(1 / 3)
    flat = confidence_halves(np.full(6, 0.5), row_ranks)  # all tied: the stable split is by row order
    assert flat["top_half"] == pytest.approx(2 / 3) and flat["bottom_half"] == pytest.approx(1 / 3)


def test_evaluate_ranking_reports_both_confidence_checks():
    rng = np.random.default_rng(0)
    n, c = 8, 10
    scores = rng.standard_normal((n, c)).astype(np.float32)
    targets = np.arange(n) % c
    good = np.arange(n) < 4               # the first four rows put their target on top, the rest at the bottom
    scores[np.arange(n), targets] = np.where(good, 10.0, -10.0)
    candidates = np.tile(np.arange(100, 100 + c), (n, 1))
    records = [record(100 + int(t), list(range(100, 100 + c))) for t in targets]
    out = output(scores, candidates, confidence=np.where(good, 0.9, 0.1), answer_prob=np.where(good, 0.1, 0.9))
    metrics = evaluate_ranking(out, records)
    assert metrics["HR@5"] == 0.5 and metrics["HR@1"] == 0.5
    assert metrics["confidence_top_half_HR@5"] == 1.0 and metrics["confidence_bottom_half_HR@5"] == 0.0
    assert metrics["answer_prob_top_half_HR@5"] == 0.0 and metrics["answer_prob_bottom_half_HR@5"] == 1.0


def test_missing_target_is_an_error_naming_the_row():
    out = output([[0.0, 1.0]], [[1, 2]], [0.5])
    with pytest.raises(ValueError, match="row 0 .*target_item 7"):
        evaluate_ranking(out, [record(7, [1, 2])])


def test_evaluate_ctr():
    out = output(np.zeros((4, 1)), np.zeros((4, 1), dtype=int), np.zeros(4), ctr_prob=[0.9, 0.8, 0.3, 0.6])
    metrics = evaluate_ctr(out, [record(0, [], label=y) for y in (1.0, 1.0, 0.0, 0.0)])
    assert metrics["AUC"] == 1.0
    with pytest.raises(ValueError, match="CTR instructions"):
        evaluate_ctr(out, [record(0, []) for _ in range(4)])


def test_subset_users_keeps_every_instruction_of_a_seeded_subset_of_users():
    instructions = [replace(record(0, [0, 1]), user_idx=u, template_id=t) for u in range(10) for t in range(2)]
    assert subset_users(instructions, None, 0) is instructions and subset_users(instructions, 10, 0) is instructions
    kept = subset_users(instructions, 3, seed=5)
    users = {ins.user_idx for ins in kept}
    assert len(users) == 3 and len(kept) == 6  # both instructions of each kept user
    assert kept == subset_users(instructions, 3, seed=5)  # seeded: the same users every time
    assert any({ins.user_idx for ins in subset_users(instructions, 3, seed=s)} != users for s in range(6, 12))
