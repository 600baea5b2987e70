"""<out>/run.json of a `jobs/train_vlm.py` run: the settings and plan it was started with, so a rerun resumes the
same run or is refused with the keys that changed (never two runs mixed in one folder)."""

from __future__ import annotations

import json
from typing import Any

from reasonrec.io import join, open_fs
from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig

# Settings that may change between a run and its resumption (they do not change what is trained).
RESUMABLE_CHANGES = {"out", "max_failures", "log_every", "keep_checkpoints", "cpus_per_worker", "eval",
                     "ray_address"}


def run_settings(cfg: TrainVLMConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude=RESUMABLE_CHANGES)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, so a refusal names the exact key that changed."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def earlier_run(cfg: TrainVLMConfig) -> dict[str, Any] | None:
    """<out>/run.json of an earlier run, after checking it was started with the same settings (None if new)."""
    fs, out = open_fs(cfg.out)
    if not fs.exists(join(out, "run.json")):
        return None
    with fs.open(join(out, "run.json")) as f:
        earlier = json.load(f)
    now, then = flatten(run_settings(cfg)), flatten(earlier["settings"])
    changed = [f"{k}: {then.get(k)!r} there, {now.get(k)!r} now" for k in sorted(set(now) | set(then))
               if now.get(k) != then.get(k)]
    if changed:
        raise SystemExit(f"{cfg.out} holds a run with other settings ({'; '.join(changed)}): it cannot be resumed "
                         "with these; use a new out (or delete that folder)")
    return earlier


def record_run(cfg: TrainVLMConfig, plan: TrainPlan, earlier: dict[str, Any] | None) -> None:
    """Write <out>/run.json for a new run; for a continued one, the plan must be the one it was started with."""
    if earlier is not None:
        changed = plan.mismatch(TrainPlan.model_validate(earlier["plan"]))
        if changed:
            raise SystemExit(f"{cfg.out} was planned differently ({'; '.join(changed)}); use a new out")
        return
    fs, out = open_fs(cfg.out)
    fs.makedirs(out, exist_ok=True)
    with fs.open(join(out, "run.json"), "w") as f:
        json.dump({"settings": run_settings(cfg), "plan": plan.model_dump()}, f, indent=2)
