"""/v1/explain: the VLM's explanation of one item for one user, from an explanation-task prompt rendered the
way the VLM's training rendered them (the run's InstructionConfig: templates, history length, images).

The thought is forced with the user's evidence horizon (tonight's C(u); 1.0 for an unknown user, who also
gets an empty history), no tools; VLMScorer.explain generates greedily after "Answer:".
"""

from __future__ import annotations

import numpy as np

from reasonrec.recommend.bundle import Bundle
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.templates import TemplateMixture
from reasonrec.vlm.thought import format_thought


def explain_instruction(bundle: Bundle, user_idx: int, item_idx: int) -> Instruction:
    cfg, text = bundle.instruction_config, bundle.item_text
    if user_idx >= 0:
        everything = bundle.everything
        history = everything.items[everything.offsets[user_idx]:everything.offsets[user_idx + 1]]
        eh = float(bundle.tonight_eh[user_idx])
    else:
        history, eh = np.zeros(0, dtype=np.int64), float("nan")
    shown_eh = 1.0 if np.isnan(eh) else eh
    slots, image_items = text.slots(history, shown_eh, cfg.max_history, cfg.max_images, item=item_idx)
    template_id = TemplateMixture(cfg.templates, cfg.seed).pick("explanation", f"explain/{user_idx}/{item_idx}")
    return Instruction.from_slots("explanation", template_id, slots, user_idx=max(user_idx, 0),
                                  evidence_horizon=shown_eh, image_items=image_items,
                                  thought=format_thought(shown_eh, 0.0, []), answer="", target_item=item_idx)


def explain(bundle: Bundle, user_idx: int, item_idx: int, max_new_tokens: int) -> str:
    if bundle.scorer is None:
        raise ValueError("explanations need a VLM: recommend.vlm_dir is null")
    return bundle.scorer.explain([explain_instruction(bundle, user_idx, item_idx)], max_new_tokens)[0].strip()
