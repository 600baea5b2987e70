"""Fixtures for the model side: a tiny LLaVA built once per session, toy instructions and toy images.

Import the fixtures into a test module (`from tests.vlm.conftest_model import tiny_vlm, ...`). The built
folder is cached per process, so modules that each import the fixture still build the model once.

Toy task (learnable in a few hundred steps): the answer is the last history item; the teacher confidence
bin is the history length; the teacher tool is <tool_sasrec> for even lengths, <tool_none> for odd ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reasonrec.vlm.build import build_tiny_vlm, load_vlm
from reasonrec.vlm.model_config import VLMModelConfig
from reasonrec.vlm.records import Instruction

N_ITEMS = 20
TOOL_NAMES = ["sasrec", "bpr_mf"]
COLOURS = ["red", "blue", "green", "black", "white"]
SHAPES = ["ball", "cube", "star", "ring"]
TITLES = [f"{COLOURS[i % 5]} {SHAPES[i // 5 % 4]}" for i in range(N_ITEMS)]

_BUILT: dict[str, Path] = {}


def toy_instruction(user: int, rng: np.random.Generator, image_every: int = 4, titles: bool = True) -> Instruction:
    length = int(rng.integers(2, 6))
    history = [int(i) for i in rng.choice(N_ITEMS, size=length, replace=False)]
    images = history[-1:] if user % image_every == 0 else []
    prompt = (" ".join(["<image>"] * len(images)) + " History: "
              + " ".join(f"<item_{h}> {TITLES[h]}" if titles else f"<item_{h}>" for h in history)
              + ". Evidence horizon 0.42. Which item comes next?").strip()
    tool = "<tool_sasrec>" if length % 2 == 0 else "<tool_none>"
    thought = f"EH: 0.42 | Confidence: <conf_{length}> | Tools: {tool} | Answer:"
    target = history[-1]
    candidates: list[int] = []
    if user % 2 == 0:  # a 1+5 list for half the rows, the whole catalogue for the others
        others = [int(i) for i in rng.choice(np.setdiff1d(np.arange(N_ITEMS), [target]), 5, replace=False)]
        candidates = sorted(others + [target])
    return Instruction(user_idx=user, task="sequential", template_id=0, evidence_horizon=0.42,
                       image_items=images, prompt=prompt, thought=thought, answer=f"<item_{target}>",
                       target_item=target, candidates=candidates)


def toy_instructions(n: int, seed: int = 0, image_every: int = 4, titles: bool = True) -> list[Instruction]:
    rng = np.random.default_rng(seed)
    return [toy_instruction(u, rng, image_every, titles) for u in range(n)]


def toy_corpus() -> list[str]:
    return [f"USER: {r.prompt} ASSISTANT: {r.thought} {r.answer} Will the user click? great fun, loved it"
            for r in toy_instructions(200, seed=123)]


def item_image(item: int, size: int = 32) -> Image.Image:
    return Image.new("RGB", (size, size), ((40 * item) % 256, 255 - (12 * item) % 256, (77 * item) % 256))


@pytest.fixture(scope="session")
def toy_images() -> dict[int, Image.Image]:
    return {i: item_image(i) for i in range(N_ITEMS)}


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    """Folder of a tiny LLaVA (20 item tokens, tools sasrec + bpr_mf), built once per process."""
    if "tiny" not in _BUILT:
        _BUILT["tiny"] = build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"), N_ITEMS, TOOL_NAMES, toy_corpus(),
                                        VLMModelConfig())
    return _BUILT["tiny"]


@pytest.fixture
def tiny_model(tiny_vlm):
    """A fresh (model, processor) from the tiny folder, fp32, eval mode."""
    model, processor = load_vlm(tiny_vlm, VLMModelConfig())
    return model.eval(), processor
