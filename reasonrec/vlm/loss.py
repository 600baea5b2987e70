"""The training loss, computed only where the labels are.

R-VIT supervises the assistant turn (thought + answer + </s>, ~20 tokens) of a ~300-token sequence whose
vocabulary holds every item token (9k+ on ml-latest-small). HF's forward projects *every* position onto the
vocabulary before the loss: [batch, seq, vocab] logits that dominated a CPU training step. Projecting only
the supervised positions gives the same loss (tested to 1e-5) at a fraction of the cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def unwrap(model):
    """The LlavaForConditionalGeneration under a DeepSpeed engine and/or a peft wrapper."""
    model = getattr(model, "module", model)           # DeepSpeed engine / DDP
    if hasattr(model, "get_base_model"):               # peft PeftModel (LoRA layers live inside, in place)
        model = model.get_base_model()
    return model


def supervised_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions (what model(**batch).loss returns)."""
    llava = unwrap(model)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = llava.model(**inputs, use_cache=False).last_hidden_state            # [B, T, H]
    targets = batch["labels"][:, 1:]                            # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    logits = llava.lm_head(hidden[:, :-1][keep])                # [n_supervised, vocab]
    return F.cross_entropy(logits.float(), targets[keep])
