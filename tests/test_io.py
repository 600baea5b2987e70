"""s3:// through the real S3 protocol: a moto server on 127.0.0.1, s3fs, pyarrow."""

from __future__ import annotations

import os

import boto3

from reasonrec.data.candidates import read_candidates
from reasonrec.data.schema import Dataset
from reasonrec.data.splits import load_split
from reasonrec.io import join, open_fs


def test_open_fs_local_and_join(tmp_path):
    fs, path = open_fs(str(tmp_path))
    assert fs.exists(path)
    assert join("s3://b/x/", "/y", "z.parquet") == "s3://b/x/y/z.parquet"


def test_prepare_to_s3_and_read_back(job, s3_endpoint, tmp_path):
    source = tmp_path / "ml"
    source.mkdir()
    ratings = ["userId,movieId,rating,timestamp"]
    ratings += [f"{u},{m},{1 + (u * m) % 5}.0,{1000 * u + m}" for u in range(1, 21) for m in range(1, 16)]
    (source / "ratings.csv").write_text("\n".join(ratings) + "\n")
    movies = ["movieId,title,genres"] + [f"{m},Movie {m} (2000),Drama" for m in range(1, 121)]
    (source / "movies.csv").write_text("\n".join(movies) + "\n")
    job("prepare_data.py", "--source", "movielens", "--path", str(source), "--out", "s3://rr-test/datasets/ml",
        "splits.protocols=[loo,random]", "candidates.ranking_negatives=[99]")

    ds = Dataset.load("s3://rr-test/datasets/ml")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (20, 120, 300)
    split = load_split("s3://rr-test/datasets/ml/splits", "loo")
    assert len(split.test) == 20
    candidates = read_candidates("s3://rr-test/datasets/ml/splits/loo/candidates/neg99/test.parquet")
    assert len(candidates) == 20 and all(len(c) == 100 for c in candidates["candidates"])
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
            .list_objects_v2(Bucket="rr-test", Prefix="datasets/ml/")["Contents"]}
    assert "datasets/ml/prepare_report.json" in keys
