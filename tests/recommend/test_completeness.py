"""The nightly commit gate on hand-built staging folders: tonight's users read, checked and de-duplicated; a
staging folder accepted only when every requested user is there exactly once (ranked rows or one quarantine
row), with each kind of defect named."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasonrec.recommend.completeness import IncompleteNight, read_requested, verify_staging

K = 3


def users_file(tmp_path: Path, ids: list, idx: list, name: str = "users.parquet") -> str:
    path = tmp_path / name
    pq.write_table(pa.table({"user_id": pa.array(ids, pa.string()), "user_idx": pa.array(idx, pa.int64())}), path)
    return str(path)


def write_part(staging: Path, name: str, rows: list[tuple[str, int]]) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    users, ranks = zip(*rows) if rows else ((), ())
    pq.write_table(pa.table({"user_id": pa.array(users, pa.string()), "rank": pa.array(ranks, pa.int32())}),
                   staging / name)


def write_held(staging: Path, name: str, users: list[str]) -> None:
    (staging / "_quarantine").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"user_id": pa.array(users, pa.string()), "reason": ["bad"] * len(users)}),
                   staging / "_quarantine" / name)


def ranked(user: str, n: int = K) -> list[tuple[str, int]]:
    return [(user, r) for r in range(1, n + 1)]


def test_read_requested_keeps_the_first_row_of_each_user_and_counts_the_rest(tmp_path):
    uri = users_file(tmp_path, ["a", "b", "a", "c", "b", "a"], [0, 1, 0, 2, 1, 0])
    requested = read_requested(uri)
    assert requested.table["user_id"].to_pylist() == ["a", "b", "c"]
    assert requested.table["user_idx"].to_pylist() == [0, 1, 2]
    assert requested.duplicates == 3 and requested.duplicate_examples == ["a", "b"]
    assert read_requested(uri, max_users=2).table["user_id"].to_pylist() == ["a", "b"]


def test_read_requested_names_the_file_row_and_field_of_a_bad_row(tmp_path):
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"user_id": ["a", None, "c"], "user_idx": [0, 1, 2]}), path)
    with pytest.raises(ValueError, match=r"nulls\.parquet: row 1, field 'user_id' is null"):
        read_requested(str(path))
    pq.write_table(pa.table({"user_id": ["a"]}), tmp_path / "narrow.parquet")
    with pytest.raises(ValueError, match=r"narrow\.parquet: .*lacks column\(s\) \['user_idx'\]"):
        read_requested(str(tmp_path / "narrow.parquet"))
    (tmp_path / "text.parquet").write_text("user_id,user_idx\na,0\n")
    with pytest.raises(ValueError, match=r"text\.parquet: not a readable Parquet file"):
        read_requested(str(tmp_path / "text.parquet"))
    with pytest.raises(ValueError, match="does not exist"):
        read_requested(str(tmp_path / "absent.parquet"))


def test_a_folder_of_parts_reads_like_their_concatenation_and_names_the_part_of_a_bad_row(tmp_path):
    """An upstream export writes tonight's users as Parquet parts: read in name order, de-duplicated across parts,
    markers skipped; a null field or an unreadable part stops the night naming the part (issue 19 point 5)."""
    folder = tmp_path / "users"
    folder.mkdir()
    for name, ids in [("part-00001.parquet", ["c", "a"]), ("part-00000.parquet", ["a", "b"]),
                      ("part-00002.parquet", ["d", "b"])]:
        pq.write_table(pa.table({"user_id": ids, "user_idx": [ord(i) - ord("a") for i in ids]}), folder / name)
    (folder / "_SUCCESS").write_text("")
    hidden = folder / ".part-00003.parquet"   # a writer's temporary part: not tonight's
    pq.write_table(pa.table({"user_id": ["ghost"], "user_idx": [9]}), hidden)
    requested = read_requested(str(folder))
    single = read_requested(users_file(tmp_path, ["a", "b", "c", "a", "d", "b"], [0, 1, 2, 0, 3, 1]))
    assert requested.table.equals(single.table) and requested.table["user_id"].to_pylist() == ["a", "b", "c", "d"]
    assert (requested.duplicates, requested.duplicate_examples) == (2, ["a", "b"])
    assert read_requested(str(folder), max_users=3).table["user_id"].to_pylist() == ["a", "b", "c"]

    pq.write_table(pa.table({"user_id": ["e", "f", "g"], "user_idx": [4, None, 6]}), folder / "part-00004.parquet")
    with pytest.raises(ValueError, match=r"users/part-00004\.parquet: row 1, field 'user_idx' is null"):
        read_requested(str(folder))
    (folder / "part-00004.parquet").write_bytes(b"PAR1 truncated by a crashed writer")
    with pytest.raises(ValueError, match=r"users/part-00004\.parquet: not a readable Parquet file"):
        read_requested(str(folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "_SUCCESS").write_text("")
    with pytest.raises(ValueError, match="holds no .parquet part"):
        read_requested(str(empty))


def test_a_complete_night_is_counted_from_its_files(tmp_path):
    requested = read_requested(users_file(tmp_path, ["a", "b", "c", "d"], [0, 1, -1, 3]))
    staging = tmp_path / "staging"
    write_part(staging, "part-1.parquet", ranked("a") + ranked("b", 2))
    write_part(staging, "part-2.parquet", ranked("d"))
    write_held(staging, "part-1.parquet", ["c"])
    night = verify_staging(str(staging), requested, K)
    assert (night.users, night.rows, night.quarantined, night.short_lists, night.files) == (3, 8, 1, 1, 2)


def test_a_user_split_across_two_parts_is_one_user(tmp_path):
    requested = read_requested(users_file(tmp_path, ["a"], [0]))
    staging = tmp_path / "staging"
    write_part(staging, "part-1.parquet", [("a", 1)])
    write_part(staging, "part-2.parquet", [("a", 2), ("a", 3)])
    assert verify_staging(str(staging), requested, K).users == 1


@pytest.mark.parametrize("defect, message", [
    ("missing", r"1 users missing \(neither scored nor quarantined\), e\.g\. 'c'"),
    ("doubled", r"3 \(user, rank\) rows appear more than once"),
    ("unrequested", r"rows of users not requested tonight, e\.g\. 'zed'"),
    ("scored_and_held", r"1 users both scored and quarantined, e\.g\. 'b'"),
    ("held_twice", r"1 users quarantined more than once, e\.g\. 'c'"),
    ("rank_gap", r"1 users' ranks are not 1\.\.r, e\.g\. 'a'"),
    ("rank_too_high", r"rank outside 1\.\.3"),
])
def test_every_defect_of_a_night_is_refused_and_named(tmp_path, defect, message):
    requested = read_requested(users_file(tmp_path, ["a", "b", "c"], [0, 1, -1]))
    staging = tmp_path / "staging"
    parts = {"a": ranked("a"), "b": ranked("b")}
    held = ["c"]
    if defect == "missing":
        held = []
    elif defect == "doubled":
        write_part(staging, "part-copy.parquet", ranked("b"))
    elif defect == "unrequested":
        parts["zed"] = ranked("zed")
    elif defect == "scored_and_held":
        held = ["c", "b"]
    elif defect == "held_twice":
        write_held(staging, "part-copy.parquet", ["c"])
    elif defect == "rank_gap":
        parts["a"] = [("a", 1), ("a", 3)]
    elif defect == "rank_too_high":
        parts["a"] = ranked("a") + [("a", 4)]
    write_part(staging, "part-0.parquet", [row for rows in parts.values() for row in rows])
    if held:
        write_held(staging, "part-0.parquet", held)
    with pytest.raises(IncompleteNight, match=message):
        verify_staging(str(staging), requested, K)


def test_an_empty_staging_folder_misses_everyone(tmp_path):
    requested = read_requested(users_file(tmp_path, ["a", "b"], [0, 1]))
    with pytest.raises(IncompleteNight, match="2 users missing"):
        verify_staging(str(tmp_path / "nothing-written"), requested, K)
