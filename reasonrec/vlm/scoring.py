"""Read rankings, confidence, tool choice and click probability off the VLM in one prompt pass.

Every decision is a distribution over special tokens at one position, so nothing is decoded:

    <s>USER: {prompt} ASSISTANT: EH: 0.42 | Confidence: [read conf] <conf_b> | Tools: [read tools] <tool_x>
    | Answer: [read items / <yes>,<no>]

A reading *parses* when, at each read position, the right kind of token (a confidence bin, a tool, an item /
yes-no answer) is what greedy decoding would emit (the argmax token; `greedy_ok` records this alone) or holds
most of the probability mass (`KIND_MASS`: the model more likely than not answers in form). The mass rule is
there because an item answer's mass is shared by ~100 candidates: a format token such as </s> at 0.2 wins the
token argmax over a 0.65 item mass, though every candidate score read here is the model's own.

The thought is teacher-forced up to "Confidence:" (EH is known at inference time: it comes from the user's
training history); the argmax confidence bin is put in, the tool distribution read, the consulted tools
(record.consulted_tools, the tools whose outputs the prompt shows) or the model's top tool put in, then
" | Answer: " and the item distribution read. The prompt runs once with a KV cache; the two continuations
are a handful of tokens each, right-padded inside the chunk and masked, with explicit position ids, so
left padding of the prompt and ragged continuations give the same numbers as one unpadded run per row.

Prefixes are built with `encode.Pieces` exactly as training built the sequence, so the positions read here
are the positions training supervised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reasonrec.vlm import tokens
from reasonrec.vlm.encode import Pieces, encode_example, pixel_values_for
from reasonrec.vlm.records import Instruction

_THOUGHT = re.compile(
    r"^(?P<head>.*?)(?P<conf><conf_\d+>)(?P<mid>[^<]*?)"
    r"(?P<tools><tool_[a-z0-9_+]+>(?:[^<|]*?<tool_[a-z0-9_+]+>)*)(?P<tail>.*)$", re.S)
_TOOL = re.compile(r"<tool_[a-z0-9_+]+>")
KIND_MASS = 0.5   # a read position parses when the right kind of token holds more than this share of the mass


@dataclass
class ThoughtFrame:
    """A thought split around the tokens the scorer chooses: head <conf> mid <tool> sep <tool> ... tail."""

    head: str
    mid: str
    sep: str
    tail: str


def parse_frame(thought: str) -> ThoughtFrame | None:
    match = _THOUGHT.match(thought)
    if match is None:
        return None
    tools = match.group("tools")
    separators = _TOOL.split(tools)[1:-1]
    return ThoughtFrame(match.group("head"), match.group("mid"), separators[0] if separators else " ",
                        match.group("tail"))


@dataclass
class VLMOutput:
    """Per-instruction readings, all numpy (rows follow the input order)."""

    scores: np.ndarray        # [n, max_cands] log-softmax over each row's candidates; -inf padding
    candidates: np.ndarray    # [n, max_cands] item_idx of each column; -1 padding
    confidence: np.ndarray    # [n] expected value of the <conf_*> distribution (bin centres)
    conf_probs: np.ndarray    # [n, CONF_BINS]
    answer_prob: np.ndarray   # [n] max softmax probability over the candidates
    tool_probs: np.ndarray    # [n, n_tools + 1] over tool tokens (tool_names order, then <tool_none>)
    ctr_prob: np.ndarray      # [n] P(<yes>) from the <yes>/<no> logits at the answer position
    parse_ok: np.ndarray      # [n] bool: thought parsed and each read position's argmax or most mass is the right kind
    top_item: np.ndarray      # [n] best candidate's item_idx
    greedy_ok: np.ndarray | None = None   # [n] bool: stricter, each read position's argmax is the right kind


def kind_mass(logits: torch.Tensor, kind_ids: torch.Tensor) -> torch.Tensor:
    """[n] softmax probability mass of the tokens `kind_ids` at each row's read position."""
    return torch.softmax(logits.float(), dim=-1)[:, kind_ids].sum(dim=-1)


def in_form(logits: torch.Tensor, kind_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([n] greedy, [n] parsed) at each row's read position: the argmax token is of the kind `kind_ids`;
    that, or the kind holds more than KIND_MASS of the mass (the module docstring says why)."""
    greedy = torch.isin(logits.argmax(dim=-1), kind_ids)
    return greedy, greedy | (kind_mass(logits, kind_ids) > KIND_MASS)


class VLMScorer:
    """Batched, left-padded, inference-mode scoring of instruction records."""

    def __init__(self, model, processor, images: Mapping[int, object], tool_names: Sequence[str],
                 batch_size: int = 16, device: str | torch.device = "cpu", max_length: int = 384):
        self.model = model
        self.processor = processor
        self.images = images
        self.tool_names = list(tool_names)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.max_length = int(max_length)
        self.pieces = Pieces(processor)
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id
        self.item_ids = item_token_ids(tok)
        self.n_items = len(self.item_ids)
        self.conf_ids = torch.tensor(tok.convert_tokens_to_ids(tokens.conf_tokens()))
        self.tool_ids = torch.tensor(tok.convert_tokens_to_ids(tokens.tool_tokens(self.tool_names)))
        self.yes_no_ids = torch.tensor(tok.convert_tokens_to_ids([tokens.YES, tokens.NO]))
        self.known_tools = {name.lower() for name in self.tool_names}

    # ------------------------------------------------------------------ public API

    def score(self, instructions: Sequence[Instruction]) -> VLMOutput:
        batches = [self._read_batch(instructions[s:s + self.batch_size])
                   for s in range(0, len(instructions), self.batch_size)]
        return self._assemble([r for batch in batches for r in batch["rows"]])

    def score_and_explain(self, instructions: Sequence[Instruction], max_new_tokens: int = 48
                          ) -> tuple[VLMOutput, list[str]]:
        """The readings of `score` and the text of `explain` from one set of reading passes (the prompt is
        read once per batch, then generation continues from the forced thought)."""
        rows: list[dict] = []
        texts: list[str] = []
        for s in range(0, len(instructions), self.batch_size):
            read = self._read_batch(instructions[s:s + self.batch_size])
            rows.extend(read["rows"])
            texts.extend(self._generate([r["prefix"] for r in read["rows"]], read["pixel_values"], max_new_tokens))
        return self._assemble(rows), texts

    def _assemble(self, reads: list[dict]) -> VLMOutput:
        width = max([len(r["candidates"]) for r in reads] + [1])
        n = len(reads)
        scores = np.full((n, width), -np.inf, dtype=np.float32)
        candidates = np.full((n, width), -1, dtype=np.int64)
        for i, r in enumerate(reads):
            scores[i, :len(r["scores"])] = r["scores"]
            candidates[i, :len(r["candidates"])] = r["candidates"]
        best = np.argmax(scores, axis=1) if n else np.zeros(0, dtype=np.int64)
        conf_probs = np.stack([r["conf_probs"] for r in reads]) if n else np.zeros((0, tokens.CONF_BINS))
        bin_values = np.array([tokens.conf_value(b) for b in range(tokens.CONF_BINS)])
        return VLMOutput(
            scores=scores, candidates=candidates,
            confidence=conf_probs @ bin_values, conf_probs=conf_probs,
            answer_prob=np.exp(scores.max(axis=1)) if n else np.zeros(0),
            tool_probs=np.stack([r["tool_probs"] for r in reads]) if n else np.zeros((0, len(self.tool_ids))),
            ctr_prob=np.array([r["ctr_prob"] for r in reads]),
            parse_ok=np.array([r["parse_ok"] for r in reads], dtype=bool),
            greedy_ok=np.array([r["greedy_ok"] for r in reads], dtype=bool),
            top_item=candidates[np.arange(n), best] if n else np.zeros(0, dtype=np.int64))

    def ctr_probability(self, instructions: Sequence[Instruction]) -> np.ndarray:
        """P(click) = softmax over (<yes>, <no>) at the answer position, after the same forced thought."""
        return self.score(instructions).ctr_prob

    def explain(self, instructions: Sequence[Instruction], max_new_tokens: int = 48) -> list[str]:
        """Greedy text after "Answer:" (the thought forced as in `score`); use `score_and_explain` when the
        readings are wanted too, so the reading passes run once."""
        return self.score_and_explain(instructions, max_new_tokens)[1]

    def generate_thought(self, instructions: Sequence[Instruction], max_new_tokens: int = 48) -> list[str]:
        """Free greedy generation of the whole assistant turn (thought and answer), as raw text for
        reasonrec.vlm.thought.parse_generation."""
        out: list[str] = []
        for s in range(0, len(instructions), self.batch_size):
            batch = instructions[s:s + self.batch_size]
            encoded = [encode_example(r, self.pieces, self.max_length) for r in batch]
            pixel_values = pixel_values_for([i for e in encoded for i in e.image_items], self.processor, self.images)
            out.extend(self._generate([e.user_ids for e in encoded], pixel_values, max_new_tokens))
        return out

    # ------------------------------------------------------------------ the three reads

    @torch.inference_mode()
    def _read_batch(self, batch: Sequence[Instruction]) -> dict:
        was_training = self.model.training
        self.model.eval()
        try:
            return self._read_batch_eval(batch)
        finally:
            self.model.train(was_training)

    def _read_batch_eval(self, batch: Sequence[Instruction]) -> dict:
        encoded = [encode_example(r, self.pieces, self.max_length) for r in batch]
        frames = [parse_frame(r.thought) for r in batch]
        pixel_values = pixel_values_for([i for e in encoded for i in e.image_items], self.processor, self.images)
        ids = self.pieces.ids
        # Stage 1: the prompt and the forced head ("EH: 0.42 | Confidence: "); unparsed thoughts are forced
        # whole and read for the answer directly.
        first = [e.user_ids + (ids(" " + f.head) if f else ids(f" {r.thought} "))
                 for e, f, r in zip(encoded, frames, batch)]
        logits, cache, mask = self._prefix_pass(first, pixel_values)
        parsed = [f is not None for f in frames]
        conf_logits = logits[:, self.conf_ids]
        conf_choice = self.conf_ids[conf_logits.argmax(dim=1)]
        conf_greedy, conf_parsed = in_form(logits, self.conf_ids)
        # Stage 2: <conf_b> + " | Tools: " -> tool distribution.
        second = [[int(conf_choice[i])] + ids(f.mid) if f else [self.pad_id] for i, f in enumerate(frames)]
        logits2, cache, mask = self._extend(cache, mask, second, active=parsed)
        tool_logits = logits2[:, self.tool_ids]
        tool_greedy, tool_parsed = in_form(logits2, self.tool_ids)
        # Stage 3: the tools + " | Answer: " -> item / yes-no distribution.
        third, chosen_tools = [], []
        for i, (f, r) in enumerate(zip(frames, batch)):
            if f is None:
                third.append([self.pad_id])
                chosen_tools.append([])
                continue
            chosen = [tokens.tool_token(t) for t in r.consulted_tools if t.lower() in self.known_tools]
            tool_ids = (self.pieces.tokenizer.convert_tokens_to_ids(chosen) if chosen
                        else [int(self.tool_ids[tool_logits[i].argmax()])])
            seq: list[int] = []
            for j, tool_id in enumerate(tool_ids):
                seq += ([] if j == 0 else ids(f.sep)) + [tool_id]
            chosen_tools.append(seq)
            third.append(seq + ids(f.tail + " "))
        logits3, _, _ = self._extend(cache, mask, third, active=parsed)
        answer_logits = torch.where(torch.tensor(parsed)[:, None], logits3, logits)

        rows = []
        for i, (r, f, e) in enumerate(zip(batch, frames, encoded)):
            cands = np.asarray(r.candidates if len(r.candidates) else np.arange(self.n_items), dtype=np.int64)
            cand_logits = answer_logits[i, self.item_ids[torch.from_numpy(cands)]]
            scores = torch.log_softmax(cand_logits, dim=0).numpy()
            yes_no = torch.softmax(answer_logits[i, self.yes_no_ids], dim=0)
            answer_kind = (self.yes_no_ids if r.task == "ctr" else self.item_ids)
            answer_greedy, answer_parsed = ((True, True) if r.task == "explanation"
                                            else map(bool, in_form(answer_logits[i:i + 1], answer_kind)))
            if f is None:
                prefix = e.user_ids + ids(" " + r.thought)
                conf_probs = np.full(tokens.CONF_BINS, np.nan)
                tool_probs = np.full(len(self.tool_ids), np.nan)
            else:
                prefix = (first[i] + second[i] + chosen_tools[i] + ids(f.tail))
                conf_probs = torch.softmax(conf_logits[i], dim=0).numpy()
                tool_probs = torch.softmax(tool_logits[i], dim=0).numpy()
            rows.append({
                "scores": scores, "candidates": cands, "conf_probs": conf_probs, "tool_probs": tool_probs,
                "ctr_prob": float(yes_no[0]), "prefix": prefix,
                "parse_ok": bool(f is not None and conf_parsed[i] and tool_parsed[i] and answer_parsed),
                "greedy_ok": bool(f is not None and conf_greedy[i] and tool_greedy[i] and answer_greedy)})
        return {"rows": rows, "pixel_values": pixel_values}

    # ------------------------------------------------------------------ model passes

    def _dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), each row right-aligned: the last prompt token sits in the last column."""
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        return input_ids, mask

    def _prefix_pass(self, rows: list[list[int]], pixel_values: torch.Tensor | None):
        """Left-padded prompt pass; logits [B, V] at each row's last token, the cache and the mask."""
        input_ids, mask = self._left_pad(rows)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        kwargs = {}
        if pixel_values is not None:
            kwargs["pixel_values"] = pixel_values.to(self.device, self._dtype())
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=position_ids.to(self.device), use_cache=True, logits_to_keep=1, **kwargs)
        return out.logits[:, -1].float().cpu(), out.past_key_values, mask

    def _extend(self, cache, mask: torch.Tensor, chunks: list[list[int]], active: list[bool]):
        """Append a ragged chunk per row (right-padded and masked inside the chunk); logits at each row's last
        real token. Inactive rows get one masked pad token."""
        lengths = torch.tensor([len(c) if a else 1 for c, a in zip(chunks, active)])
        width = int(lengths.max())
        input_ids = torch.full((len(chunks), width), self.pad_id, dtype=torch.long)
        chunk_mask = torch.zeros((len(chunks), width), dtype=torch.long)
        for i, (c, a) in enumerate(zip(chunks, active)):
            if a:
                input_ids[i, :len(c)] = torch.tensor(c)
                chunk_mask[i, :len(c)] = 1
        position_ids = mask.sum(dim=1, keepdim=True) + torch.arange(width)[None, :]
        full_mask = torch.cat([mask, chunk_mask], dim=1)
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=full_mask.to(self.device),
                         position_ids=position_ids.to(self.device), past_key_values=cache, use_cache=True,
                         logits_to_keep=width)
        logits = out.logits.float().cpu()[torch.arange(len(chunks)), lengths - 1]
        return logits, out.past_key_values, full_mask

    def _generate(self, prefixes: list[list[int]], pixel_values, max_new_tokens: int) -> list[str]:
        was_training = self.model.training
        self.model.eval()
        input_ids, mask = self._left_pad(prefixes)
        kwargs = {}
        if pixel_values is not None:
            kwargs["pixel_values"] = pixel_values.to(self.device, self._dtype())
        tok = self.processor.tokenizer
        try:
            with torch.inference_mode():
                out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                          max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.pad_id, eos_token_id=tok.eos_token_id, **kwargs)
        finally:
            self.model.train(was_training)
        drop = {self.pad_id, tok.eos_token_id, tok.bos_token_id}
        texts = []
        for row in out[:, input_ids.shape[1]:].cpu().tolist():
            if tok.eos_token_id in row:
                row = row[:row.index(tok.eos_token_id)]
            texts.append(tok.decode([t for t in row if t not in drop], skip_special_tokens=False).strip())
        return texts


def item_token_ids(tokenizer) -> torch.Tensor:
    """Ids of <item_0> .. <item_{n-1}> (n = how many consecutive item tokens the tokenizer has)."""
    added = tokenizer.get_added_vocab()
    n = 0
    while tokens.item_token(n) in added:
        n += 1
    return torch.tensor([added[tokens.item_token(i)] for i in range(n)], dtype=torch.long)
