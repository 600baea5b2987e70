"""Ray Serve deployments over reasonrec.serving: thin wrappers, every decision is in the Ray-free library.

    HTTP ─▶ Router (FastAPI ingress: validation, composition, status codes)
              ├─▶ Tools (tools_in_ingress: in the Router replica itself, else CPU replicas of their own):
              │     retrieval + best tool; answers low-risk rows and cold start itself; /v1/ctr
              └─▶ VLM (GPU when present): @serve.batch answer() for rows off the tool route; /v1/explain
                    (not deployed when recommend.vlm_dir is null: every known user is on the tool route)

Start it with jobs/serve.py, or `serve run actors.serve:app config=configs/synthetic.yaml [key=value ...]`
(other args are config overrides). Replicas load their models in a background thread, so the app is up at
once and GET /readyz answers 503 (and the API 503 "loading", with Retry-After) until every deployment has
loaded. Every error is JSON {"detail": ...} (reasonrec/serving/errors.py), whoever refuses the request:
reasonrec.serving.guard in front of FastAPI (413 body too large, 415 not JSON, 503 + Retry-After when the
ingress is full: Serve's own full-queue answer would be text/plain, so Serve lets more in and the guard sheds),
FastAPI (400 malformed JSON, 422 invalid fields), the router (503 + Retry-After when a Tools or VLM queue is
full, 501 for what this deployment cannot do). One request's failure is a 500 naming the error; messages
about the server never carry its paths (errors.redact).

No `from __future__ import annotations` here: FastAPI reads the route signatures' body models at runtime.
"""

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.exceptions import BackPressureError

from actors.cluster import gpus_for, init_ray, joins_existing, keep_serve_replicas_on_loopback
from reasonrec.config import load_config
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.system import System
from reasonrec.recommend.system import resolve as resolve_system
from reasonrec.serving import api
from reasonrec.serving.config import DeploymentSettings, ServeConfig
from reasonrec.serving.errors import redact, retry_headers
from reasonrec.serving.guard import Guard
from reasonrec.serving.online import BadRequest, Catalogue, Pending, answer_stage, cold_start, resolve, tools_stage

keep_serve_replicas_on_loopback()   # runs in every replica process, which imports this module to build the app

# Test hook: replicas wait to load until this file exists (so "not ready yet" can be observed).
HOLD_ENV = "RR_SERVE_HOLD_LOAD"
# Serve's throughput-optimized mode: read by every Serve process at import, so it must be set before Ray starts them.
THROUGHPUT_ENV = "RAY_SERVE_THROUGHPUT_OPTIMIZED"


def _reply(status: int, body: dict | None = None, detail: str | None = None, retry: bool = False) -> dict:
    """What a replica hands the router: an HTTP status and a body (or a message); retry: the condition clears
    by itself (Retry-After is sent), unlike a failed load or a missing tool."""
    return {"status": status, "body": body, "detail": detail, "retry": retry}


class Loader:
    """Loads a replica's models in a background thread; `gate` returns a 503 reply until they are loaded."""

    def __init__(self, load: Callable[[], None]):
        self.error: str | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(load,), daemon=True).start()

    def _run(self, load: Callable[[], None]) -> None:
        try:
            hold = os.environ.get(HOLD_ENV)
            while hold and not Path(hold).exists():
                time.sleep(0.05)
            load()
        except Exception as err:  # noqa: BLE001 - reported by /readyz and every request instead
            print(f"[serve] loading failed: {type(err).__name__}: {err}", flush=True)   # the full text: replica log
            self.error = redact(f"{type(err).__name__}: {err}")
        finally:
            self.done.set()

    def status(self) -> dict:
        return {"ready": self.done.is_set() and self.error is None, "error": self.error}

    def gate(self) -> dict | None:
        if not self.done.is_set():
            return _reply(503, detail="models are still loading; retry shortly (see GET /readyz)", retry=True)
        if self.error is not None:   # unavailable until redeployed: no Retry-After
            return _reply(503, detail=f"models failed to load: {self.error}")
        return None


def _threads(settings: DeploymentSettings) -> None:
    """torch's and faiss's (OpenMP) thread pools: spinning pools in concurrent requests fight over the cores."""
    if settings.torch_threads is not None:
        import faiss
        import torch

        torch.set_num_threads(settings.torch_threads)
        faiss.omp_set_num_threads(settings.torch_threads)


class Tools:
    """CPU replica: the tools stage of every recommendation (the whole answer on the tool route and for cold
    start), and CTR probabilities."""

    def __init__(self, cfg: ServeConfig, system: System):
        self.cfg, self.system, self.version = cfg, system, system.model_version
        self.ctr_tool, self.ctr_name, self.ctr_error = None, None, None
        self.tmp = tempfile.TemporaryDirectory(prefix="reasonrec-ctr-")
        _threads(self.cfg.tools)
        self.loader = Loader(self._load)

    def _load(self) -> None:
        from reasonrec.serving.ctr import choose_ctr_tool, load_ctr_tool

        bundle = Bundle(self.system)
        bundle.everything, bundle.tonight_eh, bundle.tools, bundle.retrieval  # noqa: B018 - load them now
        self.catalogue = Catalogue(bundle)
        try:  # the recommend API works without a CTR tool; /v1/ctr then says why it cannot answer (501)
            self.ctr_name = choose_ctr_tool(bundle.tools_dir, self.cfg.ctr_tool)
            self.ctr_tool = load_ctr_tool(bundle.tools_dir, self.ctr_name, self.tmp.name)
        except (FileNotFoundError, ValueError) as err:
            print(f"[serve] /v1/ctr is off (recommend.tools_dir = {bundle.tools_dir}): {err}", flush=True)
            self.ctr_tool, self.ctr_error = None, redact(str(err))
        self.bundle = bundle

    def status(self) -> dict:
        return self.loader.status()

    def recommend(self, body: dict) -> dict | Pending:
        if (gate := self.loader.gate()) is not None:
            return gate
        try:
            resolved = resolve(api.RecommendRequest.model_validate(body), self.catalogue, self.cfg)
        except BadRequest as err:
            return _reply(err.status, detail=str(err))
        if resolved.cold_start:
            return _reply(200, cold_start(self.bundle, self.catalogue, resolved, self.version))
        out = tools_stage(self.bundle, resolved, self.version)
        return out if isinstance(out, Pending) else _reply(200, out)

    def ctr(self, body: dict) -> dict:
        from reasonrec.serving.ctr import ctr_probabilities

        if (gate := self.loader.gate()) is not None:
            return gate
        if self.ctr_tool is None:   # a deployment without a CTR tool: permanent until reconfigured, so not a 503
            return _reply(501, detail=f"this deployment has no CTR tool: {self.ctr_error}")
        request = api.CTRRequest.model_validate(body)
        try:
            if len(request.item_ids) > self.cfg.max_ctr_items:
                raise BadRequest(f"item_ids: {len(request.item_ids)} items, at most {self.cfg.max_ctr_items} allowed")
            items = self.catalogue.items(request.item_ids, "item_ids")
        except BadRequest as err:
            return _reply(err.status, detail=str(err))
        user_idx = self.catalogue.user(request.user_id)
        probs = ctr_probabilities(self.bundle, self.ctr_tool, user_idx, items, self.cfg.cold_start_sample)
        return _reply(200, {"user_id": request.user_id, "tool": self.ctr_name, "cold_start": user_idx < 0,
                            "probabilities": [{"item_id": i, "probability": float(p)}
                                              for i, p in zip(request.item_ids, probs)]})


class VLM:
    """VLM replica: answer() for the rows the tools stage could not settle (batched), and explanations."""

    def __init__(self, cfg: ServeConfig, system: System):
        self.cfg, self.system, self.version = cfg, system, system.model_version
        self.lock = threading.Lock()   # one model, one forward pass at a time (batches and explanations)
        self._answer_batch.set_max_batch_size(self.cfg.vlm_batching.max_batch_size)
        self._answer_batch.set_batch_wait_timeout_s(self.cfg.vlm_batching.batch_wait_timeout_s)
        _threads(self.cfg.vlm)
        self.loader = Loader(self._load)

    def _load(self) -> None:
        bundle = Bundle(self.system)
        bundle.everything, bundle.tonight_eh, bundle.tools, bundle.item_text, bundle.scorer  # noqa: B018
        self.catalogue = Catalogue(bundle)
        self.bundle = bundle

    def status(self) -> dict:
        return self.loader.status()

    async def answer(self, pending: Pending) -> dict:
        if (gate := self.loader.gate()) is not None:
            return gate
        return _reply(200, await self._answer_batch(pending))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _answer_batch(self, pending: list[Pending]) -> list[dict]:
        return await asyncio.to_thread(self._locked, answer_stage, self.bundle, pending, self.version)

    def _locked(self, fn: Callable, *args: Any) -> Any:
        with self.lock:
            return fn(*args)

    async def explain(self, body: dict) -> dict:
        from reasonrec.serving.explain import explain

        if (gate := self.loader.gate()) is not None:
            return gate
        request = api.ExplainRequest.model_validate(body)
        try:
            item = self.catalogue.item(request.item_id, "item_id")
        except BadRequest as err:
            return _reply(err.status, detail=str(err))
        user = self.catalogue.user(request.user_id)
        text = await asyncio.to_thread(self._locked, explain, self.bundle, user, item, self.cfg.explain_max_new_tokens)
        return _reply(200, {"user_id": request.user_id, "item_id": request.item_id, "text": text,
                            "model_version": self.version, "cold_start": user < 0})


# --------------------------------------------------------------------------------------------- the ingress

fastapi_app = FastAPI(title="ReasonRec", version="1", description=(
    "Risk-routed recommendations from the nightly job's artifacts and router (same model version, same policy). "
    "Errors are JSON {\"detail\": message}: 400 malformed JSON, 413 body over max_body_bytes, 415 body not sent "
    "as application/json, 422 invalid fields (strict types: no coercion), 501 not available in this deployment "
    "(no VLM, no CTR tool), 503 loading or overloaded (retry after the Retry-After header)."))
ERRORS = {status: {"model": api.Problem} for status in (400, 413, 415, 422, 503)}


@fastapi_app.exception_handler(RequestValidationError)
async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
    problems = err.errors()
    malformed = [p for p in problems if p.get("type") == "json_invalid"]
    if malformed:
        where, why = malformed[0].get("loc", ("body", "?"))[-1], malformed[0].get("ctx", {}).get("error", "")
        return JSONResponse({"detail": f"malformed JSON at character {where}: {why or 'not JSON'}"}, status_code=400)
    text = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ())[1:]) or 'body'}: {p.get('msg')}" for p in problems)
    return JSONResponse({"detail": text}, status_code=422)


@fastapi_app.exception_handler(Exception)
async def _crashed(request: Request, err: Exception) -> JSONResponse:
    """An exception no route caught: still the JSON error format (Starlette's default is text/plain)."""
    return JSONResponse({"detail": _failed(err)["detail"]}, status_code=500)


def _http(reply: dict, retry_after_s: int = 1) -> JSONResponse | dict:
    if reply["status"] == 200:
        return reply["body"]
    headers = retry_headers(reply["status"], retry_after_s if reply.get("retry") else None)
    return JSONResponse({"detail": reply["detail"]}, status_code=reply["status"], headers=headers)


async def _call(method, *args) -> Any:
    """A handle call; a full queue downstream is a 503 reply (Serve's backpressure), not an error."""
    try:
        return await method.remote(*args)
    except BackPressureError:
        return _reply(503, detail="overloaded: the queue behind the ingress is full; retry shortly", retry=True)
    except Exception as err:  # noqa: BLE001 - one failed request is a 500 with its reason; the replica lives on
        return _failed(err)


def _failed(err: Exception) -> dict:
    return _reply(500, detail=redact(f"internal error: {type(err).__name__}: {str(err)[-300:]}"))


NO_VLM = _reply(501, detail="explanations need a VLM: recommend.vlm_dir is null")


@serve.deployment
@serve.ingress(fastapi_app)
class Router:
    """tools: the Tools deployment's handle, or None when this replica runs the tools itself (tools_in_ingress,
    built from cfg and system); vlm: the VLM deployment's handle, or None without a VLM; guard: Guard's settings
    (guard_settings)."""

    def __init__(self, tools, vlm, system: System, cfg: ServeConfig | None = None, guard: dict | None = None):
        self.tools, self.vlm, self.version = tools, vlm, system.model_version
        self.guard = guard or {}
        self.retry_after_s = self.guard.get("retry_after_s", 1)
        self.local = Tools(cfg, system) if tools is None else None

    def __serve_build_asgi_app__(self):
        """The app Serve serves: the FastAPI routes behind Guard (body size, content type, admission), which
        answers before FastAPI reads a body. Serve (ray 2.60) calls this after __init__ and serves its result
        (replica.py: _initialize_asgi_callable); tests/jobs/test_serve.py checks over HTTP that the guard is in
        front."""
        return Guard(self.app, **self.guard) if self.guard else self.app

    async def _tools(self, method: str, *args) -> Any:
        """A Tools method, in this replica (a plain call: a few ms of CPU, no hop) or over its handle."""
        if self.local is None:
            return await _call(getattr(self.tools, method), *args)
        try:
            return getattr(self.local, method)(*args)
        except Exception as err:  # noqa: BLE001 - as _call: a 500 for this request only
            return _failed(err)

    @fastapi_app.get("/healthz", response_model=api.Health)
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @fastapi_app.get("/readyz", response_model=api.Readiness, responses={503: {"model": api.Readiness}})
    async def readyz(self):
        names = ("tools", "vlm") if self.vlm is not None else ("tools",)
        replies = await asyncio.gather(self._tools("status"), *([_call(self.vlm.status)] if self.vlm else []))
        states = {name: r if "ready" in r else {"ready": False, "error": redact(r["detail"])}
                  for name, r in zip(names, replies)}
        body = {"ready": all(s["ready"] for s in states.values()), "model_version": self.version,
                "waiting_for": [n for n, s in states.items() if not s["ready"]],
                "errors": {n: s["error"] for n, s in states.items() if s["error"]}}
        return body if body["ready"] else JSONResponse(body, status_code=503)

    @fastapi_app.post("/v1/recommend", response_model=api.RecommendResponse, responses=ERRORS)
    async def recommend(self, request: api.RecommendRequest):
        out = await self._tools("recommend", request.model_dump())
        if isinstance(out, Pending):   # off the tool route: the VLM finishes it
            out = await _call(self.vlm.answer, out)
        return _http(out, self.retry_after_s)

    @fastapi_app.post("/v1/ctr", response_model=api.CTRResponse, responses={**ERRORS, 501: {"model": api.Problem}})
    async def ctr(self, request: api.CTRRequest):
        return _http(await self._tools("ctr", request.model_dump()), self.retry_after_s)

    @fastapi_app.post("/v1/explain", response_model=api.ExplainResponse, responses={**ERRORS, 501: {"model": api.Problem}})
    async def explain(self, request: api.ExplainRequest):
        if self.vlm is None:
            return _http(NO_VLM)
        return _http(await _call(self.vlm.explain, request.model_dump()), self.retry_after_s)


# --------------------------------------------------------------------------------------------- building it

def deployment_options(settings: DeploymentSettings, gpus: float = 0.0) -> dict:
    auto = settings.autoscaling
    return {"autoscaling_config": {"min_replicas": auto.min_replicas, "max_replicas": auto.max_replicas,
                                   "initial_replicas": max(auto.min_replicas, 1),
                                   "target_ongoing_requests": auto.target_ongoing_requests},
            "max_ongoing_requests": settings.max_ongoing_requests,
            "max_queued_requests": settings.max_queued_requests,
            "ray_actor_options": {"num_cpus": settings.num_cpus, "num_gpus": gpus, **_thread_env(settings)}}


def _thread_env(settings: DeploymentSettings) -> dict:
    """OMP_NUM_THREADS for the replica's process: OpenMP reads it at start-up for every thread, including the
    threads Serve runs sync methods in (omp_set_num_threads in __init__ reaches only the calling thread)."""
    if settings.torch_threads is None:
        return {}
    return {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(settings.torch_threads),
                                         "MKL_NUM_THREADS": str(settings.torch_threads)}}}


def guard_settings(cfg: ServeConfig) -> dict:
    """Guard's arguments: the config's body limit and the ingress's ongoing / queued limits."""
    return {"max_body_bytes": cfg.max_body_bytes, "max_ongoing": cfg.router.max_ongoing_requests,
            "max_queued": cfg.router.max_queued_requests, "retry_after_s": cfg.retry_after_s}


def ingress_options(cfg: ServeConfig) -> dict:
    """The Router's Serve options. The guard enforces router.max_ongoing_requests / max_queued_requests (JSON
    503 + Retry-After); Serve must not refuse first (its answer is text/plain), so Serve lets in twice the
    ongoing + queued limit (the excess is turned away by the guard at once, freeing its slot) and queues the
    rest without a bound (Serve's default), each of them let in, and answered, as slots free."""
    options = deployment_options(cfg.router, gpus_for(cfg.router.num_gpus))
    ongoing, queued = cfg.router.max_ongoing_requests, cfg.router.max_queued_requests
    options["max_ongoing_requests"] = ongoing if queued == -1 else 2 * (ongoing + queued)
    options["max_queued_requests"] = -1
    return options


def build(cfg: ServeConfig, system: System):
    """The bound application: Router over Tools (in the Router or its own deployment) and the VLM (when
    there is one), each with its config section's options. Every replica gets the same resolved System
    (reasonrec.recommend.system.resolve: the nightly job's model version and policy)."""
    vlm = None
    if system.vlm_dir is not None:
        vlm_options = deployment_options(cfg.vlm, gpus_for(cfg.vlm.num_gpus))
        vlm = serve.deployment(VLM).options(name="VLM", **vlm_options).bind(cfg, system)
    ingress, guard = ingress_options(cfg), guard_settings(cfg)
    if cfg.tools_in_ingress:   # the tools' thread settings hold in the Router's process
        ingress["ray_actor_options"].update(_thread_env(cfg.tools))
        return Router.options(**ingress).bind(None, vlm, system, cfg, guard)
    tools_options = deployment_options(cfg.tools, gpus_for(cfg.tools.num_gpus))
    tools = serve.deployment(Tools).options(name="Tools", **tools_options)
    return Router.options(**ingress).bind(tools.bind(cfg, system), vlm, system, guard=guard)


def deploy(cfg: ServeConfig, system: System, **ray_init) -> str:
    """Deploy the app on the current (or a new local) Ray cluster; returns its URL. Returns before the models
    are loaded: GET <url>/readyz says when they are. ray_init: extra ray.init arguments for a new cluster."""
    if not joins_existing(cfg.ray_address):
        os.environ[THROUGHPUT_ENV] = "1" if cfg.throughput_optimized else "0"
    elif cfg.throughput_optimized and os.environ.get(THROUGHPUT_ENV) != "1":
        # A job's driver inherits the cluster's environment: without the variable here, Serve runs without it.
        print(f"[serve] throughput_optimized: {THROUGHPUT_ENV}=1 is not in this process's environment; Serve's "
              "processes use the mode only if the cluster's `ray start` had it (ray_cluster.yaml does)", flush=True)
    init_ray(cfg.ray_address, **ray_init)
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build(cfg, system), name=cfg.app_name, route_prefix=cfg.route_prefix)
    return f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}"


def app(args: dict[str, str]):
    """`serve run actors.serve:app config=FILE key=value ...`: the builder Serve calls."""
    args = dict(args)
    path = args.pop("config", None)
    cfg = load_config(ServeConfig, path, [f"{k}={v}" for k, v in args.items()])
    return build(cfg, resolve_system(cfg.recommend))
