"""Which of tonight's users cannot be scored, and why: the nightly job quarantines them (counted, written beside
the table under _quarantine/) instead of dropping them or failing the night."""

from __future__ import annotations

import numpy as np

NO_CANDIDATE = "no candidate item left to recommend"


def quarantine_reasons(user_idx: np.ndarray, user_id: np.ndarray, n_users: int, known_ids: np.ndarray) -> np.ndarray:
    """'' for a scorable user, else why not (the users table and the dataset disagree). known_ids: the data set's
    user_id of every row whose user_idx is inside 0..n_users-1, in row order."""
    reasons = np.full(len(user_idx), "", dtype=object)
    inside = (user_idx >= 0) & (user_idx < n_users)
    reasons[~inside] = [f"user_idx {u} is outside the dataset's 0..{n_users - 1}" for u in user_idx[~inside]]
    rows = np.flatnonzero(inside)
    wrong = rows[np.asarray(known_ids).astype(str) != user_id[rows]]
    reasons[wrong] = [f"user_id {user_id[r]!r} does not match user_idx {user_idx[r]}" for r in wrong]
    return reasons.astype(str)
