"""Fetch the public MovieLens and Amazon review files that the converters read.

Downloads stream into `<file>.part` and are renamed only once complete and verified, so dest_dir never holds
a half-written file that a later run would take for the real one. `mirror` points the same file names at
another base URL: an internal server on an air-gapped site, or a local test server. Nothing touches the
network at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class DatasetSource:
    """One downloadable file and which converter reads it."""

    name: str
    url: str
    file_name: str
    md5: str | None       # published or known checksum; None where no trustworthy one is known
    extract: bool         # a zip to unpack into dest_dir
    converter: str        # name in reasonrec.data.converters.CONVERTERS that reads it (docs and the CLI)
    description: str

    def __str__(self) -> str:
        """One line for `--list-downloads`."""
        return f"{self.name:<28} converter={self.converter:<15} {self.url}\n{'':<29}{self.description}"


REGISTRY: dict[str, DatasetSource] = {source.name: source for source in (
    DatasetSource(
        "ml-latest-small", "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        "ml-latest-small.zip", None, True, "movielens",
        "MovieLens latest-small: ~100k ratings, ~600 users, ~9k movies (GroupLens, research use)."),
    DatasetSource(
        "ml-1m", "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "ml-1m.zip", None, True, "movielens",
        "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies (GroupLens, research use)."),
    DatasetSource(
        "ml-100k", "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "ml-100k.zip", None, True, "movielens",
        "MovieLens 100k: 100,000 ratings, 943 users, 1,682 movies (GroupLens, research use)."),
    DatasetSource(
        "amazon2018-all-beauty-5core",
        "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/All_Beauty_5.json.gz",
        "All_Beauty_5.json.gz", "211767f2b28e935f20638816de393a80", False, "amazon_reviews",
        "Amazon Review Data 2018, All Beauty 5-core: 5,269 reviews with text (Ni et al., EMNLP 2019)."),
    DatasetSource(
        "amazon2014-beauty-5core",
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Beauty_5.json.gz",
        "reviews_Beauty_5.json.gz", None, False, "amazon_reviews",
        "Amazon reviews 2014, Beauty 5-core: the P5 / VIP5 Beauty benchmark (He & McAuley, WWW 2016)."),
    DatasetSource(
        "amazon2014-sports-5core",
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Sports_and_Outdoors_5.json.gz",
        "reviews_Sports_and_Outdoors_5.json.gz", None, False, "amazon_reviews",
        "Amazon reviews 2014, Sports and Outdoors 5-core: the P5 Sports benchmark (He & McAuley, WWW 2016)."),
)}


class DownloadError(RuntimeError):
    """A download that could not finish: HTTP error, no connection, timeout, truncated body."""


class ChecksumError(DownloadError):
    """The bytes received are not the published file."""


def list_datasets() -> list[DatasetSource]:
    """Every known source, by name, for the CLI's listing."""
    return [REGISTRY[name] for name in sorted(REGISTRY)]


def get_source(name: str) -> DatasetSource:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def source_url(source: DatasetSource, mirror: str | None = None) -> str:
    """The URL to fetch: the official one, or `<mirror>/<file name>`."""
    if mirror is None:
        return source.url
    if not urlsplit(mirror).scheme:
        raise ValueError(f"mirror {mirror!r} must be a base URL such as http://host/path")
    return f"{mirror.rstrip('/')}/{source.file_name}"


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(name: str, dest_dir: str, mirror: str | None = None, timeout: float = 60) -> Path:
    """Fetch dataset `name` into dest_dir and return the file, or for a zip the folder it unpacks to.

    A file already there is kept when its md5 matches (or when no md5 is known: it was only ever renamed
    into place once complete), and zips are unpacked only when their members are missing.
    """
    source = get_source(name)
    directory = Path(dest_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / source.file_name
    url = source_url(source, mirror)
    if target.is_file() and (source.md5 is None or file_md5(target) == source.md5):
        log.info("%s: %s already present, not downloading", name, target)
    else:
        if target.exists():
            log.warning("%s: %s does not match md5 %s; downloading it again", name, target, source.md5)
        _fetch(url, target, source.md5, timeout)
    if source.extract:
        return _extract(target, directory)
    return target


def _fetch(url: str, target: Path, expected_md5: str | None, timeout: float) -> None:
    """Stream url into target's .part file; rename into place only when complete and verified."""
    part = target.with_name(target.name + ".part")
    log.info("downloading %s -> %s", url, target)
    try:
        digest = hashlib.md5()
        received = 0
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise DownloadError(f"HTTP {response.status_code} {response.reason} for {url}")
            expected_size = response.headers.get("Content-Length")
            with open(part, "wb") as f:
                # Raw bytes as served: a server that labels a .gz "Content-Encoding: gzip" must not get it
                # decompressed on the way, or the checksum and the converters would see another file.
                for chunk in response.raw.stream(_CHUNK_BYTES, decode_content=False):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
        if expected_size is not None and received != int(expected_size):
            raise DownloadError(f"{url}: received {received} bytes, the server announced {expected_size}")
        actual_md5 = digest.hexdigest()
        if expected_md5 is not None and actual_md5 != expected_md5:
            raise ChecksumError(f"checksum mismatch for {url}: expected md5 {expected_md5}, got {actual_md5}")
        os.replace(part, target)
    except requests.Timeout as err:
        raise DownloadError(f"timed out after {timeout} s fetching {url}: {err}") from err
    except requests.ConnectionError as err:
        raise DownloadError(f"could not connect to fetch {url}: {err}") from err
    except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
        raise DownloadError(f"fetching {url} failed: {err}") from err
    finally:
        part.unlink(missing_ok=True)


def _extract(archive: Path, directory: Path) -> Path:
    """Unpack into directory (zipfile drops absolute and '..' member paths) unless already unpacked; return
    the archive's single top-level folder, or directory when it has several."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            present = all((directory / m.filename).is_file()
                          and (directory / m.filename).stat().st_size == m.file_size for m in members)
            if not present:
                log.info("extracting %s into %s", archive, directory)
                zipped.extractall(directory)
    except zipfile.BadZipFile as err:
        archive.unlink()  # so the next call fetches it again instead of failing on the same bytes
        raise DownloadError(f"{archive} is not a valid zip ({err}); removed it") from err
    tops = {Path(m).parts[0] for m in (info.filename for info in members)}
    if len(tops) == 1 and any(len(Path(m.filename).parts) > 1 for m in members):
        return directory / tops.pop()
    return directory
