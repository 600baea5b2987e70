"""The majority vote and the learned tool stack on hand-built scores: the stack learns to trust the tool that
ranks targets first, and scores exactly its features times its weights."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.tools.ensemble import LearnedStack, MajorityVote


class Fixed:
    """A stand-in tool: scores read from a table by (row, column), whatever the queries."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def score(self, queries, candidates: np.ndarray) -> np.ndarray:
        return self.scores[: len(candidates)]


def lists(n: int = 200, c: int = 20, seed: int = 0):
    """n lists of c items with the target in column 0; `good` puts it first 80 % of the time, `noise` never
    knows it."""
    rng = np.random.default_rng(seed)
    candidates = np.arange(n * c).reshape(n, c)
    good = rng.normal(size=(n, c))
    good[:, 0] += np.where(rng.random(n) < 0.8, 3.0, 0.0)
    noise = rng.normal(size=(n, c))
    return candidates, candidates[:, 0].copy(), Fixed(good), Fixed(noise)


def test_the_stack_trusts_the_informative_tool_and_beats_the_vote():
    candidates, targets, good, noise = lists()
    stack = LearnedStack([good, noise], ["good", "noise"]).fit([None, None], candidates, targets)
    weights = stack.weights_by_tool()
    assert weights["good"] > 1.0 and abs(weights["noise"]) < 0.3 * weights["good"]
    test_candidates, _, good_t, noise_t = lists(seed=1)
    stack.tools = [good_t, noise_t]                       # the same weights on other (test) lists
    stacked = stack.score([None, None], test_candidates)
    voted = MajorityVote([good_t, noise_t]).score([None, None], test_candidates)
    hit = lambda s: float((s.argmax(axis=1) == 0).mean())  # noqa: E731 - top-1 is the target's column 0
    assert hit(stacked) > hit(voted)
    np.testing.assert_allclose(stacked, stack.features([None, None], test_candidates) @ stack.weights)


def test_the_stack_refuses_what_it_cannot_do():
    candidates, targets, good, noise = lists(n=10)
    with pytest.raises(ValueError, match="at least two tools"):
        LearnedStack([good], ["good"])
    stack = LearnedStack([good, noise], ["good", "noise"])
    with pytest.raises(ValueError, match="fit the stack"):
        stack.score([None, None], candidates)
    with pytest.raises(ValueError, match="must hold its target"):
        stack.fit([None, None], candidates, np.full(10, -5))
