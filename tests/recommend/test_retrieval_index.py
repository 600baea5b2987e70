"""reasonrec/recommend/retrieval_index.py: the retrieval index kept beside tonight's histories is the index a
scorer would build itself (same search results, whatever the thread count it was trained with), is named from
the weights it came from, and Bundle.retrieval loads it instead of training one."""

from __future__ import annotations

import shutil

import faiss
import numpy as np
import pytest

from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.retrieval_index import cached_index, ensure_index, index_uri
from reasonrec.recommend.system import resolve
from reasonrec.tools import retrieval


def system_of(world, tools_dir=None, kind="ivf"):
    return resolve(RecommendConfig(dataset=world.dataset, tools_dir=tools_dir or world.tools_dir, vlm_dir=None,
                                   policy="config", consult_pool=["sasrec"], retrieval_index=kind))


@pytest.mark.parametrize("kind", ["ivf", "flat"])
def test_the_kept_index_searches_like_one_built_in_the_scorer(world, tmp_path, kind):
    bundle = Bundle(system_of(world, kind=kind))
    uri = bundle.index_uri
    assert uri.startswith(f"{world.dataset}/tonight/retrieval/two_tower-{kind}-") and uri.endswith(".faiss")
    vectors = bundle.retrieval_tool.item_vectors()
    threads = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(2)          # the job's setup trains it with the driver's threads ...
        assert ensure_index(uri, kind, lambda: vectors) is True
    finally:
        faiss.omp_set_num_threads(threads)
    assert ensure_index(uri, kind, lambda: pytest.fail("rebuilt an index that is there")) is False
    kept = cached_index(uri)
    faiss.omp_set_num_threads(1)              # ... an actor on a fraction of a CPU would train it with one
    try:
        fresh = retrieval.build_index(vectors, kind)
    finally:
        faiss.omp_set_num_threads(threads)
    queries = np.random.default_rng(0).normal(size=(64, vectors.shape[1])).astype(np.float32)
    if kind == "ivf":
        assert kept.nprobe == fresh.nprobe > 0 and kept.nlist == fresh.nlist   # the file keeps the search settings
    got, expected = kept.search(queries, 20), fresh.search(queries, 20)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    shutil.rmtree(f"{world.dataset}/tonight/retrieval")


def test_the_bundle_loads_the_kept_index_and_builds_one_only_without_it(world, monkeypatch):
    bundle = Bundle(system_of(world))
    assert cached_index(bundle.index_uri) is None
    ensure_index(bundle.index_uri, "ivf", bundle.retrieval_tool.item_vectors)
    monkeypatch.setattr("reasonrec.recommend.bundle.build_index",
                        lambda *a, **k: pytest.fail("trained an index although one is kept"))
    tool, index = Bundle(system_of(world)).retrieval
    assert index.ntotal == tool.item_vectors().shape[0] and index.nprobe == cached_index(bundle.index_uri).nprobe
    shutil.rmtree(f"{world.dataset}/tonight/retrieval")
    monkeypatch.undo()
    assert Bundle(system_of(world)).retrieval[1].ntotal == index.ntotal    # no file: built in the scorer


def test_other_weights_name_another_index(world, tmp_path):
    tools = tmp_path / "tools"
    shutil.copytree(world.tools_dir, tools)
    first = index_uri(world.dataset, str(tools), "two_tower", "ivf")
    assert first == index_uri(world.dataset, world.tools_dir, "two_tower", "ivf")     # same weights, same file
    weights = next((tools / "two_tower").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b" ")                                   # retrained: other bytes
    assert index_uri(world.dataset, str(tools), "two_tower", "ivf") != first
    assert index_uri(world.dataset, str(tools), "two_tower", "flat") != first
