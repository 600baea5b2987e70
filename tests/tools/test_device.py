"""Every tool on a CUDA device: it trains there (batches follow the module), scores like the same weights on the
CPU, and its checkpoint loads on a machine without a GPU. CI has no GPU, so these run only where torch sees one
(the lead ran them on an H100: benchmarks/RESULTS.md, "GPU checks"); the CPU half of the contract (`Tool.to`
with 'cpu', index tensors on the tool's device) runs everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reasonrec.tools import TOOLS
from reasonrec.tools.base import load_tool
from reasonrec.tools.training import ranking_ranks

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (CI has none)")


def small(name: str, **settings):
    cfg = TOOLS[name].config_class.model_validate({"epochs": 2, "seed": 0, "max_train_seconds": 120, **settings})
    return cfg


def test_to_cpu_keeps_scores_and_index_tensors_follow_the_device(synthetic_data):
    tool = TOOLS["bpr_mf"](small("bpr_mf"), synthetic_data.n_users, synthetic_data.n_items)
    queries = synthetic_data.queries(np.arange(20), "train", tool.cfg.max_len)
    candidates = np.random.default_rng(0).integers(0, tool.n_items, size=(20, 10))
    before = tool.score(queries, candidates)
    assert tool.to("cpu") is tool and tool.device == torch.device("cpu")
    np.testing.assert_array_equal(tool.score(queries, candidates), before)
    index = tool.tensor(np.array([3, 1], dtype=np.int32))
    assert index.dtype == torch.int64 and index.device == tool.device


@needs_cuda
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_trains_on_cuda_and_scores_like_the_cpu_copy(name, synthetic_data, tmp_path):
    tool = TOOLS[name](small(name), synthetic_data.n_users, synthetic_data.n_items).to("cuda")
    history = tool.fit(synthetic_data)
    assert all(p.device.type == "cuda" for p in tool.module.parameters())
    assert len(history) >= 2 and np.isfinite(history[0]["loss"])

    queries = synthetic_data.queries(np.arange(64), "train+valid", tool.cfg.max_len)
    candidates = np.random.default_rng(0).integers(0, tool.n_items, size=(64, 20))
    on_gpu = tool.score(queries, candidates)
    items_gpu, _ = tool.topk(queries, 5)

    on_cpu = load_tool(tool.save(tmp_path / name))            # checkpoint written from the GPU, read on the CPU
    assert on_cpu.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in on_cpu.module.parameters())
    np.testing.assert_allclose(on_cpu.score(queries, candidates), on_gpu, rtol=1e-3, atol=1e-3)
    assert (on_cpu.topk(queries, 5)[0] == items_gpu).mean() > 0.95  # ties may order differently

    if tool.task != "ctr":                                    # the validation path the trainer uses, on the GPU
        ranks = ranking_ranks(tool, synthetic_data, "valid", "train")
        assert ranks.shape == (len(synthetic_data.valid_candidates),)
