"""Instruction records -> LLaVA training tensors, in the llava-1.5 chat layout.

Layout (llava-hf's llava-1.5 template, with our images inline in the prompt):

    <s>USER: {prompt} ASSISTANT: {thought} {answer}</s>

The user turn (and padding) is masked out of the loss with -100; thought, answer and </s> are supervised.
Text is tokenized piece by piece between special tokens (<item_k>, <conf_b>, <tool_x>, <yes>/<no>,
<image>), so a prefix cut just before any special token has exactly the ids of the full sequence's prefix:
the scorer builds its prefixes the same way and reads distributions at the positions training supervised,
whatever the tokenizer does around spaces.

Truncation never cuts an image's tokens, the thought or the answer: first the text between two item tokens
of the prompt (the history titles, "<item_12> Toy Story (1995) <item_7> Heat") is shortened to one token,
oldest first; then the oldest images are dropped (their <image> and pixel values); an example that still
does not fit is an error naming the user and task. The template text around the history is never cut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from reasonrec.vlm import tokens
from reasonrec.vlm.records import Instruction

USER_PREFIX = "USER: "
ASSISTANT_TAG = " ASSISTANT:"
IGNORE_INDEX = -100

# Every token of reasonrec.vlm.tokens.special_tokens, as a pattern (text is split around these).
SPECIAL_TOKEN_RE = re.compile(r"<(?:image|yes|no|conf_\d+|tool_[a-z0-9_+]+|item_\d+)>")


def image_seq_length(processor) -> int:
    """Tokens one `<image>` expands to, by the same rule as LlavaProcessor.replace_image_token."""
    crop = processor.image_processor.crop_size
    height, width = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop.height, crop.width)
    n = (height // processor.patch_size) * (width // processor.patch_size) + processor.num_additional_image_tokens
    return n - 1 if processor.vision_feature_select_strategy == "default" else n


class EncodeError(ValueError):
    """An example that cannot fit max_length even after truncation."""


@dataclass
class EncodeStats:
    """What truncation did, accumulated over calls (for the training logs)."""

    examples: int = 0
    truncated_text: int = 0          # examples whose prompt text was shortened
    dropped_images: int = 0          # images removed (over all examples)

    def as_dict(self) -> dict[str, int]:
        return {"examples": self.examples, "truncated_text": self.truncated_text,
                "dropped_images": self.dropped_images}


class Pieces:
    """Tokenizes text around our special tokens, piece by piece (see the module docstring)."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_id = processor.image_token_id
        self.image_len = image_seq_length(processor)
        self._cache: dict[str, list[int]] = {}

    def special_id(self, token: str) -> int | None:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        return None if token_id is None or token_id == self.tokenizer.unk_token_id else token_id

    def text_ids(self, text: str) -> list[int]:
        if text not in self._cache:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        return self._cache[text]

    def split(self, text: str) -> list[tuple[str, str]]:
        """[(kind, piece)] with kind "text" | "special" | "image"; unknown <...> stay text."""
        parts: list[tuple[str, str]] = []
        last = 0
        for match in SPECIAL_TOKEN_RE.finditer(text):
            token = match.group(0)
            if token != tokens.IMAGE_TOKEN and self.special_id(token) is None:
                continue  # e.g. an item token beyond this model's catalogue: plain text
            if match.start() > last:
                parts.append(("text", text[last:match.start()]))
            parts.append(("image" if token == tokens.IMAGE_TOKEN else "special", token))
            last = match.end()
        if last < len(text):
            parts.append(("text", text[last:]))
        return parts

    def ids(self, text: str) -> list[int]:
        """Ids of text with special tokens whole and <image> expanded to image_seq_length tokens."""
        out: list[int] = []
        for kind, piece in self.split(text):
            if kind == "text":
                out.extend(self.text_ids(piece))
            elif kind == "image":
                out.extend([self.image_id] * self.image_len)
            else:
                out.append(self.special_id(piece))
        return out


@dataclass
class EncodedExample:
    """One example before batching: ids of the user turn (with <s>), of the assistant turn, kept images."""

    user_ids: list[int]
    assistant_ids: list[int]
    image_items: list[int]
    truncated_text: bool = False
    dropped_images: int = 0
    history_items: list[tuple[int, int]] = field(default_factory=list)  # (position in user_ids, item_idx) of
                                                                        # each history item token, oldest first


def assistant_text(record: Instruction) -> str:
    return f" {record.thought} {record.answer}"


def encode_example(record: Instruction, pieces: Pieces, max_length: int) -> EncodedExample:
    """Token ids of one record, truncated to max_length (including <s> and </s>)."""
    tokenizer = pieces.tokenizer
    assistant = pieces.ids(assistant_text(record)) + [tokenizer.eos_token_id]
    parts = pieces.split(USER_PREFIX + record.prompt + ASSISTANT_TAG)
    n_images = sum(kind == "image" for kind, _ in parts)
    if n_images != len(record.image_items):
        raise EncodeError(f"user {record.user_idx} ({record.task}): prompt has {n_images} <image> but "
                          f"image_items has {len(record.image_items)}")
    # Each part as ids; an image part is one block that is kept or dropped whole.
    blocks = [pieces.text_ids(p) if k == "text" else
              [pieces.image_id] * pieces.image_len if k == "image" else [pieces.special_id(p)]
              for k, p in parts]
    budget = max_length - 1 - len(assistant)  # 1 for <s>
    if budget <= 0:
        raise EncodeError(f"user {record.user_idx} ({record.task}): thought + answer alone take "
                          f"{len(assistant)} tokens, max_length is {max_length}")
    kinds = [k for k, _ in parts]
    length = sum(len(b) for b in blocks)
    truncated = False
    # 1. Text between two item tokens (history titles), oldest first, down to one token each.
    is_item = [k == "special" and p.startswith("<item_") for k, p in parts]
    for i in range(1, len(blocks) - 1):
        if length <= budget:
            break
        if kinds[i] == "text" and is_item[i - 1] and is_item[i + 1] and len(blocks[i]) > 1:
            cut = min(len(blocks[i]) - 1, length - budget)
            blocks[i] = blocks[i][:len(blocks[i]) - cut]
            length -= cut
            truncated = True
    # 2. Oldest images.
    images = list(record.image_items)
    dropped = 0
    image_positions = [i for i, k in enumerate(kinds) if k == "image"]
    for i in image_positions:
        if length <= budget:
            break
        length -= len(blocks[i])
        blocks[i] = []
        images.pop(0)
        dropped += 1
    if length > budget:
        raise EncodeError(f"user {record.user_idx} ({record.task}): {length + 1 + len(assistant)} tokens "
                          f"after truncating history text and dropping all images; max_length is {max_length}")
    user = [tokenizer.bos_token_id] + [t for b in blocks for t in b]
    return EncodedExample(user, assistant, images, truncated, dropped, _history_positions(record, parts, blocks))


def _history_positions(record: Instruction, parts: list[tuple[str, str]], blocks: list[list[int]]
                       ) -> list[tuple[int, int]]:
    """(position in the user ids, item_idx) of the history's item tokens: the first run of item parts, separated
    by text only, that spells the slots' history in order (tool hints and candidate lists are item tokens too,
    and are never taken for history). [] for a record without slots or whose history is empty."""
    if record.slots is None:
        return []
    history = [m.group(0) for m in SPECIAL_TOKEN_RE.finditer(record.slots.history) if m.group(0).startswith("<item_")]
    if not history:
        return []
    starts, position = [], 1  # 1: after <s>
    for block in blocks:
        starts.append(position)
        position += len(block)
    items = [i for i, (kind, piece) in enumerate(parts) if kind == "special" and piece.startswith("<item_")]
    for first in range(len(items) - len(history) + 1):
        run = items[first:first + len(history)]
        if [parts[i][1] for i in run] != history:
            continue
        if all(parts[j][0] == "text" for a, b in zip(run, run[1:]) for j in range(a + 1, b)):
            return [(starts[i], int(parts[i][1][6:-1])) for i in run]
    return []


def pixel_values_for(items: Sequence[int], processor, images: Mapping[int, object]) -> torch.Tensor | None:
    if not items:
        return None
    pil = [images[int(i)] for i in items]
    return processor.image_processor(pil, return_tensors="pt")["pixel_values"]


def encode_for_training(instructions: Sequence[Instruction], processor, images: Mapping[int, object],
                        max_length: int, stats: EncodeStats | None = None,
                        pieces: Pieces | None = None, history_labels: bool = False,
                        history_items: bool = False) -> dict[str, torch.Tensor]:
    """A right-padded training batch: input_ids, attention_mask, labels (+ pixel_values when any image).

    `images`: item_idx -> PIL image (an ItemImages); pixel_values rows follow the <image> blocks in batch
    order, as LlavaForConditionalGeneration expects. `stats` accumulates truncation counts.
    history_labels adds `item_labels`: at each history item token after the first, its item_idx (-100
    elsewhere), so the loss can train next-item prediction at every history position (SASRec's signal density).
    history_items adds what a teacher needs (reasonrec/vlm/distill.py): `history_items` [B, H] the prompt's
    history item_idx oldest first, `history_positions` [B, H] their token positions (both -100 past a row's
    history), and `answer_positions` [B] the position of a sequential example's item answer (-100 otherwise).
    """
    pieces = pieces or Pieces(processor)
    examples = [encode_example(r, pieces, max_length) for r in instructions]
    pad = processor.tokenizer.pad_token_id
    width = max(len(e.user_ids) + len(e.assistant_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids = e.user_ids + e.assistant_ids
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
        labels[row, len(e.user_ids):len(ids)] = torch.tensor(e.assistant_ids)
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if history_labels:
        item_labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        for row, e in enumerate(examples):
            for position, item in e.history_items[1:]:
                item_labels[row, position] = item
        batch["item_labels"] = item_labels
    if history_items:
        batch.update(history_tensors(instructions, examples))
    pixel_values = pixel_values_for([i for e in examples for i in e.image_items], processor, images)
    if pixel_values is not None:
        batch["pixel_values"] = pixel_values
    if stats is not None:
        stats.examples += len(examples)
        for e in examples:
            stats.truncated_text += int(e.truncated_text)
            stats.dropped_images += e.dropped_images
    return batch


def history_tensors(instructions: Sequence[Instruction], examples: Sequence[EncodedExample]
                    ) -> dict[str, torch.Tensor]:
    """history_items / history_positions [B, H] and answer_positions [B] (see encode_for_training)."""
    width = max([len(e.history_items) for e in examples] + [1])
    items = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    answers = torch.full((len(examples),), IGNORE_INDEX, dtype=torch.long)
    for row, (record, e) in enumerate(zip(instructions, examples)):
        for column, (position, item) in enumerate(e.history_items):
            positions[row, column], items[row, column] = position, item
        if record.task == "sequential" and e.history_items and record.answer.startswith("<item_"):
            answers[row] = len(e.user_ids) + len(e.assistant_ids) - 2   # the answer token, just before </s>
    return {"history_items": items, "history_positions": positions, "answer_positions": answers}
