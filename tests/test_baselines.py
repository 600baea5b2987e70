import math

import numpy as np
import pandas as pd
import pytest

from reasonrec.baselines import MostPopular, evaluate_sampled
from reasonrec.metrics.ranking import full_ranking_ranks, seen_matrix

N_ITEMS = 5
# train counts: item 2 -> 3, item 0 -> 2, item 1 -> 2, item 3 -> 1, item 4 -> 0
# popularity order: 2, then 0 and 1 tied (lower idx first), 3, 4
TRAIN = pd.DataFrame({
    "user_idx": np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.int32),
    "item_idx": np.array([2, 0, 2, 1, 2, 0, 1, 3], dtype=np.int32),
})


@pytest.fixture
def model() -> MostPopular:
    return MostPopular().fit(TRAIN, N_ITEMS)


def test_most_popular_item_ranks_first_and_ties_break_by_item_idx(model):
    assert model.topk(np.array([0, 7]), 5).tolist() == [[2, 0, 1, 3, 4]] * 2
    scores = model.score(np.array([0]), np.array([[4, 3, 1, 0, 2]]))
    assert np.floor(scores).tolist() == [[0, 1, 2, 2, 3]]  # the integer part is the train count
    assert scores[0, 3] > scores[0, 2]  # item 0 beats item 1 at equal count


def test_topk_skips_excluded_items(model):
    seen = seen_matrix(TRAIN["user_idx"].to_numpy(), TRAIN["item_idx"].to_numpy(), 4, N_ITEMS)
    top = model.topk(np.array([0, 1, 3]), 2, exclude=seen)
    # user 0 saw {2, 0}; user 1 saw {2, 1}; user 3 saw {1, 3}
    assert top.tolist() == [[1, 3], [0, 3], [2, 0]]
    dense = model.topk(np.array([0, 1, 3]), 2, exclude=seen.toarray())
    assert dense.tolist() == top.tolist()
    with pytest.raises(ValueError, match="user_idx 0 has only 3 items left after exclusion, fewer than k=4"):
        model.topk(np.array([0]), 4, exclude=seen)
    with pytest.raises(ValueError, match="k must be an integer in"):
        model.topk(np.array([0]), 6)


def test_evaluate_sampled_gives_hand_computed_metrics(model):
    frame = pd.DataFrame({
        "user_idx": [0, 1, 2, 0],
        "target_item_idx": [2, 1, 4, 3],
        "candidates": [[4, 2, 1], [1, 0, 3], [3, 4, 2], [0, 3, 2]],
    })
    # target ranks: 2 is the best -> 0; 1 loses only to 0 -> 1; 4 is the worst -> 2; 3 loses to 0 and 2 -> 2
    metrics = evaluate_sampled(model, frame, ks=(1, 2))
    assert metrics["HR@1"] == pytest.approx(1 / 4)
    assert metrics["HR@2"] == pytest.approx(2 / 4)
    assert metrics["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert metrics["MRR@2"] == pytest.approx((1 + 1 / 2) / 4)
    # Parquet round trips give numpy arrays in the list column; same answer
    as_arrays = frame.assign(candidates=[np.array(c) for c in frame["candidates"]])
    assert evaluate_sampled(model, as_arrays, ks=(1, 2)) == metrics


@pytest.mark.parametrize("candidates, message", [
    ([[4, 2, 1], [1, 0]], "row 1, field 'candidates'.*same length"),
    ([[4, 2, 1], [0, 3, 4]], "row 1, field 'candidates': target_item_idx 1 appears 0 times"),
    ([[2, 2, 1], [1, 0, 3]], "row 0, field 'candidates': target_item_idx 2 appears 2 times"),
    ([[4, 2, 1], None], "row 1, field 'candidates'"),
])
def test_evaluate_sampled_rejects_bad_candidate_lists(model, candidates, message):
    frame = pd.DataFrame({"user_idx": [0, 1], "target_item_idx": [2, 1], "candidates": candidates})
    with pytest.raises(ValueError, match=message):
        evaluate_sampled(model, frame)


def test_evaluate_sampled_rejects_missing_targets(model):
    frame = pd.DataFrame({"user_idx": [0, 1], "target_item_idx": [2, np.nan], "candidates": [[2, 1], [1, 0]]})
    with pytest.raises(ValueError, match="field 'target_item_idx' must hold integer item idx"):
        evaluate_sampled(model, frame)


def test_evaluate_sampled_needs_its_columns(model):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['candidates'\]"):
        evaluate_sampled(model, pd.DataFrame({"user_idx": [0], "target_item_idx": [1]}))


def test_full_ranking_with_most_popular(model):
    seen = seen_matrix(TRAIN["user_idx"].to_numpy(), TRAIN["item_idx"].to_numpy(), 4, N_ITEMS)
    # user 0 (saw 2, 0) -> target 3 has only 1 above it; user 3 (saw 1, 3) -> target 4 has 2, 0 above it
    ranks = full_ranking_ranks(model.score_all_items, np.array([0, 3]), np.array([3, 4]), N_ITEMS,
                               seen=seen, batch_size=1)
    assert ranks.tolist() == [1, 2]


def test_fit_and_score_reject_bad_input(model):
    with pytest.raises(ValueError, match="train row at 1: item_idx 5 is outside"):
        MostPopular().fit(pd.DataFrame({"user_idx": [0, 0], "item_idx": [1, 5]}), N_ITEMS)
    with pytest.raises(ValueError, match="lacks column"):
        MostPopular().fit(pd.DataFrame({"item_idx": [1]}), N_ITEMS)
    with pytest.raises(ValueError, match=r"candidates at \(0, 1\): item_idx -1 is outside"):
        model.score(np.array([0]), np.array([[0, -1]]))
    with pytest.raises(ValueError, match="candidates must be"):
        model.score(np.array([0, 1]), np.array([[0, 1]]))
    with pytest.raises(RuntimeError, match="not fitted"):
        MostPopular().score(np.array([0]), np.array([[0]]))
