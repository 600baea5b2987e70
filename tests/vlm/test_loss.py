"""The label-only loss equals HF's full-sequence loss, and is what a training step should use."""

from __future__ import annotations

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
