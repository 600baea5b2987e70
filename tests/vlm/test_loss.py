"""The label-only loss equals HF's full-sequence loss, and is what a training step should use."""

from __future__ import annotations

import pytest
import torch

from reasonrec.vlm.encode import encode_for_training
from reasonrec.vlm.loss import supervised_loss
from tests.vlm.conftest_model import toy_instructions


def test_matches_the_full_forward_loss_and_its_gradients(tiny_model, toy_images):
    model, processor = tiny_model
    batch = encode_for_training(toy_instructions(6, seed=3), processor, toy_images, 384)
    reference = model(**batch).loss
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ours = supervised_loss(model, batch)
    ours.backward()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)


def test_history_loss_is_the_next_item_cross_entropy_over_item_tokens(tiny_model, toy_images):
    from reasonrec.vlm.scoring import item_token_ids
    from tests.vlm.test_encode import slotted_record

    model, processor = tiny_model
    records = [slotted_record([3, 5, 7, 11], [1, 2, 4]), slotted_record([2, 8, 13], [6, 9, 10], template_id=4)]
    batch = encode_for_training(records, processor, toy_images, 384, history_labels=True)
    items = item_token_ids(processor.tokenizer)
    with torch.no_grad():
        base = supervised_loss(model, batch)
        combined = supervised_loss(model, batch, items, history_weight=0.5)
        logits = model(**{k: v for k, v in batch.items() if k != "item_labels"}).logits[:, :-1]
    targets = batch["item_labels"][:, 1:]
    keep = targets != -100
    expected = torch.nn.functional.cross_entropy(logits[keep][:, items], targets[keep])
    assert int(keep.sum()) == 3 + 2
    torch.testing.assert_close(combined - base, 0.5 * expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="item_token_ids"):
        supervised_loss(model, batch, None, history_weight=0.5)
    # The answer's item token, once more over the item tokens only.
    with torch.no_grad():
        answered = supervised_loss(model, batch, items, answer_weight=2.0)
    labels = batch["labels"][:, 1:]
    at = torch.isin(labels, items)
    assert int(at.sum()) == 2                                       # one answer item per record
    lookup = {int(t): i for i, t in enumerate(items)}
    answer = torch.tensor([lookup[int(t)] for t in labels[at]])
    expected = torch.nn.functional.cross_entropy(logits[at][:, items], answer)
    torch.testing.assert_close(answered - base, 2.0 * expected, rtol=1e-4, atol=1e-5)
