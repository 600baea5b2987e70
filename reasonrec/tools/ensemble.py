"""The paper's "majority vote" baseline: every tool scores the candidates and the ensemble averages them.

Tools score on different scales (logits, dot products), so each tool's scores are z-normalised per query
before averaging: every tool gets one equal vote on the order of the list.
"""

from __future__ import annotations

import numpy as np

from reasonrec.tools.base import Tool
from reasonrec.tools.data import Queries


class MajorityVote:
    name = "majority_vote"

    def __init__(self, tools: list[Tool]):
        if not tools:
            raise ValueError("majority vote needs at least one tool")
        self.tools = tools

    @staticmethod
    def _standardise(scores: np.ndarray) -> np.ndarray:
        centred = scores - scores.mean(axis=1, keepdims=True)
        return centred / (scores.std(axis=1, keepdims=True) + 1e-8)

    def score(self, queries_by_tool: list[Queries], candidates: np.ndarray) -> np.ndarray:
        """queries_by_tool[i] are the queries as tool i wants them (each tool has its own max_len)."""
        votes = [self._standardise(tool.score(q, candidates)) for tool, q in zip(self.tools, queries_by_tool)]
        return np.mean(votes, axis=0)


class LearnedStack:
    """A learned tool stack: the tools' per-list z-scored scores (the majority vote's inputs) combined with
    weights a logistic regression fits on the validation lists (the list's target = 1, its other items = 0).

    The control for "does the VLM add anything a tuned ensemble of the same tools cannot": unlike the vote, a
    weak tool gets a small (or negative) weight. Fit on validation only; the test lists are scored, never read.
    """

    name = "learned_stack"

    def __init__(self, tools: list[Tool], names: list[str], regularisation: float = 1.0):
        if len(tools) < 2 or len(names) != len(tools):
            raise ValueError(f"a tool stack needs at least two tools, one name each (got {len(tools)}, {names})")
        self.tools = tools
        self.names = list(names)
        self.regularisation = regularisation
        self.weights: np.ndarray | None = None

    def features(self, queries_by_tool: list[Queries], candidates: np.ndarray) -> np.ndarray:
        """[n, C, T] each tool's z-scored score of each candidate (as MajorityVote standardises them)."""
        return np.stack([MajorityVote._standardise(tool.score(q, candidates))
                         for tool, q in zip(self.tools, queries_by_tool)], axis=-1)

    def fit(self, queries_by_tool: list[Queries], candidates: np.ndarray, targets: np.ndarray) -> "LearnedStack":
        """Weights from validation lists: one (candidate, is-target) example per list entry."""
        from sklearn.linear_model import LogisticRegression

        x = self.features(queries_by_tool, candidates)
        y = candidates == np.asarray(targets)[:, None]
        if not y.any(axis=1).all():
            raise ValueError("every validation list must hold its target")
        model = LogisticRegression(C=self.regularisation, max_iter=1000)
        model.fit(x.reshape(-1, x.shape[-1]), y.reshape(-1))
        self.weights = model.coef_[0].astype(np.float64)   # the intercept moves every score alike: not kept
        return self

    def score(self, queries_by_tool: list[Queries], candidates: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise ValueError("fit the stack on validation lists before scoring")
        return self.features(queries_by_tool, candidates) @ self.weights

    def weights_by_tool(self) -> dict[str, float]:
        return {n: round(float(w), 4) for n, w in zip(self.names, self.weights)} if self.weights is not None else {}
