"""Partition publication on a local folder and on a real S3 protocol (moto): commits, reruns, aborts, a SIGKILLed
writer, and the crash windows of the swap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasonrec.io import join, open_fs
from reasonrec.publish import SUCCESS, Publication, clean_stale_staging, committed, recover

from .conftest import REPO_ROOT

PARTITION = "run_date=2026-11-22"


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path) -> str:
    """A table root: a local folder, or a prefix in the moto bucket."""
    if request.param == "local":
        return str(tmp_path / "table")
    request.getfixturevalue("s3_endpoint")
    return f"s3://rr-test/table-{uuid.uuid4().hex[:6]}"


def write_parquet(folder: str, name: str, values: list[int]) -> None:
    fs, path = open_fs(folder)
    fs.makedirs(path, exist_ok=True)
    with fs.open(join(path, name), "wb") as f:
        pq.write_table(pa.table({"user_id": values, "item_id": [v * 10 for v in values]}), f)


def snapshot(uri: str) -> dict[str, bytes]:
    """Every file under uri (relative path -> bytes)."""
    fs, path = open_fs(uri)
    fs.invalidate_cache()
    if not fs.exists(path):
        return {}
    return {p[len(path) + 1:]: fs.cat_file(p) for p in fs.find(path)}


def under(out: str, folder: str) -> list[str]:
    return sorted(snapshot(join(out, folder)))


def read_published(out: str) -> list[int]:
    """What a reader that follows _SUCCESS sees: the user_ids of the listed files."""
    record = committed(out, PARTITION)
    fs, final = open_fs(join(out, PARTITION))
    values = []
    for name in record["files"]:
        with fs.open(join(final, name), "rb") as f:
            values += pq.read_table(f)["user_id"].to_pylist()
    return sorted(values)


def publish(out: str, files: dict[str, list[int]], night: str) -> Publication:
    pub = Publication(out, PARTITION)
    staging = pub.begin()
    for name, values in files.items():
        write_parquet(staging, name, values)
    assert pub.commit({"night": night}, rows=sum(len(v) for v in files.values())) == join(out, PARTITION)
    return pub


def test_commit_publishes_files_and_success(out):
    pub = publish(out, {"part-0.parquet": [1, 2], "part-1.parquet": [3]}, "first")

    record = committed(out, PARTITION)
    assert record["summary"] == {"night": "first"} and record["rows"] == 3 and record["run_id"] == pub.run_id
    assert record["files"] == ["part-0.parquet", "part-1.parquet"] and record["partition"] == PARTITION
    assert under(out, PARTITION) == [SUCCESS, "part-0.parquet", "part-1.parquet"]
    assert read_published(out) == [1, 2, 3]
    assert under(out, "_staging") == [] and under(out, "_previous") == []
    fs, final = open_fs(join(out, PARTITION))
    assert pq.read_table(final, filesystem=fs).num_rows == 3  # folder discovery skips _SUCCESS


def test_rerun_replaces_partition_exactly(out):
    publish(out, {"part-0.parquet": [1], "part-1.parquet": [2], "part-2.parquet": [3]}, "first")
    second = publish(out, {"part-0.parquet": [7, 8], "part-1.parquet": [9]}, "rerun")

    record = committed(out, PARTITION)
    assert record["run_id"] == second.run_id and record["summary"] == {"night": "rerun"}
    assert under(out, PARTITION) == sorted([SUCCESS, *record["files"]]) and len(record["files"]) == 2
    assert not any(name.endswith("part-2.parquet") for name in under(out, PARTITION))
    assert read_published(out) == [7, 8, 9]
    assert under(out, "_staging") == [] and under(out, "_previous") == []


def test_abort_and_unfinished_attempt_leave_published_partition(out):
    publish(out, {"part-0.parquet": [1, 2]}, "first")
    before, record = snapshot(join(out, PARTITION)), committed(out, PARTITION)

    aborted = Publication(out, PARTITION)
    write_parquet(aborted.begin(), "part-0.parquet", [99])
    aborted.abort()
    assert under(out, "_staging") == []

    never_committed = Publication(out, PARTITION)
    write_parquet(never_committed.begin(), "part-0.parquet", [42])
    assert snapshot(join(out, PARTITION)) == before and committed(out, PARTITION) == record
    assert under(out, "_staging") == [f"{PARTITION}-{never_committed.run_id}/part-0.parquet"]


KILLED_WRITER = """
import sys, time
import pyarrow as pa, pyarrow.parquet as pq
from reasonrec.io import join, open_fs
from reasonrec.publish import Publication
fs, staging = open_fs(Publication(sys.argv[1], sys.argv[2], sys.argv[3]).begin())
for i in range(600):
    with fs.open(join(staging, f"part-{i}.parquet"), "wb") as f:
        pq.write_table(pa.table({"user_id": [i]}), f)
    time.sleep(0.1)
"""


def test_sigkilled_writer_leaves_previous_partition_then_cleanup(out):
    publish(out, {"part-0.parquet": [1, 2]}, "first")
    before, record = snapshot(join(out, PARTITION)), committed(out, PARTITION)

    run_id = "killed-" + uuid.uuid4().hex[:8]
    staging = join(out, "_staging", f"{PARTITION}-{run_id}")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, out, PARTITION, run_id], cwd=REPO_ROOT,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not snapshot(staging):
        assert writer.poll() is None, writer.stderr.read().decode()
        assert time.monotonic() < deadline, "the writer wrote nothing in 30 s"
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=10) == -signal.SIGKILL

    assert snapshot(staging), "the killed writer's files should still be in staging"
    assert snapshot(join(out, PARTITION)) == before and committed(out, PARTITION) == record
    assert clean_stale_staging(out, older_than_s=3600) == []  # fresh: might be a live run
    assert clean_stale_staging(out, older_than_s=0) == [staging]
    assert under(out, "_staging") == []
    assert snapshot(join(out, PARTITION)) == before


def test_crash_between_the_two_renames_is_rolled_back(out):
    publish(out, {"part-0.parquet": [1, 2], "part-1.parquet": [3]}, "first")
    before, record = snapshot(join(out, PARTITION)), committed(out, PARTITION)
    attempt = Publication(out, PARTITION)
    write_parquet(attempt.begin(), "part-0.parquet", [5])

    fs, root = open_fs(out)  # step 2's first rename by hand: final -> _previous, staging not yet moved
    final, previous = join(root, PARTITION), join(root, "_previous", f"{PARTITION}-{attempt.run_id}")
    if out.startswith("s3://"):  # on S3 a "rename" is copy + delete
        files = fs.find(final)
        fs.copy(files, [previous + p[len(final):] for p in files])
        fs.rm(final, recursive=True)
    else:
        os.makedirs(os.path.dirname(previous))
        os.rename(final, previous)
    fs.invalidate_cache()
    assert committed(out, PARTITION) is None

    assert "restored" in recover(out, PARTITION)
    assert committed(out, PARTITION) == record and snapshot(join(out, PARTITION)) == before
    assert under(out, "_previous") == [] and recover(out, PARTITION) is None

    publish(out, {"part-0.parquet": [6]}, "retry")  # the next night's begin/commit starts from a clean state
    assert read_published(out) == [6] and under(out, "_previous") == []


def test_crash_after_the_second_rename_deletes_leftover_copy(out):
    publish(out, {"part-0.parquet": [1]}, "first")
    second = publish(out, {"part-0.parquet": [2]}, "second")
    left_over = join(out, "_previous", f"{PARTITION}-{second.run_id}")
    write_parquet(left_over, "part-0.parquet", [1])  # the old copy (c) did not get to delete
    before = snapshot(join(out, PARTITION))

    assert "deleted 1 leftover" in recover(out, PARTITION)
    assert under(out, "_previous") == [] and snapshot(join(out, PARTITION)) == before


def test_partition_without_success_is_not_committed_and_gets_replaced(out):
    write_parquet(join(out, PARTITION), "legacy.parquet", [1, 2])  # data, but no _SUCCESS (old job, or mid-copy)
    assert committed(out, PARTITION) is None and recover(out, PARTITION) is None

    publish(out, {"part-0.parquet": [4]}, "first")
    assert under(out, PARTITION) == [SUCCESS, "part-0.parquet"] and read_published(out) == [4]


def test_s3_crash_mid_copy_never_touches_published_bytes(s3_endpoint, monkeypatch):
    out = "s3://rr-test/mid-copy"
    publish(out, {"part-0.parquet": [1], "part-1.parquet": [2]}, "first")
    before, record = snapshot(join(out, PARTITION)), committed(out, PARTITION)

    fs, _ = open_fs(out)
    real_copy = fs.copy

    def copy_one_then_die(sources, targets, **kwargs):
        real_copy(sources[:1], targets[:1], **kwargs)
        raise ConnectionError("simulated crash after the first copy")

    attempt = Publication(out, PARTITION)
    staging = attempt.begin()
    write_parquet(staging, "part-0.parquet", [7])  # same names as the published files
    write_parquet(staging, "part-1.parquet", [8])
    with monkeypatch.context() as patch, pytest.raises(ConnectionError):
        patch.setattr(fs, "copy", copy_one_then_die)
        attempt.commit({"night": "crashed"})

    after = snapshot(join(out, PARTITION))
    assert {name: after[name] for name in before} == before  # every published byte is intact
    assert len(after) == len(before) + 1  # plus one unlisted new file that readers of _SUCCESS ignore
    assert committed(out, PARTITION) == record and read_published(out) == [1, 2]

    publish(out, {"part-0.parquet": [9]}, "next")
    assert under(out, PARTITION) == sorted([SUCCESS, *committed(out, PARTITION)["files"]])
    assert read_published(out) == [9]


def test_publication_rejects_bad_names_and_reused_run_id(tmp_path):
    with pytest.raises(ValueError, match="partition"):
        Publication(str(tmp_path), "a/b")
    with pytest.raises(ValueError, match="run_id"):
        Publication(str(tmp_path), PARTITION, "")
    pub = Publication(str(tmp_path), PARTITION, "r1")
    write_parquet(pub.begin(), "part-0.parquet", [1])
    with pytest.raises(FileExistsError, match="r1"):
        Publication(str(tmp_path), PARTITION, "r1").begin()
    empty = Publication(str(tmp_path), PARTITION, "r2")
    empty.begin()
    with pytest.raises(ValueError, match="no files"):
        empty.commit({})


def test_begin_deletes_killed_attempts_at_its_partition_and_keeps_the_rest(out):
    """A killed night's staging folder is deleted by the next attempt at that night (one writer per partition);
    another night's staging and a folder that recover() moved aside are not this attempt's to delete."""
    killed = Publication(out, PARTITION, "killed-1")
    write_parquet(killed.begin(), "part-0.parquet", [1])
    other_night = Publication(out, "run_date=2026-11-21", "live-1")
    write_parquet(other_night.begin(), "part-0.parquet", [2])
    write_parquet(join(out, "_staging", f"{PARTITION}-displaced-abcd1234"), "part-0.parquet", [3])

    attempt = Publication(out, PARTITION, "next-1")
    write_parquet(attempt.begin(), "part-0.parquet", [4])
    assert attempt.cleaned == [killed.staging]
    assert sorted(name.split("/")[0] for name in under(out, "_staging")) == [
        "run_date=2026-11-21-live-1", f"{PARTITION}-displaced-abcd1234", f"{PARTITION}-next-1"]
    attempt.commit({"night": "next"})
    assert read_published(out) == [4]
