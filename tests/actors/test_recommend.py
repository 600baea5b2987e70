"""actors/recommend.py's Ray-free pieces: how tonight's user table is cut into the stream's blocks, and the
fused tool night's actor (ToolNightScorer) against the split pipeline's three callables on the same batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.recommend import (CandidateScorer, RouterScorer, ToolNightScorer, runs_vlm, user_blocks,
                              write_batch)
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.histories import ensure_histories
from reasonrec.recommend.system import resolve
from reasonrec.scoring import ScoreConfig
from tests.recommend.conftest import build_world

DATE = "2026-11-22"


def test_user_blocks_are_contiguous_even_slices_of_the_table():
    table = pa.table({"user_id": [str(i) for i in range(10)], "user_idx": list(range(10))})
    blocks = user_blocks(table, 8)
    assert [b.num_rows for b in blocks] == [2, 2, 1, 1, 1, 1, 1, 1]
    assert pa.concat_tables(blocks).equals(table)          # every user once, in file order
    assert [b.num_rows for b in user_blocks(table, 30)] == [1] * 10   # never an empty block
    assert [b.num_rows for b in user_blocks(table, 1)] == [10]
    empty = user_blocks(table.slice(0, 0), 8)
    assert len(empty) == 1 and empty[0].num_rows == 0 and empty[0].schema == table.schema


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("tool-night-world"), n_users=40)
    ensure_histories(world.dataset)   # the job's setup step: the candidate stage reads tonight's histories
    return world


def system_of(world, vlm: bool = False):
    return resolve(RecommendConfig(dataset=world.dataset, tools_dir=world.tools_dir,
                                   vlm_dir=world.vlm_dir if vlm else None, policy="config",
                                   consult_pool=["sasrec"]))


def tonight(world, n: int) -> dict[str, np.ndarray]:
    users = pq.read_table(Path(world.dataset) / "users.parquet").slice(0, n)
    return {"user_id": users["user_id"].to_numpy(zero_copy_only=False), "user_idx": users["user_idx"].to_numpy()}


def parts(staging: Path) -> dict[str, pa.Table]:
    return {p.name: pq.read_table(p) for p in sorted(staging.glob("*.parquet"))}


def test_the_fused_tool_night_writes_what_the_split_stages_write(world, tmp_path):
    system, batch = system_of(world), tonight(world, 16)
    split, fused = tmp_path / "split", tmp_path / "fused"
    split.mkdir(), fused.mkdir()
    expected = write_batch(RouterScorer(system, 5, DATE, "tools")(CandidateScorer(system, str(split), DATE)(batch)),
                           str(split))
    got = ToolNightScorer(system, str(fused), 5, DATE, "tools")(batch)
    assert got.drop_columns(["latency"]).equals(expected.drop_columns(["latency"]))   # seconds differ run to run
    assert got["users"][0].as_py() == 16 and got["rows"][0].as_py() == 16 * 5
    assert set(got["routes"][0].as_py()) == {"tool"}
    assert parts(fused).keys() == parts(split).keys() and len(parts(fused)) == 1
    for name, table in parts(fused).items():
        assert table.equals(parts(split)[name])


def test_a_fused_batch_of_users_the_dataset_lacks_is_quarantined_with_an_empty_stats_row(world, tmp_path):
    batch = {"user_id": np.array(["ghost-1", "ghost-2"]), "user_idx": np.array([10_000, -3])}
    stats = ToolNightScorer(system_of(world), str(tmp_path), 5, DATE, "tools")(batch)
    assert stats.to_pylist() == [{"file": "", "rows": 0, "users": 0, "routes": [], "latency": [], "sources": []}]
    held = pa.concat_tables(pq.read_table(p) for p in (tmp_path / "_quarantine").glob("*.parquet"))
    assert sorted(held["user_id"].to_pylist()) == ["ghost-1", "ghost-2"]
    assert not list(tmp_path.glob("*.parquet"))               # no table part for a batch with no scored user


def test_only_a_night_that_calls_the_vlm_keeps_the_split_pools(world):
    with_vlm, without = system_of(world, vlm=True), system_of(world)
    assert runs_vlm(ScoreConfig(mode="routed"), with_vlm) and runs_vlm(ScoreConfig(mode="vlm+tools"), with_vlm)
    assert not runs_vlm(ScoreConfig(mode="tools"), with_vlm)       # every route forced to the tools
    assert not runs_vlm(ScoreConfig(mode="routed"), without)       # no VLM run at all
