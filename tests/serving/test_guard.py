"""reasonrec.serving.guard and .errors without Ray or a server: raw ASGI calls into Guard around a recording app.
The same guard in front of the real app over HTTP: tests/jobs/test_serve.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from reasonrec.serving.errors import redact, retry_headers
from reasonrec.serving.guard import Guard

LIMIT = 2048


class Recorder:
    """The app behind the guard: answers 200 with the body it read; `gate` holds it until set."""

    def __init__(self, gate: asyncio.Event | None = None):
        self.bodies: list[bytes] = []
        self.gate = gate

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.bodies.append(message["body"])
        if self.gate is not None:
            await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def scope(method="POST", content_type: str | None = "application/json", length: int | str | None = None) -> dict:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": method, "path": "/v1/recommend", "headers": headers}


def chunks(*parts: bytes):
    """A receive over body chunks (a chunked upload), counting how many the guard asked for."""
    calls = {"n": 0}

    async def receive():
        calls["n"] += 1
        i = calls["n"] - 1
        if i < len(parts):
            return {"type": "http.request", "body": parts[i], "more_body": i < len(parts) - 1}
        return {"type": "http.disconnect"}

    return receive, calls


async def call(guard, scope_, receive) -> dict:
    answer = {"headers": {}, "body": b""}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            answer["body"] += message.get("body", b"")

    await guard(scope_, receive, send)
    return answer


def guard(app=None, ongoing=4, queued=4) -> Guard:
    return Guard(app or Recorder(), max_body_bytes=LIMIT, max_ongoing=ongoing, max_queued=queued, retry_after_s=3)


def detail(answer: dict) -> str:
    assert answer["headers"]["content-type"] == "application/json"
    body = json.loads(answer["body"])
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    return body["detail"]


def test_a_body_within_the_limit_reaches_the_app_whole():
    app = Recorder()
    receive, _ = chunks(b'{"user_id": ', b'"u"}')
    answer = asyncio.run(call(guard(app), scope(), receive))
    assert answer["status"] == 200 and app.bodies == [b'{"user_id": "u"}']


def test_content_length_over_the_limit_is_413_before_reading():
    app = Recorder()
    receive, calls = chunks(b"x" * 10)
    answer = asyncio.run(call(guard(app), scope(length=LIMIT + 1), receive))
    assert answer["status"] == 413 and "2048-byte limit (ServeConfig.max_body_bytes)" in detail(answer)
    assert calls["n"] == 0 and app.bodies == []


def test_a_chunked_body_is_cut_off_at_the_limit():
    app = Recorder()
    parts = [b"x" * 1000] * 10   # 10 kB in 1 kB chunks, no Content-Length
    receive, calls = chunks(*parts)
    answer = asyncio.run(call(guard(app), scope(), receive))
    assert answer["status"] == 413 and "byte limit" in detail(answer)
    assert calls["n"] == 3 and app.bodies == []   # stopped at the chunk that crossed 2048 bytes


def test_a_lying_content_length_is_still_cut_off():
    receive, _ = chunks(b"x" * 1500, b"x" * 1500)
    answer = asyncio.run(call(guard(), scope(length=10), receive))
    assert answer["status"] == 413


@pytest.mark.parametrize("content_type, status", [
    ("application/json", 200), ("application/json; charset=utf-8", 200), ("application/problem+json", 200),
    ("text/plain", 415), ("application/x-www-form-urlencoded", 415), (None, 415)])
def test_a_post_must_say_json(content_type, status):
    receive, _ = chunks(b"{}")
    answer = asyncio.run(call(guard(), scope(content_type=content_type), receive))
    assert answer["status"] == status
    if status == 415:
        assert "Content-Type: application/json" in detail(answer)


def test_a_bad_content_length_is_400():
    receive, _ = chunks(b"{}")
    answer = asyncio.run(call(guard(), scope(length="12abc"), receive))
    assert answer["status"] == 400 and "not a byte count" in detail(answer)


def test_gets_skip_the_content_type_and_admission():
    receive, _ = chunks(b"")
    assert asyncio.run(call(guard(ongoing=1, queued=1), scope("GET", content_type=None), receive))["status"] == 200


def test_a_client_gone_mid_body_gets_no_answer():
    app = Recorder()
    receive, _ = chunks()   # disconnect at once
    answer = asyncio.run(call(guard(app), scope(), receive))
    assert "status" not in answer and app.bodies == []


def test_admission_works_on_ongoing_queues_queued_and_refuses_the_rest():
    async def scenario():
        gate = asyncio.Event()
        g = guard(Recorder(gate), ongoing=2, queued=1)
        tasks = [asyncio.create_task(call(g, scope(), chunks(b"{}")[0])) for _ in range(3)]
        await asyncio.sleep(0.05)   # two at work, one waiting
        assert (g.admission.waiting, g.admission.slots.locked()) == (1, True)
        refused = await call(g, scope(), chunks(b"{}")[0])
        gate.set()
        done = await asyncio.gather(*tasks)
        after = await call(g, scope(), chunks(b"{}")[0])   # the slots are free again
        return refused, done, after

    refused, done, after = asyncio.run(scenario())
    assert refused["status"] == 503 and refused["headers"]["retry-after"] == "3"
    assert "overloaded" in detail(refused)
    assert [a["status"] for a in done] == [200, 200, 200] and after["status"] == 200


def test_an_unbounded_queue_never_refuses():
    async def scenario():
        gate = asyncio.Event()
        g = guard(Recorder(gate), ongoing=1, queued=-1)
        tasks = [asyncio.create_task(call(g, scope(), chunks(b"{}")[0])) for _ in range(20)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*tasks)

    assert {a["status"] for a in asyncio.run(scenario())} == {200}


def test_lifespan_passes_through():
    seen = []

    async def app(scope_, receive, send):
        seen.append(scope_["type"])

    asyncio.run(guard(app)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_redact_keeps_the_last_component_of_server_paths_only():
    assert redact("/tmp/pytest-of-x/world/tools: no metrics.json") == "…/tools: no metrics.json"
    assert redact("No such file: '/work/main/artifacts/x.parquet'") == "No such file: '…/x.parquet'"
    assert redact("s3://bucket/run/model gone") == "…/model gone"
    for kept in ("tools/sasrec: no trained tool", "k: 21 is out of range 1..20", "EH 0.5/1.0"):
        assert redact(kept) == kept


def test_retry_after_only_on_a_503_that_clears():
    assert retry_headers(503, 2) == {"Retry-After": "2"}
    assert retry_headers(503, None) is None and retry_headers(501, 2) is None
