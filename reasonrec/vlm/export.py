"""The trained model out of a `jobs/train_vlm.py` run: the last checkpoint's ZeRO partitions gathered into fp32
weights in the base architecture, LoRA merged, saved with the processor as <out>/model (loads with
reasonrec.vlm.build.load_vlm)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from reasonrec.io import fetch_dir, join
from reasonrec.vlm.prepare import upload
from reasonrec.vlm.train_config import TrainVLMConfig


def save_model(cfg: TrainVLMConfig, checkpoint_dir: str | Path, base: str, n_items: int, tool_names: list[str],
               train_metrics: dict[str, Any]) -> str:
    """Last checkpoint (a local folder of DeepSpeed ZeRO parts) -> fp32 weights in the base architecture ->
    <out>/model (LoRA merged in); returns its URI."""
    from reasonrec.vlm.build import META_FILE, load_vlm
    from reasonrec.vlm.deepspeed_config import consolidated_state_dict

    destination = join(cfg.out, "model")
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_vlm(fetch_dir(base, tmp), cfg.model.model_copy(update={"dtype": "float32"}),
                                    n_items=n_items, tool_names=tool_names)
        weights = consolidated_state_dict(checkpoint_dir)
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
                "trained_by": "jobs/train_vlm.py", "steps": train_metrics["step"],
                "samples": train_metrics["samples"]}
        (local / META_FILE).write_text(json.dumps(meta, indent=2))
        upload(local, destination)
    return destination
