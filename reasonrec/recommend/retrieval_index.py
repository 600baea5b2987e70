"""The retrieval tool's faiss index, built once per (weights, index kind) and kept beside tonight's histories,
so each scoring actor and Serve replica loads it in a fraction of a second instead of training it (an IVF index
over 100k items trains in ~4 s on one core: a fifth of a 2-actor pool's start-up at 100k users, measured).

    <dataset>/tonight/retrieval/<tool>-<kind>-<sha256 of the tool's weights, 12 hex>.faiss

`ensure_index` writes it (jobs/score.py's setup, beside ensure_histories); `cached_index` returns it or None, and
Bundle.retrieval builds its own when there is none, so a missing or foreign file changes speed, never results:
the file is named from the weights it was built from and holds the index build_index makes from them (seeded).
"""

from __future__ import annotations

import faiss
import numpy as np

from reasonrec.io import join, open_fs, replaced_whole
from reasonrec.recommend.system import weights_digest
from reasonrec.tools.retrieval import IndexKind, build_index


def index_uri(dataset: str, tools_dir: str, tool: str, kind: IndexKind) -> str:
    return join(dataset, "tonight", "retrieval", f"{tool}-{kind}-{weights_digest(join(tools_dir, tool))}.faiss")


def cached_index(uri: str) -> faiss.Index | None:
    """The index written at `uri`, or None when there is none."""
    fs, path = open_fs(uri)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return faiss.deserialize_index(np.frombuffer(f.read(), dtype=np.uint8))


def ensure_index(uri: str, kind: IndexKind, item_vectors) -> bool:
    """Write build_index(item_vectors(), kind) at `uri` unless it is there; True when written. item_vectors is
    called only then (the caller loads the tool only when it is needed)."""
    fs, path = open_fs(uri)
    if fs.exists(path):
        return False
    data = faiss.serialize_index(build_index(item_vectors(), kind))
    with replaced_whole(fs, path) as f:
        f.write(data.tobytes())
    return True
