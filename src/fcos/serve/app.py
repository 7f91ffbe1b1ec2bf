"""The prediction web service: ``POST /predict``, ``GET /health``, ``/ready``, ``/metrics`` and an upload
page at ``/``. Every refusal is a JSON ``{"detail": message}`` and the service keeps running:

- with an API key, every path but ``/``, ``/health`` and ``/ready`` needs ``Authorization: Bearer KEY``,
  else 401 (:mod:`.auth`);
- uploads are checked before they cost anything: size while streaming (413), the image header before
  decoding (413, 415, 422), decoding itself (400) (:mod:`.uploads`);
- requests are batched (:mod:`.batching`): up to ``max_batch`` images per forward pass, waiting at most
  ``max_delay_ms`` for a batch to fill, ``max_concurrency`` batches at once, each in a worker thread (the
  event loop stays free); each image is answered with the detections it gets alone
  (:meth:`fcos.predict.Predictor.predict_batch` runs together only images of one padded input shape);
- at most ``max_queue`` requests wait: one more gets 503 at once, with ``Retry-After``; a request not
  started within ``queue_timeout_s`` gets 503 too, one not answered within ``timeout_s`` 504;
- an unexpected error answers 500 ``{"detail": "internal error"}``; the traceback goes to the log only;
- ``/metrics`` is Prometheus text (:mod:`.metrics`); ``/ready`` answers 200 once one warm-up forward
  pass has run after startup, 503 before;
- shutdown (SIGTERM, :func:`fcos.serve.serve`) answers the requests already received, queued ones too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from fcos.serve.auth import RequireKey
from fcos.serve.batching import (
    BatchQueue,
    QueueClosedError,
    QueueFullError,
    QueueTimeoutError,
    RequestTimeoutError,
)
from fcos.serve.config import ServeConfig
from fcos.serve.metrics import CONTENT_TYPE_LATEST, CountRequests, ServiceMetrics
from fcos.serve.uploads import FORM_OVERHEAD, MiB, Upload, UploadLimit, decode_upload, open_upload, parse_conf

__all__ = ["create_app", "predict_uploads"]

log = logging.getLogger("fcos.serve")
RETRY_AFTER = {"Retry-After": "1"}


def _forward(predictor: Any, images: list[Image.Image]) -> list[dict[str, Any]]:
    """Every detection of each image (conf 0: each request applies its own threshold after)."""
    if hasattr(predictor, "predict_batch"):
        return predictor.predict_batch(images, conf=0.0)
    return [predictor(image, conf=0.0)[0] for image in images]


def predict_uploads(predictor: Any, uploads: list[Upload]) -> list[Any]:
    """One batch: decode each upload, run the decoded ones together, and give each its own answer:
    ``(detections, width, height, milliseconds, batch size)`` or the HTTPException of its own failure. An
    image the model refuses (a ValueError, e.g. an aspect ratio it cannot take) sends the batch's images
    through one at a time, so only that request fails."""
    answers: list[Any] = [None] * len(uploads)
    images: dict[int, Image.Image] = {}
    for i, upload in enumerate(uploads):
        try:
            images[i] = decode_upload(upload)
        except HTTPException as exc:
            answers[i] = exc
    members = list(images)
    start = time.perf_counter()
    try:
        found: list[Any] = _forward(predictor, [images[i] for i in members]) if members else []
    except ValueError:
        found = []
        for i in members:
            try:
                found.append(_forward(predictor, [images[i]])[0])
            except ValueError as exc:
                found.append(HTTPException(422, str(exc)))
    ms = (time.perf_counter() - start) * 1000
    for i, det in zip(members, found, strict=True):
        answers[i] = det if isinstance(det, Exception) else (det, images[i].width, images[i].height, ms, len(members))
    return answers


def _response(det: dict[str, Any], conf: float, width: int, height: int, ms: float, batch: int) -> dict[str, Any]:
    keep = np.asarray(det["scores"]) >= conf
    detections = [
        {"box": [round(v, 2) for v in box], "score": round(float(score), 4), "label": int(label), "name": name}
        for box, score, label, name, kept in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(),
                                                 det["names"], keep, strict=True) if kept
    ]
    return {"detections": detections, "width": width, "height": height, "inference_ms": round(ms, 1), "batch": batch}


def _warm_image(predictor: Any) -> Image.Image:
    """A grey image at the model's own input size (any image the service would accept for others)."""
    config = getattr(predictor, "input_config", None)
    side = int(getattr(config, "min_size", 64) or 64)
    return Image.new("RGB", (side, side), (114, 114, 114))


def create_app(weights: str | Path | Any, config: ServeConfig | None = None, *, backend: str | None = None,
               device: str = "cpu", options: Any = None, **settings: Any) -> FastAPI:
    """The web service for a checkpoint or exported model (.onnx, .xml), or an already built
    :class:`fcos.predict.Predictor` (anything with ``predict_batch`` or ``__call__``, ``class_names``).

    Args:
        config: the service's settings (:class:`~fcos.serve.config.ServeConfig`); ``settings`` override
            single fields (``create_app(weights, max_upload_mb=1)``).
        options: slicing and test-time augmentation (:class:`fcos.predict.options.InferenceOptions`).
    """
    from fcos.predict import Predictor

    config = (config or ServeConfig()).replace(**settings)
    start = time.perf_counter()
    predictor = (Predictor(weights, device=device, backend=backend, options=options, progress=False)
                 if isinstance(weights, str | Path) else weights)
    load_seconds = time.perf_counter() - start
    queue = BatchQueue(lambda uploads: predict_uploads(predictor, uploads), max_batch=config.max_batch,
                       max_delay_s=config.max_delay_ms / 1000, max_queue=config.max_queue,
                       workers=config.max_concurrency)
    metrics = ServiceMetrics(lambda: queue.waiting, lambda: queue.active)
    metrics.load_seconds.set(load_seconds)
    queue.on_batch = metrics.observe_batch
    ready = threading.Event()

    async def warm_up() -> None:
        began = time.perf_counter()
        try:
            await run_in_threadpool(_forward, predictor, [_warm_image(predictor)])
        except Exception:  # noqa: BLE001 -- the service still answers; /ready says why it is not ready
            log.exception("warm-up forward pass failed")
            return
        metrics.warmup_seconds.set(time.perf_counter() - began)
        metrics.ready.set(1)
        ready.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        warming = asyncio.create_task(warm_up())
        yield
        warming.cancel()
        # uvicorn has answered (or cancelled) every request by now; run what is still queued, then stop
        await run_in_threadpool(queue.close, config.shutdown_timeout_s)

    app = FastAPI(title="fcos", description="FCOS object detection", lifespan=lifespan)
    app.state.queue, app.state.predictor, app.state.metrics, app.state.config = queue, predictor, metrics, config
    max_bytes = int(config.max_upload_mb * MiB)
    too_large = f"upload too large: the limit is {config.max_upload_mb:g} MB"
    # outermost last: count every request (401s too), then check the key, then cap the body
    app.add_middleware(UploadLimit, max_bytes=max_bytes + FORM_OVERHEAD, message=too_large)
    if config.api_key is not None:
        app.add_middleware(RequireKey, api_key=config.api_key)
    app.add_middleware(CountRequests, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("fcos.serve").joinpath("static/index.html").read_text(encoding="utf-8"))

    @app.api_route("/health", methods=["GET", "HEAD"])  # HEAD: load balancers' and uptime checkers' probe
    async def health(request: Request) -> dict[str, Any]:
        """Liveness. Without the key (when one is required): only the status."""
        auth = "api_key" if config.api_key is not None else "none"
        if not getattr(request.state, "authorized", True):
            return {"status": "ok", "auth": auth}
        return {"status": "ok", "auth": auth, "ready": ready.is_set(), "backend": getattr(predictor, "backend", None),
                "classes": list(predictor.class_names), "active": queue.active, "waiting": queue.waiting,
                "max_concurrency": config.max_concurrency, "max_batch": config.max_batch}

    @app.api_route("/ready", methods=["GET", "HEAD"])
    async def is_ready() -> JSONResponse:
        """Readiness: 200 once the model is loaded and one warm-up forward pass has run, 503 before."""
        return JSONResponse({"ready": ready.is_set()}, status_code=200 if ready.is_set() else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary"}, "conf": {"type": "number"}}}}},
            }
        },
    )
    async def predict(request: Request, conf_query: float | None = Query(None, alias="conf", ge=0.0, le=1.0)) -> dict[str, Any]:
        """Detections for one uploaded image: ``{"detections": [{"box", "score", "label", "name"}], "width",
        "height", "inference_ms", "batch"}`` (``inference_ms``: the forward pass of its batch of ``batch`` images)."""
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "no image: send multipart/form-data with the image in the 'file' field")
        threshold = parse_conf(form.get("conf"))
        threshold = conf_query if threshold is None else threshold
        threshold = config.conf if threshold is None else threshold
        if upload.size is not None and upload.size > max_bytes:
            raise HTTPException(413, too_large)
        item = open_upload(await upload.read(), threshold, config.max_pixels, config.min_side)
        try:
            det, width, height, ms, batch = await queue.submit(item, timeout_s=config.timeout_s,
                                                               queue_timeout_s=config.queue_timeout_s)
        except QueueFullError as exc:
            raise HTTPException(503, f"server busy: {exc}; retry later", headers=RETRY_AFTER) from None
        except QueueTimeoutError:
            raise HTTPException(503, f"server busy: not started within {config.queue_timeout_s:g} s; retry later",
                                headers=RETRY_AFTER) from None
        except QueueClosedError:
            raise HTTPException(503, "shutting down", headers=RETRY_AFTER) from None
        except RequestTimeoutError:
            raise HTTPException(504, f"not answered within {config.timeout_s:g} s") from None
        return _response(det, threshold, width, height, ms, batch)

    return app
