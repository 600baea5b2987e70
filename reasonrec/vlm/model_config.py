"""What VLM to build or load: a tiny LLaVA built from configs (CPU tests, quick runs) or a real llava-1.5.

Both presets go through one loading path (`reasonrec.vlm.build.load_vlm`), so training, scoring and serving
never special-case the model; only `build_tiny_vlm` reads the `tiny` sizes.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from reasonrec.config import StrictModel


class TinySizes(StrictModel):
    """Sizes of the from-scratch tiny LLaVA (Llama text model + CLIP vision tower)."""

    bpe_vocab_size: int = Field(2000, ge=300, description=(
        "Target size of the BPE vocabulary trained on the instruction corpus, before the special tokens "
        "(items, confidence bins, tools, <yes>/<no>, <image>) are added."))
    text_hidden: int = Field(64, ge=8, description="Hidden width of the Llama text model.")
    text_intermediate: int = Field(128, ge=8, description="MLP width of the Llama text model.")
    text_layers: int = Field(2, ge=1, description="Llama decoder layers.")
    text_heads: int = Field(4, ge=1, description="Attention heads of the text model (must divide text_hidden).")
    attention_dropout: float = Field(0.0, ge=0, lt=1, description=(
        "Dropout on the text model's attention weights while training (Llama's only dropout; 0 = none)."))
    max_position_embeddings: int = Field(1024, ge=16, description=(
        "Longest sequence the text model's rotary positions are configured for (>= max_length)."))
    vision_hidden: int = Field(32, ge=8, description="Hidden width of the CLIP vision tower.")
    vision_intermediate: int = Field(64, ge=8, description="MLP width of the CLIP vision tower.")
    vision_layers: int = Field(2, ge=2, description=(
        "CLIP encoder layers (>= 2: LLaVA reads the second-to-last layer's features)."))
    vision_heads: int = Field(4, ge=1, description="Attention heads of the vision tower (must divide vision_hidden).")
    patch_size: int = Field(8, ge=1, description=(
        "CLIP patch side in pixels; an image becomes (image_size / patch_size)^2 image tokens."))
    seed: int = Field(0, description="Seeds the random initialisation of the tiny model.")


class LoRAConfig(StrictModel):
    """Low-rank adapters on the language model (peft); the vision tower and projector stay as they are."""

    enabled: bool = Field(False, description="Wrap the language model's target modules with LoRA adapters.")
    r: int = Field(8, ge=1, description="Adapter rank.")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: str = Field(r".*language_model.*\.(q_proj|v_proj)", description=(
        "Regex over module names to adapt. The default keeps the vision tower frozen: a plain "
        "['q_proj', 'v_proj'] list would also wrap the CLIP attention."))
    train_new_tokens: bool = Field(True, description=(
        "Also train the input and output embedding rows of the added special tokens (items, confidence, "
        "tools, yes/no) through peft trainable_token_indices. The new rows start as the mean embedding and "
        "carry no meaning, so with LoRA alone the model could not learn to emit item tokens."))


class VLMModelConfig(StrictModel):
    """Which VLM, at what precision and context length, with or without LoRA."""

    preset: Literal["tiny", "pretrained"] = Field("tiny", description=(
        "'tiny': a small LLaVA built from configs with a BPE tokenizer trained on the instructions (CPU, "
        "tests); 'pretrained': load `checkpoint` (e.g. llava-hf/llava-1.5-7b-hf) and add the special tokens."))
    checkpoint: str | None = Field(None, description=(
        "HF model id or local folder to load. Required for 'pretrained'; for 'tiny', a folder written by "
        "build_tiny_vlm (null = the training job builds one under <out>/base)."))
    tiny: TinySizes = Field(default_factory=TinySizes, description="Sizes of the tiny preset (ignored for 'pretrained').")
    image_size: int = Field(32, ge=8, description=(
        "Side of the square image the vision tower sees. The tiny preset builds CLIP at this size; a "
        "pretrained checkpoint's processor decides its own size (336 for llava-1.5) and this only sets the "
        "size ItemImages decodes item images to, so set it to the checkpoint's size."))
    max_length: int = Field(384, ge=16, description=(
        "Most tokens of one encoded example (prompt with expanded image tokens + thought + answer); longer "
        "prompts lose history text first, then their oldest images."))
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description=(
        "Weights dtype: 'auto' = bfloat16 on CUDA, float32 on CPU (bf16 is ~6x slower on AVX2 CPUs)."))
    lora: LoRAConfig = Field(default_factory=LoRAConfig, description="LoRA adapters (off = full fine-tuning).")
    item_embedding_tool: str | None = Field(None, description=(
        "Optional folder of a trained tool checkpoint (artifacts/tools/<dataset>/<tool>) whose item "
        "embeddings initialise the <item_k> rows by a fixed random projection; null = mean initialisation."))

    @model_validator(mode="after")
    def _check(self) -> "VLMModelConfig":
        if self.preset == "pretrained" and not self.checkpoint:
            raise ValueError("preset 'pretrained' needs checkpoint (e.g. llava-hf/llava-1.5-7b-hf)")
        if self.preset == "tiny" and self.tiny.max_position_embeddings < self.max_length:
            raise ValueError(f"tiny.max_position_embeddings {self.tiny.max_position_embeddings} < max_length "
                             f"{self.max_length}")
        return self


def resolve_dtype(name: str, device: str | torch.device | None = None) -> torch.dtype:
    """'auto' -> bf16 when the model will run on CUDA, else fp32."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    return torch.bfloat16 if on_cuda else torch.float32
