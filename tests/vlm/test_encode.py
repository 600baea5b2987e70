"""encode_for_training: the llava-1.5 layout, labels on exactly the assistant turn, image tokens vs pixel
values, and truncation that never touches images' tokens, the thought or the answer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reasonrec.vlm.build import image_seq_length
from reasonrec.vlm.encode import IGNORE_INDEX, EncodeError, EncodeStats, Pieces, encode_for_training
from tests.vlm.conftest_model import TITLES, toy_instructions


def supervised(batch, row) -> list[int]:
    labels = batch["labels"][row]
    return labels[labels != IGNORE_INDEX].tolist()


def test_layout_and_labels_cover_exactly_thought_and_answer(tiny_model, toy_images):
    _, processor = tiny_model
    tok = processor.tokenizer
    records = toy_instructions(6, image_every=2)
    batch = encode_for_training(records, processor, toy_images, max_length=384)
    for row, r in enumerate(records):
        n = int(batch["attention_mask"][row].sum())
        assert batch["attention_mask"][row, :n].all() and not batch["attention_mask"][row, n:].any()  # right pad
        assert (batch["input_ids"][row, n:] == tok.pad_token_id).all()
        text = tok.decode(batch["input_ids"][row, :n])
        assert text.startswith("<s>USER: ") and f" ASSISTANT: {r.thought} {r.answer}</s>" in text
        # The supervised ids are the tokenizer's own encoding of " thought answer" + </s>, and sit last.
        expected = tok(f" {r.thought} {r.answer}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert supervised(batch, row) == expected
        assert batch["labels"][row, n - len(expected):n].tolist() == expected
        assert (batch["labels"][row, :n - len(expected)] == IGNORE_INDEX).all()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()


def test_image_tokens_match_pixel_values_and_the_model_accepts_them(tiny_model, toy_images):
    model, processor = tiny_model
    records = toy_instructions(8, image_every=3)
    batch = encode_for_training(records, processor, toy_images, max_length=384)
    n_images = sum(len(r.image_items) for r in records)
    assert n_images > 0 and batch["pixel_values"].shape == (n_images, 3, 32, 32)
    per_row = (batch["input_ids"] == processor.image_token_id).sum(dim=1)
    assert per_row.tolist() == [len(r.image_items) * image_seq_length(processor) for r in records]
    out = model(**batch)  # LLaVA itself checks image tokens against image features
    assert torch.isfinite(out.loss)
    no_images = encode_for_training(toy_instructions(4, image_every=1000)[1:], processor, toy_images, 384)
    assert "pixel_values" not in no_images


def long_record():
    r = toy_instructions(1, image_every=1)[0]
    history = [3, 7, 11, 2]
    prompt = ("<image> <image> <image> History: "
              + " ".join(f"<item_{h}> {TITLES[h]} deluxe edition with extra long subtitle" for h in history)
              + ". Evidence horizon 0.42. Which item comes next?")
    return dataclasses.replace(r, prompt=prompt, image_items=[3, 7, 11], answer="<item_2>", target_item=2)


def test_truncation_cuts_history_text_then_oldest_images_never_the_answer(tiny_model, toy_images):
    _, processor = tiny_model
    tok = processor.tokenizer
    r = long_record()
    full = encode_for_training([r], processor, toy_images, max_length=1000)
    n_full = int(full["attention_mask"].sum())
    answer = supervised(full, 0)
    image_len = image_seq_length(processor)

    stats = EncodeStats()
    cut_text = encode_for_training([r], processor, toy_images, max_length=n_full - 10, stats=stats)
    assert int(cut_text["attention_mask"].sum()) <= n_full - 10
    assert supervised(cut_text, 0) == answer
    assert cut_text["pixel_values"].shape[0] == 3 and stats.truncated_text == 1 and stats.dropped_images == 0
    text = tok.decode(cut_text["input_ids"][0])
    assert "Which item comes next?" in text and f"<item_2> {TITLES[2]} deluxe" in text  # template, last title
    assert f"<item_3> {TITLES[3]} deluxe edition with extra long subtitle" not in text  # oldest title cut
    assert f"<item_7> {TITLES[7]} deluxe edition with extra long subtitle" in text      # first, only as needed

    # Text truncation can save at most this much: the three titles between item tokens, down to one token.
    pieces = Pieces(processor)
    cuttable = sum(len(pieces.text_ids(f" {TITLES[h]} deluxe edition with extra long subtitle ")) - 1
                   for h in (3, 7, 11))
    stats = EncodeStats()
    dropped = encode_for_training([r], processor, toy_images, max_length=n_full - cuttable - image_len // 2,
                                  stats=stats)
    assert supervised(dropped, 0) == answer and stats.dropped_images == 1
    assert int((dropped["input_ids"] == processor.image_token_id).sum()) == 2 * image_len
    # The oldest image (item 3's) went; items 7 and 11 keep theirs, in order.
    expected = processor.image_processor([toy_images[7], toy_images[11]], return_tensors="pt")["pixel_values"]
    assert torch.equal(dropped["pixel_values"], expected)

    with pytest.raises(EncodeError, match=f"user {r.user_idx} \\(sequential\\)"):
        encode_for_training([r], processor, toy_images, max_length=40)


def test_image_count_mismatch_is_an_error(tiny_model, toy_images):
    _, processor = tiny_model
    r = dataclasses.replace(toy_instructions(1, image_every=1)[0], image_items=[1, 2])
    with pytest.raises(EncodeError, match="image_items has 2"):
        encode_for_training([r], processor, toy_images, max_length=384)


def test_pieces_prefix_property(tiny_model):
    """Cutting before any special token gives the full sequence's prefix (what the scorer relies on)."""
    _, processor = tiny_model
    pieces = Pieces(processor)
    text = " EH: 0.42 | Confidence: <conf_3> | Tools: <tool_sasrec> <tool_bpr_mf> | Answer: <item_12> nice"
    full = pieces.ids(text)
    assert full == processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    for marker in ("<conf_3>", "<tool_sasrec>", "<tool_bpr_mf>", "<item_12>"):
        prefix = pieces.ids(text[:text.index(marker)])
        assert full[:len(prefix)] == prefix and full[len(prefix)] == pieces.special_id(marker)
    assert pieces.ids("<item_999>") == processor.tokenizer("<item_999>", add_special_tokens=False)["input_ids"]


def slotted_record(history: list[int], hints: list[int], template_id: int = 0):
    """A sequential record rendered from slots: titled history, and a tool hint whose items are not history."""
    from reasonrec.vlm.records import Instruction
    from reasonrec.vlm.templates import PromptSlots

    slots = PromptSlots(images="", history=" ".join(f"<item_{h}> {TITLES[h]}" for h in history), eh="0.42",
                        tool_outputs="sasrec suggests " + " ".join(f"<item_{h}>" for h in hints))
    return Instruction.from_slots("sequential", template_id, slots, user_idx=0, evidence_horizon=0.42,
                                  image_items=[], thought="EH: 0.42 | Confidence: <conf_3> | Tools: <tool_sasrec> "
                                  "| Answer:", answer="<item_9>", target_item=9)


@pytest.mark.parametrize("template_id", range(10))
def test_history_labels_sit_on_each_history_item_after_the_first_and_never_on_hints(tiny_model, toy_images,
                                                                                   template_id):
    _, processor = tiny_model
    tok = processor.tokenizer
    history, hints = [3, 5, 3, 11], [5, 12, 1]   # a repeated item, and a hint item that is also history
    record = slotted_record(history, hints, template_id)
    batch = encode_for_training([record], processor, toy_images, 384, history_labels=True)
    labelled = torch.nonzero(batch["item_labels"][0] != IGNORE_INDEX).flatten()
    assert batch["item_labels"][0, labelled].tolist() == history[1:]
    # Each label sits on the position holding that very item token, in history order.
    assert batch["input_ids"][0, labelled].tolist() == tok.convert_tokens_to_ids([f"<item_{h}>" for h in history[1:]])
    hint_ids = set(tok.convert_tokens_to_ids([f"<item_{h}>" for h in hints]))
    hint_positions = [p for p, t in enumerate(batch["input_ids"][0].tolist()) if t in hint_ids]
    assert len(hint_positions) == len(hints) + 1           # the three hints and the history's <item_5>
    # Truncated titles move the positions; the labels follow the tokens.
    n_full = int(batch["attention_mask"][0].sum())
    short = encode_for_training([record], processor, toy_images, n_full - 3, history_labels=True)
    labelled = torch.nonzero(short["item_labels"][0] != IGNORE_INDEX).flatten()
    full_labelled = torch.nonzero(batch["item_labels"][0] != IGNORE_INDEX).flatten()
    assert short["input_ids"][0, labelled].tolist() == batch["input_ids"][0, full_labelled].tolist()
    assert "item_labels" not in encode_for_training([record], processor, toy_images, 384)


def test_history_labels_are_empty_for_records_without_slots(tiny_model, toy_images):
    _, processor = tiny_model
    batch = encode_for_training(toy_instructions(3), processor, toy_images, 384, history_labels=True)
    assert (batch["item_labels"] == IGNORE_INDEX).all()
