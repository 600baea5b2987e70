"""jobs/score.py through its real CLI on local Ray, on a small world (synthetic data, trained tools, a tiny VLM):
a complete routed table with its summary; reruns of a night that replace it exactly even when a scoring actor
dies mid-batch; a SIGKILLed run that leaves last night's partition untouched; S3 output; a quarantined user.

Every run starts its own local Ray cluster inside the job process (as a user's laptop run does), so the
RR_CHAOS_KILL hook reaches the actors through that process's environment."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.recommend import write_batch
from reasonrec.recommend.parts import part_name, write_quarantine_part
from reasonrec.data.schema import Dataset
from reasonrec.io import open_fs
from reasonrec.publish import SUCCESS, Publication, committed
from reasonrec.recommend.table import TABLE_SCHEMA, quarantine_rows, table_rows
from reasonrec.router.policy import ROUTES
from tests.conftest import REPO_ROOT, run_job
from tests.recommend.conftest import build_world

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)

DATE = "2026-11-22"
PARTITION = f"run_date={DATE}"
K = 5
KEY = ["user_id", "rank"]


def score_args(world, out) -> list[str]:
    """One night's arguments; every run of a date uses the same batching, so its rows are the same."""
    return [f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={world.vlm_dir}", "recommend.policy=config",
            f"out={out}", f"run_date={DATE}", "eval_split=null", "batch_size=8", f"k={K}"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("score-world"), n_users=60)


@pytest.fixture(scope="module")
def first_night(world, tmp_path_factory) -> Path:
    """One committed night (with the offline check), kept pristine: tests copy it before rerunning into it."""
    out = tmp_path_factory.mktemp("first-night") / "recs"
    args = [a for a in score_args(world, out) if a != "eval_split=null"]
    result = run_job("score.py", *args, "eval_users=20")
    assert "[score] offline check (1+99 loo test, 20 users, routed)" in result.stdout
    return out


def copy_night(first_night: Path, tmp_path: Path) -> Path:
    out = tmp_path / "recs"
    shutil.copytree(first_night, out)
    return out


def read_table(out: Path) -> pd.DataFrame:
    """The published rows, read the way a reader must: through the files that _SUCCESS lists."""
    record = committed(str(out), PARTITION)
    assert record is not None, f"{out / PARTITION} has no {SUCCESS}"
    table = pa.concat_tables([pq.read_table(out / PARTITION / name) for name in record["files"]
                              if not name.startswith("_quarantine/")])
    return table.to_pandas().sort_values(KEY).reset_index(drop=True)


def fingerprint(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for name in ("_staging", "_previous") for p in (out / name).glob("*")]


def check_table(table: pd.DataFrame, ds: Dataset, users: set[str]) -> None:
    assert set(table["user_id"]) == users
    assert not table.duplicated(KEY).any()
    assert all(sorted(ranks) == list(range(1, K + 1)) for ranks in table.groupby("user_id")["rank"].apply(list))
    seen = set(zip(ds.interactions["user_id"], ds.interactions["item_id"]))
    assert not any(pair in seen for pair in zip(table["user_id"], table["item_id"]))
    assert set(table["route"]) <= set(ROUTES) and set(table["risk"]) <= {"low", "medium", "high"}
    consulted = table["tools_consulted"].map(len) > 0
    assert (consulted == (table["route"] == "vlm+tools")).all()
    assert (table["rationale"].str.len() > 0).all() and table["model_version"].nunique() == 1
    assert set(table["run_date"].astype(str)) == {DATE}


def check_summary(summary: dict, n_users: int, quarantined: int = 0) -> None:
    assert summary["users"] == n_users and summary["rows"] == n_users * K
    assert summary["quarantined"] == quarantined and summary["run_date"] == DATE
    assert set(summary["route_shares"]) == set(ROUTES)
    assert sum(summary["route_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    for route, share in summary["route_shares"].items():
        latency = summary["latency_ms_per_user"][route]
        if share:
            assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"], (route, latency)
        else:
            assert latency == {}
    # Per route taken, whose output answered (a parsed VLM output or a fallback): shares of that route's users.
    assert {r for r, share in summary["route_shares"].items() if share} == set(summary["answer_sources"])
    for route, sources in summary["answer_sources"].items():
        assert sum(sources.values()) == pytest.approx(1.0, abs=1e-3), route
        assert set(sources) <= ({"tool", "tool_fallback"} if route == "tool" else
                                {"vlm", "tool_vote", "vlm_unparsed", "tool_fallback"}), route


def test_routed_table_then_rerun_with_a_killed_vlm_actor_is_identical(job, world, first_night, tmp_path):
    out = copy_night(first_night, tmp_path)
    ds = Dataset.load(world.dataset)
    record = committed(str(out), PARTITION)
    assert record["partition"] == PARTITION and len(record["files"]) > 1  # one part per block, several blocks
    assert sorted(p.name for p in (out / PARTITION).iterdir()) == sorted([SUCCESS, *record["files"]])
    first = read_table(out)
    assert pq.read_schema(out / PARTITION / record["files"][0]).remove_metadata().equals(TABLE_SCHEMA)
    check_table(first, ds, set(ds.users["user_id"]))
    assert len(first) == ds.n_users * K

    summary = json.loads((out / "_summaries" / f"{PARTITION}.json").read_text())
    check_summary(summary, ds.n_users)
    assert summary["model_version"] == first["model_version"].iloc[0] == record["summary"]["model_version"]
    assert summary["parts"] == len(record["files"])
    assert 0.0 <= summary["offline_check"]["HR@5"] <= 1.0
    for route, share in summary["route_shares"].items():
        assert share == pytest.approx((first.drop_duplicates("user_id")["route"] == route).mean(), abs=1e-3)

    # The first RouterScorer call kills its own process: Ray restarts the actor and retries the batch.
    marker = tmp_path / "vlm-killed"
    job("score.py", *score_args(world, out), env={"RR_CHAOS_KILL": f"vlm:{marker}"})
    assert marker.exists(), "the chaos hook never fired: the VLM actor was not killed"
    rerun = committed(str(out), PARTITION)
    assert rerun["run_id"] != record["run_id"]
    pd.testing.assert_frame_equal(read_table(out), first)
    assert sorted(p.name for p in (out / PARTITION).iterdir()) == sorted([SUCCESS, *rerun["files"]])
    assert leftovers(out) == []


def session_processes(sid: int) -> list[psutil.Process]:
    """Live processes of a session: the job, Ray's daemons, and Ray's workers (each in a process group of its own,
    so a killpg of the job's group does not reach them)."""
    alive = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return alive


def kill_session(sid: int, timeout: float = 30) -> None:
    """SIGKILL the job's process group, then whatever of its session is left, until nothing is."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while left := session_processes(sid):
        for proc in left:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        assert time.monotonic() < deadline, f"still running {timeout} s after SIGKILL: {left}"
        time.sleep(0.2)


def test_sigkilled_run_keeps_last_night_and_a_rerun_with_a_killed_candidate_actor_commits(job, world, first_night,
                                                                                          tmp_path):
    out = copy_night(first_night, tmp_path)
    before, record, first = fingerprint(out / PARTITION), committed(str(out), PARTITION), read_table(out)

    log = (tmp_path / "killed.log").open("w")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    # Small blocks: writes start while the VLM still scores, so the kill lands well before the commit.
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "jobs" / "score.py"), *score_args(world, out),
                             "read_blocks=30"],
                            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "_staging").glob("*/part-*.parquet")):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the run wrote no part in 300 s"
            time.sleep(0.05)
        kill_session(proc.pid)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        log.close()
        kill_session(proc.pid)  # also when an assertion above failed: no Ray cluster outlives the test
        proc.wait(timeout=30)
    assert session_processes(proc.pid) == []

    assert committed(str(out), PARTITION) == record, "the killed run committed (kill it earlier)"
    assert fingerprint(out / PARTITION) == before
    killed_staging = [p.name for p in (out / "_staging").iterdir()]
    assert len(killed_staging) == 1 and list((out / "_staging" / killed_staging[0]).glob("part-*.parquet"))

    # The next run of the night commits over it, even though its first CandidateScorer call dies.
    marker = tmp_path / "candidates-killed"
    job("score.py", *score_args(world, out), env={"RR_CHAOS_KILL": f"candidates:{marker}"})
    assert marker.exists(), "the chaos hook never fired: the candidate actor was not killed"
    assert committed(str(out), PARTITION)["run_id"] != record["run_id"]
    pd.testing.assert_frame_equal(read_table(out), first)
    assert leftovers(out) == []  # the killed run's staging was deleted by the next run of the night


def test_a_tool_night_runs_in_one_fused_pool_and_writes_what_the_split_stages_write(job, world, tmp_path):
    """mode=tools calls no VLM: two ToolNightScorer actors score, route and write (no router pool, no write
    tasks), and the night holds what the split stages write for the same users in-process (Ray-free). A killed
    actor's batch is retried as in the split pools (the kill tests above); not repeated here, for the suite's time."""
    from actors.recommend import CandidateScorer, RouterScorer
    from reasonrec.recommend.config import RecommendConfig
    from reasonrec.recommend.system import resolve

    out = tmp_path / "recs"
    result = job("score.py", *score_args(world, out), "mode=tools", "candidate_actors=2")
    assert "MapBatches(ToolNightScorer)" in result.stdout + result.stderr and "RouterScorer" not in result.stderr
    table, held, summary = read_local_partition(out)
    ds = Dataset.load(world.dataset)
    check_table(table, ds, set(ds.users["user_id"]))
    check_summary(summary, ds.n_users)
    assert summary["route_shares"]["tool"] == 1.0 and held == []

    system = resolve(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, policy="config"))
    users = tonight_users(world)
    batch = {"user_id": users["user_id"].to_numpy(zero_copy_only=False), "user_idx": users["user_idx"].to_numpy()}
    staging = tmp_path / "in-process"
    staging.mkdir()
    rows = RouterScorer(system, K, DATE, "tools")(CandidateScorer(system, str(staging), DATE)(batch))
    expected = rows.select(table.columns).to_pandas().sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(table.drop(columns="score"), expected.drop(columns="score"), check_dtype=False)
    np.testing.assert_allclose(table["score"], expected["score"], rtol=1e-5)


def tonight_users(world) -> pa.Table:
    return pq.read_table(Path(world.dataset) / "users.parquet").select(["user_id", "user_idx"])


def read_local_partition(out: Path) -> tuple[pd.DataFrame, list[dict], dict]:
    """(the table rows, the quarantined users, the run summary) of a local night, through its _SUCCESS record."""
    record = committed(str(out), PARTITION)
    assert record is not None, f"{out / PARTITION} has no {SUCCESS}"
    held = [f for f in record["files"] if f.startswith("_quarantine/")]
    held_rows = pa.concat_tables([pq.read_table(out / PARTITION / f) for f in held]).to_pylist() if held else []
    summary = json.loads((out / "_summaries" / f"{PARTITION}.json").read_text())
    return read_table(out), held_rows, summary


def test_unknown_users_sharing_one_user_idx_lose_no_part_and_a_user_listed_twice_is_scored_once(job, world,
                                                                                              tmp_path):
    """Issue 20's two repros in one night. First: every batch of tonight's users starts with a user the upstream
    export gave user_idx -1, so every batch has the same smallest user_idx; no part may overwrite another: the
    published night holds every known user and every quarantined one, and the summary agrees with the files.
    Second: two users are listed twice more at the end; each user gets one ranked list (no rank written twice)
    and the summary counts the two duplicate rows."""
    users = tonight_users(world)
    known = users.slice(0, 56)
    blocks = []
    for b in range(8):   # 8 blocks of 8 rows (batch_size=8): a ghost at -1, then 7 known users
        blocks += [pa.table({"user_id": [f"ghost-{b}"], "user_idx": [-1]}).cast(users.schema), known.slice(7 * b, 7)]
    blocks.append(known.slice(1, 2))   # two known users, listed again
    tonight = tmp_path / "tonight.parquet"
    pq.write_table(pa.concat_tables(blocks), tonight)

    out = tmp_path / "recs"
    result = job("score.py", *score_args(world, out), f"users={tonight}", "read_blocks=8")
    assert f"2 repeated rows in {tonight} are scored once" in result.stdout
    table, held, summary = read_local_partition(out)
    check_table(table, Dataset.load(world.dataset), set(known["user_id"].to_pylist()))
    assert len(table) == 56 * K
    assert sorted(h["user_id"] for h in held) == [f"ghost-{b}" for b in range(8)]
    assert all("user_idx -1 is outside" in h["reason"] for h in held)
    check_summary(summary, 56, quarantined=8)
    assert summary["requested_users"] == 64 and summary["duplicate_users"] == 2 and summary["short_lists"] == 0


def test_a_users_file_with_a_null_id_or_a_corrupt_part_is_refused_before_scoring(job, world, tmp_path):
    tonight = tmp_path / "tonight.parquet"
    pq.write_table(pa.table({"user_id": ["user_0000001", None], "user_idx": [0, 1]}), tonight)
    result = job("score.py", *score_args(world, tmp_path / "recs"), f"users={tonight}", check=False)
    assert result.returncode == 1
    assert f"{tonight}: row 1, field 'user_id' is null" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "recs").exists()

    # An upstream export's folder of parts with one part cut short: refused naming that part, nothing scored.
    folder = tmp_path / "tonight"
    folder.mkdir()
    pq.write_table(pa.table({"user_id": ["user_0000001"], "user_idx": [0]}), folder / "part-0.parquet")
    (folder / "part-1.parquet").write_bytes(b"PAR1 cut short")
    result = job("score.py", *score_args(world, tmp_path / "recs"), f"users={folder}", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{folder}/part-1.parquet: not a readable Parquet file" in result.stderr
    assert not (tmp_path / "recs").exists()


def read_s3_partition(out: str) -> tuple[dict, pd.DataFrame, list[dict]]:
    """(the _SUCCESS record, the table rows, the quarantined users) of an S3 partition, through the record."""
    record = committed(out, PARTITION)
    assert record is not None, f"{out}/{PARTITION} has no {SUCCESS}"
    fs, root = open_fs(f"{out}/{PARTITION}")
    listed = sorted(p[len(root) + 1:] for p in fs.find(root))
    assert listed == sorted([SUCCESS, *record["files"]])  # last night's files deleted, nothing half-copied

    def read(names: list[str]) -> pa.Table:
        return pa.concat_tables([pq.read_table(f"{root}/{name}", filesystem=fs) for name in names])

    rows = read([f for f in record["files"] if not f.startswith("_")]).to_pandas()
    held = [f for f in record["files"] if f.startswith("_quarantine/")]
    return record, rows.sort_values(KEY).reset_index(drop=True), read(held).to_pylist() if held else []


def test_s3_output_with_a_users_row_the_dataset_lacks_quarantined(job, world, s3_endpoint, tmp_path):
    """A night published to S3 (moto on 127.0.0.1) whose user list (an upstream export, `users=`) holds a user the
    dataset has never seen: that user is quarantined with the reason, every other user is scored, and the night
    is committed: the record lists exactly the files there, no staging or previous folder is left."""
    users = pq.read_table(Path(world.dataset) / "users.parquet").select(["user_id", "user_idx"])
    n_users, ghost_idx = users.num_rows, users.num_rows + 1000
    ghost = pa.table({"user_id": ["ghost"], "user_idx": [ghost_idx]}).cast(users.schema)
    tonight = tmp_path / "tonight.parquet"
    pq.write_table(pa.concat_tables([users, ghost]), tonight)

    out = "s3://rr-test/quarantine"
    result = job("score.py", *score_args(world, out), f"users={tonight}", check=False)
    assert result.returncode == 0, result.stderr[-4000:]

    record, table, held = read_s3_partition(out)
    check_table(table, Dataset.load(world.dataset), set(users["user_id"].to_pylist()))
    assert [(h["user_id"], h["user_idx"]) for h in held] == [("ghost", ghost_idx)]
    assert f"user_idx {ghost_idx} is outside" in held[0]["reason"]
    assert len(record["files"]) > 2                   # several table parts and the quarantine part
    fs, root = open_fs(out)
    check_summary(json.loads(fs.cat_file(f"{root}/_summaries/{PARTITION}.json")), n_users, quarantined=1)
    assert fs.find(f"{root}/_staging") == [] and fs.find(f"{root}/_previous") == []


def test_quarantined_rows_are_written_and_committed_on_s3(s3_endpoint):
    """The job's write + commit half on S3 for a batch and a quarantined user: the part and its _quarantine/ twin
    (written by the candidate stage, which found the user) are published by copy and listed in _SUCCESS."""
    out, run_date = "s3://rr-test/writer", dt.date.fromisoformat(DATE)
    rows = table_rows(np.array(["u0"]), np.array([[2, 0]]), np.array([[0.9, 0.5]]), np.array(["tool"]),
                      np.array(["low"]), np.array([0.5]), np.array([0.8]), [[]], ["EH 0.50 low"],
                      np.array(["i0", "i1", "i2"]), "v@1", run_date)
    for name, values in {"latency": pa.array([0.01, 0.01]), "source": pa.array(["tool", "tool"])}.items():
        rows = rows.append_column(name, values)
    held = quarantine_rows(np.array(["ghost"]), np.array([1060]), np.array(["user_idx 1060 is outside"]), run_date)

    publication = Publication(out, PARTITION)
    staging = publication.begin()
    held_name = write_quarantine_part(staging, held)
    stats = write_batch(rows, staging).to_pylist()
    name = part_name(pa.chunked_array([["u0", "u0"]]))
    assert held_name == part_name(pa.chunked_array([["ghost"]])) != name
    assert [(s["file"], s["rows"], s["users"]) for s in stats] == [(name, 2, 1)]
    publication.commit({"night": DATE})

    record, table, quarantined = read_s3_partition(out)
    assert record["files"] == sorted([f"_quarantine/{held_name}", name])
    assert table["item_id"].tolist() == ["i2", "i0"] and quarantined == [
        {"user_id": "ghost", "user_idx": 1060, "reason": "user_idx 1060 is outside", "run_date": run_date}]


def test_help_config_and_a_bad_override(job):
    keys = [line.split(":", 1)[0] for line in job("score.py", "--help-config").stdout.splitlines()]
    assert {"recommend.dataset", "recommend.router.tau_high", "bootstrap.prepare_config", "k", "out"} <= set(keys)
    bad = job("score.py", "k=0", check=False)
    assert bad.returncode == 2 and "k: Input should be greater than or equal to 1" in bad.stderr
