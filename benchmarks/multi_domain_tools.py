"""Benchmark: tools trained on merged domains vs tools trained on one domain, on every test user of each domain's
own fixed 1+99 lists (no VLM: the tools are cheap enough to score all users, the report scores a subset).

    .venv/bin/python benchmarks/multi_domain_tools.py \
        --merged artifacts/datasets/beauty-sports --merged-tools artifacts/tools/beauty-sports \
        --domain beauty=artifacts/datasets/beauty:artifacts/tools/beauty \
        --domain sports=artifacts/datasets/sports:artifacts/tools/sports,artifacts/tools/sports-long

Each domain's lists are mapped into the merged ids (reasonrec/report/multi_domain.py: same users, histories,
targets and candidates), so the only difference between the two columns is the training data — and the
training budget, which each row states (tool.json: epochs and why the fit stopped), because a tool stopped by
its time budget is not a like-for-like comparison. A domain may list several single-domain tool folders; the
first that holds a tool is used for it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from reasonrec.recommend.calibration import part_requests, split_eh
from reasonrec.report.multi_domain import to_merged, training_notes
from reasonrec.report.ranking import load_tools, metrics, popularity, sampled_popular_ranks, sampled_ranks
from reasonrec.tools.data import ToolData


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--merged", required=True, help="merged prepared dataset")
    parser.add_argument("--merged-tools", required=True, help="tools trained on the merged dataset")
    parser.add_argument("--domain", action="append", required=True,
                        help="name=dataset:tools_dir[,tools_dir...] (the domain's own dataset and tool folders)")
    parser.add_argument("--tools", default="sasrec,gru4rec,nextitnet,lightgcn,two_tower")
    args = parser.parse_args()
    names = args.tools.split(",")
    started = time.perf_counter()
    merged = ToolData.load(args.merged)
    merged_eh = split_eh(merged)
    merged_tools = load_tools(args.merged_tools, names, "/tmp")
    merged_notes = training_notes(args.merged_tools, names)
    out = {"benchmark": "multi_domain_tools", "merged": args.merged, "merged_tools": args.merged_tools,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "domains": {}}
    for spec in args.domain:
        name, rest = spec.split("=", 1)
        dataset, dirs = rest.split(":", 1)
        single = ToolData.load(dataset)
        requests = part_requests(single, "test")
        mapped = to_merged(requests, single, merged, merged_eh, name)
        rows = [{"tool": "most_popular",
                 "single_HR@5": metrics(sampled_popular_ranks(popularity(single), requests))["HR@5"],
                 "merged_HR@5": metrics(sampled_popular_ranks(popularity(merged), mapped))["HR@5"]}]
        for tool in names:
            folder = next((d for d in dirs.split(",") if os.path.exists(os.path.join(d, tool, "tool.json"))), None)
            row = {"tool": tool}
            if folder is not None:
                single_tool = load_tools(folder, [tool], "/tmp").tools[tool]
                got = metrics(sampled_ranks(single_tool, single, requests))
                row.update({"single_dir": folder, "single_HR@5": got["HR@5"], "single_NDCG@5": got["NDCG@5"],
                            "single_training": training_notes(folder, [tool]).get(tool)})
            got = metrics(sampled_ranks(merged_tools.tools[tool], merged, mapped))
            row.update({"merged_HR@5": got["HR@5"], "merged_NDCG@5": got["NDCG@5"],
                        "merged_training": merged_notes.get(tool)})
            if "single_HR@5" in row:
                row["merged_minus_single_HR@5"] = row["merged_HR@5"] - row["single_HR@5"]
            rows.append(row)
        out["domains"][name] = {"users": len(requests), "rows": rows}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
