"""Write a dataset folder all-or-nothing: into a private staging folder, moved into place only on success.

A job that fails half-way (bad input found late, a protocol the data cannot support, a bug) must not leave
a half-written dataset that a later job would load, nor damage the dataset an earlier run left in `out`.
Local `out`: the staging folder is a hidden sibling (same filesystem), and each top-level entry is moved in
with a rename; entries of `out` this run does not write (someone else's files) are left alone. Remote `out`
(s3://): staging is a local temporary folder, uploaded file by file at the end, manifest last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from reasonrec.io import join, open_fs

# Moved or uploaded last, in this order: a reader that finds a manifest finds the tables it describes.
LAST_ENTRIES = ("manifest.json", "prepare_report.json")


@contextmanager
def staged_output(out: str, *, stale: tuple[str, ...] = ()) -> Iterator[str]:
    """A fresh local folder to write into; on a clean exit its entries replace those of `out` (and the
    entries named in `stale` are removed from `out`); on an exception `out` is untouched. Either way the
    staging folder is deleted."""
    stage = _make_stage(out)
    try:
        yield stage
        if "://" in out:
            _upload(stage, out, stale)
        else:
            _move_into(stage, os.path.realpath(out), stale)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _make_stage(out: str) -> str:
    if "://" in out:
        return tempfile.mkdtemp(prefix="reasonrec-stage-")
    target = os.path.realpath(out)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.staging-")


def _ordered_entries(stage: str) -> list[str]:
    names = sorted(os.listdir(stage))
    return [n for n in names if n not in LAST_ENTRIES] + [n for n in LAST_ENTRIES if n in names]


def _move_into(stage: str, target: str, stale: tuple[str, ...]) -> None:
    """Rename each staged entry over its namesake in `target`; a replaced folder is first moved aside into
    the stage (renames cannot replace a non-empty folder), where the final cleanup deletes it."""
    os.makedirs(target, exist_ok=True)
    aside = os.path.join(stage, ".replaced")
    os.makedirs(aside)
    for name in _ordered_entries(stage):
        if name == ".replaced":
            continue
        staged, destination = os.path.join(stage, name), os.path.join(target, name)
        file_over_file = os.path.isfile(staged) and os.path.isfile(destination) and not os.path.islink(destination)
        if os.path.lexists(destination) and not file_over_file:  # a folder, a link, or a change of kind
            os.rename(destination, os.path.join(aside, name))
        os.replace(staged, destination)  # atomic for a file over a file
    for name in stale:
        path = os.path.join(target, name)
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)


def _upload(stage: str, out: str, stale: tuple[str, ...]) -> None:
    """Upload every staged file under `out`, replacing staged top-level folders whole (no stale split files
    of an earlier run survive beside the new ones)."""
    fs, root = open_fs(out)
    entries = _ordered_entries(stage)
    for name in entries:
        local = os.path.join(stage, name)
        remote = join(root, name)
        if os.path.isdir(local):
            if fs.exists(remote):
                fs.rm(remote, recursive=True)
            for folder, _, files in os.walk(local):
                for file in sorted(files):
                    path = os.path.join(folder, file)
                    fs.put_file(path, join(root, os.path.relpath(path, stage).replace(os.sep, "/")))
        else:
            fs.put_file(local, remote)
    for name in stale:
        if fs.exists(join(root, name)):
            fs.rm(join(root, name))
