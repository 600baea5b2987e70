"""VLM+tools fusion: weights fit on validation lists, the fused ranking, and where it enters the router."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.router.config import Policy, RouterConfig
from reasonrec.router.fusion import FusionWeights, fit_fusion, fusion_features
from reasonrec.router.refine import merge


def lists(n: int = 400, c: int = 20, seed: int = 0):
    """Validation-like lists: the VLM and tool 'good' see the target through noise; tool 'noise' does not."""
    rng = np.random.default_rng(seed)
    candidates = np.arange(n * c).reshape(n, c)
    targets = candidates[np.arange(n), rng.integers(0, c, n)]
    is_target = candidates == targets[:, None]
    vlm = np.log(np.exp(2.0 * is_target + rng.normal(size=(n, c))) / 10)
    good = 1.5 * is_target + rng.normal(size=(n, c))
    noise = 100.0 * rng.normal(size=(n, c))                        # another scale: z-scores make it comparable
    return vlm, np.stack([good, noise], axis=1), candidates, targets


def test_fit_weighs_informative_sources_and_drops_noise():
    vlm, tools, candidates, targets = lists()
    fusion = fit_fusion(vlm, tools, ["good", "noise"], candidates, targets)
    assert fusion.n_rows == 400 and set(fusion.tools) == {"good", "noise"}
    assert fusion.vlm > 0.5 and fusion.tools["good"] > 0.5 and abs(fusion.tools["noise"]) < 0.2
    assert fusion.vlm > fusion.tools["good"]                       # the VLM's signal is the stronger one
    # On fresh lists the fused ranking beats each source alone.
    vlm, tools, candidates, targets = lists(seed=1)
    fused = fusion.combine(vlm, tools, ["good", "noise"], candidates >= 0)

    def hr1(scores):
        return float((candidates[np.arange(len(targets)), scores.argmax(axis=1)] == targets).mean())

    assert hr1(fused) > max(hr1(vlm), hr1(tools[:, 0]))
    with pytest.raises(ValueError, match="hold their target"):
        fit_fusion(vlm, tools, ["good", "noise"], candidates, targets + 10_000)


def test_combine_is_the_weighted_sum_of_z_scores_with_padding_kept_out():
    candidates = np.array([[1, 2, 3, -1]])
    vlm = np.log(np.array([[0.5, 0.3, 0.2, 1.0]]))
    tools = np.array([[[3.0, 1.0, 2.0, 50.0]]])
    weights = FusionWeights(vlm=2.0, tools={"a": 1.0, "unused": 9.0})
    fused = weights.combine(vlm, tools, ["a"], candidates >= 0)
    z = fusion_features(vlm, tools, candidates >= 0)[0, :3]
    assert fused[0, 3] == -np.inf
    np.testing.assert_allclose(fused[0, :3], 2.0 * z[:, 0] + 1.0 * z[:, 1])
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)   # padding does not enter the statistics
    assert weights.moved_by(["a"]) == "vlm 2.00, a 1.00"


def test_merge_with_fusion_fuses_parsed_rows_and_says_when_the_tools_moved_the_top():
    candidates = np.array([[10, 11, 12], [10, 11, 12], [10, 11, 12]])
    vlm = np.log(np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1], [0.5, 0.4, 0.1]]))
    tools = np.array([[[0.0, 5.0, 0.0]], [[0.0, 5.0, 0.0]], [[0.0, 5.0, 0.0]]])
    consulted = np.ones((3, 1), dtype=bool)
    fusion = FusionWeights(vlm=1.0, tools={"a": 0.5})
    merged = merge(vlm, candidates, np.array([True, True, False]), tools, consulted, fusion, ["a"])
    assert merged.source.tolist() == ["vlm", "vlm", "tool_vote"]
    # Row 0: the VLM hesitates between 10 and 11 and the tool tips it; row 1: the VLM is sure and stands.
    assert merged.top_item.tolist() == [11, 10, 11]
    assert merged.moved.tolist() == [True, False, False]
    plain = merge(vlm, candidates, np.array([True, True, False]), tools, consulted)
    assert plain.top_item.tolist() == [10, 10, 11] and not plain.moved.any()
    with pytest.raises(ValueError, match="one name per tool"):
        merge(vlm, candidates, np.array([True, True, False]), tools, consulted, fusion, [])


def test_policy_carries_the_fusion_weights_into_the_router(tmp_path):
    fusion = FusionWeights(vlm=1.2, tools={"sasrec": 0.8}, n_rows=671)
    policy = Policy(model_version="m@1", fusion=fusion, best_tool={"sequential": "gru4rec"})
    policy.save(str(tmp_path))
    router = Policy.load(str(tmp_path), "m@1").apply(RouterConfig())
    assert router.fusion == fusion and router.best_tool["sequential"] == "gru4rec"
    assert Policy(model_version="m@1").apply(RouterConfig()).fusion is None
