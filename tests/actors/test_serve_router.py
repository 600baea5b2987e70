"""The Router ingress's error mapping without a cluster (actors/serve.py): a failing tools call is a 500
naming the error, a failed model load keeps /readyz at 503 with the reason and gates every request, and
/v1/explain without a VLM deployment is a 501. The happy paths run over real HTTP in tests/jobs/test_serve.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from actors.serve import Loader, Router, _http
from reasonrec.serving import api

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)


class FailingTools:
    """Stands in for the in-ingress Tools: every call raises, the status reports a failed load."""

    def recommend(self, body: dict) -> dict:
        raise RuntimeError("index file truncated")

    def status(self) -> dict:
        return {"ready": False, "error": "OSError: disk gone"}


@pytest.fixture
def router():
    cls = Router.func_or_class   # the class under @serve.deployment / @serve.ingress
    instance = cls.__new__(cls)  # no __init__: it would load the tools
    instance.tools, instance.vlm, instance.version, instance.local = None, None, "v1", FailingTools()
    return instance


def body(response) -> dict:
    return json.loads(response.body)


def test_a_failing_request_is_a_500_naming_the_error(router):
    response = _http(asyncio.run(router._tools("recommend", {"user_id": "u"})))
    assert response.status_code == 500
    assert body(response) == {"detail": "internal error: RuntimeError: index file truncated"}


def test_readyz_after_a_failed_load_is_503_with_the_reason(router):
    response = asyncio.run(router.readyz())
    assert response.status_code == 503
    assert body(response) == {"ready": False, "model_version": "v1", "waiting_for": ["tools"],
                              "errors": {"tools": "OSError: disk gone"}}


def test_explain_without_a_vlm_is_501(router):
    response = asyncio.run(router.explain(api.ExplainRequest(user_id="u", item_id="i")))
    assert response.status_code == 501 and "need a VLM" in body(response)["detail"]


def test_loader_reports_a_failed_load_and_gates_requests():
    def load() -> None:
        raise FileNotFoundError("tools/sasrec: no trained tool")

    loader = Loader(load)
    assert loader.done.wait(10)
    assert loader.status() == {"ready": False, "error": "FileNotFoundError: tools/sasrec: no trained tool"}
    gate = loader.gate()
    assert gate["status"] == 503 and "models failed to load: FileNotFoundError" in gate["detail"]
    ok = Loader(lambda: None)
    assert ok.done.wait(10) and ok.status() == {"ready": True, "error": None} and ok.gate() is None
