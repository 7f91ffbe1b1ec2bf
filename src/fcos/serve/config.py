"""What ``fcos serve`` is told: :class:`ServeConfig` (every setting of the service and its server, each a
flag of ``fcos serve``), where its API key comes from (:func:`read_api_key`), and the one rule checked
before anything is loaded or bound (:func:`check_bind`): a service reachable from the network either
requires a key or is told explicitly that it need not (``--insecure``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcos.utils.flags import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Bound, check_bounds, option

__all__ = ["API_KEY_ENV", "SERVICE", "InsecureBindError", "ServeConfig", "ServeConfigError", "check_bind",
           "is_loopback", "read_api_key"]

SERVICE = "service (access, limits, batching)"
API_KEY_ENV = "FCOS_API_KEY"
MIN_KEY_LENGTH = 16
# RFC 6750's b64token: what may follow "Bearer " in an Authorization header
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
NEW_KEY_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ServeConfigError(ValueError):
    """A setting of the service that cannot work; the CLI prints it as one line."""


class InsecureBindError(ServeConfigError):
    """A non-loopback address without an API key and without ``insecure``."""


@dataclass(frozen=True)
class ServeConfig:
    """The service (:func:`fcos.serve.create_app`) and its server (:func:`fcos.serve.serve`). The API key
    is not a generated flag (``--api-key``, ``--api-key-file``, ``$FCOS_API_KEY``: :func:`read_api_key`)
    and never appears in the repr."""

    host: str = option("127.0.0.1", "address to bind (default: loopback only; any other address needs an API key "
                       "or --insecure)", group=SERVICE)
    port: int = option(8000, "port to bind", group=SERVICE, bound=Bound(0, 65535))
    api_key: str | None = field(default=None, repr=False)
    insecure: bool = option(False, "allow a non-loopback --host without an API key (e.g. behind a proxy that "
                            "authenticates)", group=SERVICE)
    tls_cert: str | None = option(None, "TLS certificate (PEM) to serve HTTPS; with --tls-key", group=SERVICE,
                                  metavar="PEM")
    tls_key: str | None = option(None, "TLS private key (PEM) of --tls-cert", group=SERVICE, metavar="PEM")
    max_upload_mb: float = option(20.0, "largest accepted upload (MiB); larger: 413", group=SERVICE, bound=POSITIVE)
    max_pixels: int = 40_000_000  # width * height, from the header before decoding (--max-pixels in the CLI)
    min_side: int = 16
    conf: float = 0.3  # score threshold when a request gives none
    max_concurrency: int = option(2, "forward passes running at once (worker threads)", group=SERVICE,
                                  bound=AT_LEAST_1)
    max_batch: int = option(1, "images per forward pass: concurrent requests are batched up to this many "
                            "(1: no batching)", group=SERVICE, bound=AT_LEAST_1)
    max_delay_ms: float = option(10.0, "longest a request waits for its batch to fill, only while another batch runs (with --max-batch > 1)",
                                 group=SERVICE, metavar="MS", bound=NON_NEGATIVE)
    max_queue: int = option(100, "requests that may wait for a forward pass; one more gets 503 with Retry-After",
                            group=SERVICE, bound=AT_LEAST_1)
    queue_timeout_s: float = option(10.0, "a request not started within this many seconds gets 503 (busy, retry)",
                                    group=SERVICE, metavar="S", bound=POSITIVE)
    timeout_s: float = option(60.0, "a request not answered within this many seconds gets 504", group=SERVICE,
                              metavar="S", bound=POSITIVE)
    shutdown_timeout_s: float = option(30.0, "on SIGTERM, how long requests already received may take to be "
                                       "answered", group=SERVICE, metavar="S", bound=NON_NEGATIVE)

    def __post_init__(self) -> None:
        check_bounds(self)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServeConfigError("TLS needs both --tls-cert and --tls-key")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise ServeConfigError(f"TLS file not found: {path}")
        if self.tls_cert is not None:
            _check_tls_pair(self.tls_cert, self.tls_key)
        if self.api_key is not None:
            check_api_key(self.api_key)

    def replace(self, **changes: Any) -> ServeConfig:
        return dataclasses.replace(self, **changes)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def _check_tls_pair(cert: str, key: str | None) -> None:
    """Load the pair as the server will, before the model loads: a file that is not PEM, or a key that
    is not the certificate's, is a ServeConfigError naming both files, not ssl's traceback at start-up."""
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ServeConfigError(f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its private "
                               f"key ({exc})") from None


def check_api_key(key: str, source: str = "the API key") -> str:
    """``key`` if it can travel in an ``Authorization: Bearer`` header and is long enough to guess at no
    better than chance; else :class:`ServeConfigError` (naming ``source``, never the key)."""
    if len(key) < MIN_KEY_LENGTH:
        raise ServeConfigError(f"{source} is {len(key)} characters; use at least {MIN_KEY_LENGTH} ({NEW_KEY_HINT})")
    if not _TOKEN.fullmatch(key):
        raise ServeConfigError(f"{source} may hold only letters, digits and - . _ ~ + / = (a bearer token); "
                               f"{NEW_KEY_HINT}")
    return key


def read_api_key(key: str | None = None, key_file: str | Path | None = None,
                 environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The API key and where it came from: ``--api-key``, else ``--api-key-file`` (its first line), else
    ``$FCOS_API_KEY``; (None, None) when none is given. A key given on the command line is visible to
    every user of the machine in the process list: prefer the file or the environment."""
    environ = os.environ if environ is None else environ
    if key is not None and key_file is not None:
        raise ServeConfigError("give the API key once: --api-key or --api-key-file, not both")
    if key is not None:
        return check_api_key(key.strip(), "--api-key"), "--api-key"
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ServeConfigError(f"cannot read --api-key-file {path}: {type(exc).__name__}") from None
        lines = text.strip().splitlines()
        return check_api_key(lines[0].strip() if lines else "", f"--api-key-file {path}"), f"--api-key-file {path}"
    value = environ.get(API_KEY_ENV)
    if value:
        return check_api_key(value.strip(), f"${API_KEY_ENV}"), f"${API_KEY_ENV}"
    return None, None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only: 127.0.0.0/8, ::1 or ``localhost``. Any other
    name counts as reachable from the network (it may resolve to any address)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: ServeConfig) -> None:
    """Refuse to serve a non-loopback address without a key, unless ``insecure`` says so: the service
    would run anyone's uploads through the model (CPU, memory) and report what the model sees."""
    if is_loopback(config.host) or config.api_key is not None or config.insecure:
        return
    raise InsecureBindError(
        f"refusing to serve on {config.host} without an API key: anyone who can reach this machine could use it. "
        f"Require a key with --api-key-file PATH (or ${API_KEY_ENV}, or --api-key KEY; {NEW_KEY_HINT}); "
        f"clients then send 'Authorization: Bearer KEY'. To serve without a key anyway (e.g. behind a proxy "
        "that authenticates), add --insecure.")
