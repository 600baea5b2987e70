"""The tool zoo as Ray tasks: one task per tool over `reasonrec.tools.zoo.train_tool`, the driver's progress bar
as they finish, and the GPU share each task asks for.

    driver: ray.put(content features) ─▶ train_one × tools (cpus_per_tool, gpus_per_tool each) ─▶ rows
"""

from __future__ import annotations

import sys
from typing import Any

import ray

from actors.cluster import gpus_for
from reasonrec.tools.train_config import TrainToolsConfig
from reasonrec.tools.zoo import content_features, headline


@ray.remote
def train_one(spec: str, name: str, settings: dict[str, Any], cfg_json: str, features_ref) -> dict[str, Any]:
    """One tool, start to finish, inside a Ray task (as many torch threads as the task has CPUs)."""
    import torch

    from reasonrec.tools.zoo import train_tool

    cfg = TrainToolsConfig.model_validate_json(cfg_json)
    torch.set_num_threads(max(1, int(cfg.cpus_per_tool)))
    device = "cuda" if ray.get_gpu_ids() else "cpu"       # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    return train_tool(cfg, spec, name, settings, features_ref, device)


def gpus_per_tool(cfg: TrainToolsConfig, n_tools: int) -> float:
    """The GPUs one tool task asks for: cfg.gpus_per_tool, or with 'auto' the cluster's GPUs shared evenly
    (small tools leave most of a GPU idle, so sharing one trains the zoo at once rather than in turn)."""
    return gpus_for(cfg.gpus_per_tool, n_tools)


def train_tools(cfg: TrainToolsConfig, specs: dict[str, tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every tool of `specs` ({spec: (name, settings)}) as its own task; their rows in cfg.tools order."""
    from tqdm import tqdm

    features_ref = ray.put(content_features(cfg, specs))
    gpus = gpus_per_tool(cfg, len(specs))
    if gpus:
        print(f"training on GPU: {gpus:g} GPU per tool, {ray.cluster_resources().get('GPU', 0):g} in the cluster")
    pending = {
        train_one.options(num_cpus=cfg.cpus_per_tool, num_gpus=gpus, name=f"train:{spec}").remote(
            spec, name, settings, cfg.model_dump_json(), features_ref): spec
        for spec, (name, settings) in specs.items()
    }
    rows = []
    with tqdm(total=len(pending), desc="tools trained", file=sys.stdout) as progress:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            row = {"spec": spec, **ray.get(done[0])}
            rows.append(row)
            progress.set_postfix_str(f"{spec}: {headline(row)}")
            progress.update()
    return sorted(rows, key=lambda row: cfg.tools.index(row["spec"]))
