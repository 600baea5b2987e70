"""The driver's setup helpers of jobs/train_vlm.py that a job test cannot watch: a folder copy whose marker file
lands last (its presence is what tells a rerun the copy is whole)."""

from __future__ import annotations

from pathlib import Path

from fsspec.implementations.local import LocalFileSystem

from reasonrec.vlm.prepare import upload


def test_upload_replaces_the_destination_and_writes_the_marker_last(tmp_path, monkeypatch):
    local, destination = tmp_path / "model", tmp_path / "out" / "model"
    local.mkdir()
    for name in ("reasonrec.json", "a.safetensors", "z.json", "zz.txt"):
        (local / name).write_text(name)
    destination.mkdir(parents=True)
    (destination / "stale.bin").write_text("from an earlier copy")
    order: list[str] = []
    put_file = LocalFileSystem.put_file

    def recording_put_file(self, lpath, rpath, **kwargs):
        order.append(Path(rpath).name)
        return put_file(self, lpath, rpath, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "put_file", recording_put_file)
    upload(local, str(destination))
    assert order[-1] == "reasonrec.json" and sorted(order) == ["a.safetensors", "reasonrec.json", "z.json", "zz.txt"]
    copied = sorted(str(p.relative_to(destination)) for p in destination.rglob("*") if p.is_file())
    assert copied == ["a.safetensors", "reasonrec.json", "z.json", "zz.txt"]
    assert (destination / "z.json").read_text() == "z.json"
