"""The explanation table: baselines on a hand-made case, metric values on known texts, and every row on a tiny
prepared synthetic set with an untrained tiny VLM laid out as a train_vlm run (real Bundle, real scorer)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.system import resolve
from reasonrec.recommend.config import RecommendConfig
from reasonrec.report.explanation import (_row, cut_review, explanation_pairs, explanation_rows, markdown_table,
                                          retrieval_texts, seen_in_user_train, template_texts)
from reasonrec.tools.data import ToolData
from reasonrec.vlm.build import build_tiny_vlm
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.model_config import VLMModelConfig

# ---------------------------------------------------------------------------------------- hand-made baselines


def _hand_data() -> SimpleNamespace:
    train = pd.DataFrame([
        (0, 1, 1, "bright colours and sharp print"),
        (0, 3, 2, "fits well"),
        (1, 2, 1, "bright screen, sharp picture"),
        (2, 2, 1, "the screen cracked after a week"),
        (1, 5, 2, "older review of mine"),
        (1, 4, 3, "   my  latest\ttraining review  "),
        (4, 0, 1, ""),                                 # no text: never retrieved
    ], columns=["user_idx", "item_idx", "timestamp", "review"])
    # Held-out parts hold the text that would match best: the baseline must never return it.
    leak = "bright colours and sharp print LEAK"
    test = pd.DataFrame([(0, 2, 9, leak), (3, 2, 9, leak), (1, 7, 9, leak)],
                        columns=["user_idx", "item_idx", "timestamp", "review"])
    items = pd.DataFrame({"item_idx": range(8), "title": [f"Item  {i} title" for i in range(8)]})
    return SimpleNamespace(split=SimpleNamespace(train=train, valid=test.copy(), test=test),
                           dataset=SimpleNamespace(items=items))


def test_template_fills_from_the_item_title():
    assert template_texts(_hand_data(), [3, 0]) == ["I like this Item 3 title.", "I like this Item 0 title."]


def test_retrieval_uses_training_reviews_only():
    data = _hand_data()
    # (0, 2): user 0's own reviews are nearest to user 1's review of item 2; (3, 2): user 3 has no training
    # review: a review of item 2 by another user; (1, 7): nobody else reviewed item 7, user 1's latest review;
    # (5, 6): nothing at all, the template.
    texts, sources = retrieval_texts(data, [0, 3, 1, 5], [2, 2, 7, 6], limit=160)
    assert texts[0] == "bright screen, sharp picture"
    assert texts[1] in {"bright screen, sharp picture", "the screen cracked after a week"}
    assert texts[2] == "my latest training review"
    assert texts[3] == "I like this Item 6 title."
    assert sources == {"same item, other user": 1, "same item, other user (item centroid)": 1,
                       "user's own latest": 1, "template": 1}
    assert not any("LEAK" in t for t in texts)
    # a user's own review of the item is never "another user's" review
    texts, sources = retrieval_texts(data, [1], [2], limit=160)
    assert texts == ["the screen cracked after a week"]


def test_cut_review_matches_the_instruction_builder():
    assert cut_review("  a  b\nc ", 160) == "a b c"
    assert cut_review("one two three", 9) == "one two"
    assert cut_review(None, 10) == ""


def test_metric_values_on_known_texts():
    refs = ["the scent is light and fresh", "great value for the price"]
    same = _row("x", "baseline", refs, refs, 0.0)
    assert same["BLEU-4"] == pytest.approx(100.0) and same["ROUGE-L"] == pytest.approx(100.0)
    assert same["pairs"] == 2 and same["empty"] == 0 and same["exact"] == 2
    disjoint = _row("x", "baseline", ["alpha beta gamma delta epsilon", ""], refs, 0.0)
    assert disjoint["BLEU-4"] == 0.0 and disjoint["ROUGE-L"] == 0.0 and disjoint["empty"] == 1
    assert disjoint["exact"] == 0


def test_seen_in_user_train_flags_references_the_user_already_wrote():
    data = _hand_data()
    pairs = [SimpleNamespace(user_idx=1, answer="my latest training review"),   # user 1's own train text
             SimpleNamespace(user_idx=0, answer="my latest training review"),   # someone else's text
             SimpleNamespace(user_idx=3, answer="fits well")]                   # user 3 has no train text
    assert seen_in_user_train(data, pairs, 160).tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------- a tiny VLM world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("explain-world")
    dataset = root / "dataset"
    prepare(PrepareConfig.model_validate({
        "out": str(dataset), "name": "synthetic",
        "source": {"kind": "synthetic", "synthetic": {"n_users": 30, "n_items": 120}},
        "splits": {"protocols": ["loo"]}, "candidates": {"ranking_negatives": [9]}}))
    data = ToolData.load(str(dataset), "loo", 9)
    model_cfg = VLMModelConfig(image_size=32)
    corpus = [f"USER: History: <item_{i}> item {i}. Why this item? ASSISTANT: EH: 0.50 | Confidence: <conf_3> | "
              f"Tools: <tool_none> | Answer: I chose this for its colour" for i in range(data.n_items)]
    vlms = {}
    for name, tasks in (("explain", ["sequential", "explanation"]), ("seq", ["sequential"])):
        vlm_dir = root / name
        build_tiny_vlm(vlm_dir / "model", data.n_items, [], corpus, model_cfg)
        settings = {"dataset": str(dataset), "split": "loo", "tools_dir": None,
                    "instructions": InstructionConfig(tasks=tasks, max_history=4).model_dump(mode="json"),
                    "model": model_cfg.model_dump(mode="json")}
        (vlm_dir / "run.json").write_text(json.dumps({"settings": settings, "plan": {}}))
        vlms[name] = str(vlm_dir)
    return {"dataset": str(dataset), "data": data, **vlms}


def _bundle(world: dict, vlm: str) -> Bundle:
    return Bundle(resolve(RecommendConfig(dataset=world["dataset"], vlm_dir=world[vlm], device="cpu", policy="config",
                                          vlm_batch_size=8)))


def test_every_row_on_the_same_test_pairs(world):
    data = world["data"]
    bundle = _bundle(world, "explain")
    rows = explanation_rows(bundle, data, max_pairs=12, seed=1, max_new_tokens=6)
    assert [r["model"] for r in rows] == ["template", "retrieval", "VLM-only", "ReasonRec"]
    with_text = int(data.split.test["review"].map(lambda t: bool(str(t).strip())).sum())
    assert with_text >= 12
    for row in rows:
        assert row["pairs"] == 12
        assert math.isfinite(row["BLEU-4"]) and 0.0 <= row["BLEU-4"] <= 100.0
        assert math.isfinite(row["ROUGE-L"]) and 0.0 <= row["ROUGE-L"] <= 100.0
        assert 0 <= row["empty"] <= 12
    assert rows[2]["max_new_tokens"] == 6 and "rebuilt without tools" in rows[2]["note"]
    assert 0 <= rows[3]["same_as_vlm_only"] <= 12
    # the whole test part without max_pairs, and the seeded subset is a stable subset of it
    pairs, _ = explanation_pairs(bundle, data)
    assert len(pairs) == with_text
    subset, _ = explanation_pairs(bundle, data, max_pairs=12, seed=1)
    assert subset == explanation_pairs(bundle, data, max_pairs=12, seed=1)[0]
    assert all(p in pairs for p in subset)
    # references are the held-out test reviews, cut as the builder cuts them
    test = data.split.test.set_index(["user_idx", "item_idx"])["review"]
    limit = bundle.instruction_config.review_max_chars
    assert all(p.answer == cut_review(test.loc[(p.user_idx, p.target_item)], limit) for p in subset)
    seen = int(seen_in_user_train(data, subset, limit).sum())
    assert all(r["seen_in_user_train"] == seen for r in rows)
    lines = markdown_table(rows)
    assert lines[0].startswith(f"{seen} of 12 references")
    assert len(lines) == 2 + 2 + 4 and lines[2].startswith("| model | kind | pairs | BLEU-4 | ROUGE-L")


def test_drop_seen_scores_only_pairs_the_user_never_wrote(world):
    data = world["data"]
    bundle = _bundle(world, "explain")
    pairs, _ = explanation_pairs(bundle, data)
    seen = seen_in_user_train(data, pairs, bundle.instruction_config.review_max_chars)
    assert 0 < seen.sum() < len(pairs)      # the synthetic reviews are templated: some repeat per user
    rows = explanation_rows(bundle, data, max_new_tokens=2, drop_seen=True)
    assert {r["pairs"] for r in rows} == {len(pairs) - int(seen.sum())}
    assert {r["dropped_seen"] for r in rows} == {int(seen.sum())} and {r["seen_in_user_train"] for r in rows} == {0}


def test_a_vlm_without_the_explanation_task_gets_a_note(world):
    rows = explanation_rows(_bundle(world, "seq"), world["data"], max_pairs=5)
    assert [r["model"] for r in rows] == ["template", "retrieval", "VLM-only", "ReasonRec"]
    assert "not trained on explanation" in rows[2]["note"] and "BLEU-4" not in rows[2]


def test_the_vlm_split_must_be_the_pairs_split(world, tmp_path):
    bundle = _bundle(world, "explain")
    bundle.settings = {**bundle.settings, "split": "random"}
    with pytest.raises(ValueError, match="trained on split 'random'.*'loo'"):
        explanation_pairs(bundle, world["data"])


def test_saved_instructions_must_match_the_rebuilt_pairs(world, tmp_path):
    from reasonrec.vlm.instructions import write_instructions

    bundle = _bundle(world, "explain")
    pairs, _ = explanation_pairs(bundle, world["data"])
    saved = Path(world["explain"]) / "instructions" / "test.parquet"
    try:
        write_instructions(pairs, str(saved))
        assert explanation_pairs(bundle, world["data"])[1] == "the run's instructions/test.parquet"
        write_instructions(pairs[1:], str(saved))
        with pytest.raises(ValueError, match="test.parquet: its explanation instructions are not the test pairs"):
            explanation_pairs(bundle, world["data"])
    finally:
        saved.unlink()
