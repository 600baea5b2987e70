"""benchmarks/score_scale.py's single-process night (issue 19 point 4's baseline): the pipeline's own stage
callables without Ray over a tiny world's users file cover every user once, as the job's completeness check
counts them, so the ratio it reports compares the same work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT
from tests.recommend.conftest import build_world

pytestmark = pytest.mark.slow


def _benchmark():
    spec = importlib.util.spec_from_file_location("score_scale", REPO_ROOT / "benchmarks" / "score_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_single_process_night_scores_every_user_once(tmp_path):
    world = build_world(tmp_path / "world", n_users=90)
    out = tmp_path / "single"
    got = _benchmark().single_process(Path(world.dataset), Path(world.tools_dir), out, batch_size=32)
    users = pq.read_table(Path(world.dataset) / "users.parquet").num_rows
    assert got["users"] == got["users_on_disk"] == users and got["quarantined"] == 0
    assert got["rows"] == users * 10            # k = 10 rows each: 150 items leave every user 10 candidates
    assert got["seconds"] >= got["loop_seconds"] > 0 and got["users_per_second"] > 0
    assert got["peak_rss_mib"] > 0 and got["batch_size"] == 32
    parts = [p for p in out.iterdir() if p.suffix == ".parquet"]
    assert len(parts) == -(-users // 32)        # one part per batch, as write_batch names them
    table = pq.read_table(parts[0])
    assert set(table["route"].to_pylist()) == {"tool"}
