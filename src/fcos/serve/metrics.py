"""What ``GET /metrics`` reports, in the Prometheus text format (``prometheus-client``).

Each app has its own :class:`~prometheus_client.CollectorRegistry`, not the process-wide default one: a
test (or a process serving two models) can build many apps, and each reports its own counts.

    fcos_requests_total{route, status}          requests answered (every route, every status, 401 and 413 too)
    fcos_request_duration_seconds{route}        time from the request's arrival to its answer's start
    fcos_batch_size                             images per forward pass
    fcos_batch_duration_seconds                 decoding and forward pass of one batch
    fcos_queue_depth                            requests waiting for a forward pass
    fcos_inference_active                       images in forward passes running now
    fcos_model_load_seconds                     time to load the model
    fcos_warmup_seconds                         the warm-up forward pass at startup
    fcos_ready                                  1 once the model is loaded and warmed up
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "CountRequests", "ServiceMetrics"]

ROUTES = frozenset({"/", "/health", "/ready", "/metrics", "/predict"})  # any other path is counted as "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class ServiceMetrics:
    """The service's metrics in a registry of their own (:class:`CountRequests` counts every request)."""

    def __init__(self, queue_depth: Callable[[], float], active: Callable[[], float]) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("fcos_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("fcos_request_duration_seconds", "time from a request's arrival to its answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("fcos_batch_size", "images per forward pass", buckets=BATCH_BUCKETS,
                                    registry=registry)
        self.batch_seconds = Histogram("fcos_batch_duration_seconds", "decoding and forward pass of one batch",
                                       buckets=LATENCY_BUCKETS, registry=registry)
        Gauge("fcos_queue_depth", "requests waiting for a forward pass", registry=registry).set_function(queue_depth)
        Gauge("fcos_inference_active", "images in forward passes running now", registry=registry).set_function(active)
        self.load_seconds = Gauge("fcos_model_load_seconds", "time to load the model", registry=registry)
        self.warmup_seconds = Gauge("fcos_warmup_seconds", "the warm-up forward pass at startup", registry=registry)
        self.ready = Gauge("fcos_ready", "1 once the model is loaded and warmed up", registry=registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware counting each request's status and time in ``metrics`` (an unhandled error: 500)."""

    def __init__(self, app: Callable, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        start, status = time.perf_counter(), 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
