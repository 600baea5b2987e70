"""What the sequential tools (SASRec, LightSANs, NextItNet) share, so they differ only in their encoder.

Training examples: every user's train history, cut into windows of at most `max_len` inputs, with the next
item as the target at *every* position (the SASRec recipe). Each encoder is causal, so position t only
sees items up to t: one pass trains on every prefix of the history, which is what RecBole's "every prefix
as its own example" augmentation does, at a fraction of the cost.

Loss: cross-entropy of the next item over the whole catalogue (hidden state . every item vector), the
same for every sequential tool so their comparison is fair; it is the strong modern choice for SASRec
(Klenitskiy & Vasilev, RecSys 2023: SASRec with full cross-entropy beats its original one-negative binary
loss by a wide margin, and BERT4Rec too).

Scoring: a user is the encoder's output at the last position of their right-aligned history; an item's
score is the dot product with its `ItemEncoder` vector, so full-catalogue scoring is one matmul.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from reasonrec.tools.base import Tool, ToolConfig, history_tensor
from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.data import PAD, Histories, Queries, ToolData

IGNORE_TARGET = -100  # torch's cross_entropy ignore_index: positions without a next item


@dataclass
class NextItemExamples:
    """Training windows: inputs[r, j] is followed by targets[r, j]. Both right-aligned, PAD on the left."""

    inputs: np.ndarray   # [n_windows, max_len] int64 item_idx or PAD
    targets: np.ndarray  # [n_windows, max_len] int64 item_idx or PAD

    def __len__(self) -> int:
        return len(self.inputs)


def next_item_examples(histories: Histories, max_len: int) -> NextItemExamples:
    """Windows over every user's history so that each transition (item i -> item i+1) is a target exactly once.

    The newest window ends at the user's last item; a history longer than max_len + 1 items continues in
    older windows (the first input of an older window starts without its earlier context, as in SASRec's
    truncation). Users with fewer than two items have no transition and give no window.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = histories.lengths()
    transitions = np.maximum(lengths - 1, 0)
    windows_per_user = -(-transitions // max_len)  # ceil
    first_window = np.concatenate([[0], np.cumsum(windows_per_user)])
    inputs = np.full((int(first_window[-1]), max_len), PAD, dtype=np.int64)
    targets = np.full_like(inputs, PAD)

    # Global position g of every item that is a target (every item but each user's first).
    users = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(histories.items)) - histories.offsets[users]
    is_target = position >= 1
    g = np.flatnonzero(is_target)
    user = users[g]
    from_end = lengths[user] - 1 - position[g]         # 0 for the user's last item
    row = first_window[user] + from_end // max_len
    column = max_len - 1 - from_end % max_len
    inputs[row, column] = histories.items[g - 1]
    targets[row, column] = histories.items[g]
    return NextItemExamples(inputs, targets)


def trim_left_padding(history: torch.Tensor, pad: int) -> torch.Tensor:
    """Drop the leading columns that are padding in every row (right-aligned input): less work, same result
    for encoders that ignore padding. Keeps at least one column."""
    real_columns = (history != pad).any(dim=0).nonzero()
    first = int(real_columns[0]) if len(real_columns) else history.shape[1] - 1
    return history[:, first:]


def next_item_batches(examples: NextItemExamples, batch_size: int, n_items: int, rng: np.random.Generator,
                      bucket_batches: int = 4) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of batches: inputs with PAD -> n_items (the padding row), targets with PAD -> IGNORE_TARGET,
    and target_weight = 1 / (targets in an average batch).

    Windows are shuffled, then sorted by length within pools of `bucket_batches` batches, so a batch holds
    windows of similar length and is trimmed to its longest (most histories are far shorter than max_len:
    this cuts the encoder's work several-fold); the batches are then visited in random order. Because a
    batch of short windows holds few targets, the loss weighs each target by the fixed target_weight rather
    than averaging within the batch: every transition counts the same whichever batch it lands in
    (averaging per batch would over-weight short histories and slow training down).
    """
    lengths = (examples.inputs != PAD).sum(axis=1)
    targets_per_window = float(lengths.mean()) if len(lengths) else 1.0
    target_weight = torch.tensor(1.0 / (batch_size * targets_per_window))
    order = rng.permutation(len(examples))
    pool = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    for b in rng.permutation(len(batches)):
        rows = batches[b]
        inputs = torch.from_numpy(examples.inputs[rows])
        targets = torch.from_numpy(examples.targets[rows])
        inputs = trim_left_padding(inputs.masked_fill(inputs == PAD, n_items), n_items)
        targets = targets[:, targets.shape[1] - inputs.shape[1]:]
        yield {"inputs": inputs, "targets": targets.masked_fill(targets == PAD, IGNORE_TARGET),
               "target_weight": target_weight}


def next_item_loss(hidden: torch.Tensor, targets: torch.Tensor, item_vectors: torch.Tensor,
                   target_weight: torch.Tensor | float | None = None) -> torch.Tensor:
    """Cross-entropy of the next item over the whole catalogue, at the positions that have a target.

    hidden [B, W, d], targets [B, W] (IGNORE_TARGET where none), item_vectors [n_items, d]. Returns the
    mean over targets, or, given target_weight, the sum times target_weight. Only positions with a target
    are multiplied with the catalogue, so memory is (targets in the batch) x n_items.
    """
    has_target = targets != IGNORE_TARGET
    logits = hidden[has_target] @ item_vectors.T
    if target_weight is None:
        return F.cross_entropy(logits, targets[has_target])
    return F.cross_entropy(logits, targets[has_target], reduction="sum") * target_weight


class SequentialConfig(ToolConfig):
    """Defaults shared by the sequential tools, tuned on the Amazon Beauty slice and the synthetic set."""

    batch_size: int = Field(64, ge=1, description=(
        "Training windows per step. Each window carries a target at every position, so 64 windows are about "
        "as many targets as RecBole's 2,048 single-target examples; small data sets need the extra steps."))
    lr: float = Field(5e-3, gt=0, description=(
        "AdamW learning rate; above the usual 1e-3 because every position is a target and small data sets "
        "have few steps per epoch (1e-3 needs 2-3x the epochs for the same validation NDCG)."))
    dropout: float = Field(0.5, ge=0, lt=1, description=(
        "Dropout inside the encoder; 0.5 as SASRec and RecBole use for sparse Amazon data."))


class SequentialEncoder(torch.nn.Module):
    """Base of the sequential modules: `items` (ItemEncoder) plus a causal `forward(history) -> hidden`.

    history [B, W] item_idx, right-aligned, padded on the left with n_items; hidden [B, W, d] where position
    t depends only on items at positions <= t and never on the padding (so a user's scores do not depend
    on which other users share the batch).
    """

    items: ItemEncoder

    def __init__(self, n_items: int, max_len: int):
        super().__init__()
        self.n_items, self.max_len = n_items, max_len

    def positions(self, width: int) -> torch.Tensor:
        """Absolute positions of the last `width` slots of a max_len window (the newest item is max_len-1)."""
        return torch.arange(self.max_len - width, self.max_len, device=self.items.ids.weight.device)


class SequentialTool(Tool):
    """A Tool whose module is a `SequentialEncoder`: shared examples, batches, loss and scoring."""

    task = "sequential"
    _examples: tuple[Histories, NextItemExamples] | None = None   # built once per training set

    def training_batches(self, data: ToolData, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        if self._examples is None or self._examples[0] is not data.train:
            self._examples = (data.train, next_item_examples(data.train, self.cfg.max_len))
        yield from next_item_batches(self._examples[1], self.cfg.batch_size, self.n_items, rng)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.module(batch["inputs"])
        return next_item_loss(hidden, batch["targets"], self.module.items.all_items(), batch["target_weight"])

    def user_vectors(self, queries: Queries, group_size: int = 256) -> torch.Tensor:
        """[n, d]: the encoder's output at the last position of each user's most recent max_len items.

        Users are encoded in groups of similar history length, each trimmed to its longest history; the
        encoders ignore padding, so this changes the cost, not the result."""
        history = history_tensor(queries, self.n_items, self.device)[:, -self.cfg.max_len:]
        order = torch.argsort((history != self.n_items).sum(dim=1), stable=True)
        out = torch.empty(len(history), self.cfg.embedding_dim, device=self.device)
        for group in order.split(group_size):
            out[group] = self.module(trim_left_padding(history[group], self.n_items))[:, -1]
        return out

    def score_candidates(self, queries: Queries, candidates: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nd,ncd->nc", self.user_vectors(queries), self.module.items(candidates))

    def score_all_items(self, queries: Queries) -> torch.Tensor:
        return self.user_vectors(queries) @ self.module.items.all_items().T

    @torch.no_grad()
    def prefix_item_scores(self, history: torch.Tensor) -> torch.Tensor:
        """[B, W, n_items]: scores of every item as the next one after each prefix of `history` [B, W]
        (right-aligned, padded on the left with n_items; W <= max_len). The encoders are causal, so one pass
        gives every prefix: a teacher's view of each position a student sees (reasonrec/vlm/distill.py)."""
        self.module.eval()
        if history.shape[1] > self.cfg.max_len:
            raise ValueError(f"{self.name}: history width {history.shape[1]} is over max_len {self.cfg.max_len}")
        return self.module(history.to(self.device)) @ self.module.items.all_items().T
