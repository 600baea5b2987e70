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


def supervised_loss(model, batch: dict[str, torch.Tensor], item_token_ids: torch.Tensor | None = None,
                    history_weight: float = 0.0) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions (what model(**batch).loss returns).

    With `item_labels` in the batch (encode_for_training(history_labels=True)) and history_weight > 0, plus
    history_weight x the mean next-item cross-entropy at the history positions, over the item tokens only
    (`item_token_ids`, in item_idx order): the prompt's history then trains like a SASRec sequence, every
    position predicting the next item, at no extra forward cost."""
    llava = unwrap(model)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "item_labels")}
    hidden = llava.model(**inputs, use_cache=False).last_hidden_state            # [B, T, H]
    targets = batch["labels"][:, 1:]                            # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    logits = llava.lm_head(hidden[:, :-1][keep])                # [n_supervised, vocab]
    loss = F.cross_entropy(logits.float(), targets[keep])
    if history_weight > 0 and "item_labels" in batch:
        if item_token_ids is None:
            raise ValueError("history_weight > 0 needs item_token_ids")
        item_targets = batch["item_labels"][:, 1:]
        keep = item_targets != IGNORE_INDEX
        if keep.any():
            item_rows = llava.lm_head.weight[item_token_ids.to(hidden.device)]   # [n_items, H]
            item_logits = hidden[:, :-1][keep] @ item_rows.T
            loss = loss + history_weight * F.cross_entropy(item_logits.float(), item_targets[keep])
    return loss
