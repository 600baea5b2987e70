"""A sequential tool as the VLM's teacher: the tool's view of every prefix, where the student reads it, and the loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from reasonrec.tools.data import Queries
from reasonrec.tools.sasrec import SASRec, SASRecConfig
from reasonrec.vlm.distill import DistillBatch, Teacher, distillation_loss, distillation_targets
from reasonrec.vlm.encode import IGNORE_INDEX, encode_for_training
from reasonrec.vlm.loss import supervised_loss, unwrap
from reasonrec.vlm.scoring import item_token_ids
from tests.vlm.conftest_model import N_ITEMS
from tests.vlm.test_encode import slotted_record

MAX_LEN = 6


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    """An untrained but seeded SASRec over the tiny VLM's 20 items (its scores only need to be deterministic)."""
    tool = SASRec(SASRecConfig(embedding_dim=16, n_heads=2, max_len=MAX_LEN, dropout=0.0, seed=0), 4, N_ITEMS)
    return tool.save(tmp_path_factory.mktemp("teacher") / "sasrec")


def test_each_prefix_column_sees_its_prefix_only_never_the_item_it_predicts(teacher_folder):
    """One causal pass, as the tool trained: column j (right-aligned, at its training position) depends on
    items <= j only, so the teacher never sees the label it scores."""
    teacher = Teacher(str(teacher_folder), N_ITEMS)
    history = [3, 5, 7, 11]
    full = teacher.tool.prefix_item_scores(torch.tensor([[N_ITEMS] * (MAX_LEN - 4) + history]))[0]
    first = MAX_LEN - len(history)
    for j in range(len(history) - 1):
        changed = history[:j + 1] + [(h + 4) % N_ITEMS for h in history[j + 1:]]
        other = teacher.tool.prefix_item_scores(torch.tensor([[N_ITEMS] * first + changed]))[0]
        torch.testing.assert_close(other[first + j], full[first + j], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(other[first + j + 1], full[first + j + 1])
    # The last column is what the tool's own scoring reads for this user.
    alone = teacher.tool.score_all(Queries(np.array([0]), np.array([[N_ITEMS] * first + history])))[0]
    torch.testing.assert_close(full[-1], torch.from_numpy(alone), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="over max_len"):
        teacher.tool.prefix_item_scores(torch.zeros((1, MAX_LEN + 1), dtype=torch.long))


def test_teacher_columns_follow_each_rows_history_and_long_rows_keep_the_newest_window(teacher_folder):
    teacher = Teacher(str(teacher_folder), N_ITEMS)
    short, long = [3, 5, 7], [1, 2, 3, 4, 5, 6, 7, 8]                  # the long row is over max_len (6)
    items = torch.full((2, 8), IGNORE_INDEX)
    items[0, :3], items[1, :] = torch.tensor(short), torch.tensor(long)
    logits = teacher.prefix_logits(items)
    assert logits.shape == (2, 8, N_ITEMS)
    alone = teacher.tool.prefix_item_scores(torch.tensor([[N_ITEMS] * 3 + short]))[0]
    torch.testing.assert_close(logits[0, :3], alone[3:])
    assert (logits[0, 3:] == 0).all()
    window = teacher.tool.prefix_item_scores(torch.tensor([long[-MAX_LEN:]]))[0]
    torch.testing.assert_close(logits[1, 2:], window)
    # Where the student reads: the token before history item j + 1 reads column j; the oldest columns of the
    # long row (seen with less than the tool's context) are skipped; the answer reads the last column.
    positions = torch.full((2, 8), IGNORE_INDEX)
    positions[0, :3] = torch.tensor([10, 14, 18])
    positions[1, :] = torch.arange(8) * 3 + 5
    rows, at, columns = distillation_targets(items, positions, torch.tensor([40, IGNORE_INDEX]), MAX_LEN)
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert at.tolist() == [13, 17, 39, 13, 16, 19, 22, 25]
    assert columns.tolist() == [0, 1, 2, 2, 3, 4, 5, 6]
    no_answer = distillation_targets(items, positions, torch.tensor([40, IGNORE_INDEX]), MAX_LEN, answer=False)
    assert no_answer[0].tolist() == [0, 0, 1, 1, 1, 1, 1]


def test_only_a_sequential_tool_can_teach(tmp_path):
    from reasonrec.tools.base import ToolConfig
    from reasonrec.tools.bpr_mf import BPRMF

    BPRMF(ToolConfig(embedding_dim=8, seed=0), 4, N_ITEMS).save(tmp_path / "bpr_mf")
    with pytest.raises(SystemExit, match="must be a sequential tool"):
        Teacher(str(tmp_path / "bpr_mf"), N_ITEMS)
    SASRec(SASRecConfig(embedding_dim=16, n_heads=2, max_len=MAX_LEN), 4, N_ITEMS + 1).save(tmp_path / "other")
    with pytest.raises(SystemExit, match="scores 21 items, the data set has 20"):
        Teacher(str(tmp_path / "other"), N_ITEMS)


def test_history_tensors_point_at_the_history_and_the_sequential_answer(tiny_model, toy_images):
    _, processor = tiny_model
    tok = processor.tokenizer
    history = [3, 5, 3, 11]
    record = slotted_record(history, [5, 12, 1])
    direct = dataclasses.replace(record, task="direct")
    batch = encode_for_training([record, direct], processor, toy_images, 384, history_items=True)
    assert batch["history_items"][0].tolist() == history
    at = batch["history_positions"][0]
    assert batch["input_ids"][0, at].tolist() == tok.convert_tokens_to_ids([f"<item_{h}>" for h in history])
    answer = int(batch["answer_positions"][0])
    assert batch["input_ids"][0, answer] == tok.convert_tokens_to_ids("<item_9>") == batch["labels"][0, answer]
    assert int(batch["answer_positions"][1]) == IGNORE_INDEX           # only sequential answers follow the history


def test_the_loss_is_t2_kl_and_zero_when_the_student_agrees():
    torch.manual_seed(0)
    hidden, item_rows = torch.randn(2, 9, 4), torch.randn(N_ITEMS, 4)
    rows, positions, columns = torch.tensor([0, 1, 1]), torch.tensor([2, 5, 8]), torch.tensor([0, 0, 1])
    teacher = torch.randn(2, 2, N_ITEMS)
    student = hidden[rows, positions] @ item_rows.T
    for temperature in (1.0, 2.0):
        p = torch.softmax(teacher[rows, columns] / temperature, -1)
        expected = (p * (p.log() - torch.log_softmax(student / temperature, -1))).sum(-1).mean() * temperature ** 2
        got = distillation_loss(hidden, item_rows, teacher, rows, positions, columns, temperature)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    agreeing = torch.zeros(2, 2, N_ITEMS)
    agreeing[rows, columns] = student
    assert float(distillation_loss(hidden, item_rows, agreeing, rows, positions, columns)) < 1e-6
    empty = torch.tensor([], dtype=torch.long)
    assert float(distillation_loss(hidden, item_rows, teacher, empty, empty, empty)) == 0.0


def test_supervised_loss_adds_the_weighted_teacher_term_and_training_on_it_moves_the_student(
        tiny_model, toy_images, teacher_folder):
    model, processor = tiny_model
    teacher = Teacher(str(teacher_folder), N_ITEMS)
    records = [slotted_record([3, 5, 7, 11], [1, 2, 4]), slotted_record([2, 8, 13], [6, 9, 10], template_id=4)]
    batch = encode_for_training(records, processor, toy_images, 384, history_items=True)
    items = item_token_ids(processor.tokenizer)
    distill = DistillBatch.build(teacher, batch, weight=0.5, temperature=2.0)
    assert len(distill.rows) == 3 + 1 + 2 + 1                           # history positions + one answer per record
    with torch.no_grad():
        base = supervised_loss(model, batch)
        combined = supervised_loss(model, batch, items, distill=distill)
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "pixel_values")}
        hidden = unwrap(model).model(**inputs).last_hidden_state
        expected = distillation_loss(hidden, unwrap(model).lm_head.weight[items], distill.teacher_logits,
                                     distill.rows, distill.positions, distill.columns, 2.0)
    torch.testing.assert_close(combined - base, 0.5 * expected, rtol=1e-4, atol=1e-5)
    # A few steps on the teacher term alone bring the student's item distribution to the teacher's.
    student = model.train()
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    only_teacher = dataclasses.replace(distill, weight=1.0)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        hidden = unwrap(student).model(**inputs).last_hidden_state
        loss = distillation_loss(hidden, unwrap(student).lm_head.weight[items], only_teacher.teacher_logits,
                                 only_teacher.rows, only_teacher.positions, only_teacher.columns, 2.0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    student.eval()
    assert losses[-1] < 0.5 * losses[0], losses
