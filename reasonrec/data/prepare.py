"""Prepare = convert a source into the canonical format, then write the whole evaluation protocol.

One call does it all, so every split, candidate list, CTR negative and evidence score of a dataset is
drawn once, from one seed, and saved beside the data (`jobs/prepare_data.py` is the CLI).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from reasonrec.data import candidates, evidence, splits
from reasonrec.data.converters import CONVERTERS
from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.clean import finalize
from reasonrec.data.download import download
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.images import IMAGE_FLAG_REASONS
from reasonrec.data.merge import merge_domains
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.data.schema import Dataset, write_dataset
from reasonrec.data.staging import staged_output
from reasonrec.data.synthetic import generate
from reasonrec.io import join, open_fs

# The report of a run that failed: beside (never over) the dataset and report of an earlier run.
FAILED_REPORT = "prepare_report.failed.json"


class QuarantineLimitExceeded(DataFormatError):
    """Too much of the source was set aside: it is probably not the format the converter expects."""


def load_source(cfg: PrepareConfig, quarantine: Quarantine, stage: str) -> RawDataset:
    """The source's rows through its converter; `stage` is the folder the dataset is being written to
    (where generated images go)."""
    source = cfg.source
    if source.kind == "synthetic":
        image_dir = _local_image_dir(cfg.out, stage)
        raw = generate(source.synthetic, image_dir)
        # Images inside the dataset folder are referenced relative to it, so the folder can move.
        raw.items["image_uri"] = "images/" + raw.items["image_uri"].map(lambda uri: Path(uri).name)
        return raw
    if source.kind == "merge":
        return merge_domains({name: Dataset.load(root) for name, root in source.merge.items()},
                             share_users=source.share_users)
    path = source.path
    if source.download:
        path = str(download(source.download, source.path, mirror=source.mirror))
    return CONVERTERS[source.kind](path, source.images, quarantine, max_image_pixels=source.max_image_pixels,
                                   **source.options)


def _local_image_dir(out: str, stage: str) -> str:
    """Generated images live beside the dataset; the generator writes local files, so out must be local."""
    if "://" in out:
        raise DataFormatError("the synthetic generator writes images locally: give a local `out` and copy "
                              "the folder to object storage afterwards", field="out")
    folder = Path(stage) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def write_protocol(cfg: PrepareConfig, ds: Dataset, root: str | None = None) -> dict[str, Any]:
    """Splits, fixed candidates, CTR negatives, evidence horizon and cold-start groups under
    <root>/splits/ (root: the dataset folder being written, default cfg.out)."""
    root = join(root or cfg.out, "splits")
    written: dict[str, Any] = {}
    for protocol in cfg.splits.protocols:
        if protocol == "temporal" and ds.manifest.timestamp_kind != "unix":
            written[protocol] = {"skipped": "ordinal timestamps have no wall-clock time to cut at"}
            continue
        split = _make_split(cfg, ds, protocol)
        folder = splits.write_split(split, root)
        entry: dict[str, Any] = {"stats": split.stats, "parts": {p: len(split.part(p)) for p in splits.SPLIT_PARTS}}
        if protocol in ("loo", "temporal"):
            for n in cfg.candidates.ranking_negatives:
                for part in ("valid", "test"):
                    frame = candidates.sample_candidates(ds, split, part, n, cfg.seed)
                    candidates.write_candidates(frame, join(folder, "candidates", f"neg{n}", f"{part}.parquet"))
                    entry.setdefault("candidates", {})[f"1+{n}/{part}"] = len(frame)
        if protocol == "random":
            for ratio in cfg.candidates.ctr_negatives_per_positive:
                for part in splits.SPLIT_PARTS:
                    frame = candidates.sample_ctr(ds, split, part, ratio, cfg.seed)
                    candidates.write_ctr(frame, join(folder, "ctr", f"1to{ratio}", f"{part}.parquet"))
                    entry.setdefault("ctr", {})[f"1:{ratio}/{part}"] = len(frame)
        horizon = evidence.evidence_horizon(ds, split, cfg.evidence.w_count, cfg.evidence.w_recency,
                                            cfg.evidence.ref_quantile)
        evidence.write_evidence(horizon, join(folder, "evidence.parquet"))
        groups = evidence.cold_start_groups(ds, split)
        evidence.write_cold_start_groups(groups, join(folder, "cold_start.parquet"))
        entry["evidence_horizon"] = horizon.attrs["manifest"]["stats"]
        written[protocol] = entry
    return written


def _make_split(cfg: PrepareConfig, ds: Dataset, protocol: str) -> splits.Split:
    if protocol == "loo":
        return splits.leave_one_out(ds)
    if protocol == "temporal":
        return splits.temporal_split(ds, cfg.splits.temporal_valid_quantile, cfg.splits.temporal_test_quantile)
    return splits.random_split(ds, cfg.splits.random_ratios, cfg.seed)


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Run the whole preparation; returns the report (also written to <out>/prepare_report.json).

    Everything is written to a staging folder and moved into `out` only when all of it succeeded, so bad
    input never leaves a partial dataset nor touches the dataset of an earlier run. A failed run writes
    only <out>/prepare_report.failed.json: the error, and what was read and quarantined up to it."""
    quarantine = Quarantine()
    report: dict[str, Any] = {"name": cfg.name, "out": cfg.out, "source": cfg.source.model_dump(mode="json"),
                              "seed": cfg.seed}
    try:
        with staged_output(cfg.out, stale=(FAILED_REPORT,)) as stage:
            _prepare_into(cfg, stage, quarantine, report)
    except Exception as err:
        _write_failure(cfg.out, report, quarantine, err)
        raise
    return report


def _prepare_into(cfg: PrepareConfig, stage: str, quarantine: Quarantine, report: dict[str, Any]) -> None:
    """Convert, check, write the dataset and its protocol into `stage`, filling `report` on the way."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    raw = load_source(cfg, quarantine, stage)
    raw = finalize(raw, quarantine, cfg.name)
    timings["convert"] = time.perf_counter() - started
    report["source_stats"] = raw.stats
    report["quarantine"] = _quarantine_summary(quarantine, raw.stats, len(raw.interactions))
    _check_quarantine(cfg, quarantine, report["quarantine"])
    if raw.interactions.empty:  # e.g. every row quarantined and max_quarantine_share=1
        raise DataFormatError("no interactions left to prepare; see the quarantine counts in "
                              f"{join(cfg.out, FAILED_REPORT)}", file=cfg.source.path)

    if cfg.max_users is not None:
        raw = subsample_users(raw, cfg.max_users, cfg.seed)
        report["subsample"] = {"max_users": cfg.max_users, "users_kept": int(raw.interactions["user_id"].nunique()),
                               "interactions_kept": len(raw.interactions)}

    started = time.perf_counter()
    manifest = write_dataset(stage, name=cfg.name, source=cfg.source.kind, timestamp_kind=raw.timestamp_kind,
                             interactions=raw.interactions, items=raw.items, users=raw.users,
                             domains=list(cfg.source.merge) if cfg.source.kind == "merge" else None)
    timings["write"] = time.perf_counter() - started
    report["manifest"] = manifest.model_dump(mode="json")

    started = time.perf_counter()
    report["protocol"] = write_protocol(cfg, Dataset.load(stage), root=stage)
    timings["protocol"] = time.perf_counter() - started
    report["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    _write_report(stage, report)


def _quarantine_summary(quarantine: Quarantine, stats: dict[str, Any], n_interactions: int) -> dict[str, Any]:
    """The report's quarantine section: counts by reason and file, examples, and the share of rows set
    aside (image flags excluded: their items are kept)."""
    row_reasons = {r: n for r, n in quarantine.counts.items() if r not in IMAGE_FLAG_REASONS}
    set_aside = sum(row_reasons.values())
    # Share of all source rows read (every file: interactions, items, users, tags); generated or merged
    # data has no files, so its rows are the interactions.
    rows_read = sum(f.get("rows_read", 0) for f in stats.get("files", {}).values())
    rows_read = rows_read or set_aside + n_interactions
    return {**quarantine.to_dict(), "rows_read": rows_read, "rows_set_aside": set_aside,
            "share_of_rows": set_aside / max(1, rows_read)}


def _check_quarantine(cfg: PrepareConfig, quarantine: Quarantine, summary: dict[str, Any]) -> None:
    if summary["share_of_rows"] > cfg.max_quarantine_share:
        row_reasons = {r: n for r, n in sorted(quarantine.counts.items()) if r not in IMAGE_FLAG_REASONS}
        raise QuarantineLimitExceeded(
            f"{summary['rows_set_aside']} rows ({summary['share_of_rows']:.1%}) quarantined, above "
            f"max_quarantine_share={cfg.max_quarantine_share:.1%}; by reason: {row_reasons}; "
            f"see {join(cfg.out, FAILED_REPORT)}")


def _write_failure(out: str, report: dict[str, Any], quarantine: Quarantine, err: Exception) -> None:
    """<out>/prepare_report.failed.json for a run that stopped; never hides the error that stopped it."""
    failed = dict(report)
    failed.setdefault("quarantine", _quarantine_summary(quarantine, report.get("source_stats", {}), 0))
    failed["error"] = {"type": type(err).__name__, "message": str(err),
                       **{key: getattr(err, key, None) for key in ("file", "line", "field")}}
    try:
        _write_report(out, failed, FAILED_REPORT)
    except Exception as write_err:  # e.g. an unwritable out: the original error is what the user needs
        print(f"prepare: could not write {join(out, FAILED_REPORT)}: {write_err}", file=sys.stderr)


def subsample_users(raw: RawDataset, max_users: int, seed: int) -> RawDataset:
    """A deliberate, seeded subset of users (ranked by a hash of seed and user id): the same users every run,
    whatever the row order, and a user never loses part of their history."""
    users = pd.Series(raw.interactions["user_id"].unique())
    if len(users) <= max_users:
        return raw
    keys = users.map(lambda user: hashlib.sha256(f"{seed}:{user}".encode()).hexdigest())
    kept = set(users[keys.sort_values(kind="stable").index[:max_users]])
    interactions = raw.interactions[raw.interactions["user_id"].isin(kept)].reset_index(drop=True)
    users_table = None if raw.users is None else raw.users[raw.users["user_id"].isin(kept)].reset_index(drop=True)
    return RawDataset(interactions, raw.items, users_table, raw.timestamp_kind, raw.stats)


def _write_report(out: str, report: dict[str, Any], name: str = "prepare_report.json") -> None:
    fs, path = open_fs(out)
    fs.makedirs(path, exist_ok=True)
    with fs.open(join(path, name), "w") as f:
        json.dump(report, f, indent=2, default=str)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The short human summary the CLI prints."""
    m = report.get("manifest", {})
    q = report["quarantine"]
    lines = [f"dataset {report['name']} -> {report['out']}",
             f"  users {m.get('n_users')}  items {m.get('n_items')}  interactions {m.get('n_interactions')}  "
             f"items with image {m.get('n_items_with_image')}  timestamps {m.get('timestamp_kind')}",
             f"  quarantined rows {q['rows_set_aside']} ({q['share_of_rows']:.2%})"
             + "".join(f"\n    {reason}: {n}" for reason, n in q["by_reason"].items())]
    for protocol, entry in report.get("protocol", {}).items():
        if "skipped" in entry:
            lines.append(f"  split {protocol}: skipped ({entry['skipped']})")
            continue
        parts = " ".join(f"{p}={n}" for p, n in entry["parts"].items())
        lines.append(f"  split {protocol}: {parts}; EH mean {entry['evidence_horizon'].get('mean'):.3f}")
    if "timings_seconds" in report:
        lines.append(f"  seconds: {report['timings_seconds']}")
    return lines
