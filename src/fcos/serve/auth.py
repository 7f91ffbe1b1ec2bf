"""Access control: one API key, sent as ``Authorization: Bearer KEY`` (parsed by FastAPI's ``HTTPBearer``),
compared in constant time (``secrets.compare_digest``).

:class:`RequireKey` is ASGI middleware, so it holds for every path, also FastAPI's ``/docs`` and
``/openapi.json``, paths that do not exist (401, not 404: nothing is revealed without the key) and routes
added later. Open without a key: ``/health`` (liveness probes carry no secrets; it then answers only
``{"status": "ok", "auth": "api_key"}``), ``/ready`` (readiness probes alike; a yes or no) and ``/``
(the static upload page, which asks for the key and sends it with each request). A request with a key
in its URL (``?api_key=``, ``?token=``, ...) is refused even when the key is right: URLs end up in
access logs, proxies and browser history. :class:`RedactKey` keeps the key out of the server's logs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.requests import Request

__all__ = ["KEY_PARAMETERS", "OPEN_PATHS", "RedactKey", "RequireKey"]

OPEN_PATHS = frozenset({"/", "/health", "/ready"})
# query parameters clients put keys in (lower case); any of them refuses the request
KEY_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token", "auth", "authorization",
                            "bearer", "password", "secret"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fcos"'}


def _refuse(message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=401, headers=CHALLENGE)


class RequireKey:
    """ASGI middleware: a valid key, or 401 with a one-line JSON error. Sets ``request.state.authorized``
    for the open paths, which say more to a client that sent the key."""

    def __init__(self, app: Callable, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()
        self._bearer = HTTPBearer(auto_error=False)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request = Request(scope) if scope["type"] == "http" else None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if any(name.lower() in KEY_PARAMETERS for name, _ in query):
            refusal = _refuse("an API key in the URL is refused (URLs end up in logs and browser history): "
                              "send it as the header 'Authorization: Bearer KEY'")
            return await refusal(scope, receive, send)
        credentials = await self._bearer(request) if request is not None else None
        authorized = credentials is not None and secrets.compare_digest(credentials.credentials.encode(), self._key)
        scope.setdefault("state", {})["authorized"] = authorized
        if authorized or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if credentials is None:
            refusal = _refuse("missing API key: send the header 'Authorization: Bearer KEY'")
        else:
            refusal = _refuse("invalid API key")
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        return await refusal(scope, receive, send)


class RedactKey(logging.Filter):
    """Replaces the key, and the values of key-like query parameters, in log records (uvicorn's access
    log writes each request's path with its query string)."""

    def __init__(self, api_key: str | None) -> None:
        super().__init__()
        self.key = api_key

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._clean(record.msg)
        return True

    def _clean(self, text: str) -> str:
        if self.key:
            text = text.replace(self.key, "[redacted]")
        path, sep, query = text.partition("?")
        if sep and any(name.lower() in KEY_PARAMETERS for name, _ in parse_qsl(query, keep_blank_values=True)):
            pairs = [(n, "[redacted]" if n.lower() in KEY_PARAMETERS else v) for n, v in parse_qsl(query, keep_blank_values=True)]
            text = path + "?" + urlencode(pairs, safe="[]")
        return text
