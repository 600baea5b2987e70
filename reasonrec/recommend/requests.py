"""Who is scored, on what: a batch of ranking requests, for tonight (every interaction as history) or for a
split's part (the fixed 1+N lists of valid/test, with their targets, for calibration and evaluation).

Requests are plain arrays so a Ray Data batch carries them without pickling objects: candidates is a
[n, C] item_idx matrix padded with -1, histories a CSR pair (offsets, items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reasonrec.tools.data import Histories, ToolData
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.templates import ItemText, TemplateMixture
from reasonrec.vlm.thought import format_thought

PAD_ITEM = -1


@dataclass
class Requests:
    """n ranking requests of the sequential task."""

    user_idx: np.ndarray     # int64 [n]
    offsets: np.ndarray      # int64 [n + 1]: row i's history is items[offsets[i]:offsets[i + 1]], oldest first
    items: np.ndarray        # int64 [sum of history lengths]
    eh: np.ndarray           # float64 [n] evidence horizon C(u) (NaN = unknown: always high risk)
    candidates: np.ndarray   # int64 [n, C] item_idx, -1 padding (tonight: retrieved; evaluation: fixed lists)
    targets: np.ndarray      # int64 [n] the held-out item (evaluation), -1 tonight

    def __len__(self) -> int:
        return len(self.user_idx)

    def history(self, row: int) -> np.ndarray:
        return self.items[self.offsets[row]:self.offsets[row + 1]]

    def histories(self) -> list[np.ndarray]:
        return [self.history(i) for i in range(len(self))]

    @staticmethod
    def concat(parts: list["Requests"]) -> "Requests":
        """Several batches as one (e.g. the online requests one VLM pass answers together)."""
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        return Requests(np.concatenate([p.user_idx for p in parts]),
                        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                        np.concatenate([p.items for p in parts]).astype(np.int64),
                        np.concatenate([p.eh for p in parts]), np.concatenate([p.candidates for p in parts]),
                        np.concatenate([p.targets for p in parts]))

    def take(self, rows: np.ndarray) -> "Requests":
        rows = np.asarray(rows, dtype=np.int64)
        hist = [self.history(int(r)) for r in rows]
        offsets = np.concatenate([[0], np.cumsum([len(h) for h in hist])]).astype(np.int64)
        items = np.concatenate(hist).astype(np.int64) if hist else np.zeros(0, dtype=np.int64)
        return Requests(self.user_idx[rows], offsets, items, self.eh[rows], self.candidates[rows], self.targets[rows])


def gather(histories: Histories, user_idx: np.ndarray, eh: np.ndarray, candidates: np.ndarray | None = None,
           targets: np.ndarray | None = None) -> Requests:
    """Requests for `user_idx` whose histories come from a CSR `Histories` (e.g. ToolData.everything)."""
    user_idx = np.asarray(user_idx, dtype=np.int64)
    starts, ends = histories.offsets[user_idx], histories.offsets[user_idx + 1]
    lengths = ends - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = (np.concatenate([histories.items[s:e] for s, e in zip(starts, ends)]).astype(np.int64)
             if len(user_idx) else np.zeros(0, dtype=np.int64))
    n = len(user_idx)
    cands = np.zeros((n, 0), dtype=np.int64) if candidates is None else np.asarray(candidates, dtype=np.int64)
    tgts = np.full(n, -1, dtype=np.int64) if targets is None else np.asarray(targets, dtype=np.int64)
    return Requests(user_idx, offsets, items, np.asarray(eh, dtype=np.float64)[user_idx] if len(eh) else eh,
                    cands, tgts)


def split_requests(data: ToolData, part: str, eh: np.ndarray) -> Requests:
    """The fixed-list requests of a split part: valid sees the train history, test sees train + valid
    (the same histories and lists the tools and the VLM are evaluated on). eh: [n_users] by user_idx."""
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    frame: pd.DataFrame = data.valid_candidates if part == "valid" else data.test_candidates
    histories = data.train if part == "valid" else data.train_valid
    candidates = np.array([list(c) for c in frame["candidates"]], dtype=np.int64)
    return gather(histories, frame["user_idx"].to_numpy(), eh, candidates, frame["target_item_idx"].to_numpy())


class InstructionWriter:
    """Sequential instructions for requests, rendered exactly as the VLM's training rendered its prompts
    (same templates, slots, image choice and mixture key scheme, from the run's InstructionConfig)."""

    def __init__(self, text: ItemText, cfg: InstructionConfig):
        self.text, self.cfg = text, cfg
        self.mixture = TemplateMixture(cfg.templates, cfg.seed)

    def sequential(self, requests: Requests) -> list[Instruction]:
        out = []
        for i in range(len(requests)):
            user, eh = int(requests.user_idx[i]), float(requests.eh[i])
            shown_eh = 1.0 if np.isnan(eh) else eh
            slots, image_items = self.text.slots(requests.history(i), shown_eh, self.cfg.max_history,
                                                 self.cfg.max_images)
            template_id = self.mixture.pick("sequential", f"score/{user}")
            cands = [int(c) for c in requests.candidates[i] if c >= 0]
            out.append(Instruction.from_slots(
                "sequential", template_id, slots, user_idx=user, evidence_horizon=shown_eh, image_items=image_items,
                # The scorer forces EH and reads the confidence / tools itself; 0.0 and no tools are placeholders.
                thought=format_thought(shown_eh, 0.0, []), answer="", target_item=int(requests.targets[i]),
                candidates=cands))
        return out
