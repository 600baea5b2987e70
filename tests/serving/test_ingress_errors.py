"""actors/serve.py's error answers without a cluster: /v1/ctr without a CTR tool is a 501 naming the config key
(no server path, no Retry-After), Retry-After only on a 503 that clears by itself, an uncaught exception is a
JSON 500 without paths, and the ingress's Serve options leave shedding to the guard."""

from __future__ import annotations

import asyncio
import json

from actors.serve import Loader, Tools, _crashed, _http, _reply, guard_settings, ingress_options
from reasonrec.serving.config import ServeConfig
from reasonrec.serving.ctr import choose_ctr_tool


def body(response) -> dict:
    return json.loads(response.body)


def no_ctr_tools(error: str) -> Tools:
    """A loaded Tools replica whose CTR tool could not be chosen (no __init__: it would load the models)."""
    tools = Tools.__new__(Tools)
    tools.loader = Loader(lambda: None)
    assert tools.loader.done.wait(10)
    tools.ctr_tool, tools.ctr_error = None, error
    return tools


def test_ctr_without_a_ctr_tool_is_501_naming_the_key(tmp_path):
    try:   # the demo's case: a tools_dir whose metrics.json lists ranking tools only
        (tmp_path / "metrics.json").write_text(json.dumps({"rows": [{"tool": "sasrec", "task": "sequential"}]}))
        choose_ctr_tool(str(tmp_path), "auto")
    except FileNotFoundError as err:
        error = str(err)
    response = _http(no_ctr_tools(error).ctr({"user_id": "u", "item_ids": ["i"]}))
    assert response.status_code == 501 and "retry-after" not in response.headers
    detail = body(response)["detail"]
    assert "no CTR tool" in detail and "ctr_tool" in detail and "recommend.tools_dir" in detail
    assert str(tmp_path) not in detail


def test_retry_after_only_when_the_503_clears_by_itself():
    assert _http(_reply(503, detail="loading", retry=True), 7).headers["retry-after"] == "7"
    assert "retry-after" not in _http(_reply(503, detail="models failed to load: x")).headers
    assert "retry-after" not in _http(_reply(422, detail="k: bad", retry=True)).headers


def test_an_uncaught_exception_is_a_json_500_without_paths():
    response = asyncio.run(_crashed(None, OSError("[Errno 5] I/O error: '/srv/models/run-7/model.safetensors'")))
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert body(response) == {"detail": "internal error: OSError: [Errno 5] I/O error: '…/model.safetensors'"}


def test_a_failed_load_is_reported_without_its_paths():
    def load() -> None:
        raise FileNotFoundError("/tmp/x/artifacts/tools/sasrec: no trained tool")

    loader = Loader(load)
    assert loader.done.wait(10)
    assert loader.status()["error"] == "FileNotFoundError: …/sasrec: no trained tool"


def test_serve_lets_the_guard_shed_at_the_ingress():
    cfg = ServeConfig.model_validate({"router": {"max_ongoing_requests": 4, "max_queued_requests": 6},
                                      "max_body_bytes": 4096})
    options = ingress_options(cfg)
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (20, -1)
    assert guard_settings(cfg) == {"max_body_bytes": 4096, "max_ongoing": 4, "max_queued": 6, "retry_after_s": 1}
    unbounded = ingress_options(ServeConfig.model_validate({"router": {"max_queued_requests": -1}}))
    assert (unbounded["max_ongoing_requests"], unbounded["max_queued_requests"]) == (8, -1)   # the section default
