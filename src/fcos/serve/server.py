"""Running the service: :func:`serve` checks the settings (no network bind without a key unless told
``insecure``), builds the app, and runs it under uvicorn, with TLS when given a certificate and key
(uvicorn's own ``ssl_certfile`` / ``ssl_keyfile``), until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from fcos.serve.app import create_app
from fcos.serve.auth import RedactKey
from fcos.serve.config import ServeConfig, check_bind, is_loopback

__all__ = ["serve", "uvicorn_config"]

LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "fcos.serve")


def uvicorn_config(app: Any, config: ServeConfig, log_level: str = "info") -> Any:
    """The uvicorn settings for ``app`` served as ``config`` says: address, TLS, graceful shutdown."""
    import uvicorn

    return uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                          timeout_graceful_shutdown=config.shutdown_timeout_s,
                          ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key)


def describe(config: ServeConfig) -> str:
    """One line for the log: where, how it is protected, how it batches (never the key)."""
    access = "API key required" if config.api_key is not None else "no API key"
    if config.api_key is None and not is_loopback(config.host):
        access += " (--insecure)"
    batching = (f"batches of up to {config.max_batch} images, {config.max_delay_ms:g} ms to fill"
                if config.max_batch > 1 else "no batching")
    return (f"fcos serve on {config.scheme}://{config.host}:{config.port}: {access}; {batching}, "
            f"{config.max_concurrency} at once, queue {config.max_queue}")


def serve(weights: str | Path, host: str | None = None, port: int | None = None, *, config: ServeConfig | None = None,
          backend: str | None = None, device: str = "cpu", options: Any = None, **settings: Any) -> None:
    """Run :func:`create_app` under uvicorn (blocking) until SIGTERM or SIGINT.

    Refuses (:class:`~fcos.serve.config.InsecureBindError`) a non-loopback ``host`` without an API key
    unless ``insecure``, before the model is loaded. Either signal stops it gracefully: no new connections
    are accepted, idle keep-alive connections are closed, requests already received are answered (for up
    to ``shutdown_timeout_s``, then cancelled), and the function returns, so ``fcos serve`` exits 0 (a
    service manager's stop is not a failure).
    """
    import uvicorn

    given = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    config = (config or ServeConfig()).replace(**given, **settings)
    check_bind(config)
    redact = RedactKey(config.api_key)
    for name in LOGGERS:
        logging.getLogger(name).addFilter(redact)
    try:
        app = create_app(weights, config, backend=backend, device=device, options=options)
        server = uvicorn.Server(uvicorn_config(app, config))
        log = logging.getLogger("uvicorn.error")  # configured by uvicorn_config, like uvicorn's own lines
        log.info(describe(config))
        if config.api_key is not None and config.tls_cert is None and not is_loopback(config.host):
            log.warning("the API key travels in clear text over HTTP: serve HTTPS with --tls-cert and --tls-key, "
                        "or put a TLS-terminating proxy in front")
        _run(server)
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeFilter(redact)


def _run(server: Any) -> None:
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
