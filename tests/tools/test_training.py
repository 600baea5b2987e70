"""The zoo's one training loop (reasonrec/tools/training.py): its wall-clock budget holds inside an epoch."""

from __future__ import annotations

import numpy as np

from reasonrec.tools import TOOLS


def test_the_time_budget_stops_an_epoch_between_steps(synthetic_data):
    """An epoch of a large data set can outlast the budget: the loop checks it after every step, validates the
    partial epoch and keeps it (it is the best so far), instead of finding out at the epoch's end."""
    cls = TOOLS["bpr_mf"]
    cfg = cls.config_class(epochs=5, embedding_dim=8, batch_size=8, max_train_seconds=1e-3, seed=0)
    steps_per_epoch = sum(1 for _ in cls(cfg, synthetic_data.n_users, synthetic_data.n_items)
                          .training_batches(synthetic_data, np.random.default_rng(0)))
    assert steps_per_epoch > 10

    history = cls(cfg, synthetic_data.n_users, synthetic_data.n_items).fit(synthetic_data)
    epochs = [h for h in history if "epoch" in h]
    assert len(epochs) == 1 and epochs[0]["stopped_by_budget"] is True
    assert 1 <= epochs[0]["steps"] < steps_per_epoch
    assert np.isfinite(epochs[0]["valid_NDCG@5"]) and history[-1]["best"]["epoch"] == 1

    whole = cls(cfg.model_copy(update={"epochs": 1, "max_train_seconds": 600.0}), synthetic_data.n_users,
                synthetic_data.n_items).fit(synthetic_data)
    assert whole[0]["steps"] == steps_per_epoch and "stopped_by_budget" not in whole[0]
