"""The online app's typed config (jobs/serve.py, actors/serve.py): which artifacts (the nightly job's
`recommend` section, so online and nightly read the same router and policy), where it listens, request limits,
and each deployment's replicas, autoscaling and backpressure."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from reasonrec.config import StrictModel
from reasonrec.recommend.config import RecommendConfig


class Autoscaling(StrictModel):
    """Serve's autoscaling_config for one deployment (replicas follow the ongoing requests per replica)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas kept running (0 lets an idle deployment go).")
    max_replicas: int = Field(1, ge=1, description="Most replicas the autoscaler may start.")
    target_ongoing_requests: float = Field(2.0, gt=0, description=(
        "Ongoing requests per replica the autoscaler aims for; more starts a replica, fewer stops one."))

    @model_validator(mode="after")
    def _ordered(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


class DeploymentSettings(StrictModel):
    """Replicas, resources and backpressure of one Serve deployment."""

    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Replica count bounds and target.")
    max_ongoing_requests: int = Field(8, ge=1, description=(
        "Requests one replica works on at once; more wait in the caller's queue."))
    max_queued_requests: int = Field(32, ge=-1, description=(
        "Requests allowed to wait for a replica; beyond this the caller gets 503 at once (-1 = unbounded)."))
    num_cpus: float = Field(0.5, ge=0, description="Logical CPUs per replica (fractional on a 2-CPU laptop).")
    num_gpus: float | Literal["auto"] = Field(0.0, description=(
        "GPUs per replica; auto = 1 when the cluster has a GPU, else 0 (only the VLM deployment uses one)."))
    torch_threads: int | None = Field(1, ge=1, description=(
        "torch intra-op threads (and OMP_NUM_THREADS, faiss) per replica; 1 keeps small concurrent requests "
        "from fighting over the cores (tool route p50 ~7 ms vs ~230 ms with 2 threads on a busy 2-core machine: "
        "benchmarks/serve_load.py --tools-stage); null = torch's default."))

    @field_validator("max_queued_requests")
    @classmethod
    def _queue(cls, value: int) -> int:
        if value == 0:
            raise ValueError("max_queued_requests must be -1 (unbounded) or at least 1")
        return value


class VLMBatching(StrictModel):
    """@serve.batch of the VLM deployment: concurrent non-tool-route requests share one answer() call."""

    max_batch_size: int = Field(8, ge=1, description="Requests merged into one VLM pass at most.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description=(
        "How long the first request of a batch waits for others before the pass starts."))


def _router_default() -> DeploymentSettings:
    return DeploymentSettings(num_cpus=0.1, max_ongoing_requests=32, max_queued_requests=64)


def _vlm_default() -> DeploymentSettings:
    return DeploymentSettings(num_gpus="auto", max_ongoing_requests=16, torch_threads=None)


class ServeConfig(StrictModel):
    """Online serving (issue 7): the nightly job's artifacts and router behind a FastAPI app on Ray Serve."""

    config_section = "serve"   # its section in a sectioned file (configs/<dataset>.yaml)

    recommend: RecommendConfig = Field(default_factory=RecommendConfig, description=(
        "Artifacts, candidates and router, exactly as jobs/score.py reads them (same model version and policy)."))
    host: str = Field("127.0.0.1", description=(
        "Interface the HTTP proxy binds; 127.0.0.1 = this machine only, 0.0.0.0 = every interface."))
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the proxy.")
    ray_address: str | None = Field(None, description=(
        "Ray cluster to join; null = the cluster of `ray job submit`, or a new local one."))
    app_name: str = Field("reasonrec", min_length=1, description="Serve application name.")
    route_prefix: str = Field("/", pattern=r"^/", description="URL prefix the app is mounted at.")
    max_k: int = Field(100, ge=1, description="Largest k a recommend request may ask for (also at most n_candidates).")
    max_history: int = Field(200, ge=1, description="Most item ids a request's `history` may hold.")
    max_ctr_items: int = Field(200, ge=1, description="Most item ids one /v1/ctr request may score.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description=(
        "Largest request body accepted (bytes); a larger one is a 413, refused by its Content-Length before it is "
        "read, or as soon as a chunked body passes the limit (1 MiB holds 10,000 ids of 100 characters)."))
    retry_after_s: int = Field(1, ge=0, description=(
        "Seconds a 503 that clears by itself (models loading, a full queue) asks the client to wait: its "
        "Retry-After header."))
    ctr_tool: str = Field("auto", min_length=1, description=(
        "CTR tool of /v1/ctr (a folder of tools_dir); auto = the ctr-task tool with the best AUC in "
        "tools_dir/metrics.json."))
    cold_start_sample: int = Field(256, ge=1, description=(
        "Known users whose CTR probabilities are averaged for an unknown user (seeded sample)."))
    explain_max_new_tokens: int = Field(48, ge=1, le=512, description="Tokens the VLM may generate per explanation.")
    throughput_optimized: bool = Field(True, description=(
        "Ray Serve's throughput-optimized mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1: the ingress replica takes HTTP "
        "itself, replicas talk gRPC, request logs are buffered and not echoed to stderr; what it buys on 2 cores: "
        "benchmarks/RESULTS.md, serve_load). Applies to a Ray this job "
        "starts; a running cluster needs the variable in `ray start`'s environment (ray_cluster.yaml sets it)."))
    tools_in_ingress: bool = Field(True, description=(
        "true: the ingress replica loads the tools and answers the tool route, cold start and /v1/ctr itself "
        "(one Serve hop per request; the `tools` section's torch_threads apply to it); false: a separate Tools "
        "deployment (the `tools` section) that scales apart from the HTTP ingress, one hop more per request."))
    router: DeploymentSettings = Field(default_factory=_router_default, description=(
        "The ingress (FastAPI) deployment: validation, composition and status codes (+ the tools when "
        "tools_in_ingress). Its max_ongoing_requests / max_queued_requests are enforced by the app itself "
        "(reasonrec/serving/guard.py) so a full ingress answers JSON 503 + Retry-After, not Serve's text/plain."))
    tools: DeploymentSettings = Field(default_factory=DeploymentSettings, description=(
        "CPU replicas (tools_in_ingress: false): retrieval, tool scoring, the tool route, CTR and cold start."))
    vlm: DeploymentSettings = Field(default_factory=_vlm_default, description=(
        "VLM replicas (GPU when present): rows off the tool route, and explanations."))
    vlm_batching: VLMBatching = Field(default_factory=VLMBatching, description="How VLM requests are batched.")

    @model_validator(mode="after")
    def _consistent(self):
        if self.max_k > self.recommend.n_candidates:
            raise ValueError(f"max_k {self.max_k} is above recommend.n_candidates {self.recommend.n_candidates}: "
                             "a request could never get that many items")
        return self
