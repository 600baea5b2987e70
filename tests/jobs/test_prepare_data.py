"""jobs/prepare_data.py through its real CLI: the embedded set, real data, and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from reasonrec.data.candidates import read_candidates, read_ctr
from reasonrec.data.schema import Dataset
from reasonrec.data.splits import load_split

SMALL_SYNTHETIC = ["source.synthetic.n_users=150", "source.synthetic.n_items=200"]


def tree_digest(root: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob(pattern)) if p.is_file()}


def test_synthetic_end_to_end_and_byte_identical(job, tmp_path):
    for name in ("a", "b"):
        result = job("prepare_data.py", "--config", "configs/synthetic.yaml", f"out={tmp_path / name}",
                     *SMALL_SYNTHETIC)
        assert "split loo:" in result.stdout and "quarantined rows 0" in result.stdout
    ds = Dataset.load(str(tmp_path / "a"))
    assert ds.manifest.n_users == 150 and ds.manifest.n_items_with_image == 200
    # Everything the protocol wrote is byte-identical across the two runs (images, tables, splits, candidates,
    # CTR negatives, evidence) -- only the report, which holds timings and paths, may differ.
    digest_a = tree_digest(tmp_path / "a", "*")
    digest_b = tree_digest(tmp_path / "b", "*")
    digest_a.pop("prepare_report.json"), digest_b.pop("prepare_report.json")
    assert digest_a == digest_b
    assert any(k.startswith("splits/loo/candidates/neg99/") for k in digest_a)
    assert any(k.startswith("splits/random/ctr/1to4/") for k in digest_a)
    assert "splits/temporal/evidence.parquet" in digest_a

    loo = load_split(str(tmp_path / "a" / "splits"), "loo")
    test_candidates = read_candidates(str(tmp_path / "a" / "splits/loo/candidates/neg99/test.parquet"))
    assert len(test_candidates) == len(loo.test)
    assert all(len(c) == 100 for c in test_candidates["candidates"])
    ctr = read_ctr(str(tmp_path / "a" / "splits/random/ctr/1to1/test.parquet"))
    assert ctr["label"].mean() == pytest.approx(0.5)

    # A different seed draws different candidates from the same data.
    job("prepare_data.py", "--config", "configs/synthetic.yaml", f"out={tmp_path / 'c'}", "seed=7",
        *SMALL_SYNTHETIC)
    digest_c = tree_digest(tmp_path / "c", "*.parquet")
    assert digest_c["interactions.parquet"] == digest_a["interactions.parquet"]
    assert digest_c["splits/loo/candidates/neg99/test.parquet"] != digest_a["splits/loo/candidates/neg99/test.parquet"]


def test_report_is_written_and_counts_add_up(job, tmp_path):
    job("prepare_data.py", "--source", "synthetic", "--out", str(tmp_path / "s"), *SMALL_SYNTHETIC)
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert report["name"] == "synthetic"
    loo = report["protocol"]["loo"]["parts"]
    assert sum(loo.values()) == report["manifest"]["n_interactions"]


def test_missing_column_is_a_clear_error(job, tmp_path):
    source = tmp_path / "ml"
    source.mkdir()
    (source / "ratings.csv").write_text("userId,movieId,timestamp\n1,1,100\n")
    (source / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    result = job("prepare_data.py", "--source", "movielens", "--path", str(source), "--out", str(tmp_path / "o"),
                 check=False)
    assert result.returncode == 1
    assert "ratings.csv" in result.stderr and "rating" in result.stderr


def test_too_much_quarantine_fails_after_writing_the_report(job, tmp_path):
    source = tmp_path / "ml"
    source.mkdir()
    rows = ["userId,movieId,rating,timestamp"] + [f"{u},1,4.0,{100 + u}" for u in range(1, 9)]
    rows += ["9,1,not-a-number,100", "10,999,4.0,100"]  # a bad rating and an unknown movie: 2 of 10 rows
    (source / "ratings.csv").write_text("\n".join(rows) + "\n")
    (source / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    result = job("prepare_data.py", "--source", "movielens", "--path", str(source), "--out", str(tmp_path / "o"),
                 "max_quarantine_share=0.1", check=False)
    assert result.returncode == 1 and "max_quarantine_share" in result.stderr
    report = json.loads((tmp_path / "o" / "prepare_report.failed.json").read_text())
    assert report["quarantine"]["rows_set_aside"] == 2
    assert report["error"]["type"] == "QuarantineLimitExceeded"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["prepare_report.failed.json"]


def test_header_only_and_mis_encoded_inputs_are_clean_errors_that_write_nothing(job, tmp_path):
    """The fresh-clone report of issue 20: a header-only ratings.csv died in pyarrow, left a partial
    dataset and no report; a bad byte was blamed on line 1."""
    source = tmp_path / "ml"
    source.mkdir()
    (source / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    (source / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    out = tmp_path / "o"
    result = job("prepare_data.py", "--source", "movielens", "--path", str(source), "--out", str(out), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"file {source / 'ratings.csv'}, line 2: no data rows after the header" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["prepare_report.failed.json"]
    failed = json.loads((out / "prepare_report.failed.json").read_text())
    assert failed["error"]["file"] == str(source / "ratings.csv") and "manifest" not in failed

    rows = "".join(f"{u},1,4.0,{100 + u}\n" for u in range(1, 2000))
    (source / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\n" + rows.encode() + b"7,1,\xff,9\n")
    result = job("prepare_data.py", "--source", "movielens", "--path", str(source), "--out", str(out), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"file {source / 'ratings.csv'}, line 2001: not valid utf-8 text" in result.stderr
    assert f"byte offset {len(rows) + 36}" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["prepare_report.failed.json"]


def test_unknown_config_key_exits_2(job, tmp_path):
    result = job("prepare_data.py", "--source", "synthetic", "--out", str(tmp_path), "splits.protocol=[loo]",
                 check=False)
    assert result.returncode == 2 and "splits.protocol" in result.stderr


@pytest.mark.real_data
def test_ml_latest_small_with_posters(job, tmp_path, shared_data):
    job("prepare_data.py", "--config", "configs/ml-latest-small.yaml", f"out={tmp_path / 'ml'}",
        f"source.path={shared_data / 'ml-latest-small'}",
        f"source.images={shared_data / 'movielens-posters' / 'posters'}")
    ds = Dataset.load(str(tmp_path / "ml"))
    assert ds.manifest.n_users == 671 and ds.manifest.timestamp_kind == "unix"
    assert ds.manifest.n_items_with_image >= 3160
    posters = ds.items.set_index("item_id")
    assert posters.loc["3575", "image_format"] == "PNG"  # a PNG named .jpg, detected by content
    report = json.loads((tmp_path / "ml" / "prepare_report.json").read_text())
    assert report["manifest"]["n_interactions"] + report["quarantine"]["rows_set_aside"] == 100_004
    for protocol in ("loo", "temporal", "random"):
        assert (tmp_path / "ml" / "splits" / protocol / "evidence.parquet").exists()


@pytest.mark.real_data
def test_amazon_beauty(job, tmp_path, shared_data):
    job("prepare_data.py", "--config", "configs/beauty.yaml", f"out={tmp_path / 'beauty'}",
        f"source.path={shared_data / 'amazon-p5' / 'beauty'}")
    ds = Dataset.load(str(tmp_path / "beauty"))
    assert (ds.manifest.n_users, ds.manifest.n_items, ds.manifest.n_interactions) == (22363, 12101, 198502)
    assert ds.manifest.timestamp_kind == "ordinal"
    assert ds.items["item_id"].str.len().eq(10).all()  # real ASINs, not P5's integer indices
    candidates = read_candidates(str(tmp_path / "beauty" / "splits/loo/candidates/neg99/test.parquet"))
    assert len(candidates) == 22363


@pytest.mark.real_data
def test_all_beauty_reviews(job, tmp_path, shared_data):
    job("prepare_data.py", "--config", "configs/all-beauty.yaml", f"out={tmp_path / 'ab'}",
        f"source.path={shared_data / 'amazon2018-all-beauty-5core' / 'All_Beauty_5.json.gz'}")
    report = json.loads((tmp_path / "ab" / "prepare_report.json").read_text())
    assert report["quarantine"]["by_reason"]["duplicate_event"] >= 1053
    assert report["manifest"]["n_interactions"] + report["quarantine"]["rows_set_aside"] == 5269
    interactions = pd.read_parquet(tmp_path / "ab" / "interactions.parquet")
    assert interactions["review"].notna().mean() > 0.99


def test_max_users_keeps_whole_histories_of_a_seeded_subset(job, tmp_path):
    for name in ("a", "b"):
        job("prepare_data.py", "--source", "synthetic", "--out", str(tmp_path / name), "max_users=40",
            *SMALL_SYNTHETIC)
    a, b = Dataset.load(str(tmp_path / "a")), Dataset.load(str(tmp_path / "b"))
    assert a.n_users == 40 and list(a.users["user_id"]) == list(b.users["user_id"])
    full = tmp_path / "full"
    job("prepare_data.py", "--source", "synthetic", "--out", str(full), *SMALL_SYNTHETIC)
    everything = Dataset.load(str(full)).interactions
    kept = everything[everything["user_id"].isin(set(a.users["user_id"]))]
    assert len(kept) == len(a.interactions)  # no user lost part of their history
    assert a.n_items == 200  # the catalogue is kept whole
    report = json.loads((tmp_path / "a" / "prepare_report.json").read_text())
    assert report["subsample"]["users_kept"] == 40


@pytest.mark.real_data
def test_download_then_prepare_through_the_cli(job, tmp_path, shared_data):
    """--download fetches from a mirror (a real HTTP server on 127.0.0.1), verifies md5, then converts."""
    import functools
    import shutil
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(shared_data / "amazon2018-all-beauty-5core" / "All_Beauty_5.json.gz", served)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        listed = job("prepare_data.py", "--list-downloads")
        assert "amazon2018-all-beauty-5core" in listed.stdout
        job("prepare_data.py", "--config", "configs/all-beauty.yaml", "--download",
            "amazon2018-all-beauty-5core", "--mirror", f"http://127.0.0.1:{server.server_port}",
            "--path", str(tmp_path / "raw"), "--out", str(tmp_path / "ds"))
    finally:
        server.shutdown()
        thread.join()
    assert (tmp_path / "raw" / "All_Beauty_5.json.gz").exists()
    assert Dataset.load(str(tmp_path / "ds")).manifest.n_interactions == 4216
