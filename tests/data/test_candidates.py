"""Candidate lists, full-ranking masks and CTR negatives: exact sizes, never a hidden positive, seeded,
byte-identical on disk; plus the 1+99 protocol on the real Amazon Beauty sequences."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reasonrec.data.candidates import (candidate_matrix, full_ranking_targets, read_candidates, read_ctr,
                                       sample_candidates, sample_ctr, write_candidates, write_ctr)
from reasonrec.data.evidence import cold_start_groups, evidence_horizon, write_cold_start_groups, write_evidence
from reasonrec.data.schema import Dataset, Manifest, build_tables
from reasonrec.data.splits import SPLIT_PARTS, leave_one_out, random_split, write_split
from tests.data.test_splits import make_dataset

N_ITEMS = 40


def user_items(ds: Dataset) -> dict[int, set[int]]:
    return {u: set(g["item_idx"]) for u, g in ds.interactions.groupby("user_idx")}


@pytest.fixture
def tiny(tmp_path) -> Dataset:
    """12 users with 4..15 interactions over 40 items; a repeat purchase for user 'u00'."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(12):
        picked = rng.choice(N_ITEMS, size=4 + u, replace=False)
        rows += [(f"u{u:02d}", f"i{item:02d}", t) for t, item in enumerate(picked)]
    rows.append(("u00", rows[0][1], 99))  # u00 buys its first item again, last: test target seen in train
    return make_dataset(tmp_path / "ds", rows, n_items=N_ITEMS)


def test_candidates_hold_target_once_and_only_unseen_negatives(tiny):
    split = leave_one_out(tiny)
    frame = sample_candidates(tiny, split, "test", n_negatives=9, seed=3)
    seen = user_items(tiny)
    assert len(frame) == len(split.test) == tiny.n_users
    matrix = candidate_matrix(frame)
    assert matrix.shape == (len(frame), 10) and matrix.dtype == np.int32
    for row, slate in zip(frame.itertuples(), matrix):
        assert len(set(slate.tolist())) == 10
        assert slate[row.target_position] == row.target_item_idx
        assert (slate == row.target_item_idx).sum() == 1
        negatives = np.delete(slate, row.target_position)
        assert not set(negatives.tolist()) & seen[row.user_idx]  # never a train/valid/test item
        assert ((0 <= negatives) & (negatives < N_ITEMS)).all()
    assert frame["user_id"].tolist() == split.test["user_id"].tolist()
    # the target's position is spread over the list, not always first or last
    assert frame["target_position"].nunique() > 3


def test_candidates_are_deterministic_and_seed_dependent(tiny):
    split = leave_one_out(tiny)
    first = sample_candidates(tiny, split, "valid", 9, seed=11)
    again = sample_candidates(tiny, split, "valid", 9, seed=11)
    other = sample_candidates(tiny, split, "valid", 9, seed=12)
    assert np.array_equal(candidate_matrix(first), candidate_matrix(again))
    assert not np.array_equal(candidate_matrix(first), candidate_matrix(other))
    test_lists = sample_candidates(tiny, split, "test", 9, seed=11)
    assert not np.array_equal(candidate_matrix(first), candidate_matrix(test_lists))  # parts draw separately
    assert first.attrs["manifest"]["params"]["seed"] == 11


def test_users_with_too_few_unseen_items_raise_or_are_listed(tmp_path):
    rows = [("greedy", f"i{k:02d}", k) for k in range(8)] + [("light", f"i{k:02d}", k) for k in range(3)]
    ds = make_dataset(tmp_path / "ds", rows, n_items=12)  # greedy has 4 unseen items, light 9
    split = leave_one_out(ds)
    with pytest.raises(ValueError, match="'greedy'.*only 4 of 12"):
        sample_candidates(ds, split, "test", n_negatives=5, seed=0)
    frame = sample_candidates(ds, split, "test", n_negatives=5, seed=0, on_too_few="skip")
    assert frame["user_id"].tolist() == ["light"]
    assert frame.attrs["manifest"]["stats"]["skipped_users"] == ["greedy"]
    assert candidate_matrix(frame).shape == (1, 6)  # lists are never shortened


def test_full_ranking_masks_earlier_parts_and_flags_seen_targets(tiny):
    split = leave_one_out(tiny)
    for part, earlier in (("valid", ["train"]), ("test", ["train", "valid"])):
        result = full_ranking_targets(split, part)
        assert result.exclude.shape == (tiny.n_users, N_ITEMS)
        expected = pd.concat([split.part(p) for p in earlier])
        for u in range(tiny.n_users):
            row = result.exclude[[u]].toarray().ravel()
            assert set(np.flatnonzero(row).tolist()) == set(expected.loc[expected["user_idx"] == u, "item_idx"])
        assert result.targets["target_item_idx"].tolist() == split.part(part)["item_idx"].tolist()
    flags = full_ranking_targets(split, "test").targets.set_index("user_idx")["target_seen_before"]
    u00 = tiny.users.set_index("user_id").loc["u00", "user_idx"]
    assert flags[u00] and flags.sum() == 1


@pytest.mark.parametrize("ratio", [4, 1])
def test_ctr_label_ratio_exact_and_negatives_unseen(tiny, ratio):
    split = random_split(tiny, seed=5)
    seen = user_items(tiny)
    for part in SPLIT_PARTS:
        frame = sample_ctr(tiny, split, part, negatives_per_positive=ratio, seed=5)
        positives = split.part(part)
        assert (frame["label"] == 1).sum() == len(positives)
        assert (frame["label"] == 0).sum() == ratio * len(positives)
        # each positive row is followed by its own negatives, for the same user
        assert frame["label"].tolist() == ([1] + [0] * ratio) * len(positives)
        assert frame.loc[frame["label"] == 1, "item_idx"].tolist() == positives["item_idx"].tolist()
        negatives = frame[frame["label"] == 0]
        assert not any(item in seen[u] for u, item in zip(negatives["user_idx"], negatives["item_idx"]))
        # a user's negatives are distinct while enough unseen items exist
        if frame.attrs["manifest"]["stats"]["users_with_repeated_negatives"] == 0:
            assert not negatives.duplicated(["user_idx", "item_idx"]).any()


def test_ctr_cycles_unseen_items_evenly_when_too_few(tmp_path):
    rows = [("a", f"i{k:02d}", k) for k in range(6)]
    ds = make_dataset(tmp_path / "ds", rows, n_items=8)  # 2 unseen items, 6 positives * 1 = 6 negatives
    split = leave_one_out(ds)
    frame = sample_ctr(ds, split, "train", negatives_per_positive=1, seed=0)
    negatives = frame.loc[frame["label"] == 0, "item_idx"]
    assert len(negatives) == 4 and negatives.value_counts().tolist() == [2, 2]
    assert frame.attrs["manifest"]["stats"]["users_with_repeated_negatives"] == 1


def write_everything(ds: Dataset, folder: Path, seed: int) -> None:
    loo, rand = leave_one_out(ds), random_split(ds, seed=seed)
    write_split(loo, str(folder / "splits"))
    write_split(rand, str(folder / "splits"))
    write_candidates(sample_candidates(ds, loo, "test", 9, seed), str(folder / "candidates_test.parquet"))
    write_ctr(sample_ctr(ds, rand, "train", 4, seed), str(folder / "ctr_train.parquet"))
    write_evidence(evidence_horizon(ds, loo), str(folder / "evidence.parquet"))
    write_cold_start_groups(cold_start_groups(ds, loo), str(folder / "cold_start.parquet"))


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_written_artefacts_are_byte_identical(tiny, tmp_path):
    write_everything(tiny, tmp_path / "run1", seed=42)
    write_everything(tiny, tmp_path / "run2", seed=42)
    write_everything(tiny, tmp_path / "run3", seed=43)
    first, second, third = (digests(tmp_path / r) for r in ("run1", "run2", "run3"))
    assert len(first) == 16  # 2 splits x 4 files + 4 artefacts x (parquet + json)
    assert first == second
    assert third["candidates_test.parquet"] != first["candidates_test.parquet"]
    assert third["ctr_train.parquet"] != first["ctr_train.parquet"]
    assert third["splits/loo/test.parquet"] == first["splits/loo/test.parquet"]  # LOO has no randomness

    frame = read_candidates(str(tmp_path / "run1" / "candidates_test.parquet"))
    assert frame.attrs["manifest"]["params"]["n_negatives"] == 9
    assert np.array_equal(candidate_matrix(frame), candidate_matrix(sample_candidates(
        tiny, leave_one_out(tiny), "test", 9, 42)))
    ctr = read_ctr(str(tmp_path / "run1" / "ctr_train.parquet"))
    assert ctr["label"].dtype == np.int8 and ctr.attrs["manifest"]["params"]["negatives_per_positive"] == 4
    with pytest.raises(ValueError, match=r"\.parquet"):
        write_ctr(ctr, str(tmp_path / "ctr.csv"))


def load_p5_sequences(path: Path, name: str) -> Dataset:
    """Minimal in-memory parse of P5 sequential.txt (user item item ...; chronological; ordinal time)."""
    users, items, positions = [], [], []
    for line in path.read_text().splitlines():
        user, *sequence = line.split()
        users += [user] * len(sequence)
        items += sequence
        positions += range(len(sequence))
    interactions = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": np.array(positions, np.int64)})
    item_ids = np.unique(interactions["item_id"])
    item_table = pd.DataFrame({"item_id": item_ids, "title": "", "text": "", "image_uri": None,
                               "image_status": "none", "image_format": None})
    interactions, item_table, user_table = build_tables(interactions, item_table)
    manifest = Manifest(name=name, source="amazon_p5", timestamp_kind="ordinal", n_users=len(user_table),
                        n_items=len(item_table), n_interactions=len(interactions), has_ratings=False,
                        has_reviews=False, n_items_with_image=0)
    return Dataset(str(path.parent), manifest, interactions, item_table, user_table)


@pytest.mark.real_data
def test_beauty_leave_one_out_with_1_plus_99_candidates(shared_data):
    ds = load_p5_sequences(shared_data / "amazon-p5" / "beauty" / "sequential.txt", "beauty")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (22363, 12101, 198502)

    started = time.perf_counter()
    split = leave_one_out(ds)
    frame = sample_candidates(ds, split, "test", n_negatives=99, seed=2024)
    elapsed = time.perf_counter() - started
    assert elapsed < 15, f"LOO + 1+99 candidates took {elapsed:.1f} s"

    assert len(split.test) == len(split.valid) == 22363 and split.stats["users_too_short"] == 0
    matrix = candidate_matrix(frame)
    assert matrix.shape == (22363, 100)
    ordered = np.sort(matrix, axis=1)
    assert (np.diff(ordered, axis=1) > 0).all()  # 100 distinct items per list
    rows = np.arange(len(frame))
    assert (matrix[rows, frame["target_position"].to_numpy()] == frame["target_item_idx"].to_numpy()).all()
    assert ((matrix == frame["target_item_idx"].to_numpy()[:, None]).sum(axis=1) == 1).all()
    # no negative is any item of the user's history (all parts)
    seen = set(zip(ds.interactions["user_idx"].tolist(), ds.interactions["item_idx"].tolist()))
    users = np.repeat(frame["user_idx"].to_numpy(), 100)
    is_target = (np.arange(100)[None, :] == frame["target_position"].to_numpy()[:, None]).ravel()
    pairs = zip(users[~is_target].tolist(), matrix.ravel()[~is_target].tolist())
    assert not any(pair in seen for pair in pairs)
