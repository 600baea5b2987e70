"""The Serve app over real HTTP on 127.0.0.1: one app per module (started by jobs/serve.py's `start` on an
in-process Ray), on a small world (synthetic data, trained tools, a tiny CTR tool, an untrained tiny VLM).

Covers readiness before the models load (replicas are held by the RR_SERVE_HOLD_LOAD hook until the fixture
releases them), every endpoint and the OpenAPI schema, 4xx on bad input, cold start, 503 under a burst with
the app still healthy afterwards, and the same answer online as in jobs/score.py's table for every user — in
the default layout (Serve's throughput-optimized mode, tools in the ingress replica); the last test redeploys
with a separate Tools deployment and no VLM (the other layout, 501 for explanations)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import time

import aiohttp
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import requests
from ray import serve

from actors.serve import HOLD_ENV
from reasonrec.publish import committed
from reasonrec.serving.config import ServeConfig
from tests.conftest import REPO_ROOT, run_job
from tests.serving.conftest import CTR_TOOL, build_serve_world

THROUGHPUT_ENV = "RAY_SERVE_THROUGHPUT_OPTIMIZED"

pytestmark = pytest.mark.slow   # a world, a nightly run and a Serve app: ~2 min on 2 busy cores

DATE = "2026-11-22"
K = 5
# Thresholds that put the 60 synthetic users on both the tool route and the VLM routes.
ROUTER = {"tau_low": 0.45, "tau_high": 0.6, "tau_tool": 0.0, "tau_conf": 0.5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_job(name: str):
    """jobs/<name>.py as a module (jobs/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO_ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nightly_table(world, out) -> pd.DataFrame:
    """One night of jobs/score.py (main, in-process on the module's Ray) with the router the app serves."""
    load_job("score").main([f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={world.vlm_dir}",
                            "recommend.policy=config", *[f"recommend.router.{k}={v}" for k, v in ROUTER.items()],
                            f"out={out}", f"run_date={DATE}", "eval_split=null", "batch_size=8", f"k={K}"])
    record = committed(str(out), f"run_date={DATE}")
    table = pa.concat_tables([pq.read_table(out / f"run_date={DATE}" / name) for name in record["files"]])
    return table.to_pandas()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    hold = root / "release-models"
    os.environ[HOLD_ENV] = str(hold)   # inherited by the Ray processes started below
    os.environ[THROUGHPUT_ENV] = "1"   # what jobs/serve.py sets before the Ray it starts (the default config)
    ray.init(num_cpus=4, include_dashboard=False)
    try:
        world = build_serve_world(root / "world")
        table = nightly_table(world, root / "recs")
        cfg = ServeConfig.model_validate({
            "recommend": {"dataset": world.dataset, "vlm_dir": world.vlm_dir, "policy": "config", "router": ROUTER},
            "port": free_port(), "max_k": 20, "max_history": 8, "max_ctr_items": 3, "ctr_tool": CTR_TOOL,
            "cold_start_sample": 16, "explain_max_new_tokens": 4,
            # Tight queues so a burst of 40 overflows them (the other tests send one request at a time).
            "router": {"max_ongoing_requests": 4, "max_queued_requests": 4, "num_cpus": 0.1},
            "tools": {"max_ongoing_requests": 4, "max_queued_requests": 8, "num_cpus": 0.5},
            "vlm": {"max_ongoing_requests": 1, "max_queued_requests": 1, "num_cpus": 0.5, "num_gpus": 0},
        })
        url = load_job("serve").start(cfg)
        before = {"readyz": requests.get(f"{url}/readyz", timeout=120),
                  "recommend": requests.post(f"{url}/v1/recommend", json={"user_id": "user_0000001"}, timeout=120)}
        hold.touch()
        deadline = time.monotonic() + 300
        while (ready := requests.get(f"{url}/readyz", timeout=120)).status_code != 200:
            assert time.monotonic() < deadline and not ready.json()["errors"], ready.json()
            time.sleep(0.2)
        yield {"url": url, "cfg": cfg, "table": table, "before": before, "world": world}
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop(HOLD_ENV, None)
        os.environ.pop(THROUGHPUT_ENV, None)


def post(app, path: str, body) -> requests.Response:
    kwargs = {"data": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    return requests.post(f"{app['url']}{path}", timeout=120, **kwargs)


def test_not_ready_until_the_models_load(app):
    readyz, recommend = app["before"]["readyz"], app["before"]["recommend"]
    assert readyz.status_code == 503
    assert readyz.json()["ready"] is False and set(readyz.json()["waiting_for"]) == {"tools", "vlm"}
    assert recommend.status_code == 503 and "still loading" in recommend.json()["detail"]
    assert recommend.headers["retry-after"] == "1"
    ready = requests.get(f"{app['url']}/readyz", timeout=120)
    assert ready.status_code == 200 and ready.json() == {
        "ready": True, "model_version": app["table"]["model_version"].iloc[0], "waiting_for": [], "errors": {}}


def test_health_openapi_and_loopback_only(app):
    assert requests.get(f"{app['url']}/healthz", timeout=120).json() == {"status": "ok"}
    schema = requests.get(f"{app['url']}/openapi.json", timeout=120).json()
    assert {"/v1/recommend", "/v1/ctr", "/v1/explain", "/healthz", "/readyz"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["RecommendRequest"]["properties"]
    assert request["k"]["maximum"] == 1000 and "max_k" in request["k"]["description"]
    route = schema["components"]["schemas"]["RecommendResponse"]["properties"]["route"]
    assert set(route["enum"]) == {"tool", "vlm", "vlm+tools", "cold_start"}
    listening = [c.laddr for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == app["cfg"].port]
    assert listening and {a.ip for a in listening} == {"127.0.0.1"}
    # Throughput-optimized mode: the ingress replica listens on a port of its own (30000+), loopback too.
    direct = [c.laddr for c in psutil.net_connections("tcp")
              if c.status == psutil.CONN_LISTEN and 30000 <= c.laddr.port < 31000]
    assert direct and {a.ip for a in direct} == {"127.0.0.1"}
    assert requests.get(f"http://127.0.0.1:{direct[0].port}/healthz", timeout=120).json() == {"status": "ok"}


def test_online_equals_the_nightly_table(app):
    table = app["table"]
    routes = set()
    for user_id, rows in table.groupby("user_id"):
        response = post(app, "/v1/recommend", {"user_id": user_id, "k": K})
        assert response.status_code == 200, response.text
        online, rows = response.json(), rows.sort_values("rank")
        assert [i["item_id"] for i in online["items"]] == rows["item_id"].tolist(), user_id
        assert [i["score"] for i in online["items"]] == pytest.approx(rows["score"].tolist(), rel=1e-5, abs=1e-5)
        first = rows.iloc[0]
        assert (online["route"], online["risk"], online["rationale"], online["model_version"]) == (
            first["route"], first["risk"], first["rationale"], first["model_version"]), user_id
        assert online["tools_consulted"] == list(first["tools_consulted"])
        assert online["evidence_horizon"] == pytest.approx(first["evidence_horizon"], abs=1e-6)
        assert online["cold_start"] is False
        routes.add(online["route"])
    assert {"tool", "vlm+tools"} <= routes


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/recommend", '{"user_id": "user_0000001", "k": ', 400, "malformed JSON"),
    ("/v1/recommend", {"user_id": "user_0000001", "task": "ctr"}, 422, "task: Input should be 'sequential'"),
    ("/v1/recommend", {"user_id": "user_0000001", "k": 21}, 422, "k: 21 is out of range 1..20"),
    ("/v1/recommend", {"user_id": "user_0000001", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("/v1/recommend", {"history": ["item_0000001"] * 9}, 422, "history: 9 items, at most 8 allowed"),
    ("/v1/recommend", {"history": ["item_0000001", "no-such-item"]}, 422, "unknown item id(s) 'no-such-item'"),
    ("/v1/recommend", {"k": 3}, 422, "give user_id, history, or both"),
    ("/v1/recommend", {"user_id": "user_0000001", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ("/v1/ctr", {"user_id": "user_0000001", "item_ids": ["item_0000001", "nope"]}, 422, "item_ids: unknown item"),
    ("/v1/ctr", {"user_id": "user_0000001", "item_ids": ["item_0000001"] * 4}, 422, "4 items, at most 3 allowed"),
    ("/v1/explain", {"user_id": "user_0000001", "item_id": "nope"}, 422, "item_id: unknown item id(s) 'nope'"),
])
def test_bad_input_is_4xx_with_a_message(app, path, body, status, message):
    response = post(app, path, body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_cold_start_is_an_answer(app):
    stranger = post(app, "/v1/recommend", {"user_id": "somebody-new", "k": 4})
    assert stranger.status_code == 200, stranger.text
    body = stranger.json()
    assert body["route"] == "cold_start" and body["cold_start"] and len(body["items"]) == 4
    assert body["evidence_horizon"] is None and "no history" in body["rationale"]

    history = ["item_0000003", "item_0000007"]
    session = post(app, "/v1/recommend", {"history": history, "k": 6}).json()
    assert session["route"] == "cold_start" and len(session["items"]) == 6
    assert not {i["item_id"] for i in session["items"]} & set(history)

    ctr = post(app, "/v1/ctr", {"user_id": "somebody-new", "item_ids": ["item_0000003", "item_0000007"]}).json()
    assert ctr["cold_start"] and all(0 < p["probability"] < 1 for p in ctr["probabilities"])
    explained = post(app, "/v1/explain", {"user_id": "somebody-new", "item_id": "item_0000003"})
    assert explained.status_code == 200 and explained.json()["cold_start"] is True


def test_ctr_and_explain(app):
    items = ["item_0000010", "item_0000003"]
    ctr = post(app, "/v1/ctr", {"user_id": "user_0000002", "item_ids": items})
    assert ctr.status_code == 200, ctr.text
    body = ctr.json()
    assert body["tool"] == CTR_TOOL and not body["cold_start"]
    assert [p["item_id"] for p in body["probabilities"]] == items
    assert all(0 < p["probability"] < 1 for p in body["probabilities"])
    explained = post(app, "/v1/explain", {"user_id": "user_0000002", "item_id": "item_0000010"})
    assert explained.status_code == 200, explained.text
    assert explained.json()["model_version"] == app["table"]["model_version"].iloc[0]
    assert isinstance(explained.json()["text"], str)


async def burst(url: str, bodies: list[dict]) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession() as session:
        async def one(body):
            async with session.post(f"{url}/v1/recommend", json=body) as response:
                return response.status, await response.text()
        return await asyncio.gather(*(one(b) for b in bodies))


def test_overload_is_503_and_the_app_keeps_serving(app):
    first = app["table"].drop_duplicates("user_id")
    vlm_users = first.loc[first["route"] != "tool", "user_id"].tolist()
    replies = asyncio.run(burst(app["url"], [{"user_id": u, "k": K} for u in (vlm_users * 10)[:40]]))
    statuses = [status for status, _ in replies]
    assert set(statuses) <= {200, 503}, [r for r in replies if r[0] not in (200, 503)][:3]
    assert statuses.count(503) > 0 and statuses.count(200) > 0, statuses
    # Still healthy: no replica crashed, the next requests are answered.
    assert requests.get(f"{app['url']}/healthz", timeout=120).status_code == 200
    assert requests.get(f"{app['url']}/readyz", timeout=120).status_code == 200
    assert post(app, "/v1/recommend", {"user_id": vlm_users[0], "k": K}).status_code == 200


def test_separate_tools_deployment_without_a_vlm(app):
    """The other layout: Tools as its own deployment (one hop more), and no VLM deployment at all."""
    cfg = app["cfg"].model_copy(update={
        "tools_in_ingress": False,
        "recommend": app["cfg"].recommend.model_copy(update={
            "vlm_dir": None, "tools_dir": app["world"].tools_dir, "consult_pool": ["bpr_mf", "sasrec"]})})
    load_job("serve").start(cfg)   # replaces the app of the same name
    deadline = time.monotonic() + 300
    while (ready := requests.get(f"{app['url']}/readyz", timeout=120)).status_code != 200:
        assert time.monotonic() < deadline and not ready.json()["errors"], ready.json()
        time.sleep(0.2)
    assert ready.json()["waiting_for"] == [] and "Tools" in serve.status().applications[cfg.app_name].deployments
    assert "VLM" not in serve.status().applications[cfg.app_name].deployments
    # Without a VLM every known user takes the tool route; those on it tonight get tonight's items.
    first = app["table"].sort_values("rank")
    for user_id, rows in list(first[first["route"] == "tool"].groupby("user_id"))[:10]:
        online = post(app, "/v1/recommend", {"user_id": user_id, "k": K}).json()
        assert online["route"] == "tool" and [i["item_id"] for i in online["items"]] == rows["item_id"].tolist()
    off_route = first.loc[first["route"] != "tool", "user_id"].iloc[0]
    assert post(app, "/v1/recommend", {"user_id": off_route, "k": K}).json()["route"] == "tool"
    assert post(app, "/v1/ctr", {"user_id": "user_0000002", "item_ids": ["item_0000010"]}).status_code == 200
    explained = post(app, "/v1/explain", {"user_id": "user_0000002", "item_id": "item_0000010"})
    assert explained.status_code == 501 and "need a VLM" in explained.json()["detail"]


def test_job_cli_lists_the_config():
    keys = run_job("serve.py", "--help-config").stdout
    for key in ("host: str = '127.0.0.1'", "vlm.max_queued_requests", "tools.autoscaling.max_replicas", "ctr_tool"):
        assert key in keys
    bad = run_job("serve.py", "port=0", check=False)
    assert bad.returncode == 2 and "port" in bad.stderr
