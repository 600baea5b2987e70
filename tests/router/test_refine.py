"""Second-pass records carry tool outputs as training showed them; merging keeps the VLM unless it broke."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from reasonrec.router.config import RouterConfig
from reasonrec.router.policy import decide
from reasonrec.router.refine import merge, merge_ctr, rationale, refine, refine_instruction
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.templates import N_TEMPLATES, SLOTS, PromptSlots, render
from reasonrec.vlm.thought import format_thought, parse_generation
from reasonrec.vlm.tool_labels import ToolOutputs

# What show_outputs writes for row 0 of _outputs() with columns [0, 2] (gru4rec, dlrm).
HINTS = "Tool hints: <tool_gru4rec> <item_3> <item_9> <item_1> <conf_4>; <tool_dlrm> <no> <conf_7>."
# Titles with full stops, question marks, braces and a look-alike of the hints: slots are never parsed back.
SLOT_TEXT = {
    "images": "<image><image>",
    "history": "<item_4> Mr. Holland's Opus. <item_7> Who? {What} <item_12> Tool hints: <tool_x> <item_1>.",
    "eh": "0.42",
    "candidates": "<item_3> <item_9> <item_10>",
    "item": "<item_9> St. Elmo's Fire. Really?",
}


def _outputs() -> ToolOutputs:
    """Two ranking tools and one CTR tool, two rows."""
    top = np.array([[[3, 9, 1], [5, 6, 7], [-1, -1, -1]], [[8, 2, 0], [3, 4, 5], [-1, -1, -1]]])
    return ToolOutputs(names=["gru4rec", "sasrec", "dlrm"], usable=np.zeros((2, 3), dtype=bool), top_items=top,
                       confidence=np.array([[0.45, 0.71, 0.7], [0.1, 0.2, 0.3]]),
                       click=np.array([[np.nan, np.nan, 0.3], [np.nan, np.nan, 0.8]]))


def _slots(task: str, images: str = SLOT_TEXT["images"]) -> PromptSlots:
    return PromptSlots(**{k: SLOT_TEXT[k] for k in SLOTS[task] if k != "tool_outputs"} | {"images": images})


def _instruction(template_id: int = 2, task: str = "sequential", images: str = SLOT_TEXT["images"]) -> Instruction:
    return Instruction.from_slots(task, template_id, _slots(task, images), user_idx=4, evidence_horizon=0.82,
                                  image_items=[4, 7][:images.count("<image>")],
                                  thought=format_thought(0.82, 0.21, []), answer="<item_9>", target_item=9,
                                  candidates=[3, 9, 10], usable_tools=["gru4rec"])


@pytest.mark.parametrize("task", sorted(SLOTS))
@pytest.mark.parametrize("images", ["<image><image>", ""])
def test_refine_is_the_first_pass_rendered_with_the_hints(task, images):
    for template_id in range(N_TEMPLATES):
        first = _instruction(template_id, task, images)
        assert first.prompt == render(task, template_id, _slots(task, images))
        refined = refine_instruction(first, _outputs(), 0, [2, 0])
        assert refined.prompt == render(task, template_id, replace(_slots(task, images), tool_outputs=HINTS))
        assert refined.slots == replace(first.slots, tool_outputs=HINTS)
        other = refine_instruction(refined, _outputs(), 1, [1])   # hints already there are replaced
        assert other.prompt == render(task, template_id, replace(_slots(task, images),
                                                                 tool_outputs="Tool hints: <tool_sasrec> <item_3> "
                                                                              "<item_4> <item_5> <conf_2>."))
        assert refine_instruction(other, _outputs(), 1, []).prompt == first.prompt   # and can be taken out


def test_refine_splices_the_hints_into_the_first_pass_text():
    """Written out once: the first pass with the hints where the template's {tool_outputs} stands."""
    first = _instruction(2)
    assert first.prompt == (
        "Oldest to newest, this user picked <image><image> <item_4> Mr. Holland's Opus. <item_7> Who? {What} "
        "<item_12> Tool hints: <tool_x> <item_1>.. Their evidence horizon is 0.42. What will they pick next?")
    assert refine_instruction(first, _outputs(), 0, [0, 2]).prompt == (
        "Oldest to newest, this user picked <image><image> <item_4> Mr. Holland's Opus. <item_7> Who? {What} "
        "<item_12> Tool hints: <tool_x> <item_1>.. Their evidence horizon is 0.42. " + HINTS +
        " What will they pick next?")


def test_refine_refuses_a_record_without_slots():
    ins = replace(_instruction(), slots=None)
    with pytest.raises(ValueError, match="no slots"):
        refine_instruction(ins, _outputs(), 0, [0])


def test_refine_instruction_shows_outputs_like_training():
    ins = _instruction()
    out = refine_instruction(ins, _outputs(), 0, [2, 0])
    assert out.prompt == render("sequential", 2, replace(_slots("sequential"), tool_outputs=HINTS))
    assert out.consulted_tools == ["gru4rec", "dlrm"] and out.noisy_tools == []
    parsed = parse_generation(out.thought)
    assert parsed.ok and parsed.tools == ["gru4rec", "dlrm"] and parsed.eh == pytest.approx(0.82)
    assert parsed.confidence == pytest.approx(0.25)   # the stated bin is kept
    # Everything else is the original record; the original is not modified.
    assert (out.user_idx, out.target_item, out.candidates, out.image_items, out.usable_tools) == \
        (4, 9, [3, 9, 10], [4, 7], ["gru4rec"])
    assert ins.consulted_tools == [] and ins.slots.tool_outputs == "" and HINTS not in ins.prompt


def test_refine_without_columns_strips_hints_for_a_first_pass():
    hinted = refine_instruction(_instruction(), _outputs(), 1, [0, 1])
    assert "<tool_gru4rec>" in hinted.prompt
    clean = refine_instruction(hinted, _outputs(), 1, [])
    assert clean.prompt == _instruction().prompt and clean.consulted_tools == []
    assert parse_generation(clean.thought).tools == []


def test_refine_batch_rows_line_up():
    ins = [_instruction(1), _instruction(5)]
    consulted = np.array([[False, True, False], [True, True, False]])
    out = refine(ins, _outputs(), consulted)
    assert [o.consulted_tools for o in out] == [["sasrec"], ["gru4rec", "sasrec"]]
    assert "<tool_sasrec> <item_5> <item_6> <item_7> <conf_7>." in out[0].prompt
    assert "<tool_gru4rec> <item_8> <item_2> <item_0> <conf_1>; <tool_sasrec> <item_3>" in out[1].prompt
    with pytest.raises(ValueError, match="consulted must be"):
        refine(ins, _outputs(), consulted[:1])


def test_merge_keeps_the_vlm_answer_and_falls_back_to_the_vote():
    candidates = np.array([[10, 11, 12, 13], [10, 11, 12, 13], [10, 11, 12, -1]])
    vlm = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.3, 1.0]]))
    vlm[2, 3] = -np.inf
    # Tool A prefers column 1 on a huge scale; B and C prefer column 2: the z-scored vote follows B and C.
    tool = np.array([[0.0, 1e6, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    tool_scores = np.stack([tool, tool, tool])
    consulted = np.array([[True, True, True], [True, True, True], [False, False, False]])
    merged = merge(vlm, candidates, np.array([True, False, False]), tool_scores, consulted)
    assert merged.source.tolist() == ["vlm", "tool_vote", "vlm_unparsed"]
    assert merged.top_item.tolist() == [10, 12, 11]
    assert np.array_equal(merged.scores[0], vlm[0])                  # the VLM answer is untouched
    assert merged.scores[2, 3] == -np.inf                            # padding stays padding
    assert np.argsort(-merged.scores[1], kind="stable").tolist()[:2] == [2, 1]
    # Only the consulted tools vote: with A alone, column 1 wins.
    only_a = merge(vlm[:2], candidates[:2], np.array([False, False]), tool_scores[:2],
                   np.array([[True, False, False], [True, False, False]]))
    assert only_a.top_item.tolist() == [11, 11]


def test_merge_ignores_padding_and_unscorable_items_in_the_vote():
    candidates = np.array([[1, 2, 3, -1]])
    tool = np.array([[[5.0, -np.inf, 4.0, 99.0]]])   # the padding score is never a vote; -inf votes last
    merged = merge(np.zeros((1, 4)), candidates, np.array([False]), tool, np.array([[True]]))
    assert merged.top_item.tolist() == [1]
    order = np.argsort(-merged.scores[0], kind="stable").tolist()
    assert order == [0, 2, 1, 3]


def test_merge_ctr_majority_with_mean_on_a_tie():
    click = np.array([[0.9, 0.6, 0.1], [0.9, 0.2, 0.5], [0.8, 0.1, 0.4], [0.2, 0.2, 0.2]])
    consulted = np.array([[True, True, True], [True, True, False], [True, True, True], [False, False, False]])
    prob, source = merge_ctr(np.array([0.05, 0.05, 0.9, 0.3]), np.array([False, False, True, False]), click,
                             consulted)
    # row 0: 2 of 3 say click; row 1: a 1-1 tie -> mean 0.55; row 2: the VLM parsed; row 3: nothing to ask.
    assert prob.tolist() == pytest.approx([2 / 3, 0.55, 0.9, 0.3])
    assert source.tolist() == ["tool_vote", "tool_vote", "vlm", "vlm_unparsed"]


def test_rationale_per_route():
    cfg = RouterConfig(tau_low=0.3, tau_high=0.7, tau_tool=0.5, tau_conf=0.3)
    d = decide(np.array([0.12, 0.12, 0.45, 0.82, 0.5, 0.5]), np.array([0.64, 0.2, 0.9, 0.9, 0.9, 0.9]),
               np.array([np.nan, 0.62, 0.62, 0.21, 0.8, 0.8]), np.array([True, True, True, True, False, False]), cfg)
    consulted = [[], [], [], ["sasrec", "lightgcn"], ["sasrec"], []]
    source = ["", "", "", "vlm", "tool_vote", "vlm_unparsed"]
    lines = rationale(d, cfg, "sasrec", consulted, source)
    assert lines == [
        "EH 0.12 < 0.30 low; sasrec conf 0.64 >= 0.50; sasrec answered alone",
        "EH 0.12 < 0.30 low; sasrec conf 0.20 < 0.50; VLM conf 0.62 >= 0.30; VLM answered alone",
        "EH 0.45 medium; VLM conf 0.62 >= 0.30; VLM answered alone",
        "EH 0.82 > 0.70 high; VLM conf 0.21 < 0.30; consulted sasrec, lightgcn; kept VLM answer",
        "EH 0.50 medium; VLM output malformed; consulted sasrec; refined pass malformed: majority vote of sasrec",
        "EH 0.50 medium; VLM output malformed; no tool to consult; refined pass malformed and no tool to fall back "
        "on: kept VLM answer",
    ]
    assert rationale(d, cfg)[3] == "EH 0.82 > 0.70 high; VLM conf 0.21 < 0.30; second pass pending"
