"""VLMScorer: the cached, left-padded reads equal unpadded full forwards at the positions training
supervised; output semantics; and a short AdamW run on a toy task makes it rank the target first."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from reasonrec.vlm import tokens
from reasonrec.vlm.build import load_vlm
from reasonrec.vlm.encode import encode_for_training
from reasonrec.vlm.model_config import VLMModelConfig
from reasonrec.vlm.scoring import VLMScorer, parse_frame
from tests.vlm.conftest_model import N_ITEMS, TOOL_NAMES, toy_instructions


def mixed_records():
    """Whole-catalogue and 1+5 rows, images, consulted tools, a CTR row and an unreadable thought."""
    records = toy_instructions(9, seed=3, image_every=3)
    records[1] = dataclasses.replace(records[1], consulted_tools=["bpr_mf", "sasrec"])
    records[4] = dataclasses.replace(records[4], consulted_tools=["sasrec"])
    records[5] = dataclasses.replace(records[5], task="ctr", answer="<yes>", label=1.0)
    records[7] = dataclasses.replace(records[7], thought="I think | Answer:")
    return records


def test_parse_frame():
    frame = parse_frame("EH: 0.42 | Confidence: <conf_5> | Tools: <tool_sasrec> <tool_bpr_mf> | Answer:")
    assert (frame.head, frame.mid, frame.sep, frame.tail) == ("EH: 0.42 | Confidence: ", " | Tools: ", " ",
                                                              " | Answer:")
    assert parse_frame("EH: 0.1 | Tools: <tool_none> | Answer:") is None


def test_batched_left_padded_reads_equal_one_row_at_a_time(tiny_model, toy_images):
    model, processor = tiny_model
    records = mixed_records()
    batched = VLMScorer(model, processor, toy_images, TOOL_NAMES, batch_size=4).score(records)
    single = VLMScorer(model, processor, toy_images, TOOL_NAMES, batch_size=1).score(records)
    for name in ("scores", "confidence", "conf_probs", "answer_prob", "tool_probs", "ctr_prob"):
        a, b = getattr(batched, name), getattr(single, name)
        assert np.array_equal(np.isfinite(a), np.isfinite(b)), name
        assert np.allclose(a[np.isfinite(a)], b[np.isfinite(b)], atol=1e-5), name
    assert np.array_equal(batched.top_item, single.top_item)
    assert np.array_equal(batched.parse_ok, single.parse_ok)


def test_reads_match_the_training_forward_at_supervised_positions(tiny_model, toy_images):
    """Force the scorer's own choices into the thought, encode it as training would, run one plain
    forward: the conf, tool and answer distributions there equal what the cached scorer read."""
    model, processor = tiny_model
    records = [r for r in mixed_records() if parse_frame(r.thought)]
    out = VLMScorer(model, processor, toy_images, TOOL_NAMES, batch_size=3).score(records)
    tok = processor.tokenizer
    conf_ids = tok.convert_tokens_to_ids(tokens.conf_tokens())
    tool_ids = tok.convert_tokens_to_ids(tokens.tool_tokens(TOOL_NAMES))
    item_ids = np.array(tok.convert_tokens_to_ids(tokens.item_tokens(N_ITEMS)))
    for i, r in enumerate(records):
        tools = r.consulted_tools or [(TOOL_NAMES + ["none"])[int(np.argmax(out.tool_probs[i]))]]
        tool_text = " ".join(tokens.tool_token(t) for t in tools)
        forced = dataclasses.replace(r, thought=f"EH: 0.42 | Confidence: <conf_{int(np.argmax(out.conf_probs[i]))}>"
                                                f" | Tools: {tool_text} | Answer:")
        batch = encode_for_training([forced], processor, toy_images, max_length=384)
        with torch.no_grad():
            logits = model(**batch).logits[0].float()
        ids = batch["input_ids"][0].tolist()
        conf_pos = next(p for p, t in enumerate(ids) if t in conf_ids)
        tool_pos = next(p for p, t in enumerate(ids) if t in tool_ids)
        answer_pos = int(batch["attention_mask"][0].sum()) - 2  # the answer token, just before </s>
        assert np.allclose(torch.softmax(logits[conf_pos - 1, conf_ids], 0).numpy(), out.conf_probs[i], atol=1e-5)
        assert np.allclose(torch.softmax(logits[tool_pos - 1, tool_ids], 0).numpy(), out.tool_probs[i], atol=1e-5)
        cands = np.array(r.candidates) if r.candidates else np.arange(N_ITEMS)
        expected = torch.log_softmax(logits[answer_pos - 1, item_ids[cands]], 0).numpy()
        assert np.allclose(expected, out.scores[i, :len(cands)], atol=1e-5)
        yes_no = torch.softmax(logits[answer_pos - 1, tok.convert_tokens_to_ids([tokens.YES, tokens.NO])], 0)
        assert np.isclose(float(yes_no[0]), out.ctr_prob[i], atol=1e-5)


def test_output_semantics(tiny_model, toy_images):
    model, processor = tiny_model
    records = mixed_records()
    scorer = VLMScorer(model, processor, toy_images, TOOL_NAMES, batch_size=4)
    out = scorer.score(records)
    n = len(records)
    assert out.scores.shape == (n, N_ITEMS) and out.tool_probs.shape == (n, len(TOOL_NAMES) + 1)
    for i, r in enumerate(records):
        width = len(r.candidates) or N_ITEMS
        assert np.isclose(np.logaddexp.reduce(out.scores[i, :width]), 0.0, atol=1e-5)  # log-softmax
        assert np.isneginf(out.scores[i, width:]).all() and (out.candidates[i, width:] == -1).all()
        assert list(out.candidates[i, :width]) == (r.candidates or list(range(N_ITEMS)))
        assert out.top_item[i] == out.candidates[i, np.argmax(out.scores[i])]
    assert np.allclose(out.answer_prob, np.exp(out.scores.max(axis=1)))
    ok = ~np.isnan(out.confidence)
    assert ok.sum() == n - 1 and np.isnan(out.tool_probs[7]).all() and not out.parse_ok[7]   # row 7 unparsable
    centres = (np.arange(tokens.CONF_BINS) + 0.5) / tokens.CONF_BINS
    assert np.allclose(out.confidence[ok], out.conf_probs[ok] @ centres)
    assert np.allclose(out.tool_probs[ok].sum(axis=1), 1.0, atol=1e-5)
    assert ((out.ctr_prob > 0) & (out.ctr_prob < 1)).all()
    assert np.allclose(scorer.ctr_probability(records[5:6]), out.ctr_prob[5:6], atol=1e-6)
    assert not out.greedy_ok.all()  # an untrained model's argmax is rarely the right kind of token
    assert (out.parse_ok >= out.greedy_ok).all()   # what greedy decoding emits in form always parses


@pytest.mark.parametrize("item_mass, parses", [(0.8, True), (0.3, False)])
def test_an_answer_parses_when_items_hold_most_mass_though_a_format_token_is_the_argmax(
        tiny_model, toy_images, monkeypatch, item_mass, parses):
    """The conf and tool reads are put in form (all mass on their kind); at the answer read </s> alone holds
    1 - item_mass and the item tokens share item_mass evenly, so </s> is the argmax token either way:
    greedy_ok is False, and parse_ok follows the item mass (KIND_MASS = 0.5)."""
    model, processor = tiny_model
    scorer = VLMScorer(model, processor, toy_images, TOOL_NAMES, batch_size=8)
    eos = processor.tokenizer.eos_token_id
    real_prefix, real_extend = VLMScorer._prefix_pass, VLMScorer._extend
    reads = []

    def only(logits, ids, mass=1.0, rest=None):
        shaped = torch.full_like(logits, -1e9)
        shaped[:, ids] = float(np.log(mass / len(ids)))
        if rest is not None:
            shaped[:, rest] = float(np.log(1 - mass))
        return shaped

    def prefix(self, rows, pixel_values):
        logits, cache, mask = real_prefix(self, rows, pixel_values)
        return only(logits, self.conf_ids), cache, mask

    def extend(self, cache, mask, rows, active):
        logits, cache, mask = real_extend(self, cache, mask, rows, active)
        reads.append(1)
        if len(reads) == 1:   # the tool read
            return only(logits, self.tool_ids), cache, mask
        return only(logits, self.item_ids, item_mass, eos), cache, mask   # the answer read

    monkeypatch.setattr(VLMScorer, "_prefix_pass", prefix)
    monkeypatch.setattr(VLMScorer, "_extend", extend)
    records = [r for r in mixed_records() if r.task == "sequential" and parse_frame(r.thought)]
    out = scorer.score(records)
    assert len(reads) == 2 and len(records) >= 4
    assert not out.greedy_ok.any()
    assert out.parse_ok.all() if parses else not out.parse_ok.any()
    # The candidate scores are read all the same: uniform over each row's candidates.
    assert np.allclose(out.scores[0][np.isfinite(out.scores[0])], out.scores[0][0], atol=1e-4)


def test_kind_mass():
    from reasonrec.vlm.scoring import kind_mass

    logits = torch.tensor([[0.0, 2.0, 1.0, 1.0, 1.0]])
    expected = 3 * np.e / (1 + np.e ** 2 + 3 * np.e)
    assert np.isclose(float(kind_mass(logits, torch.tensor([2, 3, 4]))[0]), expected, atol=1e-6)


def test_explain_and_generate_thought_return_text(tiny_model, toy_images):
    model, processor = tiny_model
    scorer = VLMScorer(model, processor, toy_images, TOOL_NAMES, batch_size=2)
    records = mixed_records()[:3]
    texts = scorer.explain(records, max_new_tokens=4)
    thoughts = scorer.generate_thought(records, max_new_tokens=4)
    assert len(texts) == len(thoughts) == 3 and all(isinstance(t, str) for t in texts + thoughts)
    assert not model.training
    # One set of reading passes for both: the same readings as score(), the same text as explain().
    out, again = scorer.score_and_explain(records, max_new_tokens=4)
    alone = scorer.score(records)
    assert again == texts
    np.testing.assert_allclose(out.scores, alone.scores, atol=1e-5)
    np.testing.assert_array_equal(out.parse_ok, alone.parse_ok)


def train_toy(model, processor, images, records, steps: int, lr: float, batch_size: int = 8, seed: int = 0) -> None:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        batch = encode_for_training([records[i] for i in rng.choice(len(records), batch_size, replace=False)],
                                    processor, images, max_length=384)
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is several times faster than two here
    yield
    torch.set_num_threads(threads)


def test_short_training_makes_the_scorer_rank_the_target_first(tiny_vlm, toy_images, one_thread):
    model, processor = load_vlm(tiny_vlm, VLMModelConfig())
    records = toy_instructions(400, seed=0, titles=False)  # fixed-offset copy: learnt in a few hundred steps
    train, test = records[:360], records[360:]
    targets = np.array([r.target_item for r in test])
    lengths = np.array([r.prompt.count("<item_") for r in test])
    scorer = VLMScorer(model, processor, toy_images, TOOL_NAMES, batch_size=20)
    before = scorer.score(test)
    assert np.mean(before.top_item == targets) < 0.35
    train_toy(model, processor, toy_images, train, steps=500, lr=3e-3)
    after = scorer.score(test)
    assert np.mean(after.top_item == targets) >= 0.8
    # Confidence and tool reads learnt their teacher rules too: bin = history length, sasrec iff even.
    assert np.mean(np.argmax(after.conf_probs, axis=1) == lengths) >= 0.9
    assert np.mean(np.argmax(after.tool_probs, axis=1) == np.where(lengths % 2 == 0, 0, 2)) >= 0.9
    assert after.parse_ok.mean() >= 0.8
    # Free generation writes a thought the router's parser reads, ending in the same item.
    from reasonrec.vlm.thought import parse_generation

    parsed = [parse_generation(text, "sequential") for text in scorer.generate_thought(test[:10], 24)]
    assert all(p.ok for p in parsed)
    assert np.mean([p.answer_item for p in parsed] == after.top_item[:10]) >= 0.8
