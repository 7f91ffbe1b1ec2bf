"""The prediction web service, ``fcos serve``: :mod:`.app` (routes), :mod:`.server` (uvicorn, TLS, signals),
:mod:`.config` (settings, API key, the bind rule), :mod:`.auth`, :mod:`.batching`, :mod:`.uploads`,
:mod:`.metrics`."""

from fcos.serve.app import create_app
from fcos.serve.config import InsecureBindError, ServeConfig, ServeConfigError, read_api_key
from fcos.serve.server import serve

__all__ = ["InsecureBindError", "ServeConfig", "ServeConfigError", "create_app", "read_api_key", "serve"]
