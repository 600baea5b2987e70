"""Prometheus metrics of the scoring actors (ray.util.metrics): rows and per-row latency by route.

Ray exports them through each node's metrics agent, which the dashboard's Prometheus scrapes
(`ray metrics launch-prometheus` locally); names carry the `ray_` prefix there, e.g.
`ray_reasonrec_rows_total{route="tool"}`.
"""

from __future__ import annotations

import numpy as np

from reasonrec.recommend.stages import Answer
from reasonrec.router.policy import ROUTES

LATENCY_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]


class RouteMetrics:
    """Created inside an actor (metrics objects belong to the process that records them)."""

    def __init__(self):
        from ray.util.metrics import Counter, Histogram

        self.rows = Counter("reasonrec_rows_total", description="Users scored, by route.", tag_keys=("route",))
        self.latency = Histogram("reasonrec_row_latency_seconds", description="Per-user scoring cost, by route.",
                                 boundaries=LATENCY_BUCKETS_S, tag_keys=("route",))
        self.vlm_failures = Counter("reasonrec_vlm_failures_total",
                                    description="Users whose VLM pass raised and the best tool answered instead.")

    def record(self, answer: Answer) -> None:
        for route in ROUTES:
            on_route = answer.route == route
            if on_route.any():
                self.rows.inc(float(on_route.sum()), tags={"route": route})
                for seconds in np.asarray(answer.latency)[on_route]:
                    self.latency.observe(float(seconds), tags={"route": route})
        if answer.vlm_failures:
            self.vlm_failures.inc(float(answer.vlm_failures))
