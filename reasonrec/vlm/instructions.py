"""Build R-VIT instruction records from a prepared split, and store them as Parquet.

Instances per task and part (histories never reach past the instance's target):

- sequential / direct: train = up to `targets_per_user` targets per user, sliding back from the last train
  item (history = the train items before it); valid = the valid item (history = train); test = the test item
  (history = train + valid). Sequential scores the whole catalogue at train and the fixed 1+99 lists at
  valid/test; direct chooses from a seeded 1+19 list of never-seen items at train and the fixed 1+9 lists
  (config `direct_eval_negatives`) at valid/test.
- ctr: the split's CTR rows (a seeded sample per user at train) with the CTR split's own histories: train
  and valid see ctr_train, test sees ctr_train+valid. A train positive is itself in ctr_train, so it is taken
  out of that row's history; otherwise "the item is in the history" would be a shortcut to <yes> that is
  never there at valid/test. The CTR split is not the ranking split: its train part holds most users' ranking
  valid/test items, so (config `ctr_train_hide_ranking_holdout`) those rows and history items are left out.
- explanation: interactions with review text (same targets and histories as sequential); answer = review.

The teacher thought: EH from the ranking split's evidence.parquet (for every task, CTR rows included);
confidence = `teacher_confidence` (below); Tools = the usable tools among those whose (non-noisy) outputs the
prompt shows, else <tool_none> (with `thought_tools: consulted`, every tool the prompt shows). Tools trained on the train part have seen the train targets, so train-part
tool labels are optimistic (on the synthetic zoo BPR-MF finds 62% of train targets, 23% of valid ones).

Every random choice comes from a generator seeded by (cfg.seed, purpose, instance key), so building twice
gives the same records and byte-identical Parquet, and a user's draws never depend on the other users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reasonrec.data.candidates import read_candidates
from reasonrec.data.evidence import read_evidence
from reasonrec.data.schema import write_parquet
from reasonrec.data.splits import stable_int
from reasonrec.io import join, open_fs
from reasonrec.tools.base import Tool
from reasonrec.tools.data import Histories, ToolData
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.records import INSTRUCTION_SCHEMA, Instruction, from_row
from reasonrec.vlm.templates import ItemText, TemplateMixture
from reasonrec.vlm.thought import format_thought
from reasonrec.vlm.tokens import NO, YES, item_token
from reasonrec.vlm.tool_labels import (ToolOutputs, choose_consulted, ctr_tools, label_ctr, label_ranking,
                                       ranking_tools, show_outputs)

Part = Literal["train", "valid", "test"]
PARTS: tuple[Part, ...] = ("train", "valid", "test")


@dataclass
class _Cases:
    """One task's instances before rendering: who, what, and the history the prompt (and tools) see."""

    users: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    histories: list[np.ndarray] = field(default_factory=list)
    candidates: list[list[int]] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)   # explanation answers
    keys: list[str] = field(default_factory=list)    # unique per task and part; seeds the instance's draws

    def add(self, user: int, target: int, history: np.ndarray, key: str, candidates: list[int] | None = None,
            label: float = float("nan"), text: str = "") -> None:
        self.users.append(int(user))
        self.targets.append(int(target))
        self.histories.append(np.asarray(history, dtype=np.int64))
        self.candidates.append(list(candidates or []))
        self.labels.append(float(label))
        self.texts.append(text)
        self.keys.append(key)

    def __len__(self) -> int:
        return len(self.users)


def teacher_confidence(usable_share: np.ndarray | float, eh: np.ndarray | float, tool_weight: float
                       ) -> np.ndarray | float:
    """w * share + (1 - w) * (1 - EH).

    The share of independently trained tools that get an instance right measures how predictable this
    target is from this history (easy instances are found by most tools, hard ones by none); 1 - EH adds
    the prior that thin or stale evidence is hard. Both are in [0, 1], so the blend is too, and it rises with
    how easy the answer is, which is what the router needs the stated confidence to track.
    """
    return tool_weight * np.asarray(usable_share) + (1.0 - tool_weight) * (1.0 - np.asarray(eh))


def build_instructions(data: ToolData, evidence: pd.DataFrame, part: Part, cfg: InstructionConfig,
                       tools: dict[str, Tool] | None = None) -> list[Instruction]:
    """Every instance of `part` for the tasks in cfg.tasks (in that order), users ascending within a task."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    builder = _Builder(data, evidence, part, cfg, tools)
    out: list[Instruction] = []
    for task in cfg.tasks:
        out.extend(builder.build(task))
    return out


def read_split_evidence(data: ToolData) -> pd.DataFrame:
    """evidence.parquet of the ToolData's ranking split (where prepare_data wrote it)."""
    return read_evidence(join(data.dataset.root, "splits", data.split.name, "evidence.parquet"))


def write_instructions(instructions: list[Instruction], path: str) -> None:
    """Parquet with records.INSTRUCTION_SCHEMA (local or s3://); same records -> same bytes."""
    table = pa.Table.from_pylist([ins.to_row() for ins in instructions], schema=INSTRUCTION_SCHEMA)
    fs, fs_path = open_fs(path)
    parent = fs_path.rsplit("/", 1)[0] if "/" in fs_path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    write_parquet(table, fs_path, fs)


def read_instructions(path: str) -> list[Instruction]:
    fs, fs_path = open_fs(path)
    table = pq.read_table(fs_path, filesystem=fs, schema=INSTRUCTION_SCHEMA)
    return [from_row(row) for row in table.to_pylist()]


def instruction_stats(instructions: list[Instruction]) -> dict[str, dict[str, float]]:
    """Per task: count, prompt length (characters and whitespace-separated pieces), tool use shares."""
    stats: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(ins.task for ins in instructions):
        rows = [ins for ins in instructions if ins.task == task]
        chars = np.array([len(ins.prompt) for ins in rows])
        pieces = np.array([_pieces(ins.prompt) + _pieces(ins.thought) + _pieces(ins.answer) for ins in rows])
        stats[task] = {
            "count": len(rows), "prompt_chars_mean": float(chars.mean()), "prompt_chars_max": int(chars.max()),
            "pieces_mean": float(pieces.mean()), "pieces_max": int(pieces.max()),
            "images_mean": float(np.mean([len(ins.image_items) for ins in rows])),
            "consulted_share": float(np.mean([bool(ins.consulted_tools) for ins in rows])),
            "any_usable_share": float(np.mean([bool(ins.usable_tools) for ins in rows])),
        }
    return stats


def _pieces(text: str) -> int:
    """A rough token count: special tokens and words each count one (titles cost more under a real BPE)."""
    return len(text.replace(">", "> ").replace("<", " <").split())


def instance_rng(seed: int, purpose: str, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), stable_int(purpose), stable_int(key)])


class _Builder:
    def __init__(self, data: ToolData, evidence: pd.DataFrame, part: Part, cfg: InstructionConfig,
                 tools: dict[str, Tool] | None):
        self.data, self.part, self.cfg = data, part, cfg
        self.tools = tools or {}
        self.eh = _evidence_array(evidence, data.n_users)
        self.text = ItemText.from_dataset(data.dataset, cfg.title_max_chars)
        self.mixture = TemplateMixture(cfg.templates, cfg.seed)
        self._label_memo: dict[bytes, ToolOutputs] = {}

    # ---------------------------------------------------------------- cases per task

    def build(self, task: str) -> list[Instruction]:
        cases = {"sequential": self._sequential, "direct": self._direct, "ctr": self._ctr,
                 "explanation": self._explanation}[task]()
        if len(cases) == 0:
            return []
        outputs = self._labels(task, cases)
        return [self._instruction(task, cases, i, outputs) for i in range(len(cases))]

    def _sequential(self) -> _Cases:
        if self.part == "train":
            return self._train_targets()
        frame = self.data.valid_candidates if self.part == "valid" else self.data.test_candidates
        return self._fixed_list_cases(frame)

    def _direct(self) -> _Cases:
        if self.part != "train":
            return self._fixed_list_cases(self._direct_lists())
        cases = self._train_targets()
        seen = self.data.everything  # the user's train, valid and test items: never a negative
        for i, (user, target, key) in enumerate(zip(cases.users, cases.targets, cases.keys)):
            rng = instance_rng(self.cfg.seed, "direct/negatives", key)
            user_seen = np.unique(seen.items[seen.offsets[user]:seen.offsets[user + 1]])
            negatives = _sample_unseen(rng, user_seen, self.data.n_items, self.cfg.train_direct_negatives)
            position = int(rng.integers(len(negatives) + 1))
            cases.candidates[i] = [*negatives[:position], target, *negatives[position:]]
        return cases

    def _ctr(self) -> _Cases:
        cases = _Cases()
        if self.data.ctr is None:
            return cases
        frame = self.data.ctr[self.part]
        rows = np.arange(len(frame))
        users = frame["user_idx"].to_numpy().astype(np.int64)
        items = frame["item_idx"].to_numpy().astype(np.int64)
        labels = frame["label"].to_numpy()
        history = self.data.histories("ctr_train+valid" if self.part == "test" else "ctr_train")
        hide = self.part == "train" and self.cfg.ctr_train_hide_ranking_holdout
        holdout = self._ranking_holdout_keys() if hide else np.empty(0, dtype=np.int64)
        if hide:
            rows = rows[~np.isin(users * self.data.n_items + items, holdout)]
        if self.part == "train" and self.cfg.ctr_train_rows_per_user is not None:
            rows = self._sample_rows_per_user(rows, users)
        for row in rows:
            user, item = int(users[row]), int(items[row])
            seq = _user_items(history, user)
            if self.part == "train":
                seq = seq[seq != item]
            if hide:
                seq = seq[~np.isin(user * self.data.n_items + seq, holdout)]
            cases.add(user, item, seq, f"{self.part}/{user}/{row}", label=float(labels[row]))
        return cases

    def _ranking_holdout_keys(self) -> np.ndarray:
        """user * n_items + item of every ranking valid/test interaction (sorted, for np.isin)."""
        frames = [self.data.split.valid, self.data.split.test]
        users = np.concatenate([f["user_idx"].to_numpy() for f in frames]).astype(np.int64)
        items = np.concatenate([f["item_idx"].to_numpy() for f in frames]).astype(np.int64)
        return np.unique(users * self.data.n_items + items)

    def _explanation(self) -> _Cases:
        cases = _Cases()
        if not self.data.dataset.manifest.has_reviews:
            return cases
        if self.part == "train":
            frame, history = self.data.split.train, self.data.train
            if not np.array_equal(frame["item_idx"].to_numpy(), history.items):
                raise ValueError("split.train rows are not in the order of ToolData.train (user, time)")
            reviews = frame["review"].to_numpy(dtype=object)
            for user in range(self.data.n_users):
                start, end = int(history.offsets[user]), int(history.offsets[user + 1])
                positions = [p for p in range(max(self.cfg.min_history, 0), end - start)
                             if _has_text(reviews[start + p])][-self.cfg.targets_per_user:]
                for p in positions:
                    cases.add(user, history.items[start + p], history.items[start:start + p],
                              f"train/{user}/{p}", text=self._review(reviews[start + p]))
            return cases
        frame = self.data.split.part(self.part)
        history = self.data.train if self.part == "valid" else self.data.train_valid
        reviews = frame["review"].to_numpy(dtype=object)
        for row, (user, item) in enumerate(zip(frame["user_idx"].to_numpy(), frame["item_idx"].to_numpy())):
            if _has_text(reviews[row]):
                cases.add(user, item, _user_items(history, int(user)), f"{self.part}/{user}/{row}",
                          text=self._review(reviews[row]))
        return cases

    def _train_targets(self) -> _Cases:
        cases = _Cases()
        history = self.data.train
        for user in range(self.data.n_users):
            seq = _user_items(history, user)
            for p in train_target_positions(len(seq), self.cfg):
                cases.add(user, seq[p], seq[:p], f"train/{user}/{p}")
        return cases

    def _fixed_list_cases(self, frame: pd.DataFrame) -> _Cases:
        cases = _Cases()
        history = self.data.train if self.part == "valid" else self.data.train_valid
        users = frame["user_idx"].to_numpy()
        targets = frame["target_item_idx"].to_numpy()
        lists = frame["candidates"].to_numpy()
        for row, (user, target) in enumerate(zip(users, targets)):
            cases.add(user, target, _user_items(history, int(user)), f"{self.part}/{user}/{row}",
                      candidates=[int(i) for i in lists[row]])
        return cases

    def _direct_lists(self) -> pd.DataFrame:
        frame = self.data.valid_candidates if self.part == "valid" else self.data.test_candidates
        n = self.cfg.direct_eval_negatives
        if n is None or (len(frame) and len(frame["candidates"].iloc[0]) == n + 1):
            return frame
        path = join(self.data.dataset.root, "splits", self.data.split.name, "candidates", f"neg{n}",
                    f"{self.part}.parquet")
        fs, fs_path = open_fs(path)
        if not fs.exists(fs_path):
            raise FileNotFoundError(f"{path}: no fixed 1+{n} lists; prepare the dataset with "
                                    f"candidates.ranking_negatives including {n}, or set direct_eval_negatives")
        return read_candidates(path)

    def _sample_rows_per_user(self, rows: np.ndarray, users: np.ndarray) -> np.ndarray:
        """A seeded choice of at most ctr_train_rows_per_user of `rows` per user, in row order."""
        keep = []
        order = rows[np.argsort(users[rows], kind="stable")]
        bounds = np.flatnonzero(np.diff(users[order])) + 1
        for group in np.split(order, bounds):
            if len(group) == 0:
                continue
            rng = instance_rng(self.cfg.seed, "ctr/rows", f"{self.part}/{int(users[group[0]])}")
            take = min(len(group), self.cfg.ctr_train_rows_per_user)
            keep.append(np.sort(rng.choice(group, size=take, replace=False)))
        return np.concatenate(keep) if keep else np.empty(0, dtype=np.int64)

    def _review(self, text: str) -> str:
        text = " ".join(str(text).split())
        limit = self.cfg.review_max_chars
        if len(text) <= limit:
            return text
        cut = text[:limit]
        return cut.rsplit(" ", 1)[0] if " " in cut else cut

    # ---------------------------------------------------------------- tool labels and rendering

    def _labels(self, task: str, cases: _Cases) -> ToolOutputs | None:
        users = np.array(cases.users, dtype=np.int64)
        targets = np.array(cases.targets, dtype=np.int64)
        if task == "ctr":
            chosen = ctr_tools(self.tools)
            if not chosen:
                return None
            return label_ctr(chosen, users, cases.histories, targets, np.array(cases.labels),
                             self.cfg.score_batch_size)
        chosen = ranking_tools(self.tools)
        if not chosen:
            return None
        # sequential, direct and explanation often share (user, target, history): score those once.
        memo_key = b"".join([users.tobytes(), targets.tobytes(),
                             np.array([len(h) for h in cases.histories], dtype=np.int64).tobytes()])
        if memo_key not in self._label_memo:
            self._label_memo[memo_key] = label_ranking(
                chosen, users, cases.histories, targets, self.data.n_items, self.cfg.tool_k, self.cfg.tool_top_m,
                self.cfg.exclude_history, self.cfg.score_batch_size)
        return self._label_memo[memo_key]

    def _instruction(self, task: str, cases: _Cases, i: int, outputs: ToolOutputs | None) -> Instruction:
        cfg = self.cfg
        user, target, history, key = cases.users[i], cases.targets[i], cases.histories[i], cases.keys[i]
        eh = float(self.eh[user])
        columns, noisy = [], []
        rng = instance_rng(cfg.seed, f"{task}/consult", key)
        if cfg.use_tools and outputs is not None and task != "explanation":
            force = cfg.consult_high_risk and eh > cfg.curriculum.tau_high
            columns, noisy = choose_consulted(rng, len(outputs.names), force, cfg.consult_share,
                                              cfg.max_consulted, cfg.noise_prob)
        tool_text = show_outputs(outputs, i, columns, noisy, rng, self.data.n_items, target) if columns else ""
        usable = outputs.usable_names(i) if outputs is not None else []
        thought_tools = [outputs.names[c] for c, corrupt in zip(columns, noisy)
                         if cfg.thought_tools == "consulted" or (outputs.usable[i, c] and not corrupt)]
        if outputs is not None:
            confidence = float(teacher_confidence(outputs.usable_share()[i], eh, cfg.confidence_tool_weight))
        else:
            confidence = 1.0 - eh

        slots, image_items = self.text.slots(
            history, eh, cfg.max_history, cfg.max_images, tool_outputs=tool_text,
            candidates=cases.candidates[i] if task == "direct" else None,
            item=target if task in ("ctr", "explanation") else None)
        template_id = self.mixture.pick(task, key)
        label = cases.labels[i]
        if task == "ctr":
            answer = YES if label == 1 else NO
        elif task == "explanation":
            answer = cases.texts[i]
        else:
            answer = item_token(target)
        return Instruction.from_slots(
            task, template_id, slots, user_idx=user, evidence_horizon=eh, image_items=image_items,
            thought=format_thought(eh, confidence, thought_tools), answer=answer, target_item=target,
            candidates=cases.candidates[i], label=label,
            usable_tools=usable, consulted_tools=[outputs.names[c] for c in columns],
            noisy_tools=[outputs.names[c] for c, corrupt in zip(columns, noisy) if corrupt],
        )


def _evidence_array(evidence: pd.DataFrame, n_users: int) -> np.ndarray:
    """C(u) indexed by user_idx; users the frame does not list count as having no evidence (1.0)."""
    eh = np.ones(n_users)
    users = evidence["user_idx"].to_numpy().astype(np.int64)
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"evidence lists user_idx outside [0, {n_users})")
    eh[users] = evidence["evidence_horizon"].to_numpy(dtype=np.float64)
    return eh


def train_target_positions(length: int, cfg: InstructionConfig) -> list[int]:
    """Positions of a train sequence of `length` items used as targets, ascending: the targets_per_user most
    recent, and with cover_history one every max_history items further back, until the windows of max_history
    items before the targets cover the sequence."""
    first = max(cfg.min_history, length - cfg.targets_per_user)
    positions = set(range(first, length))
    if cfg.cover_history and cfg.max_history > 0 and positions:
        p = min(positions) - cfg.max_history
        while p > cfg.min_history - 1 and p >= 1:
            positions.add(p)
            p -= cfg.max_history
    return sorted(positions)


def _user_items(history: Histories, user: int) -> np.ndarray:
    return history.items[history.offsets[user]:history.offsets[user + 1]]


def _has_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _sample_unseen(rng: np.random.Generator, seen_sorted: np.ndarray, n_items: int, k: int) -> list[int]:
    """Up to k distinct items not in `seen_sorted`, uniformly: rank r maps to the r-th unseen item."""
    n_unseen = n_items - len(seen_sorted)
    ranks = rng.choice(n_unseen, size=min(k, n_unseen), replace=False)
    shifted = seen_sorted.astype(np.int64) - np.arange(len(seen_sorted))
    return [int(i) for i in ranks + np.searchsorted(shifted, ranks, side="right")]
