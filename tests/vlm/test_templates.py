"""Templates: 10 paraphrases per task with exactly the task's slots, clean rendering, deterministic choice,
and rendered text pinned byte for byte (a model trained on one wording is scored on the same wording)."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from reasonrec.vlm.templates import (EMPTY_HISTORY, N_TEMPLATES, SLOTS, TEMPLATES, ItemText, PromptSlots,
                                     TemplateMixture, render, template_slots)

SLOT_VALUES = {"images": "<image><image>", "history": "<item_1> Heat <item_2> Up", "eh": "0.42",
               "candidates": "<item_3> <item_4>", "item": "<item_5> Fargo", "tool_outputs": ""}
BRACES = "<item_4> Mr. Holland's Opus. <item_7> Who? {What} <item_12> Heat"
HINTS = "Tool hints: <tool_sasrec> <item_3> <item_9> <item_1> <conf_4>; <tool_dlrm> <no> <conf_7>."
# Every value a slot takes in practice, empty ones included: the grid below renders every combination.
VARIANTS = {
    "images": ["", "<image>", "<image><image><image>"],
    "history": [EMPTY_HISTORY, BRACES, "<item_1>"],
    "eh": ["0.00", "0.42", "1.00"],
    "candidates": ["", "<item_3>", "<item_3> <item_9> <item_10>"],
    "item": ["<item_9>", "<item_9> St. Elmo's Fire. Really?"],
    "tool_outputs": ["", HINTS, "Tool hints: <tool_a> <yes> <conf_0>."],
}
# sha256 of the grid's 6,480 prompts joined by newlines, as the code before PromptSlots rendered them (the
# keyword-argument render of commit d88f608): a template or whitespace change fails here.
GRID_SHA256 = "26e0cdace06f14c2fa3071fe5713e8f27a165db09658e124c50aa0a4547e1081"


def task_slots(task: str, values: dict[str, str] = SLOT_VALUES) -> PromptSlots:
    return PromptSlots(**{name: values[name] for name in SLOTS[task]})


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_ten_distinct_templates_with_exactly_the_task_slots(task):
    templates = TEMPLATES[task]
    assert len(templates) == N_TEMPLATES == len(set(templates))
    for template in templates:
        assert template_slots(template) == set(SLOTS[task]), template
        assert "evidence horizon" in template.lower()


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_render_fills_every_slot_and_leaves_no_gaps(task):
    slots = task_slots(task)
    for template_id in range(N_TEMPLATES):
        text = render(task, template_id, slots)
        assert "{" not in text and "  " not in text and text == text.strip()
        assert "0.42" in text and "<item_1> Heat <item_2> Up" in text
        assert text.count("<image>") == 2


def test_render_keeps_braces_in_values_and_rejects_bad_slots():
    slots = replace(task_slots("sequential"), history="<item_1> {eh} {0} weird title")
    assert "<item_1> {eh} {0} weird title" in render("sequential", 0, slots)
    with pytest.raises(ValueError, match=r"missing slots \['item'\]"):
        render("ctr", 0, slots)
    with pytest.raises(ValueError, match=r"unknown slots \['candidates'\]"):
        render("sequential", 0, replace(slots, candidates="<item_1>"))
    with pytest.raises(ValueError):
        render("sequential", N_TEMPLATES, slots)
    with pytest.raises(ValueError):
        render("summary", 0, slots)


def _grid() -> list[str]:
    prompts = []
    for task in sorted(TEMPLATES):
        names = sorted(SLOTS[task])
        for template_id in range(N_TEMPLATES):
            for values in itertools.product(*(VARIANTS[n] for n in names)):
                prompts.append(render(task, template_id, PromptSlots(**dict(zip(names, values)))))
    return prompts


def test_rendering_is_byte_identical_to_the_pinned_text():
    prompts = _grid()
    assert len(prompts) == 6480
    assert hashlib.sha256("\n".join(prompts).encode()).hexdigest() == GRID_SHA256
    # A few of them written out, so a failure above can be read against what the text used to be.
    assert render("sequential", 0, PromptSlots(images="", history=EMPTY_HISTORY, eh="0.42")) == \
        "History: none yet. Evidence horizon 0.42. Which item comes next?"
    assert render("sequential", 2, PromptSlots("<image>", BRACES, "1.00", HINTS)) == (
        "Oldest to newest, this user picked <image> <item_4> Mr. Holland's Opus. <item_7> Who? {What} <item_12> "
        "Heat. Their evidence horizon is 1.00. Tool hints: <tool_sasrec> <item_3> <item_9> <item_1> <conf_4>; "
        "<tool_dlrm> <no> <conf_7>. What will they pick next?")
    assert render("direct", 7, PromptSlots(images="", history="<item_1>", eh="0.00", candidates="")) == \
        "Options . User timeline: <item_1>. The evidence horizon is 0.00. Which option wins?"
    assert render("explanation", 8, PromptSlots(
        images="<image><image><image>", history=BRACES, eh="0.42", item="<item_9> St. Elmo's Fire. Really?",
        tool_outputs="Tool hints: <tool_a> <yes> <conf_0>.")) == (
        "<image><image><image> Known so far: <item_4> Mr. Holland's Opus. <item_7> Who? {What} <item_12> Heat; "
        "evidence horizon 0.42. Tool hints: <tool_a> <yes> <conf_0>. Explain why <item_9> St. Elmo's Fire. "
        "Really? appeals to them.")


def test_item_text_slots_are_the_task_slots():
    text = ItemText(["Toy Story (1995)", "Heat", "Up"], np.array([True, False, True]), title_max_chars=12)
    history = np.array([0, 1, 2])
    slots, image_items = text.slots(history, 0.456, max_history=2, max_images=1)
    assert slots == PromptSlots(images="<image>", history="<item_1> Heat <item_2> Up", eh="0.46")
    assert image_items == [2] and slots.names() == SLOTS["sequential"]
    direct, _ = text.slots(history, 0.5, 10, 3, candidates=[2, 0])
    assert direct.candidates == "<item_2> <item_0>" and direct.names() == SLOTS["direct"]
    ctr, images = text.slots(history[:0], 1.0, 10, 3, item=0, tool_outputs=HINTS)
    assert (ctr.item, ctr.history, ctr.images, images) == ("<item_0> Toy Story", EMPTY_HISTORY, "", [])
    assert ctr.names() == SLOTS["ctr"] == SLOTS["explanation"]


def test_template_mixture_is_deterministic_and_spread_single_is_always_zero():
    keys = [f"train/{u}/{p}" for u in range(300) for p in range(3)]
    mixture = TemplateMixture("mixture", seed=0)
    ids = [mixture.pick("direct", k) for k in keys]
    assert ids == [TemplateMixture("mixture", seed=0).pick("direct", k) for k in keys]
    counts = Counter(ids)
    assert set(counts) == set(range(N_TEMPLATES))
    assert max(counts.values()) < 2 * len(keys) / N_TEMPLATES  # roughly uniform (expected 90 each)
    assert ids != [TemplateMixture("mixture", seed=1).pick("direct", k) for k in keys]
    assert ids != [mixture.pick("ctr", k) for k in keys]  # the task is part of the hash
    assert {TemplateMixture("single", seed=3).pick("ctr", k) for k in keys} == {0}
    with pytest.raises(ValueError):
        TemplateMixture("random")


def test_item_text_truncates_titles_and_picks_recent_items_and_images():
    titles = ["Toy Story (1995)", "A very long film title that goes on", "Heat", "Up", "Fargo"]
    has_image = np.array([True, False, True, True, False])
    text = ItemText(titles, has_image, title_max_chars=12)
    assert text.titles[0] == "Toy Story"        # word boundary in the second half of the budget
    assert text.titles[1] == "A very long"
    assert text.item(2) == "<item_2> Heat"
    history = np.array([0, 1, 2, 3, 4])
    assert text.history(history, 2) == "<item_3> Up <item_4> Fargo"
    assert text.history(history[:0], 10) == EMPTY_HISTORY
    assert text.history(history, 0) == EMPTY_HISTORY
    assert text.images(history, 2) == ("<image><image>", [2, 3])    # the two most recent with an image
    assert text.images(history, 5) == ("<image>" * 3, [0, 2, 3])    # oldest first, like the history
    assert text.images(history, 0) == ("", [])
    assert ItemText.candidates([7, 3]) == "<item_7> <item_3>"
    assert ItemText(["Alongwordwithoutspaces"], np.array([False]), 8).titles == ["Alongwor"]
