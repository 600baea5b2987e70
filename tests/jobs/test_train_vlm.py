"""jobs/train_vlm.py through its real CLI on local Ray: 2 DeepSpeed workers, a killed worker, a resumed rerun,
an artifact that loads and scores as reported, validation across the resume (best step exported), a ZeRO-3
variant, and config errors caught before Ray starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)

# Small enough for 2 cores: 120 users x 150 items, two tasks, tiny model, a handful of steps.
# cpu_shm_allreduce=false: gloo all-reduce, no compile of DeepSpeed's CPU op (~70 s the first time on a clean machine).
COMMON = ["cpus_per_worker=0.5", "cpu_shm_allreduce=false", "batch_size=4", "log_every=1",
          "instructions.tasks=[sequential,direct]",
          "model.tiny.bpe_vocab_size=400", "model.max_length=256", "lr=3e-3", "warmup_ratio=0.0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A prepared synthetic set and one briefly trained tool (BPR-MF) beside it, as train_tools lays it out, plus a
    briefly trained SASRec outside tools_dir: a distillation teacher."""
    from reasonrec.tools import TOOLS
    from reasonrec.tools.data import ToolData

    root = tmp_path_factory.mktemp("vlm_job")
    prepare(PrepareConfig.model_validate({
        "out": str(root / "ds"), "name": "synthetic",
        "source": {"kind": "synthetic", "synthetic": {"n_users": 120, "n_items": 150}},
        "splits": {"protocols": ["loo", "random"]}, "candidates": {"ranking_negatives": [99, 9]}}))
    cls = TOOLS["bpr_mf"]
    tool = cls(cls.config_class(epochs=3, embedding_dim=16, seed=0), 120, 150)
    tool.fit(ToolData.load(str(root / "ds")))
    tool.save(root / "tools" / "bpr_mf")
    cls = TOOLS["sasrec"]
    teacher = cls(cls.config_class(epochs=2, embedding_dim=16, n_heads=2, max_len=50, seed=0), 120, 150)
    teacher.fit(ToolData.load(str(root / "ds")))
    teacher.save(root / "teachers" / "sasrec")
    return root


def job_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "jobs" / "train_vlm.py"), "--dataset", str(root / "ds"),
            "--out", str(out), f"tools_dir={root / 'tools'}", *COMMON, *extra]


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(args, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise AssertionError(f"train_vlm.py exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\n"
                             f"stderr:\n{result.stderr[-6000:]}")
    return result


@pytest.mark.slow
def test_killed_worker_then_rerun_resumes_and_saves_a_model_that_scores_as_reported(dataset, tmp_path):
    """One worker killed after the step-2 checkpoint; the rerun resumes there. The run trains with the dense
    history loss and validates every 2 steps: the curve spans both runs (2 before the kill, 4 and 5 after),
    and <out>/model holds exactly the best validation step's weights, whichever run saved them."""
    out, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    args = job_args(dataset, out, "max_steps=5", "checkpoint_every=2", "zero_stage=2", "num_workers=2",
                    "history_loss_weight=1.0", "instructions.cover_history=true", "validation.every=2",
                    "validation.max_users=20", f"distill.tool={dataset / 'teachers' / 'sasrec'}",
                    "distill.temperature=2.0")
    env = {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "REASONREC_TRAIN_HOLD": f"2:{pids}"}
    first = subprocess.Popen(args, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (pids / "rank1.pid").exists():
            assert first.poll() is None, f"first run ended early ({first.returncode}):\n{first.stdout.read()[-4000:]}"
            if time.monotonic() > deadline:
                first.kill()
                pytest.fail(f"no checkpoint at step 2 within 300 s:\n{first.communicate()[0][-6000:]}")
            time.sleep(0.5)
        os.kill(int((pids / "rank1.pid").read_text()), signal.SIGKILL)  # one training worker dies mid-run
        log = first.communicate(timeout=120)[0]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode != 0, log[-3000:]
    assert (out / "checkpoints" / "step_00000002").is_dir() and not (out / "model").exists()

    second = check(run(args))
    assert "resumed from step 2 of 5" in second.stdout + second.stderr
    assert "distilling sasrec" in second.stdout + second.stderr and "T 2.0, answer True" in second.stdout + second.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    train, plan = metrics["train"], metrics["plan"]
    assert train["step"] == plan["total_steps"] == 5 and train["resumed_from"] == 2
    # Every position of the curriculum sequence was trained on exactly once across both runs.
    n = plan["total_samples"]
    assert train["samples"] == n == 5 * 2 * 4 and train["position_sum"] == n * (n - 1) / 2
    assert [h["step"] for h in train["history"]] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000004", "step_00000005"]

    rows = {row["model"]: row for row in metrics["rows"]}
    assert rows["vlm"]["protocol"] == "1+99" and rows["vlm"]["instances"] == rows["most_popular"]["instances"] > 50
    assert 0.0 <= rows["vlm"]["HR@5"] <= 1.0 and 0.0 <= rows["most_popular"]["HR@5"] <= 1.0
    assert "| vlm | sequential | 1+99 |" in (out / "metrics.md").read_text()

    # The artifact is a plain HF checkpoint: load_vlm + VLMScorer reproduce the reported HR@5, and it trained.
    from reasonrec.data.schema import Dataset
    from reasonrec.vlm.build import load_vlm
    from reasonrec.vlm.evaluate import evaluate_ranking
    from reasonrec.vlm.images import ItemImages
    from reasonrec.vlm.instructions import read_instructions
    from reasonrec.vlm.model_config import VLMModelConfig
    from reasonrec.vlm.scoring import VLMScorer

    cfg = VLMModelConfig(max_length=256)
    model, processor = load_vlm(out / "model", cfg)
    base, _ = load_vlm(out / "base", cfg)
    changed = [name for name, p in model.state_dict().items() if not np.allclose(p, base.state_dict()[name])]
    assert len(changed) > 10
    test = [ins for ins in read_instructions(str(out / "instructions" / "test.parquet")) if ins.task == "sequential"]
    scorer = VLMScorer(model, processor, ItemImages(Dataset.load(str(dataset / "ds")), 32), ["bpr_mf"],
                       max_length=256)
    again = evaluate_ranking(scorer.score(test), test)
    assert again["HR@5"] == pytest.approx(rows["vlm"]["HR@5"])
    assert again["NDCG@5"] == pytest.approx(rows["vlm"]["NDCG@5"])

    # Validation: the curve of both runs, the best step exported, the first pass's rows (no tool hints).
    curve = train["validation"]
    assert [p["step"] for p in curve["curve"]] == [2, 4, 5] and all(p["n"] == 20 for p in curve["curve"])
    values = [p["NDCG@5"] for p in curve["curve"]]
    best = curve["curve"][int(np.argmax(values))]["step"]            # the first of equal values
    assert curve["best_step"] == best and curve["best_value"] == pytest.approx(max(values))
    assert "[valid] step 5:" in second.stdout + second.stderr
    meta = json.loads((out / "model" / "reasonrec.json").read_text())
    assert meta["steps"] == best and meta["trained_steps"] == 5
    kept = torch.load(out / "best" / "weights.pt")
    exported = model.state_dict()
    assert json.loads((out / "best" / "best.json").read_text())["step"] == best
    assert set(exported) == set(kept) and all(torch.equal(exported[k], kept[k]) for k in exported)
    valid_rows = read_instructions(str(out / "validation" / "valid.parquet"))
    assert len(valid_rows) == 20 and all(r.consulted_tools == [] and r.slots.tool_outputs == "" for r in valid_rows)


@pytest.mark.slow
def test_zero3_runs_end_to_end(dataset, tmp_path):
    out = tmp_path / "z3"
    from safetensors.torch import load_file

    check(run(job_args(dataset, out, "max_steps=2", "checkpoint_every=2", "zero_stage=3", "eval.max_users=10",
                       "tools_dir=null")))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["step"] == 2 and metrics["config"]["zero_stage"] == 3
    assert {row["model"] for row in metrics["rows"]} == {"vlm", "most_popular"}
    assert json.loads((out / "model" / "reasonrec.json").read_text())["tool_names"] == []
    # Gathered from two ranks' partitions: every tensor present, full shape, and trained away from the base.
    trained, base = load_file(out / "model" / "model.safetensors"), load_file(out / "base" / "model.safetensors")
    assert set(trained) == set(base) and all(trained[k].shape == base[k].shape for k in base)
    assert sum(not torch.equal(trained[k], base[k]) for k in base) > 10


def test_validation_with_zero3_is_refused(dataset, tmp_path):
    result = run(job_args(dataset, tmp_path / "z3v", "zero_stage=3", "validation.every=2"))
    assert result.returncode != 0 and "validation.every needs zero_stage <= 2" in result.stdout + result.stderr


def test_bad_config_fails_before_ray_starts(dataset, tmp_path):
    started = time.perf_counter()
    bad_key = run(job_args(dataset, tmp_path / "x", "zero_stage=4"))
    assert bad_key.returncode == 2 and "config error" in bad_key.stderr and "zero_stage" in bad_key.stderr
    bf16_cpu = run(job_args(dataset, tmp_path / "x", "precision=bf16", "use_gpu=false"))
    assert bf16_cpu.returncode == 2 and "bf16 needs GPUs" in bf16_cpu.stderr
    no_data = run([sys.executable, str(REPO_ROOT / "jobs" / "train_vlm.py"), "--dataset", str(tmp_path / "none"),
                   "--out", str(tmp_path / "x")])
    assert no_data.returncode != 0 and "is not prepared" in no_data.stderr
    no_tool = run(job_args(dataset, tmp_path / "x", "tools=[sasrec]"))
    assert no_tool.returncode != 0 and "tools ['sasrec'] not found" in no_tool.stderr
    not_a_teacher = run(job_args(dataset, tmp_path / "x", f"distill.tool={tmp_path / 'nothing'}"))
    assert not_a_teacher.returncode != 0 and "is not a trained tool folder" in not_a_teacher.stderr
    for result in (bad_key, bf16_cpu, no_data, no_tool, not_a_teacher):
        assert "Ray" not in result.stdout + result.stderr  # refused before ray.init
    assert not (tmp_path / "x").exists()
    assert time.perf_counter() - started < 60


def test_rerun_with_other_settings_is_refused(dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"settings": {"lr": 1.0}, "plan": {}}))
    result = run(job_args(dataset, out, "max_steps=3"))
    assert result.returncode != 0 and "holds a run with other settings" in result.stderr and "lr" in result.stderr
