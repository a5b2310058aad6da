"""The OJS HTTP binding: a Quart-trio app over the embedded :class:`~ojs_actors.System`."""

from .app import MEDIA_TYPE, HttpSettings, create_app, manifest
from .serve import ServeConfig, serve

__all__ = ["MEDIA_TYPE", "HttpSettings", "ServeConfig", "create_app", "manifest", "serve"]
