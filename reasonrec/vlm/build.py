"""Build the tiny LLaVA from configs, and the one loading path for tiny and real llava-1.5 checkpoints.

A tiny model is a real `LlavaForConditionalGeneration` (CLIP vision tower, projector, Llama text model) with
a BPE tokenizer trained on our own instruction text, saved with `save_pretrained` like any HF checkpoint.
So tests, the CPU training job and a 7B run on a GPU all load through `load_vlm`, which adds the special
tokens of `reasonrec.vlm.tokens` to a checkpoint that lacks them (a published llava-1.5), resizes the
embeddings, applies LoRA and picks the dtype.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (AutoProcessor, CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

from reasonrec.vlm import tokens
from reasonrec.vlm.encode import SPECIAL_TOKEN_RE, image_seq_length
from reasonrec.vlm.model_config import VLMModelConfig, resolve_dtype

log = logging.getLogger(__name__)

META_FILE = "reasonrec.json"
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
# The llava-hf llava-1.5 chat template, so processor.apply_chat_template renders our prompts the same way.
LLAVA_15_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (no unknown tokens, spaces survive a decode) trained on our own instruction text."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Special tokens in the corpus would be learnt as merges; they are added whole afterwards instead.
    bpe.train_from_iterator((_strip_specials(text) for text in corpus), trainer=trainer)
    bos_id = bpe.token_to_id(BOS)
    bpe.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   padding_side="left")


def _strip_specials(text: str) -> str:
    return SPECIAL_TOKEN_RE.sub(" ", text)


def add_special_tokens(tokenizer, n_items: int, tool_names: list[str]) -> list[int]:
    """Add the tokens of `reasonrec.vlm.tokens` that the tokenizer lacks; returns the ids of the new ones."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens.special_tokens(n_items, tool_names) if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return tokenizer.convert_tokens_to_ids(missing)


def build_tiny_vlm(out_dir: str | Path, n_items: int, tool_names: list[str], corpus: Iterable[str],
                   cfg: VLMModelConfig, *, add_tokens: bool = True) -> Path:
    """Train the tokenizer on `corpus`, build a tiny LLaVA and its processor, save both to `out_dir`.

    add_tokens=False leaves the special tokens out (only <image> is added): the shape of a published
    checkpoint, which `load_vlm` must extend; used to test that path without a 7B download.
    """
    out_dir = Path(out_dir)
    sizes = cfg.tiny
    if cfg.image_size % sizes.patch_size:
        raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {sizes.patch_size}")
    tokenizer = train_tokenizer(corpus, sizes.bpe_vocab_size)
    if add_tokens:
        add_special_tokens(tokenizer, n_items, tool_names)
    else:
        tokenizer.add_tokens([tokens.IMAGE_TOKEN], special_tokens=True)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size}, crop_size={"height": cfg.image_size, "width": cfg.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=sizes.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token=tokens.IMAGE_TOKEN, chat_template=LLAVA_15_CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=sizes.vision_hidden, intermediate_size=sizes.vision_intermediate,
                              num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads,
                              image_size=cfg.image_size, patch_size=sizes.patch_size, projection_dim=sizes.vision_hidden)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=sizes.text_hidden,
                       intermediate_size=sizes.text_intermediate, num_hidden_layers=sizes.text_layers,
                       num_attention_heads=sizes.text_heads, num_key_value_heads=sizes.text_heads,
                       max_position_embeddings=sizes.max_position_embeddings,
                       attention_dropout=sizes.attention_dropout,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=processor.image_token_id,
                         image_seq_length=image_seq_length(processor), vision_feature_select_strategy="default",
                         vision_feature_layer=-2)
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(sizes.seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    meta = {"n_items": n_items, "tool_names": list(tool_names), "preset": "tiny", "item_rows": "untrained"}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


def read_meta(path_or_id: str | Path) -> dict:
    """The reasonrec.json beside a local checkpoint ({} for a hub id or a folder without one)."""
    meta_path = Path(path_or_id) / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def load_vlm(path_or_id: str | Path, cfg: VLMModelConfig, n_items: int | None = None,
             tool_names: list[str] | None = None, device: str | torch.device | None = None):
    """(model, processor) for a tiny or a real checkpoint; the one loading path for training and scoring.

    n_items / tool_names default to the checkpoint's reasonrec.json; a checkpoint without our special
    tokens (a published llava-1.5) gets them added with mean-initialised embedding rows. A folder written by
    `save_vlm` from a LoRA model (adapter_config.json) loads its base the same way, then the adapter.
    """
    meta = read_meta(path_or_id)
    n_items = meta.get("n_items") if n_items is None else n_items
    tool_names = meta.get("tool_names") if tool_names is None else tool_names
    if n_items is None or tool_names is None:
        raise ValueError(f"{path_or_id}: no {META_FILE} here, so pass n_items and tool_names to load_vlm")
    adapter_config = Path(path_or_id) / "adapter_config.json"
    if adapter_config.is_file():
        from peft import PeftModel

        base = meta.get("base") or json.loads(adapter_config.read_text())["base_model_name_or_path"]
        no_lora = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"enabled": False})})
        model, processor = load_vlm(base, no_lora, n_items, tool_names)
        model = PeftModel.from_pretrained(model, str(path_or_id), is_trainable=cfg.lora.enabled)
        return (model.to(device) if device is not None else model), processor
    dtype = resolve_dtype(cfg.dtype, device)
    processor = AutoProcessor.from_pretrained(str(path_or_id))
    model = LlavaForConditionalGeneration.from_pretrained(str(path_or_id), dtype=dtype)
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD})
    tokenizer.padding_side = "left"
    n_before = model.get_input_embeddings().weight.shape[0]
    new_ids = add_special_tokens(tokenizer, n_items, tool_names)
    if new_ids:
        log.info("%s: added %d special tokens; resizing embeddings", path_or_id, len(new_ids))
        resize_with_mean(model, len(tokenizer), new_ids, n_before)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    fresh_items = bool(new_ids) or meta.get("item_rows") == "untrained"  # never overwrite trained rows
    if cfg.item_embedding_tool and fresh_items:
        from reasonrec.tools.base import load_tool

        init_item_embeddings(model, processor, tool_item_vectors(load_tool(cfg.item_embedding_tool)))
    if cfg.lora.enabled:
        model = apply_lora(model, processor, cfg, n_items, tool_names)
    if device is not None:
        model = model.to(device)
    return model, processor


def save_vlm(model, processor, out_dir: str | Path, n_items: int, tool_names: list[str],
             base: str | None = None, **extra) -> Path:
    """Model (or, for a peft model, its adapter) + processor + reasonrec.json: a folder load_vlm reads.

    `base` is the checkpoint a LoRA adapter applies to (required for a peft model)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "peft_config")
    if is_peft and base is None:
        raise ValueError("saving a LoRA model writes only its adapter: pass base= (the checkpoint it adapts)")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    meta = {"n_items": n_items, "tool_names": list(tool_names), **({"base": str(base)} if is_peft else {}), **extra}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


def resize_with_mean(model, vocab_size: int, new_ids: list[int], n_before: int) -> None:
    """Grow the input and output embeddings to `vocab_size` (never shrink: published checkpoints pad
    their matrices), then set every new token's rows to the mean of the pre-existing rows.

    The mean keeps the new tokens from dominating the output distribution before training (a random row
    can have a large logit); a published checkpoint's padding rows that new ids reuse are reset as well.
    """
    known = min(n_before, min(new_ids))  # rows of tokens that existed before this call
    model.resize_token_embeddings(max(vocab_size, n_before), mean_resizing=False)
    with torch.no_grad():
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            mean = weight[:known].float().mean(dim=0).to(weight.dtype)
            weight[torch.tensor(new_ids)] = mean


def special_token_ids(processor, n_items: int, tool_names: list[str]) -> list[int]:
    return processor.tokenizer.convert_tokens_to_ids(tokens.special_tokens(n_items, tool_names))


def apply_lora(model, processor, cfg: VLMModelConfig, n_items: int, tool_names: list[str]):
    """peft LoRA on the language model's target modules; new-token rows trainable when configured."""
    from peft import LoraConfig, get_peft_model

    trainable_tokens = None
    if cfg.lora.train_new_tokens:
        ids = [i for i in special_token_ids(processor, n_items, tool_names) if i != processor.image_token_id]
        trainable_tokens = {"embed_tokens": ids, "lm_head": ids}
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, trainable_token_indices=trainable_tokens)
    return get_peft_model(model, lora)


def tool_item_vectors(tool) -> np.ndarray:
    """[n_items, d] item embeddings of a trained tool: the first 2-D parameter (not a buffer such as +V
    content features) named like an item embedding, with n_items (or n_items + 1: a padding row) rows."""
    for name, tensor in tool.module.named_parameters():
        if "item" in name and tensor.ndim == 2 and tensor.shape[0] in (tool.n_items, tool.n_items + 1):
            return tensor.detach()[:tool.n_items].float().numpy()
    raise ValueError(f"tool {tool.name!r} has no item embedding table to initialise item tokens from")


def init_item_embeddings(model, processor, vectors: np.ndarray, seed: int = 0) -> None:
    """Set the <item_k> input and output rows from a tool's item vectors [n_items, d].

    A fixed Gaussian random projection to the LM width keeps the tool's geometry (similar items get
    similar rows, Johnson-Lindenstrauss); rows are rescaled to the mean norm of the existing embeddings so
    item tokens start on the same scale as the words around them. Off by default (see VLMModelConfig).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    ids = processor.tokenizer.convert_tokens_to_ids(tokens.item_tokens(len(vectors)))
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            width = weight.shape[1]
            projected = vectors @ rng.standard_normal((vectors.shape[1], width)) / np.sqrt(width)
            projected -= projected.mean(axis=0, keepdims=True)
            norms = np.linalg.norm(projected, axis=1, keepdims=True)
            others = np.setdiff1d(np.arange(weight.shape[0]), ids)
            target_norm = weight[torch.from_numpy(others)].float().norm(dim=1).mean().item()
            rows = projected / np.maximum(norms, 1e-12) * target_norm
            weight[torch.tensor(ids)] = torch.from_numpy(rows).to(weight.dtype)
