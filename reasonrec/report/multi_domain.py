"""The multi-domain table: a system trained on several merged domains, scored per domain on that domain's own
fixed test lists, beside the system trained on the domain alone.

The merged data set's own 1+99 lists draw negatives from the whole merged catalogue, so most of a Beauty user's
negatives are Sports items, which are easy to rank low: its HR@5 is not comparable with a single-domain table.
This table therefore maps each domain's lists into the merged id space (ids are "<domain>:<id>",
reasonrec/data/merge.py) and answers the same users, histories, targets and candidates with both systems: the
only difference left is what the models were trained on. The merged rows come from the main table's code
(ranking.baseline_rows and outcomes.collect); this module holds only the id mapping, its guards and the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reasonrec.data.schema import Dataset
from reasonrec.io import join, read_json
from reasonrec.recommend.requests import PAD_ITEM, Requests, gather
from reasonrec.tools.data import ToolData

# Rows of the table, by the main table's model names; the ranking tools come first.
FIXED_MODELS = ("most_popular", "majority_vote", "VLM-only", "VLM+tools always", "ReasonRec (routed)")


class DomainMismatch(ValueError):
    """The merged data set was not merged from this domain's data set (an id or a history does not match)."""


def domains_of(dataset: Dataset) -> list[str]:
    """The domains a merged data set was built from (its manifest's `domains`); [] for a single-domain set."""
    return list(dataset.manifest.domains or [])


def index_map(single_ids, single_idx, merged_ids, merged_idx, domain: str, what: str) -> np.ndarray:
    """int64 array: single-domain index -> merged index of "<domain>:<id>"; DomainMismatch naming the first id
    the merged set lacks."""
    lookup = dict(zip(merged_ids, np.asarray(merged_idx, dtype=np.int64)))
    single_idx = np.asarray(single_idx, dtype=np.int64)
    out = np.full(int(single_idx.max()) + 1 if len(single_idx) else 0, -1, dtype=np.int64)
    for sid, idx in zip(single_ids, single_idx):
        merged = lookup.get(f"{domain}:{sid}")
        if merged is None:
            raise DomainMismatch(f"multi-domain {domain!r}: the merged data set has no {what} '{domain}:{sid}' "
                                 f"(was it merged from this domain's data set, under this domain name?)")
        out[idx] = merged
    return out


def domain_of_users(dataset: Dataset, user_idx: np.ndarray) -> np.ndarray:
    """The domain prefix of each user of a merged data set (str array aligned with user_idx)."""
    ids = dataset.users.sort_values("user_idx")["user_id"].to_numpy()
    return np.array([str(ids[u]).split(":", 1)[0] for u in np.asarray(user_idx, dtype=np.int64)], dtype=object)


def to_merged(requests: Requests, single: ToolData, merged: ToolData, merged_eh: np.ndarray, domain: str
              ) -> Requests:
    """The single-domain `requests` (fixed test lists, train + valid histories) in the merged id space, with the
    merged system's own histories and EH. The histories must be the single-domain ones, item for item: the merge
    keeps each domain's interactions and order, so a difference means the two data sets do not belong together
    (DomainMismatch naming the first user)."""
    users = index_map(single.dataset.users["user_id"], single.dataset.users["user_idx"],
                      merged.dataset.users["user_id"], merged.dataset.users["user_idx"], domain, "user")
    items = index_map(single.dataset.items["item_id"], single.dataset.items["item_idx"],
                      merged.dataset.items["item_id"], merged.dataset.items["item_idx"], domain, "item")
    candidates = np.where(requests.candidates == PAD_ITEM, PAD_ITEM,
                          items[np.maximum(requests.candidates, 0)])
    out = gather(merged.train_valid, users[requests.user_idx], merged_eh, candidates, items[requests.targets])
    for row in range(len(requests)):
        if not np.array_equal(items[requests.history(row)], out.history(row)):
            user = single.dataset.users["user_id"].to_numpy()[
                np.searchsorted(single.dataset.users["user_idx"].to_numpy(), requests.user_idx[row])]
            raise DomainMismatch(f"multi-domain {domain!r}: user {user!r} has another train + valid history in the "
                                 f"merged data set ({len(out.history(row))} items) than in the domain's "
                                 f"({len(requests.history(row))} items): the two were not split alike")
    return out


def training_notes(tools_dir: str, names: Sequence[str]) -> dict[str, str]:
    """How each tool's fit ended, from its tool.json (and the device from tools_dir/metrics.json where it is
    recorded): '17 ep, early stop, cuda' / '2 ep, time budget' / '40 ep, epoch budget'. Tools trained under
    different budgets are not a like-for-like comparison, so the table shows this for both sides."""
    rows = (read_json(join(tools_dir, "metrics.json")) or {}).get("rows") or []
    device = {r.get("tool"): r.get("device") for r in rows}
    notes = {}
    for name in names:
        meta = read_json(join(tools_dir, name, "tool.json")) or {}
        cfg = meta.get("config") or {}
        epochs = [h for h in meta.get("fit_history") or [] if "epoch" in h]
        if not epochs:
            continue
        last = epochs[-1]
        if last.get("stopped_by_budget") or (cfg.get("max_train_seconds") is not None
                                             and last.get("seconds", 0) > cfg["max_train_seconds"]):
            why = "time budget"
        elif cfg.get("epochs") is not None and last["epoch"] >= cfg["epochs"]:
            why = "epoch budget"
        else:
            why = "early stop"
        notes[name] = f"{last['epoch']} ep, {why}" + (f", {device[name]}" if device.get(name) else "")
    return notes


def compare_rows(single_rows: Sequence[dict], merged_rows: Sequence[dict], notes: dict[str, dict] | None = None
                 ) -> list[dict]:
    """One row per model (ranking tools of either side, then FIXED_MODELS): the single-domain system's HR@5 /
    NDCG@5 beside the merged system's on the same lists, and merged - single (None where a side lacks it)."""
    single = {r["model"]: r for r in single_rows}
    merged = {r["model"]: r for r in merged_rows}
    tools = [r["model"] for r in [*single_rows, *merged_rows] if r.get("kind") == "tool"]
    order = list(dict.fromkeys(tools)) + [m for m in FIXED_MODELS if m in single or m in merged]
    rows = []
    for model in order:
        a, b = single.get(model, {}), merged.get(model, {})
        row = {"model": model, "kind": a.get("kind") or b.get("kind"),
               "single_HR@5": a.get("HR@5"), "single_NDCG@5": a.get("NDCG@5"),
               "merged_HR@5": b.get("HR@5"), "merged_NDCG@5": b.get("NDCG@5")}
        both = row["single_HR@5"] is not None and row["merged_HR@5"] is not None
        row["delta_HR@5"] = row["merged_HR@5"] - row["single_HR@5"] if both else None
        for side, r in (("single", a), ("merged", b)):
            if "route_shares" in r:
                row[f"{side}_route_shares"] = r["route_shares"]
            note = (notes or {}).get(side, {}).get(model)
            if note:
                row[f"{side}_training"] = note
        rows.append(row)
    return rows


def by_domain_rows(domains: np.ndarray, hits: dict[str, np.ndarray]) -> list[dict]:
    """The main table's hit@5 per answer, split by the users' domain (the merged lists, merged-catalogue
    negatives): {domain, users, HR@5/<answer>...}, then every user."""
    rows = []
    for name in [*dict.fromkeys(domains.tolist()), None]:
        on = np.ones(len(domains), dtype=bool) if name is None else domains == name
        rows.append({"domain": name or "all", "users": int(on.sum()),
                     **{f"HR@5/{k}": float(v[on].mean()) if on.any() else None for k, v in hits.items()}})
    return rows
