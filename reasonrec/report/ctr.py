"""CTR table: AUC and LogLoss of the CTR tools on the CTR split's test rows (their own histories), and what
the VLM can say about CTR — only a VLM trained on the ctr task gets a row with numbers."""

from __future__ import annotations

import numpy as np

from reasonrec.baselines import MostPopular
from reasonrec.metrics.ctr import auc, ctr_metrics
from reasonrec.tools.base import Tool
from reasonrec.tools.data import ToolData
from reasonrec.tools.training import ctr_probabilities


def ctr_rows(tools: dict[str, Tool], data: ToolData, users: np.ndarray | None, vlm_tasks: list[str]) -> list[dict]:
    """One row per CTR tool (and most-popular's AUC), on the CTR test rows of `users` (None = all), then the
    VLM-only / ReasonRec rows: numbers are not computed here, the row says why."""
    if data.ctr is None:
        return []
    test = data.ctr["test"]
    keep = np.ones(len(test), dtype=bool) if users is None else test["user_idx"].isin(users).to_numpy()
    rows = []
    for name, tool in tools.items():
        labels, probs = ctr_probabilities(tool, data, "test")
        rows.append({"model": name, "kind": "tool", "rows": int(keep.sum()), **ctr_metrics(labels[keep], probs[keep])})
    train = data.ctr["train"]
    pop = MostPopular().fit(train[train["label"] == 1], data.n_items)
    scores = pop.score(test["user_idx"].to_numpy(), test["item_idx"].to_numpy()[:, None]).ravel()
    rows.append({"model": "most_popular", "kind": "baseline", "rows": int(keep.sum()),
                 "AUC": auc(test["label"].to_numpy()[keep], scores[keep] / (scores.max() + 1.0))})
    note = ("trained for CTR, but VLM CTR scoring is not in this report yet" if "ctr" in vlm_tasks
            else f"not trained for CTR (the VLM's tasks: {', '.join(vlm_tasks) or 'none'})")
    rows += [{"model": m, "kind": "vlm", "note": note} for m in ("VLM-only", "ReasonRec")]
    return rows
