"""The Serve app over real HTTP on 127.0.0.1: one app per module (started by jobs/serve.py's `start` on an
in-process Ray), on a small world (synthetic data, trained tools, a tiny CTR tool, an untrained tiny VLM).

Covers readiness before the models load (replicas are held by the RR_SERVE_HOLD_LOAD hook until the fixture
releases them), every endpoint and the OpenAPI schema, 4xx on bad input (strict types, the body limit, a
seeded fuzz of a few hundred malformed requests: always a JSON 4xx, never a 500, a traceback or a server path),
cold start, JSON 503 + Retry-After under a burst and when the ingress is full, the app still healthy
afterwards, and the same answer online as in jobs/score.py's table for every user — in the default layout
(Serve's throughput-optimized mode, tools in the ingress replica); the last test redeploys with a separate
Tools deployment, no VLM and no CTR tool (the other layout, 501 for explanations and CTR)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import socket
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import requests
from ray import serve

from actors.serve import HOLD_ENV, THROUGHPUT_ENV
from reasonrec.publish import committed
from reasonrec.serving.config import ServeConfig
from tests.conftest import REPO_ROOT, run_job
from tests.serving import fuzz
from tests.serving.conftest import CTR_TOOL, build_serve_world


pytestmark = [pytest.mark.ray, pytest.mark.slow]   # a world, a nightly run and a Serve app: ~2 min on 2 busy cores

DATE = "2026-11-22"
K = 5
MAX_BODY = 65_536   # the app's max_body_bytes: oversized bodies stay cheap to send
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
    os.environ[THROUGHPUT_ENV] = "1"   # what actors/serve.py's deploy sets before the Ray it starts (the default config)
    ray.init(num_cpus=4, include_dashboard=False)
    try:
        world = build_serve_world(root / "world")
        table = nightly_table(world, root / "recs")
        cfg = ServeConfig.model_validate({
            "recommend": {"dataset": world.dataset, "vlm_dir": world.vlm_dir, "policy": "config", "router": ROUTER},
            "port": free_port(), "max_k": 20, "max_history": 8, "max_ctr_items": 3, "ctr_tool": CTR_TOOL,
            "max_body_bytes": MAX_BODY,
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
    ("/v1/recommend", '{"user_id": "user_0000001", "k": "5"}', 422, "k: Input should be a valid integer"),
    ("/v1/recommend", '{"user_id": "user_0000001", "k": 5.0}', 422, "k: Input should be a valid integer"),
    ("/v1/recommend", '{"user_id": "user_0000001", "k": true}', 422, "k: Input should be a valid integer"),
    ("/v1/recommend", {"history": ["item_0000001", 3]}, 422, "history.1: Input should be a valid string"),
    ("/v1/ctr", {"user_id": 5, "item_ids": ["item_0000001"]}, 422, "user_id: Input should be a valid string"),
    ("/v1/ctr", '{"user_id": "u", "item_ids": ["' + "x" * MAX_BODY + '"]}', 413, "65536-byte limit (ServeConfig.max_"),
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


async def burst(url: str, bodies: list[dict]) -> list[tuple[int, str, dict]]:
    async with aiohttp.ClientSession() as session:
        async def one(body):
            async with session.post(f"{url}/v1/recommend", json=body) as response:
                return response.status, await response.text(), {k.lower(): v for k, v in response.headers.items()}
        return await asyncio.gather(*(one(b) for b in bodies))


def assert_json_503s(replies: list[tuple[int, str, dict]]) -> list[str]:
    """Every 503 of a burst is the API's JSON error with Retry-After (never Serve's text/plain); their details."""
    details = []
    for status, text, headers in replies:
        if status == 503:
            assert headers["content-type"] == "application/json" and headers["retry-after"] == "1", (text, headers)
            details.append(json.loads(text)["detail"])
    return details


def test_overload_is_503_and_the_app_keeps_serving(app):
    first = app["table"].drop_duplicates("user_id")
    vlm_users = first.loc[first["route"] != "tool", "user_id"].tolist()
    replies = asyncio.run(burst(app["url"], [{"user_id": u, "k": K} for u in (vlm_users * 10)[:40]]))
    statuses = [status for status, _, _ in replies]
    assert set(statuses) <= {200, 503}, [r for r in replies if r[0] not in (200, 503)][:3]
    assert statuses.count(503) > 0 and statuses.count(200) > 0, statuses
    assert all("overloaded" in d for d in assert_json_503s(replies))
    # Still healthy: no replica crashed, the next requests are answered.
    assert requests.get(f"{app['url']}/healthz", timeout=120).status_code == 200
    assert requests.get(f"{app['url']}/readyz", timeout=120).status_code == 200
    assert post(app, "/v1/recommend", {"user_id": vlm_users[0], "k": K}).status_code == 200


def slow_request(url: str) -> socket.socket:
    """A POST whose body never finishes arriving: it holds an ingress slot (or queue place) until closed."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"user_id\": ")
    return sock


def test_a_full_ingress_answers_json_503_with_retry_after(app):
    """Requests that hold every ingress slot and queue place (router: 4 + 4), then a real burst over HTTP:
    each is turned away by the guard at once in the API's format, and the app serves again afterwards."""
    limit = app["cfg"].router.max_ongoing_requests + app["cfg"].router.max_queued_requests
    slow = [slow_request(app["url"]) for _ in range(limit)]
    try:
        deadline = time.monotonic() + 60
        while (probe := post(app, "/v1/recommend", {"user_id": "user_0000001", "k": K})).status_code != 503:
            assert time.monotonic() < deadline, "the slow requests never filled the ingress"
            time.sleep(0.1)
        started = time.perf_counter()
        replies = asyncio.run(burst(app["url"], [{"user_id": "user_0000001", "k": K}] * 30))
        seconds = time.perf_counter() - started
        assert [status for status, _, _ in replies] == [503] * 30
        assert all("every ingress slot" in d for d in assert_json_503s(replies))
        assert probe.headers["retry-after"] == "1" and seconds < 30
    finally:
        for sock in slow:
            sock.close()
    deadline = time.monotonic() + 60
    while (after := post(app, "/v1/recommend", {"user_id": "user_0000001", "k": K})).status_code != 200:
        assert time.monotonic() < deadline, after.text
        time.sleep(0.1)
    assert requests.get(f"{app['url']}/healthz", timeout=120).status_code == 200


def test_bodies_over_the_limit_are_413_unread(app):
    url = f"{app['url']}/v1/recommend"
    declared = requests.post(url, data=b"{" + b" " * MAX_BODY + b"}", headers=fuzz.JSON, timeout=120)
    chunked = requests.post(url, data=(b" " * 8192 for _ in range(3 * MAX_BODY // 8192)), headers=fuzz.JSON,
                            timeout=120)   # a generator: Transfer-Encoding chunked, no Content-Length
    for response in (declared, chunked):
        assert response.status_code == 413 and response.headers["content-type"] == "application/json"
        assert response.json() == {"detail": "request body over the 65536-byte limit (ServeConfig.max_body_bytes)"}
    assert post(app, "/v1/recommend", {"user_id": "user_0000001", "k": K}).status_code == 200


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[\w.-]+/[\w.-]+")


def test_fuzzed_requests_get_clean_answers(app):
    """A few hundred seeded malformed requests on every endpoint: a JSON {"detail"} 4xx for each (a 200 only
    where the case allows one), never a 500, a traceback or a path of this machine."""
    server_paths = {str(REPO_ROOT), str(Path(app["world"].dataset).parent), str(Path(pytest.__file__).parent.parent)}
    statuses, started = Counter(), time.perf_counter()
    session = requests.Session()
    for case in fuzz.cases(seed=20, max_body_bytes=MAX_BODY, max_k=app["cfg"].max_k):
        response = session.request(case.method, f"{app['url']}{case.path}", data=case.body, headers=case.headers,
                                   timeout=120)
        where = f"{case.method} {case.path} {case.why}: {response.status_code} {response.text[:200]}"
        statuses[response.status_code] += 1
        assert response.status_code in case.allowed, where
        assert response.headers["content-type"] == "application/json", where
        body = response.json()
        if response.status_code >= 400:
            assert list(body) == ["detail"] and isinstance(body["detail"], str) and body["detail"], where
        assert "Traceback" not in response.text and not any(p in response.text for p in server_paths), where
        assert not ABSOLUTE_PATH.search(body.get("detail", "")), where
    seconds = time.perf_counter() - started
    print(f"fuzz: {sum(statuses.values())} requests in {seconds:.1f} s, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= 300 and seconds < 120
    assert post(app, "/v1/recommend", {"user_id": "user_0000001", "k": K}).status_code == 200


def test_separate_tools_deployment_without_a_vlm(app):
    """The other layout: Tools as its own deployment (one hop more), and no VLM deployment at all."""
    cfg = app["cfg"].model_copy(update={
        "tools_in_ingress": False, "ctr_tool": "auto",   # the world's tools_dir has no metrics.json: no CTR tool
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
    no_ctr = post(app, "/v1/ctr", {"user_id": "user_0000002", "item_ids": ["item_0000010"]})
    assert no_ctr.status_code == 501 and "retry-after" not in no_ctr.headers, no_ctr.text
    assert "no CTR tool" in no_ctr.json()["detail"] and "ctr_tool" in no_ctr.json()["detail"]
    assert app["world"].tools_dir not in no_ctr.text and not ABSOLUTE_PATH.search(no_ctr.json()["detail"])
    explained = post(app, "/v1/explain", {"user_id": "user_0000002", "item_id": "item_0000010"})
    assert explained.status_code == 501 and "need a VLM" in explained.json()["detail"]


def test_job_cli_lists_the_config():
    keys = run_job("serve.py", "--help-config").stdout
    for key in ("host: str = '127.0.0.1'", "vlm.max_queued_requests", "tools.autoscaling.max_replicas", "ctr_tool"):
        assert key in keys
    bad = run_job("serve.py", "port=0", check=False)
    assert bad.returncode == 2 and "port" in bad.stderr
