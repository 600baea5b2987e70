"""One online recommendation over the nightly job's own stages (reasonrec.recommend), Ray-free.

    request ─▶ resolve (ids -> item_idx, limits, who is cold start)
            ─▶ tools_stage: retrieve_candidates + score_tools (+ the first routing decision)
                 low risk  ─▶ answer() here: the best tool answers, the VLM is never touched
                 otherwise ─▶ answer_stage (the VLM deployment; batches of requests share one answer() call)

A known user is scored exactly as tonight's table scored them: the same Bundle state (every interaction as
history, Bundle.tonight_eh), the same candidates, the same answer(). Cold start (an unknown user_id, or a
history without a known user): the tools' user embeddings know nothing about this user, so the router is not
asked; the most popular items the history does not hold are the candidates, ranked by the best tool on the
given history when that tool reads histories only (task "sequential"), else by popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.requests import Requests, gather
from reasonrec.recommend.stages import Answer, ToolScores, answer, ranked, retrieve_candidates, score_tools
from reasonrec.router.policy import first_stage
from reasonrec.serving.api import RecommendRequest
from reasonrec.serving.config import ServeConfig
from reasonrec.tools.data import Queries
from reasonrec.vlm.tool_labels import pad_histories


class BadRequest(ValueError):
    """Input the app refuses with a 4xx status; the message names the field and the value."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class Catalogue:
    """user_id / item_id -> index maps of the bundle's dataset, and item popularity (cold start)."""

    def __init__(self, bundle: Bundle):
        self.item_ids = np.asarray(bundle.item_ids).astype(str)
        self._user = {u: i for i, u in enumerate(np.asarray(bundle.user_ids).astype(str))}
        self._item = {it: i for i, it in enumerate(self.item_ids)}
        counts = np.bincount(bundle.dataset.interactions["item_idx"].to_numpy(), minlength=bundle.n_items)
        self.popularity = counts.astype(np.float64)
        self.by_popularity = np.argsort(-counts, kind="stable")   # ties to the lower item_idx

    def user(self, user_id: str | None) -> int:
        """user_idx, or -1 for an unknown (or absent) user."""
        return -1 if user_id is None else self._user.get(user_id, -1)

    def items(self, item_ids: list[str], field: str) -> np.ndarray:
        unknown = [i for i in item_ids if i not in self._item]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            raise BadRequest(f"{field}: unknown item id(s) {shown}")
        return np.array([self._item[i] for i in item_ids], dtype=np.int64)

    def item(self, item_id: str, field: str) -> int:
        return int(self.items([item_id], field)[0])


@dataclass
class Resolved:
    """A validated recommend request in index space."""

    user_id: str | None
    user_idx: int              # -1: unknown user (cold start)
    history: np.ndarray | None  # item_idx oldest first; None = tonight's stored history
    k: int

    @property
    def cold_start(self) -> bool:
        return self.user_idx < 0


def resolve(request: RecommendRequest, catalogue: Catalogue, cfg: ServeConfig) -> Resolved:
    if request.k > cfg.max_k:
        raise BadRequest(f"k: {request.k} is out of range 1..{cfg.max_k}")
    history = None
    if request.history is not None:
        if len(request.history) > cfg.max_history:
            raise BadRequest(f"history: {len(request.history)} items, at most {cfg.max_history} allowed")
        history = catalogue.items(request.history, "history")
    return Resolved(request.user_id, catalogue.user(request.user_id), history, request.k)


@dataclass
class Pending:
    """A known user after the tools stage whose row needs the VLM (what the tools replica hands on)."""

    user_id: str
    k: int
    requests: Requests   # one row, candidates filled
    tools: ToolScores    # the best tool on that row


def known_requests(bundle: Bundle, resolved: Resolved) -> Requests:
    """One row as tonight's job builds it (gather over Bundle.everything), or with the given history."""
    if resolved.history is None:
        return gather(bundle.everything, np.array([resolved.user_idx]), bundle.tonight_eh)
    history = resolved.history
    return Requests(np.array([resolved.user_idx], dtype=np.int64), np.array([0, len(history)], dtype=np.int64),
                    history.astype(np.int64), bundle.tonight_eh[[resolved.user_idx]].astype(np.float64),
                    np.zeros((1, 0), dtype=np.int64), np.full(1, -1, dtype=np.int64))


def tools_stage(bundle: Bundle, resolved: Resolved, version: str) -> dict | Pending:
    """Retrieval and the best tool for a known user; the finished response when the row is low risk."""
    requests = retrieve_candidates(bundle, known_requests(bundle, resolved))
    tools = score_tools(bundle, requests)
    low = True
    if bundle.cfg.vlm_dir is not None:
        low = bool(first_stage(requests.eh, tools.confidence()[:, 0], bundle.router)[0])
    if not low:
        return Pending(resolved.user_id, resolved.k, requests, tools)
    return respond(bundle, requests, answer(bundle, requests, tools), [resolved.user_id], [resolved.k], version)[0]


def answer_stage(bundle: Bundle, pending: list[Pending], version: str) -> list[dict]:
    """The rest of answer() (VLM pass, second stage, refine) for several requests in one call."""
    requests = Requests.concat([p.requests for p in pending])
    tools = ToolScores(pending[0].tools.names, np.concatenate([p.tools.scores for p in pending]),
                       float(sum(p.tools.seconds for p in pending)))
    result = answer(bundle, requests, tools)
    return respond(bundle, requests, result, [p.user_id for p in pending], [p.k for p in pending], version)


def respond(bundle: Bundle, requests: Requests, result: Answer, user_ids: list[str | None], ks: list[int],
            version: str) -> list[dict]:
    """RecommendResponse bodies, ranked exactly as the nightly table ranks (recommend.stages.ranked)."""
    items, scores = ranked(result, requests.candidates, max(ks))
    out = []
    for row, (user_id, k) in enumerate(zip(user_ids, ks)):
        keep = np.flatnonzero(items[row, :k] >= 0)
        out.append({
            "user_id": user_id,
            "items": [{"rank": int(r) + 1, "item_id": str(bundle.item_ids[items[row, r]]),
                       "score": float(scores[row, r])} for r in keep],
            "route": str(result.route[row]), "risk": str(result.risk[row]),
            "evidence_horizon": _number(requests.eh[row]), "confidence": _number(result.confidence[row]),
            "tools_consulted": list(result.tools_consulted[row]),
            "rationale": result.rationale[row] or ("no candidate item left to recommend" if not len(keep) else ""),
            "model_version": version, "cold_start": False,
        })
    return out


def cold_start(bundle: Bundle, catalogue: Catalogue, resolved: Resolved, version: str) -> dict:
    """Unknown user: the most popular items outside the given history, ranked by a history-only best tool."""
    history = resolved.history if resolved.history is not None else np.zeros(0, dtype=np.int64)
    seen = np.zeros(bundle.n_items, dtype=bool)
    seen[history] = True
    pool = catalogue.by_popularity[~seen[catalogue.by_popularity]][:bundle.cfg.n_candidates]
    scores = catalogue.popularity[pool]
    best = next(iter(bundle.tools), None)
    who = "unknown user" if resolved.user_id is not None else "no user_id"
    if best is not None and bundle.tools[best].task == "sequential" and len(history) and len(pool):
        tool = bundle.tools[best]
        # user_idx 0 is a placeholder: a sequential tool reads the history only.
        queries = Queries(np.zeros(1, dtype=np.int64), pad_histories([history], tool.cfg.max_len))
        scores = tool.score(queries, pool[None, :])[0].astype(np.float64)
        why = f"{who}: the {len(pool)} most popular unseen items, ranked by {best} on the given history"
    else:
        why = f"{who}, " + ("no history" if not len(history) else f"{best or 'no tool'} needs a known user") + \
              f": the {min(resolved.k, len(pool))} most popular unseen items"
    order = np.argsort(-scores, kind="stable")[:resolved.k]
    return {
        "user_id": resolved.user_id,
        "items": [{"rank": r + 1, "item_id": str(catalogue.item_ids[pool[j]]), "score": float(scores[j])}
                  for r, j in enumerate(order)],
        "route": "cold_start", "risk": "high", "evidence_horizon": None, "confidence": None,
        "tools_consulted": [], "rationale": why, "model_version": version, "cold_start": True,
    }


def _number(value: float) -> float | None:
    """JSON has no NaN: an unknown value is null."""
    value = float(value)
    return None if np.isnan(value) else value
