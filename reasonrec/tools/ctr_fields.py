"""The input layer and training plumbing shared by the CTR tools (DCNv2, xDeepFM, DLRM), so the three models
differ only in how their fields interact.

Every (query, candidate) pair becomes the same five D-dimensional fields:

  dense     bottom MLP over the dense features: log history length (+ the candidate's raw content features
            for '+V'); DLRM's bottom MLP, and an ordinary dense-feature field for the other two models
  user      user id embedding
  item      the candidate (`ItemEncoder`: id embedding, + content MLP for '+V')
  history   mean vector of the user's recent items (the same `ItemEncoder`), the candidate left out
  last_item the most recent history item that is not the candidate

CTR rows are scored with the histories of the split they were drawn from (`ToolData`'s "ctr_*" scopes), so
a test positive is never in its own user's history. Two guards stay on top of that: scoring leaves the
candidate out of the history (the history length is counted before, so it says nothing about the
candidate), and training gives a row its user's train history *before* the row's group positive
(`prefix_histories`), shared by the positive and its negatives: hiding only the positive would teach the
model that the item missing from a user's (memorisable) history is the click.
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

FIELD_NAMES = ("dense", "user", "item", "history", "last_item")
DENSE_FIELD = FIELD_NAMES.index("dense")
MAX_SCORED_PAIRS = 32768  # (query, item) pairs per forward pass when scoring the whole catalogue


class CTRConfig(ToolConfig):
    """Hyper-parameters shared by the CTR tools (scaled-down versions of the papers' Criteo settings)."""

    embedding_dim: int = Field(16, ge=1, description="Width of every field embedding (the papers use 10-39).")
    max_len: int = Field(50, ge=1, description="Most recent history items pooled into the history fields.")
    batch_size: int = Field(512, ge=1, description="CTR rows per optimiser step.")
    lr: float = Field(1e-2, gt=0, description=(
        "AdamW learning rate. The papers' 1e-3 suits Criteo-sized data; on 10^4-10^5 rows it sits at the "
        "base-rate loss for several epochs."))
    weight_decay: float = Field(0.3, ge=0, description=(
        "AdamW (decoupled) weight decay; strong, because small CTR sets are memorised within 2-3 epochs."))
    dense_hidden: int = Field(64, ge=1, description="Hidden width of the bottom MLP over the dense features.")
    hidden_units: list[int] = Field(default_factory=lambda: [128, 64], min_length=1, description=(
        "Widths of the deep network (DCNv2, xDeepFM) or of the top MLP (DLRM), before the output unit."))


@dataclass
class CTRInputs:
    """What an interaction head sees for N (query, candidate) pairs."""

    fields: torch.Tensor          # [N, len(FIELD_NAMES), D]
    linear: torch.Tensor | None   # [N] first-order (linear) logit, when the fields were built with_linear


class CTRFields(torch.nn.Module):
    """Builds `FIELD_NAMES` for every (query, candidate) pair; optionally also the first-order linear term
    (per-feature weights, as in the wide/linear part of xDeepFM)."""

    def __init__(self, n_users: int, n_items: int, dim: int, item_features: torch.Tensor | None,
                 dense_hidden: int, max_len: int, with_linear: bool = False):
        super().__init__()
        self.n_items, self.max_len = n_items, max_len
        self.users = torch.nn.Embedding(n_users, dim)
        torch.nn.init.normal_(self.users.weight, std=0.05)
        if item_features is not None:
            item_features = standardised(item_features)
        self.items = ItemEncoder(n_items, dim, item_features)
        if self.items.content is not None:
            # Start '+V' as the id model: raw content vectors share a large common component that would
            # swamp the id embeddings (and every dot product) at initialisation.
            torch.nn.init.zeros_(self.items.content[-1].weight)
            torch.nn.init.zeros_(self.items.content[-1].bias)
        n_dense = 1 + (0 if item_features is None else item_features.shape[1])
        self.bottom_mlp = torch.nn.Sequential(torch.nn.Linear(n_dense, dense_hidden), torch.nn.ReLU(),
                                              torch.nn.Linear(dense_hidden, dim))
        self.linear = None
        if with_linear:
            self.linear = torch.nn.ModuleDict({
                "user": torch.nn.Embedding(n_users, 1),
                "item": torch.nn.Embedding(n_items + 1, 1, padding_idx=n_items),
                "dense": torch.nn.Linear(n_dense, 1),
            })
            torch.nn.init.zeros_(self.linear["user"].weight)
            torch.nn.init.zeros_(self.linear["item"].weight)

    @property
    def n_fields(self) -> int:
        return len(FIELD_NAMES)

    def forward(self, user: torch.Tensor, history: torch.Tensor, candidates: torch.Tensor) -> CTRInputs:
        """user [n], history [n, L] (PAD = n_items), candidates [n, c] -> inputs for n * c pairs, row-major."""
        n, c = candidates.shape
        # Encode each distinct item once (the '+V' content MLP is the expensive part).
        unique, inverse = torch.unique(torch.cat([history.reshape(-1), candidates.reshape(-1)]),
                                       return_inverse=True)
        vectors = self.items(unique)
        history_vectors = vectors[inverse[:history.numel()]].view(*history.shape, -1)       # [n, L, D]
        candidate_vectors = vectors[inverse[history.numel():]].view(n, c, -1)               # [n, c, D]

        real = history != self.n_items                                                      # [n, L]
        kept = (real.unsqueeze(1) & (history.unsqueeze(1) != candidates.unsqueeze(2))).float()  # [n, c, L]
        n_kept = kept.sum(-1, keepdim=True)                                                 # [n, c, 1]
        history_mean = torch.einsum("ncl,nld->ncd", kept, history_vectors) / n_kept.clamp(min=1.0)
        # Most recent kept position (histories are right-aligned); rows with nothing kept get a zero vector.
        positions = torch.arange(1, history.shape[1] + 1, dtype=kept.dtype, device=kept.device)
        last_position = (kept * positions).argmax(-1)                                      # [n, c]
        last_vector = torch.gather(history_vectors, 1,
                                   last_position.unsqueeze(-1).expand(-1, -1, history_vectors.shape[-1]))
        last_vector = last_vector * (n_kept > 0).float()

        dense = self.dense_features(real, candidates)                                       # [n, c, n_dense]
        user_vector = self.users(user).unsqueeze(1).expand(-1, c, -1)
        fields = torch.stack([self.bottom_mlp(dense), user_vector, candidate_vectors, history_mean, last_vector],
                             dim=2)                                                         # [n, c, F, D]
        linear = None
        if self.linear is not None:
            history_weight = (kept * self.linear["item"](history).squeeze(-1).unsqueeze(1)).sum(-1) \
                / n_kept.squeeze(-1).clamp(min=1.0)
            linear = (self.linear["user"](user) + self.linear["item"](candidates).squeeze(-1) + history_weight
                      + self.linear["dense"](dense).squeeze(-1))                            # [n, c]
            linear = linear.reshape(n * c)
        return CTRInputs(fields.reshape(n * c, self.n_fields, -1), linear)

    def dense_features(self, real: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[n, c, n_dense]: log history length scaled to [0, 1] (+ the candidate's content features)."""
        length = torch.log1p(real.sum(-1).float()) / float(np.log1p(self.max_len))
        dense = length[:, None, None].expand(-1, candidates.shape[1], 1)
        if self.items.content is not None:
            dense = torch.cat([dense, self.items.item_features[candidates]], dim=-1)
        return dense


def standardised(features: torch.Tensor) -> torch.Tensor:
    """Per-column zero mean, unit variance (constant columns become 0): pixels, flags and text components
    on one scale for the content MLP and the bottom MLP."""
    features = features.float()
    std = features.std(dim=0, keepdim=True)
    return torch.where(std > 1e-6, (features - features.mean(dim=0, keepdim=True)) / std.clamp(min=1e-6), 0.0)


class CTRModel(torch.nn.Module):
    """Shared fields + a model-specific interaction head mapping `CTRInputs` to logits [N]."""

    def __init__(self, fields: CTRFields, head: torch.nn.Module):
        super().__init__()
        self.fields, self.head = fields, head

    def forward(self, user: torch.Tensor, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return self.head(self.fields(user, history, candidates)).view(candidates.shape)


def mlp(in_dim: int, units: list[int], dropout: float) -> torch.nn.Sequential:
    """Linear -> ReLU -> Dropout for each width in `units` (no output unit)."""
    layers: list[torch.nn.Module] = []
    for width in units:
        layers += [torch.nn.Linear(in_dim, width), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        in_dim = width
    return torch.nn.Sequential(*layers)


class CTRTool(Tool):
    """Base of the CTR tools: trains on the CTR rows with binary cross-entropy and scores logits.

    Subclasses set `name`, `config_class`, `with_linear` and implement `build_head`.
    """

    task = "ctr"
    config_class = CTRConfig
    with_linear = False

    def build_head(self, n_fields: int, dim: int) -> torch.nn.Module:
        raise NotImplementedError

    def build(self, item_features):
        cfg = self.cfg
        fields = CTRFields(self.n_users, self.n_items, cfg.embedding_dim, item_features, cfg.dense_hidden,
                           cfg.max_len, with_linear=self.with_linear)
        return CTRModel(fields, self.build_head(fields.n_fields, cfg.embedding_dim))

    def training_batches(self, data: ToolData, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled CTR train rows. A row's history is its user's train history *before* the row's group
        positive (DIN-style behaviour sequence, see `prefix_histories`)."""
        if data.ctr is None:
            raise ValueError(f"{self.name}: this dataset has no CTR rows (prepare it with the random split)")
        frame = data.ctr["train"]
        users = frame["user_idx"].to_numpy().astype(np.int64)
        items = frame["item_idx"].to_numpy().astype(np.int64)
        labels = frame["label"].to_numpy().astype(np.float32)
        positives = group_positives(users, items, labels)
        histories = prefix_histories(data.histories("ctr_train"), users, positives, self.cfg.max_len)
        histories[histories == PAD] = self.n_items
        order = rng.permutation(len(frame))
        for start in range(0, len(order), self.cfg.batch_size):
            rows = order[start:start + self.cfg.batch_size]
            yield {"user": torch.from_numpy(users[rows]), "history": torch.from_numpy(histories[rows]),
                   "item": torch.from_numpy(items[rows]), "label": torch.from_numpy(labels[rows])}

    def loss(self, batch):
        logits = self.module(batch["user"], batch["history"], batch["item"].unsqueeze(1)).squeeze(1)
        return F.binary_cross_entropy_with_logits(logits, batch["label"])

    def score_candidates(self, queries: Queries, candidates: torch.Tensor) -> torch.Tensor:
        """Click logits [n, c] (a sigmoid turns them into probabilities)."""
        return self.module(self.tensor(queries.user_idx),
                           history_tensor(queries, self.n_items, self.device), candidates)

    def score_all_items(self, queries: Queries) -> torch.Tensor:
        """Logits [n, n_items], in item chunks so at most MAX_SCORED_PAIRS pairs are in memory at once."""
        user = self.tensor(queries.user_idx)
        history = history_tensor(queries, self.n_items, self.device)
        chunk = max(1, MAX_SCORED_PAIRS // max(1, len(queries)))
        parts = []
        for start in range(0, self.n_items, chunk):
            items = torch.arange(start, min(start + chunk, self.n_items), device=self.device).expand(len(queries), -1)
            parts.append(self.module(user, history, items))
        return torch.cat(parts, dim=1)


def group_positives(users: np.ndarray, items: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each CTR row, the item of its group's positive.

    CTR rows are written as groups: a positive (label 1) followed by its negatives, all of one user
    (reasonrec.data.candidates.sample_ctr). Rows out of that order raise, naming the row.
    """
    if len(labels) == 0:
        return np.empty(0, dtype=np.int64)
    if labels[0] != 1:
        raise ValueError(f"CTR row 0: label {labels[0]:g}; rows must come in (positive, its negatives) groups")
    starts = np.flatnonzero(labels == 1)
    group = np.cumsum(labels == 1) - 1
    mixed = np.flatnonzero(users != users[starts][group])
    if mixed.size:
        row = int(mixed[0])
        raise ValueError(f"CTR row {row}: user_idx {users[row]} differs from its group positive's user_idx "
                         f"{users[starts[group[row]]]} (row {starts[group[row]]}); rows must come in "
                         "(positive, its negatives) groups of one user")
    return items[starts][group]


def prefix_histories(histories: Histories, users: np.ndarray, positives: np.ndarray, max_len: int) -> np.ndarray:
    """[rows, max_len]: each row's user's history before the first occurrence of `positives[row]` (the whole
    history when the positive is not in it), right-aligned and PAD-padded like `Histories.padded`."""
    starts, ends = histories.offsets[users], histories.offsets[users + 1]
    if len(histories.items) == 0:
        return np.full((len(users), max_len), PAD, dtype=np.int64)
    # First occurrence of each (user, item) in the flat item array, found by binary search on sorted keys.
    n_keys = int(max(histories.items.max(), positives.max(initial=0))) + 1
    owner = np.repeat(np.arange(len(histories.offsets) - 1), np.diff(histories.offsets))
    keys, first = np.unique(owner * n_keys + histories.items, return_index=True)
    wanted = users * n_keys + positives
    found = np.searchsorted(keys, wanted).clip(max=len(keys) - 1)
    end = np.where(keys[found] == wanted, first[found], ends)
    index = end[:, None] - max_len + np.arange(max_len)
    return np.where(index >= starts[:, None], histories.items[index.clip(min=0)], PAD).astype(np.int64)
