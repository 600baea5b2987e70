"""Evaluation metrics every job reports: ranking (HR/NDCG/MRR@k), CTR (AUC/LogLoss), text (BLEU-4/ROUGE-L)."""

from reasonrec.metrics.ctr import auc, ctr_metrics, log_loss
from reasonrec.metrics.ranking import (
    full_ranking_ranks,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    rank_of_target,
    ranking_metrics,
    seen_matrix,
)
from reasonrec.metrics.text import bleu4, rouge_l, text_metrics

__all__ = [
    "auc", "ctr_metrics", "log_loss",
    "full_ranking_ranks", "hit_rate_at_k", "mrr_at_k", "ndcg_at_k", "rank_of_target", "ranking_metrics",
    "seen_matrix",
    "bleu4", "rouge_l", "text_metrics",
]
