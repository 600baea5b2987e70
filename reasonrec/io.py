"""Local paths and s3:// URIs behind one fsspec interface.

Jobs take "where" as a string; `open_fs` turns it into (filesystem, path) so the same code writes to a laptop
folder or a bucket. s3:// honours the usual AWS environment plus `AWS_ENDPOINT_URL` (a moto server in tests,
MinIO on-prem).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec


def open_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path-within-it) for a local path or a URI such as s3://bucket/prefix."""
    if uri.startswith("s3://"):
        options = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        fs = fsspec.filesystem("s3", **options)
        return fs, uri[len("s3://"):]
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', the separator of every fsspec filesystem."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def read_json(uri: str) -> dict | None:
    """A JSON file's content, or None when the file does not exist (local path or s3://)."""
    import json

    fs, path = open_fs(uri)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def fetch_dir(uri: str, tmp: str) -> str:
    """A local folder holding `uri` (downloaded into `tmp` when remote); local paths and HF ids pass through."""
    if "://" not in uri:
        return uri
    from pathlib import Path

    fs, path = open_fs(uri)
    local = str(Path(tmp) / Path(path).name)
    fs.get(path, local, recursive=True)
    return local


@contextmanager
def replaced_whole(fs: fsspec.AbstractFileSystem, path: str) -> Iterator:
    """A binary file handle whose content replaces `path` when the block ends without error: it is written beside
    it and moved into place, so a concurrent reader never sees half a file (locally a rename)."""
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with fs.open(tmp, "wb") as f:
        yield f
    fs.mv(tmp, path)
