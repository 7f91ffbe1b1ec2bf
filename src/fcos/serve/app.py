"""Local prediction web service: ``POST /predict``, ``GET /health`` and an upload page at ``/``.

Robustness rules, all answered with a JSON ``{"detail": message}`` and the service keeps running:

- the request body is capped while it streams in (declared Content-Length checked first, then the bytes
  actually received), so an oversized upload is refused with 413 without being read into memory;
- the image header is read before any pixel is decoded: too many pixels -> 413, sides shorter than
  ``min_side`` -> 422; Pillow's decompression-bomb guard becomes the same 413;
- not an image -> 415; empty, truncated or corrupt image -> 400;
- at most ``max_concurrency`` inferences run at once, each in a worker thread (the event loop stays
  free for other requests); a request waits up to ``queue_timeout_s`` for a slot, then gets 503; at most
  ``max_queue`` wait at once (TorchServe's job queue): one more gets 503 at once, with ``Retry-After``;
- images are opened and decoded by :mod:`fcos.data.images`, as in datasets and ``fcos predict``;
- SIGTERM (or SIGINT) lets the requests in flight finish, then the server exits 0 (:func:`serve`).

``tests/serve/test_load.py`` holds it to these rules under load: 8 clients, valid images mixed with
hostile uploads, no other 5xx, no dropped connection, the same detections for the same image, flat RSS.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import UploadFile

from fcos.data.images import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    decode,
    exif_orientation,
    open_image,
    oriented_size,
)

__all__ = ["create_app", "serve"]

MiB = 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small `conf` field


class _UploadLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` while they stream in."""

    def __init__(self, app: Callable, max_bytes: int, message: str) -> None:
        self.app, self.max_bytes, self.message = app, max_bytes, message

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)


class _Slots:
    """At most ``size`` holders at once and ``max_waiting`` waiting, each for a bounded time.
    One asyncio.Semaphore per event loop."""

    def __init__(self, size: int, max_waiting: int) -> None:
        self.size, self.max_waiting = size, max_waiting
        self.active = self.waiting = 0
        self.max_active = 0
        self._semaphores: dict[int, asyncio.Semaphore] = {}
        self._lock = threading.Lock()

    def _semaphore(self) -> asyncio.Semaphore:
        key = id(asyncio.get_running_loop())
        with self._lock:
            return self._semaphores.setdefault(key, asyncio.Semaphore(self.size))

    async def run(self, executor: ThreadPoolExecutor, fn: Callable[[], Any], timeout: float) -> Any:
        semaphore = self._semaphore()
        if semaphore.locked() and self.waiting >= self.max_waiting:
            raise HTTPException(503, f"server busy: {self.waiting} requests already wait for {self.size} inference "
                                     "slots; retry later", headers={"Retry-After": "1"})
        self.waiting += 1
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            raise HTTPException(503, f"server busy: {self.size} inferences running; retry later",
                                headers={"Retry-After": "1"}) from None
        finally:
            self.waiting -= 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)

        def release(_: Any) -> None:  # on the worker's completion, even if the client went away
            self.active -= 1
            semaphore.release()

        future = asyncio.get_running_loop().run_in_executor(executor, fn)
        future.add_done_callback(release)
        return await asyncio.shield(future)


def _http_error(exc: ImageError) -> HTTPException:
    """fcos.data.images' errors -> the status each deserves."""
    if isinstance(exc, NotAnImageError):
        return HTTPException(415, f"not an image: {exc.problem}")
    if isinstance(exc, ImageTooLargeError):
        return HTTPException(413, f"image has too many pixels: {exc.problem}")
    if isinstance(exc, CorruptImageError):
        return HTTPException(400, f"corrupt or truncated image: {exc.problem}")
    return HTTPException(422, f"unusable image: {exc.problem}")


def _open_checked(data: bytes, max_pixels: int, min_side: int) -> tuple[Image.Image, int]:
    """Parse the header only and check the size before any pixel is decoded. -> (image, EXIF orientation)"""
    if not data:
        raise HTTPException(400, "empty upload: the 'file' part has no bytes")
    try:
        image = open_image(data, max_pixels=max_pixels, name="upload")
    except ImageError as exc:
        raise _http_error(exc) from None
    orientation = exif_orientation(image)
    width, height = oriented_size(image, orientation)
    if min(width, height) < min_side:
        raise HTTPException(422, f"image is {width}x{height}; both sides must be at least {min_side} px")
    return image, orientation


def _decode(image: Image.Image, orientation: int) -> Image.Image:
    try:
        return decode(image, orientation=orientation, name="upload")
    except ImageError as exc:
        raise _http_error(exc) from None


def _parse_conf(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        conf = float(value)
    except (TypeError, ValueError):
        raise HTTPException(422, f"conf must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= conf <= 1.0:
        raise HTTPException(422, f"conf must be in [0, 1], got {conf}")
    return conf


def create_app(
    weights: str | Path | Any,
    *,
    max_upload_mb: float = 20.0,
    max_concurrency: int = 2,
    max_pixels: int = 40_000_000,
    min_side: int = 16,
    queue_timeout_s: float = 10.0,
    max_queue: int = 100,
    conf: float = 0.3,
    backend: str | None = None,
    device: str = "cpu",
    options: Any = None,
) -> FastAPI:
    """The web service for a checkpoint or exported model (.onnx, .xml) (or an already built :class:`fcos.predict.Predictor`).

    Args:
        max_upload_mb: largest accepted image file (MiB); larger uploads get 413.
        max_concurrency: inferences running at once (worker threads).
        max_pixels: largest accepted width * height, checked from the header before decoding.
        min_side: smallest accepted image side in pixels.
        queue_timeout_s: how long a request waits for a free inference slot before 503.
        max_queue: requests that may wait for a slot at once; one more gets 503 at once (TorchServe's
            ``job_queue_size``, default 100: a flood of uploads is refused, not buffered).
        conf: score threshold when the request gives none (``conf`` form field or query parameter).
        options: slicing and test-time augmentation (:class:`fcos.predict.options.InferenceOptions`).
    """
    from fcos.predict import Predictor

    if max_concurrency < 1 or max_queue < 0:
        raise ValueError(f"max_concurrency must be >= 1 and max_queue >= 0, got {max_concurrency}, {max_queue}")
    predictor = (Predictor(weights, device=device, backend=backend, options=options)
                 if isinstance(weights, str | Path) else weights)
    max_bytes = int(max_upload_mb * MiB)
    executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="fcos-infer")
    slots = _Slots(max_concurrency, max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="fcos", description="FCOS object detection", lifespan=lifespan)
    app.state.slots = slots
    app.state.predictor = predictor
    app.add_middleware(
        _UploadLimit, max_bytes=max_bytes + FORM_OVERHEAD, message=f"upload too large: the limit is {max_upload_mb:g} MB"
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("fcos.serve").joinpath("static/index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "backend": getattr(predictor, "backend", None),
            "classes": list(predictor.class_names),
            "active": slots.active,
            "waiting": slots.waiting,
            "max_concurrency": max_concurrency,
        }

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
        """Detections for one uploaded image: ``{"detections": [{"box", "score", "label", "name"}], "width", "height"}``."""
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "no image: send multipart/form-data with the image in the 'file' field")
        threshold = _parse_conf(form.get("conf"))
        threshold = conf_query if threshold is None else threshold
        threshold = conf if threshold is None else threshold
        if upload.size is not None and upload.size > max_bytes:
            raise HTTPException(413, f"upload too large: the limit is {max_upload_mb:g} MB")
        image, orientation = _open_checked(await upload.read(), max_pixels, min_side)

        def work() -> tuple[dict[str, Any], int, int, float]:
            rgb = _decode(image, orientation)
            start = time.perf_counter()
            try:
                (det,) = predictor(rgb, conf=threshold)
            except ValueError as exc:  # e.g. an aspect ratio the model cannot take
                raise HTTPException(422, str(exc)) from None
            return det, rgb.width, rgb.height, (time.perf_counter() - start) * 1000

        det, width, height, elapsed = await slots.run(executor, work, queue_timeout_s)
        detections = [
            {"box": [round(v, 2) for v in box], "score": round(float(score), 4), "label": int(label), "name": name}
            for box, score, label, name in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), det["names"])
        ]
        return {"detections": detections, "width": width, "height": height, "inference_ms": round(elapsed, 1)}

    return app


def serve(weights: str | Path, host: str = "127.0.0.1", port: int = 8000, *, shutdown_timeout_s: float = 30.0,
          **kwargs: Any) -> None:
    """Run :func:`create_app` under uvicorn (blocking) until SIGTERM or SIGINT.

    Either signal stops it gracefully: no new connections are accepted, idle keep-alive connections are
    closed, requests already received are answered (for up to ``shutdown_timeout_s``, then cancelled),
    and the function returns, so ``fcos serve`` exits 0 (a service manager's stop is not a failure).
    """
    import uvicorn

    config = uvicorn.Config(create_app(weights, **kwargs), host=host, port=port, log_level="info",
                            timeout_graceful_shutdown=shutdown_timeout_s)
    server = uvicorn.Server(config)
    if threading.current_thread() is not threading.main_thread():  # signals belong to the main thread
        server.run()
        return
    # uvicorn installs its own handlers while it runs and, after its graceful shutdown, raises the signal
    # again for the handlers it found, so that a default SIGTERM would then kill the process (exit -15).
    # The handlers it finds are these: they ask uvicorn to stop (also before it took over) and end nothing.
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
