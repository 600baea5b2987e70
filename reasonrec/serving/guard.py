"""What the ingress answers before FastAPI reads a request (actors/serve.py serves its app behind Guard):

    413  a body over max_body_bytes: by its Content-Length, before one byte is read, or while reading a chunked
         (or lying) body, stopping at the limit; the body is never parsed
    415  a POST whose Content-Type is not JSON (FastAPI would hand the raw bytes to validation)
    503  + Retry-After: more API requests than the ingress works on at once (max_ongoing_requests) plus those
         allowed to wait for a turn (max_queued_requests)

all as the API's JSON errors (reasonrec.serving.errors). Why not Serve's and FastAPI's own limits: Serve answers
a full ingress queue with text/plain "Request dropped due to backpressure" (ray 2.60 lets only its status code
and Retry-After be configured, serve.config.BackpressureConfig), and no body limit of Serve or FastAPI is
set from a config at run time or answers in JSON. So Serve lets more requests into the ingress replica than
the config allows (actors/serve.py: ingress_options) and this guard decides who works, who waits and who gets
a 503. GET requests (health, readiness, docs) skip admission: probes answer under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from reasonrec.serving.errors import JSON_HEADERS, problem_body

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict, Receive, Send], Awaitable[None]]


async def send_problem(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """One complete JSON error answer over raw ASGI."""
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS + extra})
    await send({"type": "http.response.body", "body": problem_body(detail)})


class Admission:
    """At most `ongoing` requests at work and `queued` waiting for a turn (-1: any number); the rest are
    turned away at once instead of growing a queue whose tail would time out anyway."""

    def __init__(self, ongoing: int, queued: int):
        self.ongoing, self.queued, self.waiting = ongoing, queued, 0
        self._slots: asyncio.Semaphore | None = None   # made in the serving event loop, on first use

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.ongoing)
        return self._slots

    def full(self) -> bool:
        return self.slots.locked() and self.queued != -1 and self.waiting >= self.queued

    async def enter(self) -> None:
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1

    def leave(self) -> None:
        self.slots.release()


class BodyTooLarge(Exception):
    """The body grew past the limit while it was read."""


class Guard:
    """ASGI middleware around the API app (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_ongoing: int, max_queued: int, retry_after_s: int):
        self.app, self.max_body_bytes, self.retry_after_s = app, max_body_bytes, retry_after_s
        self.admission = Admission(max_ongoing, max_queued)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":   # lifespan (startup, shutdown)
            return await self.app(scope, receive, send)
        if (refusal := self._refusal(scope)) is not None:
            return await send_problem(send, *refusal)
        if scope["method"] != "POST":
            return await self._serve(scope, receive, send)
        if self.admission.full():
            return await send_problem(send, 503, "overloaded: every ingress slot and queue place is taken; retry "
                                      "shortly", {"Retry-After": str(self.retry_after_s)})
        await self.admission.enter()
        try:
            await self._serve(scope, receive, send)
        finally:
            self.admission.leave()

    def _refusal(self, scope: dict) -> tuple[int, str, dict[str, str]] | None:
        """(status, detail, headers) for what the headers alone refuse, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and not length.strip().isdigit():
            return 400, f"Content-Length {length[:40]!r} is not a byte count", {"Connection": "close"}
        if length is not None and int(length) > self.max_body_bytes:
            return 413, self._too_large(), {"Connection": "close"}
        if scope["method"] == "POST" and not _is_json(headers.get("content-type", "")):
            got = headers.get("content-type")
            return 415, f"the body must be JSON, sent with Content-Type: application/json (got {got!r})", {}
        return None

    def _too_large(self) -> str:
        return f"request body over the {self.max_body_bytes}-byte limit (ServeConfig.max_body_bytes)"

    async def _serve(self, scope: dict, receive: Receive, send: Send) -> None:
        """Read the whole body (bounded) first, then hand the app a receive that replays it."""
        try:
            body = await self._read_body(receive)
        except BodyTooLarge:
            return await send_problem(send, 413, self._too_large(), {"Connection": "close"})
        if body is None:   # the client went away mid-body: nobody to answer
            return None
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already-read body once, then the client's own messages (disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
