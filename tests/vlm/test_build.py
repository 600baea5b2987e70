"""Tiny LLaVA build, the one loading path (tiny, published-style, LoRA adapters), item-embedding init."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reasonrec.vlm import tokens
from reasonrec.vlm.build import (META_FILE, build_tiny_vlm, image_seq_length, init_item_embeddings, load_vlm,
                                 save_vlm)
from reasonrec.vlm.model_config import VLMModelConfig
from tests.vlm.conftest_model import N_ITEMS, TOOL_NAMES, toy_corpus

TEXT = "USER: History: <item_3> red ball <item_7> blue star. ASSISTANT: EH: 0.42 | Confidence: <conf_3>"


def logits_of(model, processor, text=TEXT) -> torch.Tensor:
    ids = processor.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits


def test_special_tokens_are_single_ids_in_the_fixed_order(tiny_model):
    _, processor = tiny_model
    specials = tokens.special_tokens(N_ITEMS, TOOL_NAMES)
    ids = processor.tokenizer.convert_tokens_to_ids(specials)
    assert ids == list(range(ids[0], ids[0] + len(specials)))  # added together, in the contract's order
    encoded = processor.tokenizer("a <item_19> b <conf_9><tool_bpr_mf><yes>", add_special_tokens=False)["input_ids"]
    assert ids[specials.index("<item_19>")] in encoded and ids[specials.index("<tool_bpr_mf>")] in encoded
    assert image_seq_length(processor) == 16  # (32 / 8)^2 patches; CLS dropped by the "default" strategy


def test_save_load_round_trip_gives_identical_logits(tiny_model, tmp_path):
    model, processor = tiny_model
    before = logits_of(model, processor)
    save_vlm(model, processor, tmp_path / "copy", N_ITEMS, TOOL_NAMES)
    again, processor2 = load_vlm(tmp_path / "copy", VLMModelConfig())
    assert processor2.tokenizer(TEXT)["input_ids"] == processor.tokenizer(TEXT)["input_ids"]
    assert torch.equal(logits_of(again.eval(), processor2), before)
    assert json.loads((tmp_path / "copy" / META_FILE).read_text())["n_items"] == N_ITEMS


def test_checkpoint_without_special_tokens_gets_them_with_mean_rows(tmp_path):
    from transformers import LlavaForConditionalGeneration

    cfg = VLMModelConfig()
    folder = build_tiny_vlm(tmp_path / "published", N_ITEMS, TOOL_NAMES, toy_corpus(), cfg, add_tokens=False)
    (folder / META_FILE).unlink()  # a hub checkpoint has no reasonrec.json
    with pytest.raises(ValueError, match="pass n_items and tool_names"):
        load_vlm(folder, cfg)
    raw = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    n_before = raw.get_input_embeddings().weight.shape[0]
    model, processor = load_vlm(folder, cfg, n_items=N_ITEMS, tool_names=TOOL_NAMES)
    specials = tokens.special_tokens(N_ITEMS, TOOL_NAMES)
    new_ids = processor.tokenizer.convert_tokens_to_ids(specials[1:])  # <image> was already there
    assert len(processor.tokenizer) == n_before + len(specials) - 1
    for weight, old in ((model.get_input_embeddings().weight, raw.get_input_embeddings().weight),
                        (model.get_output_embeddings().weight, raw.get_output_embeddings().weight)):
        assert weight.shape[0] == n_before + len(specials) - 1
        assert torch.equal(weight[:n_before], old)
        assert torch.allclose(weight[new_ids], old.mean(dim=0).expand(len(new_ids), -1), atol=1e-6)
    # Text without the new tokens: the old vocabulary's logits do not move.
    text = "USER: red ball blue star ASSISTANT:"
    old_logits = logits_of(raw, processor, text)
    new_logits = logits_of(model.eval(), processor, text)
    assert torch.allclose(new_logits[..., :n_before], old_logits, atol=1e-5)


def test_lora_wraps_only_language_model_q_and_v(tiny_vlm):
    cfg = VLMModelConfig.model_validate({"lora": {"enabled": True, "r": 4}})
    model, processor = load_vlm(tiny_vlm, cfg)
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    hidden, layers = cfg.tiny.text_hidden, cfg.tiny.text_layers
    lora = [n for n in trainable if "lora_" in n]
    assert lora and all("language_model" in n and (".q_proj." in n or ".v_proj." in n) for n in lora)
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n in trainable)
    n_new = len(tokens.special_tokens(N_ITEMS, TOOL_NAMES)) - 1  # every added token but <image>
    expected = layers * 2 * (2 * 4 * hidden) + 2 * n_new * hidden  # A and B per q/v, + input/output token rows
    assert sum(trainable.values()) == expected

    without = load_vlm(tiny_vlm, cfg.model_copy(update={"lora": cfg.lora.model_copy(
        update={"train_new_tokens": False})}))[0]
    assert sum(p.numel() for p in without.parameters() if p.requires_grad) == layers * 2 * (2 * 4 * hidden)


def test_lora_adapter_saves_and_loads_through_load_vlm(tiny_vlm, tmp_path):
    cfg = VLMModelConfig.model_validate({"lora": {"enabled": True, "r": 4}})
    model, processor = load_vlm(tiny_vlm, cfg)
    with torch.no_grad():  # make the adapter and token deltas non-trivial
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    before = logits_of(model, processor)
    with pytest.raises(ValueError, match="base="):
        save_vlm(model, processor, tmp_path / "adapter", N_ITEMS, TOOL_NAMES)
    save_vlm(model, processor, tmp_path / "adapter", N_ITEMS, TOOL_NAMES, base=str(tiny_vlm))
    again, processor2 = load_vlm(tmp_path / "adapter", VLMModelConfig())
    assert torch.allclose(logits_of(again.eval(), processor2), before, atol=1e-5)
    base_only = load_vlm(tiny_vlm, VLMModelConfig())[0].eval()
    assert not torch.allclose(logits_of(base_only, processor2), before, atol=1e-3)


def test_init_item_embeddings_keeps_tool_geometry(tiny_model):
    model, processor = tiny_model
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((N_ITEMS, 16))
    vectors[1] = vectors[0]               # two identical items -> identical rows
    vectors[2] = -vectors[0]              # opposite items -> strongly dissimilar rows
    init_item_embeddings(model, processor, vectors)
    ids = processor.tokenizer.convert_tokens_to_ids(tokens.item_tokens(N_ITEMS))
    rows = model.get_input_embeddings().weight[ids].detach()
    others = np.setdiff1d(np.arange(model.get_input_embeddings().weight.shape[0]), ids)
    assert torch.allclose(rows[0], rows[1])
    assert torch.nn.functional.cosine_similarity(rows[0], rows[2], dim=0) < -0.5
    target = model.get_input_embeddings().weight[others].norm(dim=1).mean()
    assert torch.allclose(rows.norm(dim=1), target.expand(N_ITEMS), rtol=1e-4)
    assert torch.allclose(model.get_output_embeddings().weight[ids][0], model.get_output_embeddings().weight[ids][1])


def test_dtype_setting(tiny_vlm):
    model, _ = load_vlm(tiny_vlm, VLMModelConfig(dtype="bfloat16"))
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    model, _ = load_vlm(tiny_vlm, VLMModelConfig(dtype="auto"), device="cpu")
    assert model.get_input_embeddings().weight.dtype == torch.float32


def test_build_rejects_image_size_not_a_multiple_of_patch(tmp_path):
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_tiny_vlm(tmp_path, N_ITEMS, TOOL_NAMES, ["a b c"], VLMModelConfig(image_size=30))


def test_item_rows_from_a_tool_checkpoint_through_the_config(tiny_vlm, tmp_path):
    from reasonrec.tools import TOOLS

    cls = TOOLS["bpr_mf"]
    tool = cls(cls.config_class(embedding_dim=8, seed=0), n_users=5, n_items=N_ITEMS)
    with torch.no_grad():
        tool.module.items.ids.weight[3] = tool.module.items.ids.weight[4]
    tool.save(tmp_path / "bpr_mf")
    plain, processor = load_vlm(tiny_vlm, VLMModelConfig())
    model, _ = load_vlm(tiny_vlm, VLMModelConfig(item_embedding_tool=str(tmp_path / "bpr_mf")))
    ids = processor.tokenizer.convert_tokens_to_ids(tokens.item_tokens(N_ITEMS))
    rows, plain_rows = model.get_input_embeddings().weight[ids], plain.get_input_embeddings().weight[ids]
    assert not torch.allclose(rows, plain_rows) and torch.allclose(rows[3], rows[4])
    others = [i for i in range(model.get_input_embeddings().weight.shape[0]) if i not in ids]
    assert torch.equal(model.get_input_embeddings().weight[others], plain.get_input_embeddings().weight[others])


def test_model_config_checks_and_descriptions():
    from pydantic import ValidationError

    from reasonrec.vlm.model_config import LoRAConfig, TinySizes

    with pytest.raises(ValidationError, match="needs checkpoint"):
        VLMModelConfig(preset="pretrained")
    with pytest.raises(ValidationError, match="max_position_embeddings"):
        VLMModelConfig(max_length=2048)
    with pytest.raises(ValidationError):
        VLMModelConfig.model_validate({"lora": {"rank": 8}})  # unknown key
    for model in (VLMModelConfig, TinySizes, LoRAConfig):
        assert all(f.description for f in model.model_fields.values()), model.__name__
