"""A trained sequential tool as the VLM's teacher: its next-item distribution as a soft target.

The VLM's item tokens learn next-item prediction from one label per position (the history loss) while a trained
SASRec has already turned the whole training set into a full ranking of the catalogue at every position. Its
distribution carries what one label cannot: which *other* items are plausible, the collaborative signal a
tiny language model sees too rarely to learn (LLM-SRec, KDD 2025, distils a CF-SRec model into an LLM for this
reason). The tool is causal, so one pass over the prompt's history gives its view of every prefix: position j
of the history predicts item j + 1, the last one predicts the answer of a sequential example.

Loss: T^2 x KL(teacher || student) over the whole item vocabulary at those positions (Hinton et al. 2015); the
student's item logits are its hidden state times the item-token rows of lm_head, as the history loss reads.
The teacher sees the prompt's history only (what the VLM sees), never the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reasonrec.vlm.encode import IGNORE_INDEX


@dataclass
class DistillBatch:
    """What the loss needs for one micro-batch: the teacher's logits and where the student reads them."""

    teacher_logits: torch.Tensor   # [B, C, n_items] (Teacher.prefix_logits)
    rows: torch.Tensor             # [n] batch row of each distilled position
    positions: torch.Tensor        # [n] the student's token position (the one before the predicted item)
    columns: torch.Tensor          # [n] the teacher's history column for it
    weight: float                  # of the distillation term in the loss
    temperature: float             # T of both softmaxes

    @classmethod
    def build(cls, teacher: "Teacher", batch: dict[str, torch.Tensor], weight: float, temperature: float,
              answer: bool = True) -> "DistillBatch":
        """From an encode_for_training(history_items=True) batch."""
        rows, positions, columns = distillation_targets(batch["history_items"], batch["history_positions"],
                                                        batch["answer_positions"], teacher.tool.cfg.max_len,
                                                        answer)
        return cls(teacher.prefix_logits(batch["history_items"]), rows, positions, columns, weight, temperature)


class Teacher:
    """A sequential tool folder loaded for distillation (frozen, eval mode, on `device`)."""

    def __init__(self, folder: str, n_items: int, device: torch.device | str = "cpu"):
        import tempfile

        from reasonrec.io import fetch_dir
        from reasonrec.tools.base import load_tool
        from reasonrec.tools.sequence_batches import SequentialTool

        with tempfile.TemporaryDirectory() as tmp:     # an s3:// folder is downloaded first (it is small)
            tool = load_tool(fetch_dir(folder, tmp)).to(device)   # +V content features are a buffer in its weights
        if not isinstance(tool, SequentialTool):
            raise SystemExit(f"distill.tool {folder} is a {type(tool).__name__}: the teacher must be a "
                             "sequential tool (sasrec, sasrec+v, lightsans, gru4rec, nextitnet)")
        if tool.n_items != n_items:
            raise SystemExit(f"distill.tool {folder} scores {tool.n_items} items, the data set has {n_items}")
        self.tool, self.n_items = tool, n_items

    def prefix_logits(self, history_items: torch.Tensor) -> torch.Tensor:
        """[B, H, n_items] teacher logits after each prefix of the rows' history (history_items [B, H], oldest
        first, IGNORE_INDEX past a row's end; column j predicts the item after column j). A row longer than the
        tool's max_len is scored on its newest max_len items; its older columns stay 0 and distillation_targets
        never reads them."""
        rows, width = history_items.shape
        max_len = self.tool.cfg.max_len
        lengths = (history_items != IGNORE_INDEX).sum(dim=1)
        window = min(width, max_len)
        aligned = torch.full((rows, window), self.n_items, dtype=torch.long)
        for row in range(rows):
            n = int(lengths[row])
            kept = history_items[row, max(0, n - window):n]
            aligned[row, window - len(kept):] = kept
        scores = self.tool.prefix_item_scores(aligned).float().cpu()         # [B, window, n_items]
        out = torch.zeros((rows, width, self.n_items))
        for row in range(rows):
            n = int(lengths[row])
            kept = min(n, window)
            out[row, n - kept:n] = scores[row, window - kept:]
        return out


def distillation_targets(history_items: torch.Tensor, history_positions: torch.Tensor,
                         answer_positions: torch.Tensor, max_len: int, answer: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, student positions, teacher columns) of every distilled position: the token before history item
    j + 1 reads teacher column j, and the token before a sequential answer reads the last history column.
    Columns the teacher saw with less than its full context when the row is longer than max_len (the oldest
    n - max_len) are skipped."""
    rows, positions, columns = [], [], []
    lengths = (history_items != IGNORE_INDEX).sum(dim=1)
    for row in range(history_items.shape[0]):
        n = int(lengths[row])
        first = max(0, n - max_len)
        for column in range(first, n - 1):
            rows.append(row)
            positions.append(int(history_positions[row, column + 1]) - 1)
            columns.append(column)
        if answer and n and int(answer_positions[row]) != IGNORE_INDEX:
            rows.append(row)
            positions.append(int(answer_positions[row]) - 1)
            columns.append(n - 1)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long)   # noqa: E731
    return as_tensor(rows), as_tensor(positions), as_tensor(columns)


def distillation_loss(hidden: torch.Tensor, item_rows: torch.Tensor, teacher_logits: torch.Tensor,
                      rows: torch.Tensor, positions: torch.Tensor, columns: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """T^2 x mean KL(teacher || student) at the given positions. hidden [B, T, H] the VLM's last hidden states,
    item_rows [n_items, H] lm_head's item-token rows, teacher_logits [B, C, n_items] (Teacher.prefix_logits)."""
    if len(rows) == 0:
        return hidden.sum() * 0.0
    student = hidden[rows.to(hidden.device), positions.to(hidden.device)] @ item_rows.T    # [n, n_items]
    teacher = teacher_logits[rows, columns].to(student.device)
    log_student = F.log_softmax(student.float() / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    return temperature ** 2 * F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
