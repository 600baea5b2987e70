import math

import numpy as np
import pytest
import sklearn.metrics

from reasonrec.metrics.ranking import (
    full_ranking_ranks,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    rank_of_target,
    ranking_metrics,
    seen_matrix,
)


def test_rank_of_target_counts_candidates_scoring_above():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],   # target col 0 is best -> rank 0
        [0.9, 0.1, 0.2, 0.3],   # target col 1 is worst -> rank 3
        [0.5, 0.7, 0.6, 0.1],   # target col 2: only 0.7 above -> rank 1
    ])
    ranks = rank_of_target(scores, np.array([0, 1, 2]))
    assert ranks.tolist() == [0, 3, 1]
    assert ranks.dtype == np.int64


def test_ties_are_pessimistic_so_a_constant_scorer_gets_the_worst_rank():
    scores = np.zeros((3, 5))
    ranks = rank_of_target(scores, np.array([0, 2, 4]))
    assert ranks.tolist() == [4, 4, 4]
    assert hit_rate_at_k(ranks, 1) == 0.0
    # a partial tie: two others equal to the target, one above
    ranks = rank_of_target(np.array([[0.5, 0.5, 0.9, 0.5, 0.1]]), np.array([0]))
    assert ranks.tolist() == [3]


def test_exclude_mask_removes_candidates_from_the_ranking():
    scores = np.array([[0.1, 0.9, 0.8, 0.5]])
    target = np.array([3])
    assert rank_of_target(scores, target).tolist() == [2]
    mask = np.array([[False, True, False, False]])
    assert rank_of_target(scores, target, mask).tolist() == [1]
    mask = np.array([[False, True, True, False]])
    assert rank_of_target(scores, target, mask).tolist() == [0]


def test_exclude_mask_marking_the_target_is_an_error():
    mask = np.array([[False, False], [False, True]])
    with pytest.raises(ValueError, match="query row 1: exclude_mask marks the target"):
        rank_of_target(np.ones((2, 2)), np.array([0, 1]), mask)


def test_nan_scores_name_the_query_row_unless_excluded():
    scores = np.array([[0.1, 0.2, 0.3], [0.1, np.nan, 0.3]])
    with pytest.raises(ValueError, match="query row 1: scores contain NaN"):
        rank_of_target(scores, np.array([0, 0]))
    # the NaN sits on an excluded candidate: it takes no part in the ranking
    mask = np.array([[False, False, False], [False, True, False]])
    assert rank_of_target(scores, np.array([0, 0]), mask).tolist() == [2, 1]


@pytest.mark.parametrize("scores, target, mask, message", [
    (np.ones(3), np.array([0]), None, "2-D"),
    (np.ones((2, 3)), np.array([0]), None, "target_index has shape"),
    (np.ones((2, 3)), np.array([0, 3]), None, "query row 1: target_index 3 is outside"),
    (np.ones((2, 3)), np.array([0.0, 1.0]), None, "integer"),
    (np.ones((2, 3)), np.array([0, 1]), np.zeros((2, 2), bool), "exclude_mask has shape"),
    (np.ones((2, 3)), np.array([0, 1]), np.zeros((2, 3)), "must be bool"),
])
def test_rank_of_target_rejects_malformed_input(scores, target, mask, message):
    with pytest.raises(ValueError, match=message):
        rank_of_target(scores, target, mask)


def test_metrics_match_hand_computation():
    ranks = np.array([0, 3, 7])  # k=5: hits at rank 0 and 3, miss at 7
    assert hit_rate_at_k(ranks, 5) == pytest.approx(2 / 3)
    assert ndcg_at_k(ranks, 5) == pytest.approx((1 / math.log2(2) + 1 / math.log2(5) + 0) / 3)
    assert mrr_at_k(ranks, 5) == pytest.approx((1 + 1 / 4 + 0) / 3)
    # k=8 brings rank 7 in
    assert hit_rate_at_k(ranks, 8) == 1.0
    assert ndcg_at_k(ranks, 8) == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(9)) / 3)
    assert mrr_at_k(ranks, 8) == pytest.approx((1 + 1 / 4 + 1 / 8) / 3)
    # rank == k is a miss (0-based ranks)
    assert hit_rate_at_k(np.array([5]), 5) == 0.0


def test_ranking_metrics_dict_keys_and_values():
    ranks = np.array([0, 3, 7])
    metrics = ranking_metrics(ranks, ks=(1, 5))
    assert list(metrics) == ["HR@1", "NDCG@1", "MRR@1", "HR@5", "NDCG@5", "MRR@5"]
    assert metrics["HR@1"] == pytest.approx(1 / 3)
    assert metrics["NDCG@5"] == ndcg_at_k(ranks, 5)
    assert all(isinstance(v, float) for v in metrics.values())


def test_ndcg_agrees_with_sklearn_on_tie_free_scores():
    rng = np.random.default_rng(0)
    n_queries, n_candidates = 50, 20
    scores = rng.random((n_queries, n_candidates))  # continuous: ties have probability 0
    target = rng.integers(0, n_candidates, n_queries)
    relevance = np.zeros_like(scores)
    relevance[np.arange(n_queries), target] = 1.0
    ranks = rank_of_target(scores, target)
    for k in (1, 5, 10, 20):
        expected = sklearn.metrics.ndcg_score(relevance, scores, k=k)
        assert ndcg_at_k(ranks, k) == pytest.approx(expected)


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_invalid_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        hit_rate_at_k(np.array([0, 1]), k)


@pytest.mark.parametrize("ranks, message", [
    (np.array([], dtype=int), "non-empty"),
    (np.array([[0, 1]]), "1-D"),
    (np.array([0.0, 1.0]), "integers"),
    (np.array([0, -1]), "row 1 is negative"),
])
def test_invalid_ranks(ranks, message):
    with pytest.raises(ValueError, match=message):
        ndcg_at_k(ranks, 5)


def test_ranking_metrics_needs_a_cutoff():
    with pytest.raises(ValueError, match="ks is empty"):
        ranking_metrics(np.array([0]), ks=())


def test_full_ranking_in_batches_matches_the_dense_computation():
    rng = np.random.default_rng(1)
    n_users, n_items = 23, 40
    all_scores = rng.random((n_users, n_items))
    train_users = rng.integers(0, n_users, 100)
    train_items = rng.integers(0, n_items, 100)
    seen = seen_matrix(train_users, train_items, n_users, n_items)
    targets = np.array([rng.choice(np.flatnonzero(~seen[u].toarray().ravel())) for u in range(n_users)])
    users = np.arange(n_users)
    requested_batches = []

    def score_fn(batch_users):
        requested_batches.append(len(batch_users))
        return all_scores[batch_users]

    ranks = full_ranking_ranks(score_fn, users, targets, n_items, seen=seen, batch_size=5)
    dense = rank_of_target(all_scores, targets, seen.toarray())
    assert ranks.tolist() == dense.tolist()
    assert requested_batches == [5, 5, 5, 5, 3]  # never more than one batch of scores at a time
    # the exclusions matter: without them ranks can only get worse
    unfiltered = full_ranking_ranks(score_fn, users, targets, n_items, batch_size=7)
    assert (unfiltered >= ranks).all() and (unfiltered > ranks).any()


def test_full_ranking_errors_name_the_global_row():
    scores = np.zeros((6, 4))
    scores[4, 2] = np.nan
    with pytest.raises(ValueError, match="query row 4: scores contain NaN"):
        full_ranking_ranks(lambda u: scores[u], np.arange(6), np.zeros(6, dtype=int), 4, batch_size=3)
    seen = seen_matrix(np.array([5]), np.array([1]), 6, 4)
    with pytest.raises(ValueError, match="query row 5: exclude_mask marks the target"):
        full_ranking_ranks(lambda u: scores[u] * 0, np.arange(6), np.ones(6, dtype=int), 4, seen=seen,
                           batch_size=2)
    with pytest.raises(ValueError, match=r"score_fn returned shape \(2, 3\)"):
        full_ranking_ranks(lambda u: np.zeros((len(u), 3)), np.arange(2), np.zeros(2, dtype=int), 4)


def test_seen_matrix_marks_pairs_and_rejects_out_of_range():
    seen = seen_matrix(np.array([0, 0, 2, 0]), np.array([1, 3, 0, 1]), 3, 4)
    assert seen.toarray().tolist() == [
        [False, True, False, True],
        [False, False, False, False],
        [True, False, False, False],
    ]
    with pytest.raises(ValueError, match="row 1: item_idx 4 is outside"):
        seen_matrix(np.array([0, 1]), np.array([0, 4]), 3, 4)
