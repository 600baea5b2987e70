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
