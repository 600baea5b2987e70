"""The main table (sequential task): every ranking tool, most-popular, majority vote and the VLM answers, all
on the same evaluated test rows, on their fixed 1+N lists and (where a model can score the catalogue) in
full ranking. On every test user the tool and baseline numbers equal reasonrec.tools.evaluate's."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reasonrec.baselines import MostPopular
from reasonrec.data.candidates import full_ranking_targets
from reasonrec.io import fetch_dir, join, open_fs
from reasonrec.metrics.ranking import full_ranking_ranks, rank_of_target, ranking_metrics
from reasonrec.recommend.evaluate import target_columns
from reasonrec.recommend.requests import Requests
from reasonrec.tools.base import Tool, load_tool
from reasonrec.tools.data import ToolData
from reasonrec.tools.ensemble import LearnedStack, MajorityVote
from reasonrec.vlm.tool_labels import RANKING_TASKS

KS = (5, 10)


def metrics(rank: np.ndarray, prefix: str = "") -> dict[str, float]:
    """HR/NDCG@5,10 of 0-based target ranks (MRR left out, as in the tools' tables)."""
    return {f"{prefix}{k}": v for k, v in ranking_metrics(np.asarray(rank, dtype=np.int64), KS).items()
            if not k.startswith("MRR")}


@dataclass
class ToolSet:
    """The trained tools of a tools_dir that the report uses, by folder name, with their task."""

    tools: dict[str, Tool]
    tasks: dict[str, str]

    def names(self, tasks: tuple[str, ...]) -> list[str]:
        return [n for n in self.tools if self.tasks[n] in tasks]


def load_tools(tools_dir: str, names: list[str] | None, tmp: str) -> ToolSet:
    """Every folder of tools_dir with a tool.json (or just `names`, in that order), loaded once."""
    fs, root = open_fs(tools_dir)
    if names is None:
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)
                       if fs.exists(join(p, "tool.json")))
    tools, tasks = {}, {}
    for name in names:
        meta = join(root, name, "tool.json")
        if not fs.exists(meta):
            raise FileNotFoundError(f"{join(tools_dir, name)}: no trained tool (tool.json missing)")
        with fs.open(meta, "r") as f:
            tasks[name] = json.load(f)["task"]
        tools[name] = load_tool(fetch_dir(join(tools_dir, name), tmp))
    return ToolSet(tools, tasks)


def sampled_ranks(tool: Tool, data: ToolData, requests: Requests) -> np.ndarray:
    """Ranks on the requests' fixed lists, history = train + valid (ranking_ranks' inputs, on these rows)."""
    queries = data.queries(requests.user_idx, "train+valid", tool.cfg.max_len)
    scores = tool.score(queries, requests.candidates)
    return rank_of_target(scores, target_columns(requests.candidates, requests.targets, requests.user_idx))


def full_ranks(model: Tool | MostPopular, data: ToolData, users: np.ndarray, batch_size: int = 512
               ) -> tuple[np.ndarray, int]:
    """(ranks against the catalogue minus train + valid, targets left out because already seen) for the test
    targets of `users` — tools.evaluate.full_metrics restricted to these users."""
    targets = full_ranking_targets(data.split, "test")
    frame = targets.targets[targets.targets["user_idx"].isin(users)]
    keep = ~frame["target_seen_before"].to_numpy()
    if isinstance(model, MostPopular):
        score_fn = model.score_all_items
    else:
        def score_fn(batch_users):
            return model.score_all(data.queries(batch_users, "train+valid", model.cfg.max_len))
    ranks = full_ranking_ranks(score_fn, frame["user_idx"].to_numpy()[keep], frame["target_item_idx"].to_numpy()[keep],
                               data.n_items, seen=targets.exclude, batch_size=batch_size)
    return ranks, int((~keep).sum())


def popularity(data: ToolData) -> MostPopular:
    """Most-popular counted on train + valid, the history every model sees at test."""
    return MostPopular().fit(pd.concat([data.split.train, data.split.valid], ignore_index=True), data.n_items)


def sampled_popular_ranks(pop: MostPopular, requests: Requests) -> np.ndarray:
    """Most-popular's ranks on the requests' fixed lists (sampled_ranks' twin for the baseline)."""
    cols = target_columns(requests.candidates, requests.targets, requests.user_idx)
    return rank_of_target(pop.score(requests.user_idx, requests.candidates), cols)


def baseline_rows(tools: ToolSet, data: ToolData, requests: Requests, full: bool,
                  valid: Requests | None = None) -> list[dict]:
    """Rows for each ranking tool, most-popular, the majority vote of the ranking tools (if >= 2) and, given
    validation lists `valid`, the learned stack of the same tools fit on them; full-ranking columns for the
    tools and most-popular when `full`."""
    users = np.unique(requests.user_idx)
    rows = []
    ranking = tools.names(RANKING_TASKS)
    for name in ranking:
        row = {"model": name, "kind": "tool", "task": tools.tasks[name], "users": len(requests),
               **metrics(sampled_ranks(tools.tools[name], data, requests))}
        if full:
            ranks, seen = full_ranks(tools.tools[name], data, users)
            row.update({**metrics(ranks, "full_"), "full_targets_seen_before": seen})
        rows.append(row)
    pop = popularity(data)
    row = {"model": "most_popular", "kind": "baseline", "task": "baseline", "users": len(requests),
           **metrics(sampled_popular_ranks(pop, requests))}
    if full:
        ranks, seen = full_ranks(pop, data, users)
        row.update({**metrics(ranks, "full_"), "full_targets_seen_before": seen})
    rows.append(row)
    if len(ranking) >= 2:
        members = [tools.tools[n] for n in ranking]
        queries = [data.queries(requests.user_idx, "train+valid", t.cfg.max_len) for t in members]
        scores = MajorityVote(members).score(queries, requests.candidates)
        cols = target_columns(requests.candidates, requests.targets, requests.user_idx)
        rows.append({"model": "majority_vote", "kind": "ensemble", "task": "ensemble", "users": len(requests),
                     "members": ranking, **metrics(rank_of_target(scores, cols))})
        if valid is not None and len(valid):
            rows.append(stack_row({n: tools.tools[n] for n in ranking}, data, requests, valid))
    return rows


def stack_row(tools: dict[str, Tool], data: ToolData, requests: Requests, valid: Requests) -> dict:
    """The learned stack of `tools` (by name): weights fit on the validation lists (history = train, as the
    tools were validated), then the test lists scored (history = train + valid)."""
    names, members = list(tools), list(tools.values())
    stack = LearnedStack(members, names).fit(
        [data.queries(valid.user_idx, "train", t.cfg.max_len) for t in members], valid.candidates, valid.targets)
    scores = stack.score([data.queries(requests.user_idx, "train+valid", t.cfg.max_len) for t in members],
                         requests.candidates)
    cols = target_columns(requests.candidates, requests.targets, requests.user_idx)
    return {"model": "learned_stack", "kind": "ensemble", "task": "ensemble", "users": len(requests),
            "members": names, "weights": stack.weights_by_tool(), "fit_on_valid_users": len(valid),
            **metrics(rank_of_target(scores, cols))}

