"""The downloader against a real local HTTP server that serves copies of the real files via `mirror=`."""

from __future__ import annotations

import functools
import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reasonrec.data import download as dl
from reasonrec.data.converters import CONVERTERS
from reasonrec.data.download import ChecksumError, DownloadError, DatasetSource, download

ALL_BEAUTY = "amazon2018-all-beauty-5core"
ML_FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt")


class RecordingHandler(SimpleHTTPRequestHandler):
    """Serves a folder and records every GET. Paths under /truncated/ announce more bytes than they send."""

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        if self.path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only ten b")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, list of requested paths) of a server on 127.0.0.1, shut down afterwards."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RecordingHandler, directory=str(served)))
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, httpd.seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def build_movielens_zip(source: Path, target: Path) -> None:
    """Like the GroupLens zip: every file inside one ml-latest-small/ folder."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zipped:
        for name in ML_FILES:
            zipped.write(source / name, f"ml-latest-small/{name}")


@pytest.mark.real_data
def test_all_beauty_downloads_verified_and_only_once(shared_data, server, tmp_path):
    base, served, seen = server
    original = shared_data / "amazon2018-all-beauty-5core" / "All_Beauty_5.json.gz"
    shutil.copy(original, served / original.name)
    dest = tmp_path / "dest"

    path = download(ALL_BEAUTY, str(dest), mirror=base)
    assert path == dest / "All_Beauty_5.json.gz"
    assert md5_of(path) == dl.REGISTRY[ALL_BEAUTY].md5 == md5_of(original)
    assert sorted(p.name for p in dest.iterdir()) == ["All_Beauty_5.json.gz"]  # no .part left
    assert seen == ["/All_Beauty_5.json.gz"]

    assert download(ALL_BEAUTY, str(dest), mirror=base) == path
    assert len(seen) == 1  # verified file kept, not fetched again

    path.write_bytes(b"damaged")  # a bad local copy is fetched again
    download(ALL_BEAUTY, str(dest), mirror=base + "/")
    assert md5_of(path) == md5_of(original) and len(seen) == 2


@pytest.mark.real_data
def test_movielens_zip_extracts_to_its_folder_once(shared_data, server, tmp_path):
    base, served, seen = server
    source = shared_data / "ml-latest-small"
    build_movielens_zip(source, served / "ml-latest-small.zip")
    dest = tmp_path / "dest"

    folder = download("ml-latest-small", str(dest), mirror=base)
    assert folder == dest / "ml-latest-small"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ML_FILES)
    for name in ML_FILES:
        assert md5_of(folder / name) == md5_of(source / name)
    assert (dest / "ml-latest-small.zip").is_file()
    extracted_at = (folder / "ratings.csv").stat().st_mtime_ns

    assert download("ml-latest-small", str(dest), mirror=base) == folder
    assert seen == ["/ml-latest-small.zip"]
    assert (folder / "ratings.csv").stat().st_mtime_ns == extracted_at  # not unpacked again

    (folder / "tags.csv").unlink()  # a missing member is restored from the kept zip, without a download
    download("ml-latest-small", str(dest), mirror=base)
    assert md5_of(folder / "tags.csv") == md5_of(source / "tags.csv") and len(seen) == 1


def test_corrupted_file_fails_the_checksum_and_leaves_nothing(server, tmp_path):
    base, served, _ = server
    (served / "All_Beauty_5.json.gz").write_bytes(b"not the real file")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as error:
        download(ALL_BEAUTY, str(dest), mirror=base)
    message = str(error.value)
    assert f"{base}/All_Beauty_5.json.gz" in message
    assert dl.REGISTRY[ALL_BEAUTY].md5 in message
    assert hashlib.md5(b"not the real file").hexdigest() in message
    assert list(dest.iterdir()) == []


def test_http_error_names_status_and_url(server, tmp_path):
    base, _, _ = server
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match=rf"HTTP 404 .*{base}/missing/ml-1m.zip"):
        download("ml-1m", str(dest), mirror=f"{base}/missing")
    assert list(dest.iterdir()) == []


@pytest.fixture
def tiny_source(monkeypatch) -> str:
    """A registry entry without md5, so only the transport is under test."""
    source = DatasetSource("tiny", "https://example.invalid/data/tiny.bin", "tiny.bin", None, False, "none",
                           "test file")
    monkeypatch.setitem(dl.REGISTRY, "tiny", source)
    return "tiny"


def test_truncated_body_is_an_error_and_leaves_no_part_file(server, tmp_path, tiny_source):
    base, _, _ = server
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match=f"{base}/truncated/tiny.bin"):
        download(tiny_source, str(dest), mirror=f"{base}/truncated", timeout=10)
    assert list(dest.iterdir()) == []


def test_connection_refused_is_a_clear_error(tmp_path, tiny_source):
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=f"could not connect .*127.0.0.1:{port}/tiny.bin"):
        download(tiny_source, str(tmp_path), mirror=f"http://127.0.0.1:{port}", timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_bad_zip_is_a_clear_error_and_removed(server, tmp_path):
    base, served, _ = server
    (served / "ml-100k.zip").write_bytes(b"PK but not really a zip")
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="ml-100k.zip is not a valid zip"):
        download("ml-100k", str(dest), mirror=base)
    assert list(dest.iterdir()) == []


def test_registry_entries_are_consistent():
    sources = dl.list_datasets()
    assert [s.name for s in sources] == sorted(dl.REGISTRY)
    assert {"ml-latest-small", "ml-1m", "ml-100k", ALL_BEAUTY, "amazon2014-beauty-5core",
            "amazon2014-sports-5core"} <= set(dl.REGISTRY)
    for source in sources:
        parts = urlsplit(source.url)
        assert parts.scheme in ("http", "https") and parts.netloc
        assert parts.path.rsplit("/", 1)[1] == source.file_name
        assert source.extract == source.file_name.endswith(".zip")
        assert source.md5 is None or len(source.md5) == 32
        assert source.converter in CONVERTERS
        assert source.name in str(source) and source.url in str(source)
    assert dl.REGISTRY[ALL_BEAUTY].md5 == "211767f2b28e935f20638816de393a80"


def test_mirror_and_unknown_names():
    source = dl.REGISTRY["ml-1m"]
    assert dl.source_url(source) == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert dl.source_url(source, "http://mirror.local/ml/") == "http://mirror.local/ml/ml-1m.zip"
    with pytest.raises(ValueError, match="base URL"):
        dl.source_url(source, "mirror.local")
    with pytest.raises(KeyError, match="known: .*ml-1m"):
        download("ml-2m", "/nonexistent")


def test_import_touches_no_network():
    code = ("import socket\n"
            "def refuse(*args, **kwargs): raise SystemExit('network used at import')\n"
            "socket.socket.connect = refuse\n"
            "socket.create_connection = refuse\n"
            "socket.getaddrinfo = refuse\n"
            "import reasonrec.data.download\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
