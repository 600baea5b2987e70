"""The stages of a recommendation over a loaded Bundle: retrieve candidates, score them with the tools, then
answer — the router's dispatch (reasonrec.router.answer: route, VLM first pass, refine, merge, rationale) with
this Bundle's VLM, instructions and consult pool plugged in (`BundlePasses`).

The nightly job's actors, the Serve app, calibration, the reports and the benchmarks all call these functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.requests import InstructionWriter, Requests
from reasonrec.router.answer import MODES, Answer, FirstPass, Mode, ToolScores, answer_rows, first_pass, ranked
from reasonrec.router.config import RouterConfig
from reasonrec.tools.data import Queries
from reasonrec.tools.retrieval import retrieve
from reasonrec.vlm.tool_labels import pad_histories

__all__ = ["MODES", "Answer", "BundlePasses", "FirstPass", "Mode", "ToolScores", "answer", "ranked",
           "retrieve_candidates", "score_tools", "vlm_first_pass"]


# ---------------------------------------------------------------------------------------------- retrieval

def retrieve_candidates(bundle: Bundle, requests: Requests) -> Requests:
    """Tonight's candidates: the retrieval tool's user vectors against its item index, history excluded.
    Rows with fewer unseen items than n_candidates keep what there is (trailing -1 padding)."""
    import scipy.sparse

    tool, index = bundle.retrieval
    n, n_items = len(requests), bundle.n_items
    histories = requests.histories()
    queries = Queries(requests.user_idx, pad_histories(histories, tool.cfg.max_len))
    vectors = tool.user_vectors(queries)
    rows = np.repeat(np.arange(n), [len(np.unique(h)) for h in histories])
    cols = np.concatenate([np.unique(h) for h in histories]) if n else np.zeros(0, dtype=np.int64)
    seen = scipy.sparse.csr_array((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n, n_items))
    most_seen = int(np.diff(seen.indptr).max(initial=0))
    k = min(bundle.cfg.n_candidates, n_items - most_seen)
    candidates = np.full((n, bundle.cfg.n_candidates), -1, dtype=np.int64)
    if k > 0 and n:
        items, _ = retrieve(index, vectors, k, exclude=seen)
        candidates[:, :k] = items
        # Rows that could take more than the batch's tightest row: fill them in a second call of their own.
        roomy = np.flatnonzero(n_items - np.diff(seen.indptr) >= bundle.cfg.n_candidates)
        if k < bundle.cfg.n_candidates and len(roomy):
            more, _ = retrieve(index, vectors[roomy], bundle.cfg.n_candidates, exclude=seen[roomy])
            candidates[roomy] = more
    return Requests(requests.user_idx, requests.offsets, requests.items, requests.eh,
                    _trailing_padding(candidates), requests.targets)


def _trailing_padding(candidates: np.ndarray) -> np.ndarray:
    """Valid items first in their order, -1 after: the VLM's candidate columns then match ours."""
    order = np.argsort(candidates < 0, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


# ---------------------------------------------------------------------------------------------- tools

def score_tools(bundle: Bundle, requests: Requests, names: Sequence[str] | None = None) -> ToolScores:
    """`names` (default: the best tool alone — all a row on the tool route needs) on every row's candidates.
    The consult pool is scored inside `answer`, for the high-risk rows only."""
    started = time.perf_counter()
    candidates = requests.candidates
    valid = candidates >= 0
    safe = np.where(valid, candidates, 0)
    histories = requests.histories()
    names = list(bundle.tools)[:1] if names is None else list(names)
    scores = np.full((len(requests), len(names), candidates.shape[1]), -np.inf, dtype=np.float32)
    for col, name in enumerate(names):
        tool = bundle.tools[name]
        if len(requests) and candidates.shape[1]:
            queries = Queries(requests.user_idx, pad_histories(histories, tool.cfg.max_len))
            scores[:, col] = np.where(valid, tool.score(queries, safe), -np.inf)
    return ToolScores(names, scores, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------- answer

class BundlePasses:
    """A Bundle as the router's VLMPasses: its instructions, its VLM scorer (loaded on first use, inside the
    router's fallback), and its consult pool's tools."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle

    @property
    def pool(self) -> list[str]:
        return list(self.bundle.tools)

    @property
    def tool_names(self) -> list[str]:
        return self.bundle.scorer.tool_names

    def instructions(self, rows: Requests):
        return InstructionWriter(self.bundle.item_text, self.bundle.instruction_config).sequential(rows)

    def score(self, instructions):
        return self.bundle.scorer.score(instructions)

    def score_tools(self, rows: Requests, names: Sequence[str]) -> ToolScores:
        return score_tools(self.bundle, rows, names)


def answer(bundle: Bundle, requests: Requests, tools: ToolScores, mode: Mode = "routed",
           router: RouterConfig | None = None, keep_refine_inputs: bool = False,
           shared_first: FirstPass | None = None) -> Answer:
    """The router's answer on `requests` with this Bundle's models; `router` replaces the Bundle's for this call
    only (a report comparing consult modes). tools must come from score_tools on the same requests;
    shared_first from vlm_first_pass on them (forced VLM routes only)."""
    vlm = None if mode == "tools" or bundle.cfg.vlm_dir is None else BundlePasses(bundle)
    return answer_rows(router or bundle.router, requests, tools, mode, vlm, keep_refine_inputs, shared_first)


def vlm_first_pass(bundle: Bundle, requests: Requests) -> FirstPass | None:
    """The VLM's first pass over every row, for callers that answer several forced VLM routes on the same rows;
    None when this system has no VLM."""
    return None if bundle.cfg.vlm_dir is None else first_pass(BundlePasses(bundle), requests)
