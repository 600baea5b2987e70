"""The driver's setup of a `jobs/train_vlm.py` run, Ray-free: its inputs checked, then each part of <out> written
once and skipped when a rerun finds it (a file written last marks each part complete):

    <out>/instructions/{train,valid,test}.parquet + stats.json   R-VIT instructions, labelled by the trained tools
    <out>/base/                                                  the tiny base model (tokenizer trained on train)
    <out>/sequence/rank_<r>.parquet + order.parquet              the curriculum order, one ordered shard per rank
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from reasonrec.io import join, open_fs
from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig

PARTS = ("train", "valid", "test")


def check_inputs(cfg: TrainVLMConfig) -> None:
    """Everything that can be checked before Ray starts: a mistake costs seconds, not a cluster start."""
    fs, path = open_fs(cfg.dataset)
    if not fs.exists(join(path, "manifest.json")):
        raise SystemExit(f"dataset {cfg.dataset} is not prepared (no manifest.json); run jobs/prepare_data.py")
    if not fs.exists(join(path, "splits", cfg.split)):
        raise SystemExit(f"dataset {cfg.dataset} has no split {cfg.split!r}")
    if cfg.tools_dir is not None:
        tool_folders(cfg)  # raises on a missing folder or tool
    for key, tool in (("model.item_embedding_tool", cfg.model.item_embedding_tool), ("distill.tool", cfg.distill.tool)):
        if not tool:
            continue
        fs, path = open_fs(tool)
        if not fs.exists(join(path, "tool.json")):
            raise SystemExit(f"{key} {tool} is not a trained tool folder (no tool.json)")


def tool_folders(cfg: TrainVLMConfig) -> dict[str, str]:
    """{tool name: checkpoint folder}, from cfg.tools or every tool checkpoint under tools_dir."""
    if cfg.tools_dir is None:
        return {}
    fs, root = open_fs(cfg.tools_dir)
    if not fs.isdir(root):
        raise SystemExit(f"tools_dir {cfg.tools_dir} does not exist (train tools first, or set tools_dir=null)")
    found = sorted(Path(p).name for p in fs.ls(root, detail=False) if fs.exists(join(p, "tool.json")))
    names = found if cfg.tools is None else [n.lower() for n in cfg.tools]
    missing = sorted(set(names) - set(found))
    if missing or not names:
        raise SystemExit(f"tools {missing or names} not found under {cfg.tools_dir}; found {found}")
    return {name: join(cfg.tools_dir, name) for name in names}


def load_tools(cfg: TrainVLMConfig, data) -> dict[str, Any]:
    """Trained tools by folder name (the names the <tool_x> tokens use); content variants get real features."""
    from reasonrec.tools.base import load_tool
    from reasonrec.tools.content import item_content_features

    folders = tool_folders(cfg)
    features = item_content_features(data.dataset) if any(n.endswith("+v") for n in folders) else None
    tools = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, uri in folders.items():
            fs, path = open_fs(uri)
            local = Path(tmp) / name
            fs.get(path, str(local), recursive=True)
            tools[name] = load_tool(local, features if name.endswith("+v") else None)
    return tools


def prepare_instructions(cfg: TrainVLMConfig) -> tuple[dict[str, str], list[str]]:
    """Build train/valid/test instructions once; returns their paths and the tool names they were labelled with."""
    from reasonrec.tools.data import ToolData
    from reasonrec.vlm.instructions import build_instructions, instruction_stats, read_split_evidence
    from reasonrec.vlm.instructions import write_instructions

    paths = {part: join(cfg.out, "instructions", f"{part}.parquet") for part in PARTS}
    fs, out = open_fs(cfg.out)
    stats_path = join(out, "instructions", "stats.json")
    if fs.exists(stats_path):  # written last: the instructions are complete (tools may have changed since)
        with fs.open(stats_path) as f:
            return paths, json.load(f)["tools"]
    tool_names = sorted(tool_folders(cfg))
    started = time.perf_counter()
    data = ToolData.load(cfg.dataset, cfg.split, cfg.negatives)
    tools = load_tools(cfg, data)
    evidence = read_split_evidence(data)
    stats = {}
    for part in PARTS:
        instructions = build_instructions(data, evidence, part, cfg.instructions, tools)
        write_instructions(instructions, paths[part])
        stats[part] = instruction_stats(instructions)
        print(f"[setup] {part}: {len(instructions)} instructions", flush=True)
    with fs.open(stats_path, "w") as f:
        json.dump({"tools": tool_names, "parts": stats}, f, indent=2)
    print(f"[setup] instructions built in {time.perf_counter() - started:.1f} s", flush=True)
    return paths, tool_names


def prepare_validation(cfg: TrainVLMConfig) -> str | None:
    """The VLM-only first-pass instructions the training loop validates on, written once to
    <out>/validation/valid.parquet (None without validation.every)."""
    from reasonrec.vlm.instructions import write_instructions
    from reasonrec.vlm.validation import validation_instructions

    if cfg.validation.every is None:
        return None
    path = join(cfg.out, "validation", "valid.parquet")
    fs, fs_path = open_fs(path)
    if not fs.exists(fs_path):
        rows = validation_instructions(cfg.dataset, cfg.split, cfg.negatives, cfg.instructions,
                                       cfg.validation.max_users, cfg.validation.seed)
        write_instructions(rows, path)
        print(f"[setup] validation: {len(rows)} VLM-only first-pass instructions", flush=True)
    return path


def training_examples(cfg: TrainVLMConfig, path: str):
    """The train instructions training reads (an Arrow table) and their evidence horizons."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from reasonrec.vlm.records import INSTRUCTION_SCHEMA

    fs, fs_path = open_fs(path)
    table = pq.read_table(fs_path, filesystem=fs, schema=INSTRUCTION_SCHEMA)
    if cfg.tasks_trained is not None:
        table = table.filter(pc.is_in(table["task"], value_set=pa.array(cfg.tasks_trained)))
    if table.num_rows == 0:
        raise SystemExit(f"no training instructions for tasks {cfg.tasks_trained or cfg.instructions.tasks}")
    return table, table["evidence_horizon"].to_numpy()


def prepare_base(cfg: TrainVLMConfig, train_table, n_items: int, tool_names: list[str]) -> str:
    """Where workers load the starting weights from: a tiny model built once under <out>/base, or a checkpoint."""
    from reasonrec.vlm.build import build_tiny_vlm

    if cfg.model.preset == "pretrained" or cfg.model.checkpoint is not None:
        return cfg.model.checkpoint
    base = join(cfg.out, "base")
    fs, path = open_fs(base)
    if fs.exists(join(path, "reasonrec.json")):
        return base
    corpus = [f"{p} {t} {a}" for p, t, a in zip(train_table["prompt"].to_pylist(), train_table["thought"].to_pylist(),
                                                   train_table["answer"].to_pylist())]
    with tempfile.TemporaryDirectory() as tmp:
        local = build_tiny_vlm(Path(tmp) / "base", n_items, tool_names, corpus, cfg.model)
        upload(local, base)
    print(f"[setup] tiny base model built at {base}", flush=True)
    return base


def prepare_sequence(cfg: TrainVLMConfig, plan: TrainPlan, train_table, eh: np.ndarray) -> list[str]:
    """The curriculum order, cut into one ordered shard per rank: <out>/sequence/rank_<r>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reasonrec.vlm.curriculum import curriculum_order

    paths = [join(cfg.out, "sequence", f"rank_{r}.parquet") for r in range(plan.num_workers)]
    fs, out = open_fs(cfg.out)
    order_path = join(out, "sequence", "order.parquet")  # written last: the shards are complete
    if fs.exists(order_path):
        return paths
    order = curriculum_order(eh, plan.total_samples, cfg.instructions.curriculum, plan.seed)
    fs.makedirs(join(out, "sequence"), exist_ok=True)
    for rank, path in enumerate(paths):
        positions = plan.rank_positions(rank)
        examples = order[positions]
        shard = train_table.take(pa.array(examples))
        shard = shard.add_column(0, "example", pa.array(examples, pa.int64()))
        shard = shard.add_column(0, "position", pa.array(positions, pa.int64()))
        pq.write_table(shard, open_fs(path)[1], filesystem=fs, row_group_size=max(1, plan.rows_per_rank_step * 8))
    pq.write_table(pa.table({"position": np.arange(len(order)), "example": order,
                             "evidence_horizon": eh[order]}), order_path, filesystem=fs)
    return paths


def upload(local: Path, destination: str, last: str = "reasonrec.json") -> None:
    """Copy a local folder to `destination`, the file named `last` last: its presence means the copy is whole."""
    fs, path = open_fs(destination)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)
    for file in sorted((f for f in local.rglob("*") if f.is_file()), key=lambda f: f.name == last):
        target = join(path, str(file.relative_to(local)))
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)   # subfolders: put_file makes no parents
        fs.put_file(str(file), target)
