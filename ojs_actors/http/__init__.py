"""The OJS HTTP binding: a Quart-trio app over the embedded :class:`~ojs_actors.System`."""

from .app import DEFAULT_MAX_BODY_BYTES, HttpSettings, create_app
from .routes.system import manifest
from .serve import ServeConfig, serve
from .wire import MEDIA_TYPE

__all__ = [
    "DEFAULT_MAX_BODY_BYTES", "MEDIA_TYPE", "HttpSettings", "ServeConfig", "create_app",
    "manifest", "serve",
]  # fmt: skip
