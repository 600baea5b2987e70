"""Instruction building on the synthetic fixture: targets, histories without leaks, candidates, thoughts,
tool consulting, ablations, determinism (byte-identical Parquet), storage, and a real-data check."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasonrec.config import load_config
from reasonrec.data.candidates import read_candidates
from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.io import join
from reasonrec.recommend.requests import InstructionWriter, split_requests
from reasonrec.router.refine import refine
from reasonrec.tools.base import ToolConfig
from reasonrec.tools.data import ToolData
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.instructions import (build_instructions, instruction_stats, read_instructions,
                                        read_split_evidence, teacher_confidence, write_instructions)
from reasonrec.vlm.records import INSTRUCTION_SCHEMA, Instruction
from reasonrec.vlm.templates import SLOTS, ItemText, render
from reasonrec.vlm.thought import parse_generation
from reasonrec.vlm.tokens import IMAGE_TOKEN, NO, YES, conf_token, item_token
from reasonrec.vlm.tool_labels import TOOL_HINTS, label_ranking, ranking_tools, show_outputs
from tests.vlm.conftest import LowIdTool, user_items

REPO_ROOT = Path(__file__).resolve().parents[2]
ITEM = re.compile(r"<item_(\d+)>")
HINTS = re.compile(re.escape(TOOL_HINTS) + r"[^.]*\.")
CFG = InstructionConfig()


@pytest.fixture(scope="module")
def tools(fake_tools, bpr_tool):
    return {**fake_tools, "bpr_mf": bpr_tool}


@pytest.fixture(scope="module")
def built(vlm_data, vlm_evidence, tools) -> dict[str, list[Instruction]]:
    return {part: build_instructions(vlm_data, vlm_evidence, part, CFG, tools) for part in ("train", "valid", "test")}


def of_task(instructions: list[Instruction], task: str) -> list[Instruction]:
    return [ins for ins in instructions if ins.task == task]


def history_ids(ins: Instruction) -> list[int]:
    """Item ids the prompt shows as history: every item token except tool hints, candidates and the asked item."""
    other = set(ins.candidates) | ({ins.target_item} if ins.task in ("ctr", "explanation") else set())
    return [int(i) for i in ITEM.findall(HINTS.sub("", ins.prompt)) if int(i) not in other]


def allowed_history(data: ToolData, ins: Instruction, part: str) -> np.ndarray:
    """What an instance may show: train items before the target (train), train (valid), train + valid (test)."""
    if ins.task == "ctr":
        return user_items(data.histories("ctr_train+valid" if part == "test" else "ctr_train"), ins.user_idx)
    if part == "train":
        seq = user_items(data.train, ins.user_idx)
        return seq[:int(np.flatnonzero(seq == ins.target_item)[0])]
    return user_items(data.train if part == "valid" else data.train_valid, ins.user_idx)


def test_no_repeats_in_fixture(vlm_data):
    """The exact history checks below assume a user never interacts with an item twice."""
    frame = vlm_data.dataset.interactions
    assert not frame.duplicated(["user_idx", "item_idx"]).any()


def test_train_targets_slide_back_from_the_last_train_item(vlm_data, built):
    expected = set()
    for user in range(vlm_data.n_users):
        seq = user_items(vlm_data.train, user)
        for p in range(max(CFG.min_history, len(seq) - CFG.targets_per_user), len(seq)):
            expected.add((user, int(seq[p])))
    for task in ("sequential", "direct"):
        rows = of_task(built["train"], task)
        assert {(ins.user_idx, ins.target_item) for ins in rows} == expected and len(rows) == len(expected)
        assert all(ins.answer == item_token(ins.target_item) for ins in rows)


@pytest.mark.parametrize("part", ["train", "valid", "test"])
def test_histories_are_exactly_the_prefix_and_never_leak(vlm_data, built, part):
    for ins in built[part]:
        allowed = allowed_history(vlm_data, ins, part)
        if ins.task == "ctr" and part == "train":
            allowed = allowed[allowed != ins.target_item]
        shown = history_ids(ins)
        if ins.task != "ctr":  # (ctr train histories also lose the ranking holdout items, checked below)
            assert shown == allowed[-CFG.max_history:].tolist(), ins.prompt
        assert set(shown) <= set(allowed.tolist())
        assert set(ins.image_items) <= set(allowed.tolist())
        assert ins.prompt.count(IMAGE_TOKEN) == len(ins.image_items) <= CFG.max_images
        if ins.task != "ctr":
            assert ins.target_item not in shown


def test_no_valid_or_test_target_anywhere_in_train_prompts(vlm_data, vlm_evidence):
    """Without tool hints (a tool may legitimately predict a held-out item), no train prompt, answer or
    candidate list names a user's ranking valid/test item."""
    cfg = CFG.model_copy(update={"use_tools": False})
    train = build_instructions(vlm_data, vlm_evidence, "train", cfg, None)
    held_out = {}
    for frame in (vlm_data.split.valid, vlm_data.split.test):
        for user, item in zip(frame["user_idx"], frame["item_idx"]):
            held_out.setdefault(int(user), set()).add(int(item))
    assert {ins.task for ins in train} == {"sequential", "direct", "ctr", "explanation"}
    for ins in train:
        named = {int(i) for i in ITEM.findall(ins.prompt + " " + ins.answer)} | set(ins.candidates)
        named.add(ins.target_item)
        assert not named & held_out.get(ins.user_idx, set()), (ins.task, ins.prompt)


def test_direct_lists(vlm_data, built):
    for ins in of_task(built["train"], "direct"):
        assert len(ins.candidates) == CFG.train_direct_negatives + 1 and ins.candidates.count(ins.target_item) == 1
        negatives = set(ins.candidates) - {ins.target_item}
        assert not negatives & set(user_items(vlm_data.everything, ins.user_idx).tolist())
        assert " ".join(item_token(i) for i in ins.candidates) in ins.prompt
    root = join(vlm_data.dataset.root, "splits", vlm_data.split.name, "candidates")
    for part in ("valid", "test"):
        fixed = read_candidates(join(root, "neg9", f"{part}.parquet"))
        rows = of_task(built[part], "direct")
        assert [ins.candidates for ins in rows] == [list(c) for c in fixed["candidates"]]
        assert [ins.target_item for ins in rows] == fixed["target_item_idx"].tolist()
        sequential = of_task(built[part], "sequential")
        full = vlm_data.valid_candidates if part == "valid" else vlm_data.test_candidates
        assert [ins.candidates for ins in sequential] == [list(c) for c in full["candidates"]]
    assert all(ins.candidates == [] for ins in of_task(built["train"], "sequential"))


def test_ctr_rows(vlm_data, built):
    holdout = {(int(u), int(i)) for f in (vlm_data.split.valid, vlm_data.split.test)
               for u, i in zip(f["user_idx"], f["item_idx"])}
    train = of_task(built["train"], "ctr")
    per_user = np.bincount([ins.user_idx for ins in train], minlength=vlm_data.n_users)
    assert per_user.max() == CFG.ctr_train_rows_per_user
    for ins in train:
        assert (ins.user_idx, ins.target_item) not in holdout
        assert ins.target_item not in history_ids(ins)
        assert not {(ins.user_idx, i) for i in history_ids(ins)} & holdout
    for part in ("train", "valid", "test"):
        rows = of_task(built[part], "ctr")
        assert {ins.label for ins in rows} == {0.0, 1.0}
        assert all(ins.answer == (YES if ins.label == 1 else NO) for ins in rows)
        assert all(item_token(ins.target_item) in ins.prompt for ins in rows)
    assert len(of_task(built["test"], "ctr")) == len(vlm_data.ctr["test"])


def test_explanations_are_the_users_reviews(vlm_data, built):
    frame = vlm_data.split.train
    reviews = {(int(u), int(i)): " ".join(str(r).split()) for u, i, r in
               zip(frame["user_idx"], frame["item_idx"], frame["review"]) if isinstance(r, str)}
    rows = of_task(built["train"], "explanation")
    assert rows
    for ins in rows:
        full = reviews[(ins.user_idx, ins.target_item)]
        assert 0 < len(ins.answer) <= CFG.review_max_chars and full.startswith(ins.answer)
        assert ins.consulted_tools == [] and TOOL_HINTS not in ins.prompt


def test_thoughts_parse_and_follow_the_labels(built, vlm_evidence):
    eh = vlm_evidence.set_index("user_idx")["evidence_horizon"]
    for rows in built.values():
        for ins in rows:
            parsed = parse_generation(ins.thought + " " + ins.answer, ins.task)
            assert parsed.ok, (parsed.error, ins.thought, ins.answer)
            assert ins.evidence_horizon == eh[ins.user_idx] and f"{ins.evidence_horizon:.2f}" in ins.prompt
            assert parsed.eh == pytest.approx(round(ins.evidence_horizon, 2))
            assert set(parsed.tools) == set(ins.consulted_tools) & set(ins.usable_tools) - set(ins.noisy_tools)
            assert set(ins.noisy_tools) <= set(ins.consulted_tools)
            n_tools = 1 if ins.task == "ctr" else 2  # parity | low_id and bpr_mf
            share = len(ins.usable_tools) / n_tools
            expected = teacher_confidence(share, ins.evidence_horizon, CFG.confidence_tool_weight)
            assert f"Confidence: {conf_token(float(expected))}" in ins.thought


def test_confidence_tracks_how_easy_the_answer_is(built):
    """Instances some tool finds get a higher stated confidence than those no tool finds."""
    rows = [ins for ins in built["train"] if ins.task == "sequential"]
    conf = {True: [], False: []}
    for ins in rows:
        conf[bool(ins.usable_tools)].append(parse_generation(ins.thought + " x").confidence)
    assert conf[True] and conf[False]
    assert np.mean(conf[True]) > np.mean(conf[False]) + 0.2


def test_consulting_rules(built):
    rows = [ins for part in built.values() for ins in part if ins.task != "explanation"]
    high = [ins for ins in rows if ins.evidence_horizon > CFG.curriculum.tau_high]
    rest = [ins for ins in rows if ins.evidence_horizon <= CFG.curriculum.tau_high]
    assert high and all(ins.consulted_tools for ins in high)
    assert np.mean([bool(ins.consulted_tools) for ins in rest]) == pytest.approx(CFG.consult_share, abs=0.04)
    consulted = [ins for ins in rows if ins.consulted_tools]
    assert all(TOOL_HINTS in ins.prompt for ins in consulted)
    assert all(len(ins.consulted_tools) <= CFG.max_consulted for ins in consulted)
    noisy_share = sum(len(i.noisy_tools) for i in consulted) / sum(len(i.consulted_tools) for i in consulted)
    assert noisy_share == pytest.approx(CFG.noise_prob, abs=0.03)
    assert all(TOOL_HINTS not in ins.prompt for ins in rows if not ins.consulted_tools)


def test_ablations(vlm_data, vlm_evidence, tools):
    cfg = CFG.model_copy(update={"use_tools": False, "templates": "single", "tasks": ["sequential", "ctr"]})
    rows = build_instructions(vlm_data, vlm_evidence, "valid", cfg, tools)
    assert {ins.task for ins in rows} == {"sequential", "ctr"}
    assert all(ins.template_id == 0 for ins in rows)
    assert all("Tools: <tool_none>" in ins.thought and ins.consulted_tools == [] for ins in rows)
    assert all(TOOL_HINTS not in ins.prompt for ins in rows)
    assert any(ins.usable_tools for ins in rows)  # labels still computed: they set the teacher confidence
    no_tools = build_instructions(vlm_data, vlm_evidence, "valid", cfg, None)
    assert all(ins.usable_tools == [] and f"Confidence: {conf_token(1 - ins.evidence_horizon)}" in ins.thought
               for ins in no_tools)
    mixture = build_instructions(vlm_data, vlm_evidence, "valid", CFG.model_copy(update={"tasks": ["direct"]}))
    assert len({ins.template_id for ins in mixture}) == 10


def test_deterministic_bytes_and_round_trip(vlm_data, vlm_evidence, tools, built, tmp_path):
    again = build_instructions(vlm_data, vlm_evidence, "train", CFG, dict(reversed(list(tools.items()))))
    write_instructions(built["train"], str(tmp_path / "a" / "train.parquet"))
    write_instructions(again, str(tmp_path / "b" / "train.parquet"))
    assert (tmp_path / "a" / "train.parquet").read_bytes() == (tmp_path / "b" / "train.parquet").read_bytes()
    back = read_instructions(str(tmp_path / "a" / "train.parquet"))
    assert len(back) == len(built["train"])
    for read, original in zip(back, built["train"]):
        a, b = read.to_row(), original.to_row()
        assert math.isnan(a.pop("label")) == math.isnan(b.pop("label")) or read.label == original.label
        assert a == b
    other_seed = build_instructions(vlm_data, vlm_evidence, "train", CFG.model_copy(update={"seed": 1}), tools)
    assert [i.prompt for i in other_seed] != [i.prompt for i in built["train"]]


def test_every_record_keeps_the_slots_its_prompt_was_rendered_from(built):
    for part, rows in built.items():
        for ins in rows:
            assert ins.slots is not None and ins.slots.names() == SLOTS[ins.task], (part, ins.task)
            assert ins.prompt == render(ins.task, ins.template_id, ins.slots)
            assert (ins.slots.tool_outputs != "") == bool(ins.consulted_tools)


def test_a_file_written_before_slots_were_stored_reads_back_without_them(built, tmp_path):
    """Instruction files built before the slots column (e.g. a reused run folder) still read."""
    rows = built["valid"][:40]
    old_schema = pa.schema([f for f in INSTRUCTION_SCHEMA if f.name != "slots"])
    table = pa.Table.from_pylist([{k: v for k, v in ins.to_row().items() if k != "slots"} for ins in rows],
                                 schema=old_schema)
    pq.write_table(table, tmp_path / "old.parquet")
    back = read_instructions(str(tmp_path / "old.parquet"))
    assert [ins.slots for ins in back] == [None] * len(rows)
    assert [ins.prompt for ins in back] == [ins.prompt for ins in rows]
    assert [replace(ins, slots=None, label=0.0) for ins in back] == [replace(ins, slots=None, label=0.0)
                                                                      for ins in rows]


def test_the_nightly_writer_and_its_refine_pass_render_the_slots_training_rendered(vlm_data, vlm_evidence, built):
    """InstructionWriter (tonight's first pass) on the test part's requests holds the very slots the built test
    records hold (same history, images and EH; only the template key differs), and refine shows the hints
    through the same renderer."""
    eh = np.ones(vlm_data.n_users)
    eh[vlm_evidence["user_idx"].to_numpy()] = vlm_evidence["evidence_horizon"].to_numpy()
    requests = split_requests(vlm_data, "test", eh)
    first = InstructionWriter(ItemText.from_dataset(vlm_data.dataset, CFG.title_max_chars), CFG).sequential(requests)
    trained = of_task(built["test"], "sequential")
    assert len(first) == len(trained) > 0
    for nightly, ins in zip(first, trained):
        assert nightly.user_idx == ins.user_idx
        assert nightly.slots == replace(ins.slots, tool_outputs="") and nightly.image_items == ins.image_items
        assert nightly.prompt == render("sequential", nightly.template_id, nightly.slots)
    outputs = label_ranking(ranking_tools({"low_id": LowIdTool(ToolConfig(max_len=20), vlm_data.n_users,
                                                               vlm_data.n_items)}),
                            requests.user_idx, requests.histories(), requests.targets, vlm_data.n_items)
    for row, second in enumerate(refine(first, outputs, np.ones((len(first), 1), dtype=bool))):
        hints = show_outputs(outputs, row, [0], [False], np.random.default_rng(0), 0, -1)
        assert hints.startswith(TOOL_HINTS) and second.consulted_tools == ["low_id"]
        assert second.prompt == render("sequential", first[row].template_id,
                                       replace(first[row].slots, tool_outputs=hints))


def test_s3_round_trip(built, s3_endpoint):  # noqa: F811
    write_instructions(built["valid"][:50], "s3://rr-test/instructions/valid.parquet")
    back = read_instructions("s3://rr-test/instructions/valid.parquet")
    assert [i.prompt for i in back] == [i.prompt for i in built["valid"][:50]]


def test_prompts_stay_short(built):
    for part, rows in built.items():
        for task, stats in instruction_stats(rows).items():
            assert stats["pieces_max"] < 160, (part, task, stats)


@pytest.mark.real_data
def test_real_movielens_slice(shared_data, tmp_path):
    """ml-latest-small with posters, prepared from ../shared/data (no tools): counts, no leaks, prompt lengths."""
    cfg_path = REPO_ROOT / "configs" / "ml-latest-small.yaml"   # its prepare section
    prepare(load_config(PrepareConfig, cfg_path, [
        f"out={tmp_path / 'ml'}", "splits.protocols=[loo]",
        f"source.path={shared_data / 'ml-latest-small'}",
        f"source.images={shared_data / 'movielens-posters' / 'posters'}"]))
    data = ToolData.load(str(tmp_path / "ml"))
    evidence = read_split_evidence(data)
    cfg = CFG.model_copy(update={"tasks": ["sequential", "direct", "explanation"]})
    for part in ("train", "test"):
        rows = build_instructions(data, evidence, part, cfg)
        assert not of_task(rows, "explanation")  # MovieLens has no review text
        stats = instruction_stats(rows)
        assert stats["sequential"]["count"] == (len(data.test_candidates) if part == "test" else
                                                sum(min(2, max(0, n - 1)) for n in data.train.lengths()))
        assert stats["direct"]["pieces_max"] < 200 and stats["sequential"]["images_mean"] > 1
        for ins in rows:
            assert set(history_ids(ins)) <= set(allowed_history(data, ins, part).tolist())
            if part == "test":
                assert ins.target_item not in user_items(data.train_valid, ins.user_idx)


def test_cover_history_adds_targets_whose_windows_cover_the_whole_train_sequence():
    from reasonrec.vlm.instructions import train_target_positions

    cfg = InstructionConfig(targets_per_user=3, max_history=10, cover_history=True)
    for length in (1, 2, 5, 13, 14, 40, 101):
        positions = train_target_positions(length, cfg)
        assert positions == sorted(set(positions)) and all(cfg.min_history <= p < length for p in positions)
        assert positions[-3:] == list(range(max(1, length - 3), length))[-3:]
        shown = set()  # items some target's window (its max_history items before it) shows as history
        for p in positions:
            shown.update(range(max(0, p - cfg.max_history), p))
        assert shown == set(range(length - 1))   # every train item but the last is someone's history
    assert train_target_positions(40, InstructionConfig(targets_per_user=3, max_history=10)) == [37, 38, 39]


def test_thought_tools_consulted_lists_every_shown_tool_and_changes_nothing_else(vlm_data, vlm_evidence, tools):
    cfg = InstructionConfig(tasks=["sequential"], thought_tools="consulted")
    usable = build_instructions(vlm_data, vlm_evidence, "train", InstructionConfig(tasks=["sequential"]), tools)
    consulted = build_instructions(vlm_data, vlm_evidence, "train", cfg, tools)
    assert len(usable) == len(consulted) and any(ins.consulted_tools for ins in consulted)
    for a, b in zip(usable, consulted):
        assert (a.prompt, a.answer, a.consulted_tools, a.noisy_tools) == (b.prompt, b.answer, b.consulted_tools,
                                                                          b.noisy_tools)
        assert parse_generation(b.thought + " " + b.answer).tools == (b.consulted_tools or [])
        assert parse_generation(a.thought + " x").confidence == parse_generation(b.thought + " x").confidence
    assert any(a.thought != b.thought for a, b in zip(usable, consulted))   # some shown tool was not usable
