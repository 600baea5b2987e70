"""The training loss, computed only where the labels are.

R-VIT supervises the assistant turn (thought + answer + </s>, ~20 tokens) of a ~300-token sequence whose
vocabulary holds every item token (9k+ on ml-latest-small). HF's forward projects *every* position onto the
vocabulary before the loss: [batch, seq, vocab] logits that dominated a CPU training step. Projecting only
the supervised positions gives the same loss (tested to 1e-5) at a fraction of the cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reasonrec.vlm.distill import DistillBatch, distillation_loss

IGNORE_INDEX = -100
# Batch keys that are labels or teacher inputs, not arguments of the model's forward.
NOT_MODEL_INPUTS = ("labels", "item_labels", "history_items", "history_positions", "answer_positions")


def unwrap(model):
    """The LlavaForConditionalGeneration under a DeepSpeed engine and/or a peft wrapper."""
    model = getattr(model, "module", model)           # DeepSpeed engine / DDP
    if hasattr(model, "get_base_model"):               # peft PeftModel (LoRA layers live inside, in place)
        model = model.get_base_model()
    return model


def supervised_loss(model, batch: dict[str, torch.Tensor], item_token_ids: torch.Tensor | None = None,
                    history_weight: float = 0.0, answer_weight: float = 0.0,
                    distill: DistillBatch | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions (what model(**batch).loss returns).

    Two item losses over the item tokens only (`item_token_ids`, in item_idx order) can be added:
    - history_weight x the mean next-item cross-entropy at the history positions (`item_labels` in the batch,
      encode_for_training(history_labels=True)): the prompt's history trains like a SASRec sequence, every
      position predicting the next item, at no extra forward cost;
    - answer_weight x the cross-entropy of the answer's item token: in the mean above it is one of ~20
      assistant tokens, most of them format (EH digits, separators), though it is the reading that ranks.
    `distill` adds its weight x a teacher tool's next-item distribution as a soft target (reasonrec/vlm/distill.py)."""
    llava = unwrap(model)
    inputs = {k: v for k, v in batch.items() if k not in NOT_MODEL_INPUTS}
    hidden = llava.model(**inputs, use_cache=False).last_hidden_state            # [B, T, H]
    targets = batch["labels"][:, 1:]                            # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    logits = llava.lm_head(hidden[:, :-1][keep])                # [n_supervised, vocab]
    loss = F.cross_entropy(logits.float(), targets[keep])
    if history_weight <= 0 and answer_weight <= 0 and distill is None:
        return loss
    if item_token_ids is None:
        raise ValueError("history_weight, answer_weight > 0 or distill needs item_token_ids")
    item_token_ids = item_token_ids.to(hidden.device)
    item_rows = llava.lm_head.weight[item_token_ids]           # [n_items, H]
    if history_weight > 0 and "item_labels" in batch:
        item_targets = batch["item_labels"][:, 1:]
        keep = item_targets != IGNORE_INDEX
        if keep.any():
            item_logits = hidden[:, :-1][keep] @ item_rows.T
            loss = loss + history_weight * F.cross_entropy(item_logits.float(), item_targets[keep])
    if answer_weight > 0:
        lookup = torch.full((llava.lm_head.weight.shape[0],), IGNORE_INDEX, dtype=torch.long, device=hidden.device)
        lookup[item_token_ids] = torch.arange(len(item_token_ids), device=hidden.device)
        answer_targets = lookup[targets.clamp(min=0)].masked_fill(targets == IGNORE_INDEX, IGNORE_INDEX)
        keep = answer_targets != IGNORE_INDEX
        if keep.any():
            answer_logits = hidden[:, :-1][keep] @ item_rows.T
            loss = loss + answer_weight * F.cross_entropy(answer_logits.float(), answer_targets[keep])
    if distill is not None and distill.weight > 0:
        loss = loss + distill.weight * distillation_loss(hidden, item_rows, distill.teacher_logits, distill.rows,
                                                         distill.positions, distill.columns, distill.temperature)
    return loss
