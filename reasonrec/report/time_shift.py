"""The time-shift table: the same system trained and tested on a temporal split (train before the 0.8 time
quantile, test from the 0.9 one), beside the main table's numbers for the same models.

Under leave-one-out a user's test item can be older than other users' training interactions; under the global
cut-off every test interaction lies after every training one, so the gap between the two columns is what the
models lose to time. The temporal numbers come from the main table's own code (ranking.baseline_rows and
outcomes.collect, on that split's ToolData and a Bundle of its VLM and tools); this module holds only what is
specific to the table: the split guard, the split's cut-offs and counts, and the two-column rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from reasonrec.io import join, read_json

# Rows of the table, by the main table's model names; the ranking tools are added before them.
FIXED_MODELS = ("most_popular", "majority_vote", "VLM-only", "VLM+tools always", "ReasonRec (routed)")


class SplitMismatch(ValueError):
    """A VLM or tool of a time-shift entry was trained on another split than the entry scores."""



def check_split(split: str, vlm_dir: str, tools_dir: str, tool_names: Sequence[str]) -> None:
    """Refuse artifacts trained on another split: a loo model scored on temporal test rows has trained on
    interactions after the cut-off, which is the leak the table exists to rule out. The VLM's run.json must
    state `split` (a run that does not cannot be checked); tools_dir/metrics.json and each tool.json are
    checked where they record one (jobs/train_tools.py writes both; a bare Tool.save writes neither)."""
    run = join(vlm_dir, "run.json")
    settings = (read_json(run) or {}).get("settings")
    if settings is None:
        raise FileNotFoundError(f"time shift: {run} not found or without settings (a jobs/train_vlm.py run folder?)")
    if settings.get("split") != split:
        raise SplitMismatch(f"time shift: {run} says the VLM trained on split {settings.get('split')!r}, "
                            f"the entry scores split {split!r}")
    metrics = join(tools_dir, "metrics.json")
    trained = ((read_json(metrics) or {}).get("config") or {}).get("split")
    if trained is not None and trained != split:
        raise SplitMismatch(f"time shift: {metrics} says the tools trained on split {trained!r}, "
                            f"the entry scores split {split!r}")
    for name in tool_names:
        meta = join(tools_dir, name, "tool.json")
        trained = (read_json(meta) or {}).get("split")
        if trained is not None and trained != split:
            raise SplitMismatch(f"time shift: {meta} says tool {name!r} trained on split {trained!r}, "
                                f"the entry scores split {split!r}")


def split_summary(dataset: str, split: str) -> dict:
    """The split's cut-offs and counts as prepare_data wrote them (splits/<split>/split.json)."""
    uri = join(dataset, "splits", split, "split.json")
    meta = read_json(uri)
    if meta is None:
        raise FileNotFoundError(f"time shift: {uri} not found (prepare the split with jobs/prepare_data.py)")
    stats, params = meta.get("stats", {}), meta.get("params", {})
    keys = ("train_interactions", "valid_interactions", "test_interactions", "train_users", "test_users",
            "test_users_without_train")
    return {"file": uri, "params": params, **{k: stats.get(k) for k in keys}}


def cutoff_text(summary: dict) -> str:
    """One sentence on how the split cuts time, or on what it is when it has no cut-offs (e.g. loo)."""
    p = summary["params"]
    if "t_valid" not in p or "t_test" not in p:
        return f"No time cut-offs recorded (params {json.dumps(p, sort_keys=True)})."

    def day(t: int) -> str:
        return datetime.fromtimestamp(int(t), tz=timezone.utc).strftime("%Y-%m-%d")

    return (f"train = interactions before t_valid = {p['t_valid']} ({day(p['t_valid'])}, the "
            f"{p.get('valid_quantile')} time quantile), valid up to t_test = {p['t_test']} ({day(p['t_test'])}, the "
            f"{p.get('test_quantile')} quantile), test from t_test on.")


def shift_rows(main_rows: Sequence[dict], shifted_rows: Sequence[dict]) -> list[dict]:
    """One row per model of the shifted run (its ranking tools, then FIXED_MODELS): its HR@5 / NDCG@5 beside
    the main table's row of the same name (None where the main table has no such model)."""
    main = {r["model"]: r for r in main_rows}
    shifted = {r["model"]: r for r in shifted_rows}
    order = [r["model"] for r in shifted_rows if r.get("kind") == "tool"]
    order += [m for m in FIXED_MODELS if m in shifted]
    rows = []
    for model in order:
        before, after = main.get(model, {}), shifted[model]
        row = {"model": model, "kind": after.get("kind"),
               "main_HR@5": before.get("HR@5"), "main_NDCG@5": before.get("NDCG@5"),
               "HR@5": after["HR@5"], "NDCG@5": after["NDCG@5"], "rows": after["users"]}
        if "route_shares" in after:
            row["route_shares"] = after["route_shares"]
        rows.append(row)
    return rows
