"""One R-VIT training/scoring example: what the data side writes and the model side reads.

Kept as a plain dataclass (and a matching Parquet schema) so a Ray Data shard, a test and the nightly job
all carry the same record. Text fields already contain the special tokens of `reasonrec.vlm.tokens`. A record
built from slots keeps them (`slots`), so a later pass re-renders its prompt instead of parsing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal

import pyarrow as pa

from reasonrec.vlm.templates import PromptSlots, render

Task = Literal["sequential", "direct", "ctr", "explanation"]
TASKS: tuple[Task, ...] = ("sequential", "direct", "ctr", "explanation")


@dataclass
class Instruction:
    user_idx: int
    task: Task
    template_id: int                 # 0..9: which paraphrase produced `prompt`
    evidence_horizon: float          # C(u) in [0, 1] from the split's evidence.parquet (train part only)
    image_items: list[int]           # item_idx of the images shown, in the order of <image> in `prompt`
    prompt: str                      # the user turn: one "<image>" per entry of image_items, item tokens, text
    thought: str                     # teacher trace up to and including "Answer:", e.g.
                                     # "EH: 0.42 | Confidence: <conf_5> | Tools: <tool_sasrec> | Answer:"
    answer: str                      # "<item_12>" | "<yes>" / "<no>" | explanation text
    target_item: int = -1            # item_idx of the correct item (sequential/direct/ctr/explanation), -1 none
    candidates: list[int] = field(default_factory=list)  # item_idx scored for direct (and 1+N evaluation);
                                                          # empty = the whole catalogue (sequential)
    label: float = float("nan")      # CTR click label (1/0); NaN for the other tasks
    usable_tools: list[str] = field(default_factory=list)  # tools whose top-k holds the target (tool labels)
    consulted_tools: list[str] = field(default_factory=list)  # tools whose outputs appear in `prompt`
    noisy_tools: list[str] = field(default_factory=list)   # of those, which were shown a corrupted output
    slots: PromptSlots | None = None  # what `prompt` was rendered from; None: a hand-built record, or one read
                                      # from a file written before slots were stored

    @classmethod
    def from_slots(cls, task: Task, template_id: int, slots: PromptSlots, **rest) -> "Instruction":
        """A record whose prompt is templates.render of `slots`, and which keeps them."""
        return cls(task=task, template_id=template_id, prompt=render(task, template_id, slots), slots=slots,
                   **rest)

    def rerendered(self, slots: PromptSlots, **changes) -> "Instruction":
        """A copy with `slots` in place of this record's and the prompt rendered from them (e.g. tool hints)."""
        return replace(self, slots=slots, prompt=render(self.task, self.template_id, slots), **changes)

    def to_row(self) -> dict:
        return asdict(self)


INSTRUCTION_SCHEMA = pa.schema([
    pa.field("user_idx", pa.int32(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("template_id", pa.int8(), nullable=False),
    pa.field("evidence_horizon", pa.float64(), nullable=False),
    pa.field("image_items", pa.list_(pa.int32()), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("thought", pa.string(), nullable=False),
    pa.field("answer", pa.string(), nullable=False),
    pa.field("target_item", pa.int32(), nullable=False),
    pa.field("candidates", pa.list_(pa.int32()), nullable=False),
    pa.field("label", pa.float64()),
    pa.field("usable_tools", pa.list_(pa.string()), nullable=False),
    pa.field("consulted_tools", pa.list_(pa.string()), nullable=False),
    pa.field("noisy_tools", pa.list_(pa.string()), nullable=False),
    pa.field("slots", pa.struct([pa.field(f.name, pa.string()) for f in fields(PromptSlots)])),
])


def from_row(row: dict) -> Instruction:
    """Inverse of to_row (lists may arrive as numpy arrays from Parquet/Ray Data)."""
    kw = dict(row)
    for name in ("image_items", "candidates"):
        kw[name] = [int(x) for x in kw[name]]
    for name in ("usable_tools", "consulted_tools", "noisy_tools"):
        kw[name] = [str(x) for x in kw[name]]
    for name in ("user_idx", "template_id", "target_item"):
        kw[name] = int(kw[name])
    kw["evidence_horizon"] = float(kw["evidence_horizon"])
    kw["label"] = float("nan") if kw.get("label") is None else float(kw["label"])
    slots = kw.pop("slots", None)  # null in files written before slots were stored
    return Instruction(**kw, slots=None if slots is None else PromptSlots(**slots))
