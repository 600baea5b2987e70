"""Tonight's histories file and the nightly actors that read it: the file holds exactly what the in-memory path
(Bundle.everything / tonight_eh through `gather`) gives, a batch reads it back in any order, a stale file is
rewritten, and the scoring actors never read interactions.parquet (they score the same with it emptied)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.recommend import CandidateScorer, RouterScorer, write_batch
from reasonrec.data.schema import INTERACTIONS_SCHEMA, Dataset
from reasonrec.recommend import histories
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.histories import HistoryReader, ensure_histories, histories_path
from reasonrec.recommend.requests import gather
from reasonrec.recommend.stages import retrieve_candidates
from reasonrec.recommend.system import System, resolve

N_CANDIDATES = 20


@pytest.fixture(scope="module")
def dataset(world, tmp_path_factory) -> str:
    """A copy of the world's dataset with its histories file in small row groups (several per batch)."""
    root = tmp_path_factory.mktemp("histories") / "dataset"
    shutil.copytree(world.dataset, root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(histories, "ROW_GROUP_USERS", 16)
        ensure_histories(str(root))
    return str(root)


def data_only(dataset: str) -> Bundle:
    """A Bundle over the dataset alone (no tools, no VLM: nothing to resolve)."""
    return Bundle(System(recommend=RecommendConfig(dataset=dataset, vlm_dir=None), model_version="none",
                         policy_source="none"))


def test_the_file_holds_every_interaction_and_tonights_eh(dataset):
    bundle = data_only(dataset)
    table = pq.read_table(histories_path(dataset))
    meta = pq.ParquetFile(histories_path(dataset)).metadata
    assert table.schema.remove_metadata().equals(histories.HISTORIES_SCHEMA)
    assert meta.num_row_groups == -(-bundle.dataset.n_users // 16) > 2
    users = bundle.dataset.users.sort_values("user_idx")
    assert table["user_id"].to_pylist() == users["user_id"].tolist()
    assert table["user_idx"].to_pylist() == list(range(bundle.dataset.n_users))
    everything = bundle.everything
    for u, history in enumerate(table["history"].to_pylist()):
        assert history == everything.items[everything.offsets[u]:everything.offsets[u + 1]].tolist()
    np.testing.assert_array_equal(table["evidence_horizon"].to_numpy(), bundle.tonight_eh)


def test_a_batch_in_any_order_reads_what_gather_gives(dataset):
    bundle = data_only(dataset)
    reader = HistoryReader(dataset)
    users = np.random.default_rng(0).permutation(bundle.dataset.n_users)[:40]
    users = np.concatenate([users, users[:3]])               # repeats, across row groups, unsorted
    got = reader.read(users)
    want = gather(bundle.everything, users, bundle.tonight_eh)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_array_equal(got.eh, want.eh)
    assert got.user_id.tolist() == bundle.user_ids[users].astype(str).tolist()
    assert len(reader.read(np.zeros(0, dtype=np.int64)).user_id) == 0
    with pytest.raises(IndexError, match=f"outside 0..{bundle.dataset.n_users - 1}"):
        reader.read(np.array([bundle.dataset.n_users]))


def test_an_up_to_date_file_is_kept_and_a_stale_one_rewritten(dataset, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(dataset, root)
    path = Path(histories_path(str(root)))
    before = path.stat().st_mtime_ns
    ensure_histories(str(root))
    assert path.stat().st_mtime_ns == before                 # cached
    # Re-prepared data (here: one interaction fewer) must not be scored on last time's histories.
    interactions = pq.read_table(root / "interactions.parquet")
    pq.write_table(interactions.slice(0, interactions.num_rows - 1), root / "interactions.parquet")
    ensure_histories(str(root))
    rewritten = pq.read_table(path)
    assert sum(len(h) for h in rewritten["history"].to_pylist()) == interactions.num_rows - 1


def test_the_scoring_actors_never_read_interactions(world, dataset, tmp_path):
    """Score a batch (with an unknown user) on the dataset, then on a copy whose interactions.parquet is empty:
    the same table, and the actors' Bundles never loaded the interactions."""
    def night(root: str) -> tuple[pa.Table, list, list]:
        system = resolve(RecommendConfig(dataset=root, vlm_dir=world.vlm_dir, policy="config",
                                         n_candidates=N_CANDIDATES))
        staging = tmp_path / f"staging-{Path(root).name}"
        candidates = CandidateScorer(system, str(staging), "2026-11-22")
        routes = RouterScorer(system, k=5, run_date="2026-11-22", mode="routed")
        users = Dataset.load(world.dataset).users.iloc[:10]
        batch = {"user_id": np.append(users["user_id"].to_numpy(), "ghost"),
                 "user_idx": np.append(users["user_idx"].to_numpy(), 10_000)}
        scored = candidates(batch)
        table = routes(scored)
        loaded = [candidates.bundle.dataset._frames["interactions"], routes.bundle.dataset._frames["interactions"]]
        held = pq.read_table(staging / "_quarantine").to_pylist()   # the unknown user left the stream here
        return scored, table, loaded, held

    emptied = tmp_path / "emptied"
    shutil.copytree(dataset, emptied)
    pq.write_table(INTERACTIONS_SCHEMA.empty_table(), emptied / "interactions.parquet")   # histories file kept

    scored, table, loaded, held = night(dataset)
    scored_again, table_again, loaded_again, held_again = night(str(emptied))
    assert loaded == loaded_again == [None, None]
    assert held == held_again and [h["user_id"] for h in held] == ["ghost"]
    assert "outside the dataset's" in held[0]["reason"] and scored.num_rows == 10
    # Wall-clock shares are the only columns that may differ; eh is compared apart (NaN for the unknown user).
    assert table.drop_columns(["latency"]).equals(table_again.drop_columns(["latency"]))
    assert scored.drop_columns(["tool_seconds", "eh"]).equals(scored_again.drop_columns(["tool_seconds", "eh"]))
    np.testing.assert_array_equal(scored["eh"].to_numpy(), scored_again["eh"].to_numpy())

    # The candidates are the in-memory path's, and the history/EH travel with each row.
    bundle = Bundle(resolve(RecommendConfig(dataset=dataset, vlm_dir=world.vlm_dir, policy="config",
                                            n_candidates=N_CANDIDATES)))
    users = np.arange(10)
    want = retrieve_candidates(bundle, gather(bundle.everything, users, bundle.tonight_eh))
    got = scored.slice(0, 10)
    np.testing.assert_array_equal(np.array(got["candidates"].to_pylist()), want.candidates)
    assert got["history"].to_pylist() == [want.history(i).tolist() for i in range(10)]
    np.testing.assert_array_equal(got["eh"].to_numpy(), want.eh)

    (tmp_path / "staging").mkdir()
    stats = write_batch(table, str(tmp_path / "staging")).to_pylist()[0]
    assert (stats["users"], stats["rows"]) == (10, 50)
    assert set(pq.read_table(tmp_path / "staging" / stats["file"])["run_date"].to_pylist()) == {
        dt.date(2026, 11, 22)}
