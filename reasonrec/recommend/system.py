"""The one resolve step: a RecommendConfig becomes the `System` every job, the Serve app and the benchmarks run.

Resolving answers, once and in one place, the questions each caller used to answer for itself: which tools
folder (the config's, else the one the VLM was trained with), which model version (the VLM's weights hash, or
the best tool's without a VLM), which thresholds (the calibrated policy for that version, or the router
section), which tools a high-risk row may consult. The result is a small, picklable value: Ray actors and Serve
replicas receive it as it is and load their models from it (reasonrec.recommend.bundle.Bundle), never a dict
they validate again. Its `recommend.router` is the only router there is: the policy is already applied.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonrec.io import join, open_fs
from reasonrec.recommend.config import RecommendConfig
from reasonrec.router.config import Policy, PolicyVersionError, RouterConfig
from reasonrec.vlm.tool_labels import RANKING_TASKS

# "error": a calibrated config without its policy.json (or with one for another version) is an error (the
# nightly job, calibration's callers, the Serve app, the main report); "config": fall back to the router
# section and say so in policy_source (the report's other systems: time shift, multi-domain).
MissingPolicy = Literal["error", "config"]


class System(BaseModel):
    """What one recommendation run uses, resolved (frozen: every process sees the same decisions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recommend: RecommendConfig = Field(description=(
        "The run's config with tools_dir, consult_pool and router resolved (router = policy applied)."))
    model_version: str = Field(description="'<vlm run>@<weights sha256[:12]>' or 'tools@<best tool's hash>'.")
    policy: Policy | None = Field(None, description="The calibrated policy applied to the router (None = config).")
    policy_source: str = Field(description="Where the thresholds came from, as the reports and summaries say it.")

    @property
    def router(self) -> RouterConfig:
        return self.recommend.router

    @property
    def dataset(self) -> str:
        return self.recommend.dataset

    @property
    def vlm_dir(self) -> str | None:
        return self.recommend.vlm_dir

    @property
    def tools_dir(self) -> str | None:
        return self.recommend.tools_dir


def resolve(cfg: RecommendConfig, missing_policy: MissingPolicy = "error") -> System:
    """cfg -> System (reads run.json, the weights' hashes, policy.json and the tools' tool.json; loads no model)."""
    settings = vlm_settings(cfg.vlm_dir) if cfg.vlm_dir is not None else {}
    tools_dir = cfg.tools_dir or settings.get("tools_dir")
    version = model_version(cfg.model_copy(update={"tools_dir": tools_dir}))
    router, policy, source = _router(cfg, version, missing_policy)
    pool = consult_pool(cfg, router, tools_dir)
    recommend = cfg.model_copy(update={"tools_dir": tools_dir, "router": router, "consult_pool": pool})
    return System(recommend=recommend, model_version=version, policy=policy, policy_source=source)


def with_router(system: System, router: RouterConfig) -> System:
    """The same system answering with another router (a report's consult-mode comparison, a forced setting)."""
    return system.model_copy(update={"recommend": system.recommend.model_copy(update={"router": router})})


def _router(cfg: RecommendConfig, version: str, missing: MissingPolicy) -> tuple[RouterConfig, Policy | None, str]:
    if cfg.policy == "config" or cfg.vlm_dir is None:
        return cfg.router, None, "the router config (policy=config)"
    try:
        policy = Policy.load(cfg.vlm_dir, version)
    except (FileNotFoundError, PolicyVersionError) as err:
        if missing == "error":
            raise
        return cfg.router, None, f"the router config ({err})"
    return policy.apply(cfg.router), policy, f"policy.json ({policy.model_version})"


def consult_pool(cfg: RecommendConfig, router: RouterConfig, tools_dir: str | None) -> list[str]:
    """The config's pool; else the ranking tools the VLM has <tool_*> tokens for (in its column order); else
    router.consult_tools.sequential."""
    if cfg.consult_pool is not None:
        return list(cfg.consult_pool)
    known = []
    if cfg.vlm_dir is not None and tools_dir is not None:
        known = [n for n in vlm_tool_names(cfg.vlm_dir) if _tool_task(tools_dir, n) in RANKING_TASKS]
    return known or list(router.consult_tools.get("sequential", []))


def vlm_settings(vlm_dir: str) -> dict:
    """The `settings` of a train_vlm run (run.json): how its instructions were rendered, its model config."""
    fs, path = open_fs(join(vlm_dir, "run.json"))
    if not fs.exists(path):
        raise FileNotFoundError(f"{vlm_dir}: no run.json; is this a jobs/train_vlm.py output folder?")
    with fs.open(path, "r") as f:
        return json.load(f)["settings"]


def vlm_tool_names(vlm_dir: str) -> list[str]:
    """Tools the VLM has <tool_*> tokens for (its model/reasonrec.json), in its column order."""
    fs, path = open_fs(join(vlm_dir, "model", "reasonrec.json"))
    with fs.open(path, "r") as f:
        return list(json.load(f)["tool_names"])


def _tool_task(tools_dir: str, name: str) -> str | None:
    fs, path = open_fs(join(tools_dir, name, "tool.json"))
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)["task"]


def model_version(cfg: RecommendConfig) -> str:
    """'<run folder name>@<sha256 of the VLM weights, 12 hex>', or 'tools@<best tool's weights hash>' without a
    VLM: a policy and a nightly table name exactly the weights they came from."""
    if cfg.vlm_dir is not None:
        name, folder = Path(cfg.vlm_dir.rstrip("/")).name, join(cfg.vlm_dir, "model")
    else:
        best = cfg.router.best_tool.get("sequential")
        if cfg.tools_dir is None or best is None:
            raise ValueError("without a VLM, tools_dir and router.best_tool.sequential must be set")
        name, folder = "tools", join(cfg.tools_dir, best)
    return f"{name}@{weights_digest(folder)}"


def weights_digest(folder: str) -> str:
    """sha256 (12 hex) of a model folder's .safetensors files, in name order."""
    fs, path = open_fs(folder)
    digest = hashlib.sha256()
    weights = sorted(p for p in fs.ls(path, detail=False) if p.endswith(".safetensors"))
    if not weights:
        raise FileNotFoundError(f"{folder}: no .safetensors weights")
    for file in weights:
        with fs.open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]
