"""The prediction web service (:mod:`.app`): ``fcos serve``."""

from fcos.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
