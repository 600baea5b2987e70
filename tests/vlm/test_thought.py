"""The thought format, its parser on good and bad generations, and a fuzz: the parser never raises."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.vlm.thought import ParsedThought, format_thought, parse_generation


def test_format_thought_exact_text():
    assert format_thought(0.4213, 0.53, ["sasrec", "lightgcn"]) == \
        "EH: 0.42 | Confidence: <conf_5> | Tools: <tool_sasrec> <tool_lightgcn> | Answer:"
    assert format_thought(1.0, 1.0, []) == "EH: 1.00 | Confidence: <conf_9> | Tools: <tool_none> | Answer:"


@pytest.mark.parametrize("task, answer, field, value", [
    ("sequential", "<item_12>", "answer_item", 12),
    ("direct", " <item_0> because", "answer_item", 0),
    ("ctr", "<yes>", "answer_label", 1),
    ("ctr", "<no>", "answer_label", 0),
    ("explanation", "Lovely striped vase.", "answer_text", "Lovely striped vase."),
])
def test_round_trip(task, answer, field, value):
    parsed = parse_generation(format_thought(0.42, 0.53, ["sasrec", "bpr_mf+v"]) + " " + answer, task)
    assert parsed.ok and parsed.error is None
    assert parsed.eh == pytest.approx(0.42) and parsed.confidence == pytest.approx(0.55)  # bin centre
    assert parsed.tools == ["sasrec", "bpr_mf+v"]
    assert getattr(parsed, field) == value


def test_plain_number_confidence_and_no_tool():
    parsed = parse_generation("EH: 0.9 | Confidence: 0.07 | Tools: <tool_none> | Answer: <item_3>", "sequential")
    assert parsed.ok and parsed.confidence == pytest.approx(0.07) and parsed.tools == [] and parsed.answer_item == 3


@pytest.mark.parametrize("text, reason", [
    ("", "no 'EH:'"),
    ("EH: 1.7 | Confidence: <conf_2> | Tools: <tool_none> | Answer: <item_1>", "outside [0, 1]"),
    ("EH: 0.2 | Confidence: 3 | Tools: <tool_none> | Answer: <item_1>", "outside [0, 1]"),
    ("EH: 0.2 | Confidence: high | Tools: <tool_none> | Answer: <item_1>", "Confidence"),
    ("EH: 0.2 | Confidence: <conf_2> | Tools: sasrec | Answer: <item_1>", "tool token"),
    ("EH: 0.2 | Confidence: <conf_2> | Tools: <tool_none> |", "no 'Answer:'"),
    ("EH: 0.2 | Confidence: <conf_2> | Tools: <tool_none> | Answer: maybe", "not an item token"),
])
def test_failures_are_values_with_a_reason(text, reason):
    parsed = parse_generation(text, "sequential")
    assert not parsed.ok and reason in parsed.error


def test_task_decides_which_answer_is_valid():
    text = format_thought(0.1, 0.9, []) + " <item_4>"
    assert parse_generation(text, "direct").ok
    assert not parse_generation(text, "ctr").ok          # ctr needs <yes>/<no>
    assert parse_generation(text, "explanation").ok      # any non-empty text
    assert parse_generation(text).ok                     # no task: no answer check
    assert not parse_generation(format_thought(0.1, 0.9, []), "explanation").ok  # empty answer


def test_fuzz_never_raises():
    rng = np.random.default_rng(0)
    valid = format_thought(0.42, 0.53, ["sasrec"]) + " <item_12>"
    fragments = ["EH:", "Confidence:", "Tools:", "Answer:", "|", " ", "<conf_", "<conf_9>", "<tool_", "<tool_none>",
                 "<item_", "<item_99999999999999999999>", ">", "0.", "1e999", "-", "nan", "<yes>", "<no>", "\n",
                 "\x00", "é", "\ud800", "9" * 400]
    inputs: list[object] = [None, 12, 3.5, b"", b"\xff\xfe\x00EH: 0.1", bytearray(b"Answer:"), ["EH: 0.1"]]
    inputs += [valid[:cut] for cut in range(len(valid) + 1)]
    inputs += ["".join(rng.choice(fragments, size=int(rng.integers(1, 30)))) for _ in range(1500)]
    inputs += [bytes(rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8)) for _ in range(300)]
    inputs += ["".join(chr(int(c)) for c in rng.integers(1, 0x2FFF, size=int(rng.integers(0, 100))))
               for _ in range(300)]
    for text in inputs:
        parsed = parse_generation(text, str(rng.choice(["sequential", "direct", "ctr", "explanation", "other"])))
        assert isinstance(parsed, ParsedThought)
        assert parsed.ok == (parsed.error is None)
        if parsed.eh is not None:
            assert 0.0 <= parsed.eh <= 1.0
        if parsed.confidence is not None:
            assert 0.0 <= parsed.confidence <= 1.0
    # every strict truncation of a valid generation that cuts into the item token fails, the whole one parses
    assert parse_generation(valid, "sequential").ok
    assert not any(parse_generation(valid[:cut], "sequential").ok for cut in range(len(valid) - 1))
