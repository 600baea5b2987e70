"""Benchmark: full-catalogue top-k scoring throughput (users/s) of every tool, side by side with a raw
`torch.matmul` + `torch.topk` of the same shapes in the same run.

    .venv/bin/python benchmarks/tools_topk.py --dataset artifacts/datasets/sports --users 4096 --k 10

Weights are freshly initialised (throughput does not depend on training). The ratio tool/raw says how much
of the hardware's matmul speed the tool's own scoring path keeps (goal >= 0.5 for MF and the two-tower).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.content import item_content_features
from reasonrec.tools.data import ToolData


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="artifacts/datasets/synthetic")
    parser.add_argument("--users", type=int, default=4096)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = ToolData.load(args.dataset)
    users = np.arange(min(args.users, data.n_users))
    features = None
    results = {}
    for name in args.tools.split(","):
        spec, _, variant = name.partition("+")
        tool_class = TOOLS[spec]
        cfg = tool_class.config_class(use_content=variant == "v", score_batch_size=1024)
        if cfg.use_content and features is None:
            features = item_content_features(data.dataset)
        tool = tool_class(cfg, data.n_users, data.n_items, features if cfg.use_content else None)
        queries = data.queries(users, "all", cfg.max_len)
        try:
            tool_seconds = timed(lambda: tool.topk(queries, args.k), args.repeats)
        except RuntimeError as err:  # e.g. LightGCN cannot score before its graph is built by fit()
            results[name] = {"skipped": str(err)}
            continue

        # The raw reference: the same [users, d] x [d, items] product and top-k, batched the same way.
        dim = cfg.embedding_dim
        user_vectors = torch.randn(len(users), dim)
        item_vectors = torch.randn(data.n_items, dim)

        def raw():
            for start in range(0, len(users), cfg.score_batch_size):
                torch.topk(user_vectors[start:start + cfg.score_batch_size] @ item_vectors.T, args.k, dim=1)

        raw_seconds = timed(raw, args.repeats)
        results[name] = {"users_per_second": round(len(users) / tool_seconds),
                         "raw_matmul_users_per_second": round(len(users) / raw_seconds),
                         "ratio_to_raw": round(raw_seconds / tool_seconds, 3)}
    print(json.dumps({"benchmark": "tools_topk", "dataset": args.dataset, "users": len(users),
                      "items": data.n_items, "k": args.k, "threads": args.threads, "results": results,
                      "machine": f"{platform.machine()}, torch {torch.__version__}"}))


if __name__ == "__main__":
    main()
