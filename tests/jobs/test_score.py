"""jobs/score.py through its real CLI on local Ray: a complete table, nothing seen recommended, idempotent."""

from __future__ import annotations

import json

import pandas as pd

from reasonrec.data.schema import Dataset


def test_nightly_table_for_every_user(job, tmp_path):
    dataset, out = tmp_path / "ds", tmp_path / "recs"
    job("prepare_data.py", "--config", "configs/prepare/synthetic.yaml", f"out={dataset}",
        "source.synthetic.n_users=200", "source.synthetic.n_items=200", "splits.protocols=[loo]")
    args = [f"dataset={dataset}", f"out={out}", "run_date=2026-11-21", "k=5", "batch_size=64"]
    first = job("score.py", *args)
    assert "offline check on 1+99 loo test" in first.stdout

    table = pd.read_parquet(out / "run_date=2026-11-21")
    ds = Dataset.load(str(dataset))
    assert len(table) == ds.n_users * 5
    assert set(table["user_id"]) == set(ds.users["user_id"])
    assert all(sorted(ranks) == [1, 2, 3, 4, 5] for ranks in table.groupby("user_id")["rank"].apply(list))
    seen = set(zip(ds.interactions["user_id"], ds.interactions["item_id"]))
    assert not any(pair in seen for pair in zip(table["user_id"], table["item_id"]))
    summary = json.loads((out / "summary_run_date=2026-11-21.json").read_text())
    assert summary["rows"] == summary["rows_expected"] == len(table)
    assert 0.0 <= summary["offline_check"]["HR@5"] <= 1.0

    # Rerunning the same night replaces the partition: same rows, no duplicates, no staging left behind.
    job("score.py", *args)
    again = pd.read_parquet(out / "run_date=2026-11-21")
    key = ["user_id", "rank"]
    pd.testing.assert_frame_equal(table.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True))
    assert not list((out / "_staging").glob("*"))
