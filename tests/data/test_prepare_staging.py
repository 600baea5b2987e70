"""prepare() writes all-or-nothing: a failure, early or late, leaves `out` as it was plus a failure report."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from reasonrec.data.errors import DataFormatError
from reasonrec.data.prepare import FAILED_REPORT, prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.data.staging import staged_output
from tests.data.test_images import _image_bytes


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def movielens(folder: Path, n_users: int = 12, n_items: int = 120, ratings: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{u},{m},4.0,{1_000_000 + 10 * u + m}" for u in range(1, n_users + 1) for m in range(1, 6)]
    (folder / "ratings.csv").write_text(ratings if ratings is not None else
                                        "userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{m},Movie {m} (2000),Drama\n" for m in range(1, n_items + 1)))
    return folder


def config(out: Path, source: Path, **extra) -> PrepareConfig:
    return PrepareConfig.model_validate({
        "name": "ml", "out": str(out), "source": {"kind": "movielens", "path": str(source)},
        "splits": {"protocols": ["loo"]}, "candidates": {"ranking_negatives": [9],
                                                         "ctr_negatives_per_positive": [1]}, **extra})


def no_staging_left(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".staging-" in p.name]


@pytest.fixture
def earlier(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """`out` holding a good dataset from an earlier run, and the digest of every file in it."""
    out = tmp_path / "out"
    prepare(config(out, movielens(tmp_path / "good")))
    (out / "NOTES.txt").write_text("someone else's file")
    return out, digest(out)


def test_header_only_input_leaves_the_earlier_dataset_alone(tmp_path: Path, earlier) -> None:
    out, before = earlier
    source = movielens(tmp_path / "bad", ratings="userId,movieId,rating,timestamp\n")
    with pytest.raises(DataFormatError, match="no data rows after the header") as err:
        prepare(config(out, source))
    assert err.value.file == str(source / "ratings.csv") and err.value.line == 2
    after = digest(out)
    failed = json.loads((out / FAILED_REPORT).read_text())
    assert {k: v for k, v in after.items() if k != FAILED_REPORT} == before
    assert failed["error"] == {"type": "DataFormatError", "message": str(err.value),
                               "file": str(source / "ratings.csv"), "line": 2, "field": None}
    assert no_staging_left(tmp_path)


def test_a_late_failure_writes_nothing_and_success_clears_the_failure(tmp_path: Path, earlier) -> None:
    out, before = earlier
    too_few_items = movielens(tmp_path / "small", n_items=8)  # 1+9 candidates need 9 unseen items per user
    with pytest.raises(ValueError, match="fewer than the 9 negatives"):
        prepare(config(out, too_few_items))
    assert {k: v for k, v in digest(out).items() if k != FAILED_REPORT} == before
    assert json.loads((out / FAILED_REPORT).read_text())["manifest"]["n_items"] == 8  # reached the write step
    assert no_staging_left(tmp_path)

    (out / "splits" / "stale-protocol").mkdir()
    report = prepare(config(out, movielens(tmp_path / "again", n_users=20)))
    assert report["manifest"]["n_users"] == 20 and json.loads((out / "manifest.json").read_text())["n_users"] == 20
    assert not (out / FAILED_REPORT).exists()
    assert not (out / "splits" / "stale-protocol").exists()  # the splits folder is replaced whole
    assert (out / "NOTES.txt").read_text() == "someone else's file"
    assert no_staging_left(tmp_path)


def test_refused_images_are_counted_but_not_as_rows_set_aside(tmp_path: Path) -> None:
    images = tmp_path / "covers"
    images.mkdir()
    (images / "1.png").write_bytes(_image_bytes("PNG", (40, 30)))
    (images / "2.png").write_bytes(_image_bytes("PNG", (400, 300)))
    (tmp_path / "elsewhere.png").write_bytes(_image_bytes("PNG", (40, 30)))
    os.symlink(tmp_path / "elsewhere.png", images / "3.png")
    cfg = config(tmp_path / "out", movielens(tmp_path / "ml"), max_quarantine_share=0.0)
    cfg.source.images, cfg.source.max_image_pixels = str(images), 10_000  # validated assignments
    report = prepare(cfg)
    quarantine = report["quarantine"]
    assert quarantine["by_reason"] == {"image_outside_folder": 1, "image_too_large": 1}
    assert quarantine["rows_set_aside"] == 0
    assert report["source_stats"]["items_by_image_status"]["refused"] == 2
    assert report["manifest"]["n_items_with_image"] == 1


def test_staged_output_moves_in_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_output(str(out)) as stage:
            Path(stage, "manifest.json").write_text("{}")
            raise RuntimeError("late")
    assert not out.exists() and no_staging_left(tmp_path)
    out.mkdir()
    (out / "old.failed").write_text("x")
    (out / "splits").mkdir()
    (out / "splits" / "old.parquet").write_text("x")
    with staged_output(str(out), stale=("old.failed", "absent")) as stage:
        Path(stage, "splits").mkdir()
        Path(stage, "splits", "new.parquet").write_text("y")
        Path(stage, "manifest.json").write_text("{}")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["manifest.json", "splits",
                                                                       "splits/new.parquet"]
    assert no_staging_left(tmp_path)
