"""The training side's pure parts: DeepSpeed config, optimizer groups, LR schedule, ordered sharding, configs,
and gathering a ZeRO checkpoint back into one state dict (one real single-process DeepSpeed engine)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reasonrec.config import ConfigError, load_config
from reasonrec.vlm.deepspeed_config import (build_optimizer, build_scheduler, consolidated_state_dict,
                                            deepspeed_config, resolve_precision, skip_cpu_shm_op)
from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def plan(**kw) -> TrainPlan:
    args = dict(n_examples=100, num_workers=2, batch_size=3, grad_accum=2, max_steps=5, epochs=None,
                warmup_ratio=0.2, checkpoint_every=2, seed=0, curriculum="{}")
    return TrainPlan.build(**{**args, **kw})


# ------------------------------------------------------------------------------------------- DeepSpeed config

def test_deepspeed_config_is_explicit_about_clipping_batches_and_precision():
    cfg = TrainVLMConfig(batch_size=4, grad_accum=3, num_workers=2, zero_stage=3)
    ds = deepspeed_config(cfg, on_gpu=False)
    assert ds["gradient_clipping"] == 1.0  # written even at its default: DeepSpeed would clip silently anyway
    assert deepspeed_config(cfg.model_copy(update={"gradient_clipping": 0.0}), False)["gradient_clipping"] == 0.0
    batches = ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]
    assert batches == (4, 3, 24)
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_allow_untested_optimizer"] is True
    assert ds["bf16"]["enabled"] is False and deepspeed_config(cfg, on_gpu=True)["bf16"]["enabled"] is True
    assert deepspeed_config(cfg.model_copy(update={"precision": "fp32"}), True)["bf16"]["enabled"] is False


def test_bf16_without_gpu_is_refused():
    assert resolve_precision("auto", on_gpu=False) == "fp32" and resolve_precision("auto", on_gpu=True) == "bf16"
    with pytest.raises(ValueError, match="bf16 needs GPU"):
        resolve_precision("bf16", on_gpu=False)
    with pytest.raises(ValueError, match="bf16 needs GPUs"):
        TrainVLMConfig(precision="bf16", use_gpu=False)


def test_optimizer_skips_frozen_parameters_and_decays_only_matrices():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    model[2].weight.requires_grad_(False)
    opt = build_optimizer(model, TrainVLMConfig(weight_decay=0.1, lr=0.01))
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 4])] and decay["weight_decay"] == 0.1
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0  # biases + norm weight/bias
    assert all(g["lr"] == 0.01 for g in opt.param_groups)


def test_schedule_warms_up_linearly_then_decays_to_min_lr():
    cfg = TrainVLMConfig(lr=1e-3, min_lr=1e-5, warmup_ratio=0.1, max_steps=50)
    p = plan(max_steps=50, warmup_ratio=cfg.warmup_ratio)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, p)
    lrs = []
    for _ in range(p.total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert p.warmup_steps == 5
    np.testing.assert_allclose(lrs[:6], [0, 2e-4, 4e-4, 6e-4, 8e-4, 1e-3], rtol=1e-6)
    assert np.all(np.diff(lrs[5:]) < 0) and lrs[-1] == pytest.approx(1e-5)


# ------------------------------------------------------------------------------------------- ordered sharding

def test_ranks_partition_the_sequence_in_micro_batch_order():
    p = plan()
    assert (p.global_batch, p.total_samples, p.rows_per_rank_step) == (12, 60, 6)
    shards = [p.rank_positions(r) for r in range(p.num_workers)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(p.total_samples))
    for r, shard in enumerate(shards):
        assert len(shard) == p.total_steps * p.rows_per_rank_step and np.all(np.diff(shard) > 0)
        # step s, micro-batch a of rank r: s*G + a*B*W + r*B + [0, B)
        s, a = 3, 1
        start = (s * p.grad_accum + a) * p.batch_size
        expected = s * p.global_batch + a * p.batch_size * p.num_workers + r * p.batch_size + np.arange(3)
        assert shard[start:start + p.batch_size].tolist() == expected.tolist()


def test_plan_steps_checkpoints_and_mismatch():
    assert plan(max_steps=None, epochs=1.0).total_steps == 9  # ceil(100 / 12)
    assert plan(max_steps=None, epochs=2.5).total_steps == 21
    p = plan(max_steps=5, checkpoint_every=2)
    assert [s for s in range(1, 6) if p.is_checkpoint_step(s)] == [2, 4, 5]
    assert p.mismatch(plan()) == []
    assert p.mismatch(plan(batch_size=4)) == ["batch_size: 4 on disk, 3 now"]


# ------------------------------------------------------------------------------------------------ configs

def test_shipped_configs_validate():
    files = [f for f in sorted((REPO_ROOT / "configs").glob("*.yaml")) if "train_vlm" in yaml.safe_load(f.read_text())]
    assert {f.stem for f in files} >= {"synthetic", "ml-latest-small"}
    for f in files:   # each data set's train_vlm section, and with the quick presets
        for layers in ([f], [f, REPO_ROOT / "configs" / "overlays" / "quick.yaml"]):
            cfg = load_config(TrainVLMConfig, layers)
            assert cfg.gradient_clipping >= 0 and (cfg.max_steps or cfg.epochs)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="set max_steps or epochs"):
        load_config(TrainVLMConfig, None, ["epochs=null"])
    with pytest.raises(ConfigError, match="zero_stage"):
        load_config(TrainVLMConfig, None, ["zero_stage=4"])
    with pytest.raises(ConfigError, match="instructions.no_such_key"):
        load_config(TrainVLMConfig, None, ["instructions.no_such_key=1"])


# -------------------------------------------------------------------------------- gathering a ZeRO checkpoint

@pytest.fixture(scope="module")
def single_process_group():
    """A 1-rank gloo group so DeepSpeed can run in this process; torn down afterwards."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    skip_cpu_shm_op()   # gloo's all-reduce: no C++ op compiled in the test process
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_consolidated_state_dict_matches_the_trained_module(stage, single_process_group, tmp_path):
    import deepspeed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainVLMConfig(batch_size=4, num_workers=1, zero_stage=stage, lr=0.05, gradient_clipping=0.0)
    opt = build_optimizer(model, cfg)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=deepspeed_config(cfg, on_gpu=False),
                                      dist_init_required=False)
    for _ in range(3):
        loss = engine(torch.randn(4, 6)).pow(2).mean()
        engine.backward(loss)
        engine.step()
    engine.save_checkpoint(str(tmp_path), tag="final")
    if stage == 3:
        with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
            trained = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    else:
        trained = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}

    weights = consolidated_state_dict(tmp_path)
    assert set(weights) == set(before)
    for name, tensor in weights.items():
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, trained[name])
        assert not torch.equal(tensor, before[name])  # it did train: the comparison is not vacuous


def test_skipping_the_cpu_shm_op_means_no_build():
    from deepspeed.comm.torch import build_shm_op

    skip_cpu_shm_op()
    started = time.perf_counter()
    assert build_shm_op() is None                     # DeepSpeed falls back to torch.distributed's all-reduce
    assert time.perf_counter() - started < 5          # and compiles nothing
