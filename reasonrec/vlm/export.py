"""The trained model out of a `jobs/train_vlm.py` run: the last checkpoint's ZeRO partitions gathered into fp32
weights in the base architecture (or, with validation.keep_best, the best validation step's weights that rank 0
wrote to <out>/best), LoRA merged, saved with the processor as <out>/model (loads with
reasonrec.vlm.build.load_vlm)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from reasonrec.io import fetch_dir, join, open_fs
from reasonrec.vlm.prepare import upload
from reasonrec.vlm.train_config import TrainVLMConfig


BEST_DIR = "best"


def save_best_weights(module, out: str, step: int) -> None:
    """The module's weights (fp32) as <out>/best/weights.pt, then best.json naming the step (written last)."""
    import torch

    fs, path = open_fs(join(out, BEST_DIR))
    fs.makedirs(path, exist_ok=True)
    if fs.exists(join(path, "best.json")):
        fs.rm(join(path, "best.json"))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "weights.pt"
        torch.save({k: v.detach().float().cpu() for k, v in module.state_dict().items()}, local)
        fs.put_file(str(local), join(path, "weights.pt"))
    with fs.open(join(path, "best.json"), "w") as f:
        json.dump({"step": step}, f)


def best_weights(out: str) -> tuple[dict, int] | None:
    """(state dict, step) of <out>/best when it is complete, else None."""
    import torch

    fs, path = open_fs(join(out, BEST_DIR))
    if not fs.exists(join(path, "best.json")):
        return None
    with fs.open(join(path, "best.json")) as f:
        step = json.load(f)["step"]
    with fs.open(join(path, "weights.pt"), "rb") as f:
        return torch.load(f, map_location="cpu"), int(step)


def save_model(cfg: TrainVLMConfig, checkpoint_dir: str | Path, base: str, n_items: int, tool_names: list[str],
               train_metrics: dict[str, Any]) -> str:
    """Last checkpoint (a local folder of DeepSpeed ZeRO parts), or the best validation step's weights when
    validation.keep_best found one -> fp32 weights in the base architecture -> <out>/model (LoRA merged in);
    returns its URI."""
    from reasonrec.vlm.build import META_FILE, load_vlm
    from reasonrec.vlm.deepspeed_config import consolidated_state_dict

    destination = join(cfg.out, "model")
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_vlm(fetch_dir(base, tmp), cfg.model.model_copy(update={"dtype": "float32"}),
                                    n_items=n_items, tool_names=tool_names)
        best = best_weights(cfg.out) if cfg.validation.every and cfg.validation.keep_best else None
        weights, step = best if best else (consolidated_state_dict(checkpoint_dir), train_metrics["step"])
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or missing:
            raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
        if cfg.model.lora.enabled:
            model = model.merge_and_unload()
        local = Path(tmp) / "model"
        model.save_pretrained(local)
        processor.save_pretrained(local)
        meta = {"n_items": n_items, "tool_names": tool_names, "preset": cfg.model.preset, "base": base,
                "trained_by": "jobs/train_vlm.py", "steps": step, "trained_steps": train_metrics["step"],
                "samples": train_metrics["samples"]}
        (local / META_FILE).write_text(json.dumps(meta, indent=2))
        upload(local, destination)
    return destination
