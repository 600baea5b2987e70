"""Atomic, idempotent publication of one table partition (`<out>/<partition>/`), local or s3://.

A nightly job must never leave readers without last night's table, nor with half of tonight's. The protocol:

1. `Publication.begin()` repairs what an earlier crash left (`recover`) and makes an empty staging folder
   `<out>/_staging/<partition>-<run_id>/` outside the partition. The caller writes data files only there.
2. `commit(summary)` writes `staging/_SUCCESS` last (a JSON record: partition, run_id, committed_at, the
   file list, rows if given, the caller's summary), then swaps staging into `<out>/<partition>/`.
3. `recover()` repairs an interrupted swap; `begin` calls it, and so may a reader that finds no `_SUCCESS`.
4. Readers trust a partition only through its `_SUCCESS` (`committed()`), and read the files it lists.

The `_`-prefixed folders and the `_SUCCESS` file are skipped by pyarrow/Ray dataset discovery.

Local filesystem: the swap is two directory renames (`os.rename`, atomic on one filesystem; not fsspec's
`mv`, whose shutil.move would nest staging *inside* a final folder that reappeared instead of failing):
    a. final -> `<out>/_previous/<partition>-<run_id>` (only if final exists)
    b. staging -> final
    c. delete the `_previous` copy
  Crash windows and what the next `recover()` (hence the next `begin()`) does:
    - before _SUCCESS is in staging, or between it and (a): final untouched; staging is a leftover that
      the next `begin()` of the partition deletes (`clean_partition_staging`).
    - between (a) and (b): final is missing and `_previous` holds the complete old partition -> recover moves
      the newest complete `_previous` copy back to final (tonight's staging stays a leftover: rerun).
    - between (b) and (c), or during (c): final is the new complete partition -> recover deletes `_previous`.
  A reader sees the old partition, then (for the microseconds between a and b) none, then the new one.

S3 (and any filesystem without atomic directory rename): "mv" is copy + delete, so nothing is renamed.
The commit point is the single PUT of `final/_SUCCESS`, which S3 makes visible atomically:
    a. server-side copy staging's data files into final. A name that the published `_SUCCESS` lists is
       copied as `<run_id>_<name>` instead, so no byte of the published partition is ever overwritten.
    b. PUT final/_SUCCESS (new record, listing the final names)   <- commit point
    c. delete the files under final that the new record does not list (last night's), then staging.
  Crash windows: before (b) the old `_SUCCESS` and every file it lists are intact (final also holds some
  unlisted new files; the next commit deletes them). After (b) the new partition is published; stale
  unlisted files and the staging copy remain until the next commit / `clean_stale_staging`.
  What a reader can observe during the swap: a plain listing of final shows a MIX of old and new files
  (between a and c), and a reader that fetched the old `_SUCCESS` may find an old file already deleted by (c)
  (read `_SUCCESS` again and retry). A reader that lists the folder instead of reading `_SUCCESS["files"]`
  can read duplicates; readers must use the file list.

Assumptions: one writer per partition at a time (a concurrent `recover()` cannot lose data: a local commit
whose final reappeared fails loudly); the guarantees are against killed processes, not power loss (nothing
is fsynced); partition names must not be another partition's name plus "-..." (the `_previous` prefix match).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from dataclasses import dataclass, field

import fsspec
from fsspec.implementations.local import LocalFileSystem

from reasonrec.io import join, open_fs

SUCCESS = "_SUCCESS"
STAGING_DIR = "_staging"
PREVIOUS_DIR = "_previous"


def new_run_id() -> str:
    """Unique per attempt and sortable by start time, e.g. 20261122T031500Z-1a2b3c4d."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class Publication:
    """One attempt to publish `<out>/<partition>/`: begin -> write files into staging -> commit (or abort)."""

    out: str
    partition: str
    run_id: str = field(default_factory=new_run_id)
    recovered: str | None = field(default=None, init=False)  # what begin()'s recover() repaired, if anything
    cleaned: list[str] = field(default_factory=list, init=False)  # killed attempts' staging that begin() deleted

    def __post_init__(self):
        for name in ("partition", "run_id"):
            value = getattr(self, name)
            if not value or "/" in value or value.startswith(("_", ".")):
                raise ValueError(f"Publication.{name}={value!r}: must be non-empty, without '/', and not start "
                                 "with '_' or '.' (those names are hidden from readers)")

    @property
    def final(self) -> str:
        return join(self.out, self.partition)

    @property
    def staging(self) -> str:
        return join(self.out, STAGING_DIR, f"{self.partition}-{self.run_id}")

    def begin(self) -> str:
        """Repair an interrupted earlier swap, delete what killed attempts at this partition left in `_staging`
        (one writer per partition: any other attempt's folder is dead), then make this attempt's empty staging
        folder; returns its URI."""
        self.recovered = recover(self.out, self.partition)
        self.cleaned = clean_partition_staging(self.out, self.partition, keep=self.run_id)
        fs, staging = _fs_path(self.staging)
        if fs.exists(staging) and fs.find(staging):
            raise FileExistsError(f"{self.staging} already holds files: run_id {self.run_id!r} was reused")
        fs.makedirs(staging, exist_ok=True)
        return self.staging

    def commit(self, summary: dict, rows: int | None = None) -> str:
        """Mark staging complete (`_SUCCESS` last), then swap it into the partition; returns the final URI."""
        fs, staging = _fs_path(self.staging)
        _, final = _fs_path(self.final)
        files = _relative_files(fs, staging)
        if not files:
            raise ValueError(f"{self.staging}: no files to publish (did the writer write into staging?)")
        record = {"partition": self.partition, "run_id": self.run_id,
                  "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(), "files": files,
                  **({"rows": int(rows)} if rows is not None else {}), "summary": summary}
        _write_record(fs, staging, record)
        if isinstance(fs, LocalFileSystem):
            self._swap_by_rename(fs, staging, final)
        else:
            _copy_in(fs, staging, final, record)
            _remove(fs, staging)
        return self.final

    def _swap_by_rename(self, fs: fsspec.AbstractFileSystem, staging: str, final: str) -> None:
        _, previous = _fs_path(join(self.out, PREVIOUS_DIR, f"{self.partition}-{self.run_id}"))
        if fs.exists(final):
            fs.makedirs(fs._parent(previous), exist_ok=True)
            os.rename(final, previous)
        try:
            os.rename(staging, final)
        except OSError as e:
            recover(self.out, self.partition)  # puts the old partition back if it is still in _previous
            raise RuntimeError(f"could not rename {staging} to {final} ({e}); the old partition was kept and "
                               "staging is complete: is another process publishing or recovering it?") from e
        _remove(fs, previous)

    def abort(self) -> None:
        """Delete this attempt's staging folder (best effort: a failure here only leaves a stale leftover)."""
        try:
            fs, staging = _fs_path(self.staging)
            _remove(fs, staging)
        except Exception:  # noqa: BLE001 - abort runs on error paths; it must not mask the original error
            pass


def recover(out: str, partition: str) -> str | None:
    """Repair the state a crash mid-commit can leave (called by begin and by readers); returns what it did."""
    fs, root = _fs_path(out)
    final = join(root, partition)
    copies = _previous_copies(fs, root, partition)
    if not copies:
        return None
    done = []
    current = _read_record(fs, final)
    if current is None:
        complete = [(path, record) for path, record in copies if record is not None]
        if complete:
            source, current = complete[0]
            done.append(_restore(fs, root, partition, source, final, current))
            copies = [(path, record) for path, record in copies if path != source]
    if current is not None and copies:
        for path, _ in copies:
            _remove(fs, path)
        done.append(f"deleted {len(copies)} leftover {PREVIOUS_DIR} cop{'y' if len(copies) == 1 else 'ies'} "
                    f"of {partition}")
    return "; ".join(done) or None


def committed(out: str, partition: str) -> dict | None:
    """The _SUCCESS record of the published partition, or None when there is no complete one."""
    fs, final = _fs_path(join(out, partition))
    return _read_record(fs, final)


def clean_partition_staging(out: str, partition: str, keep: str) -> list[str]:
    """Delete `_staging/<partition>-*` entries of other attempts (killed runs of this partition); returns their
    URIs. A folder that `recover` moved aside (`-displaced-`) is kept for inspection: `clean_stale_staging`
    deletes it once it is old."""
    fs, root = _fs_path(out)
    removed = []
    for entry in _staging_entries(fs, root):
        name = entry.rsplit("/", 1)[-1]
        if (not name.startswith(f"{partition}-") or name.startswith(f"{partition}-displaced-")
                or name == f"{partition}-{keep}"):
            continue
        _remove(fs, entry)
        removed.append(join(out, STAGING_DIR, name))
    return removed


def clean_stale_staging(out: str, older_than_s: float) -> list[str]:
    """Delete `_staging` entries untouched for `older_than_s` seconds (killed runs); returns their URIs.

    Age is the newest modification time of anything inside, so pick `older_than_s` above the longest time a
    live run can go without writing into its staging (a day for a nightly job). S3 times are server times.
    """
    fs, root = _fs_path(out)
    cutoff = time.time() - older_than_s
    removed = []
    for entry in _staging_entries(fs, root):
        if _last_modified(fs, entry) <= cutoff:
            _remove(fs, entry)
            removed.append(join(out, STAGING_DIR, entry.rsplit("/", 1)[-1]))
    return removed


# --------------------------------------------------------------------------------------------------- helpers

def _fs_path(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """open_fs with s3fs's listing cache dropped: other processes (a killed run, a reader) change the bucket."""
    fs, path = open_fs(uri)
    fs.invalidate_cache()
    return fs, path


def _staging_entries(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """The folders (and stray files) directly under `<root>/_staging`, sorted, without trailing '/'."""
    base = join(root, STAGING_DIR)
    try:
        entries = [e.rstrip("/") for e in fs.ls(base, detail=False)]
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if e != base)


def _read_record(fs: fsspec.AbstractFileSystem, folder: str) -> dict | None:
    path = join(folder, SUCCESS)
    try:
        with fs.open(path, "r") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{fs.unstrip_protocol(path)}: {SUCCESS} is not JSON ({e})") from e
    if not isinstance(record, dict) or not isinstance(record.get("files"), list) or "run_id" not in record:
        raise ValueError(f"{fs.unstrip_protocol(path)}: {SUCCESS} lacks 'run_id' or the 'files' list")
    return record


def _write_record(fs: fsspec.AbstractFileSystem, folder: str, record: dict) -> None:
    try:
        text = json.dumps(record, indent=2, sort_keys=True)
    except TypeError as e:
        raise TypeError(f"{fs.unstrip_protocol(folder)}: the commit summary is not JSON-serialisable ({e})") from e
    with fs.open(join(folder, SUCCESS), "w") as f:
        f.write(text)


def _relative_files(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """Every file under folder (relative, '/'-separated, sorted), the marker excepted."""
    try:
        found = fs.find(folder)
    except FileNotFoundError:
        return []
    prefix = folder.rstrip("/") + "/"
    names = [p[len(prefix):] for p in found if p.startswith(prefix) and not p.endswith("/")]
    return sorted(n for n in names if n != SUCCESS)


def _copy_in(fs: fsspec.AbstractFileSystem, source: str, final: str, record: dict) -> dict:
    """Publish source's files into final by copies, `_SUCCESS` last; never overwrite a published file."""
    published = _read_record(fs, final)
    taken = set(published["files"]) if published else set()
    targets = {}
    for name in record["files"]:
        target = name
        while target in taken:
            head, _, base = target.rpartition("/")
            target = join(head, f"{record['run_id']}_{base}") if head else f"{record['run_id']}_{base}"
        targets[name] = target
    if targets:
        fs.copy([join(source, n) for n in targets], [join(final, t) for t in targets.values()])
    new_record = {**record, "files": sorted(targets.values())}
    _write_record(fs, final, new_record)  # the commit point
    keep = set(new_record["files"])
    stale = [join(final, n) for n in _relative_files(fs, final) if n not in keep]
    if stale:
        fs.rm(stale)
    return new_record


def _restore(fs: fsspec.AbstractFileSystem, root: str, partition: str, source: str, final: str,
             record: dict) -> str:
    """Put a complete `_previous` copy back as the partition; an incomplete final is moved aside, not lost."""
    if not isinstance(fs, LocalFileSystem):
        _copy_in(fs, source, final, record)
        _remove(fs, source)
        return f"restored {partition} (run {record['run_id']}) from {fs.unstrip_protocol(source)}"
    if fs.exists(final):
        aside = join(root, STAGING_DIR, f"{partition}-displaced-{uuid.uuid4().hex[:8]}")
        fs.makedirs(fs._parent(aside), exist_ok=True)
        os.rename(final, aside)
    try:
        os.rename(source, final)
    except OSError:
        if _read_record(fs, final) is not None:  # another process restored it first
            return f"{partition} was restored by another process"
        raise
    return f"restored {partition} (run {record['run_id']}) from {source}"


def _previous_copies(fs: fsspec.AbstractFileSystem, root: str, partition: str) -> list[tuple[str, dict | None]]:
    """`_previous/<partition>-*` folders with their records, newest committed first (incomplete ones last)."""
    try:
        entries = fs.ls(join(root, PREVIOUS_DIR), detail=False)
    except FileNotFoundError:
        return []
    copies = []
    for entry in entries:
        entry = entry.rstrip("/")
        if not entry.rsplit("/", 1)[-1].startswith(f"{partition}-"):
            continue
        record = _read_record(fs, entry)
        if record is not None and record.get("partition", partition) != partition:
            continue  # another partition whose name starts with ours
        copies.append((entry, record))
    return sorted(copies, key=lambda c: (c[1] is not None, (c[1] or {}).get("committed_at", ""), c[0]),
                  reverse=True)


def _last_modified(fs: fsspec.AbstractFileSystem, path: str) -> float:
    infos = list(fs.find(path, withdirs=True, detail=True).values())
    try:
        infos.append(fs.info(path))
    except FileNotFoundError:
        pass
    times = [0.0]
    for info in infos:
        if info.get("mtime") is not None:
            times.append(float(info["mtime"]))
        elif isinstance(info.get("LastModified"), dt.datetime):
            times.append(info["LastModified"].timestamp())
    return max(times)


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
