"""The OJS HTTP binding: a Quart-trio app over the embedded :class:`~ojs_actors.System`."""

from .app import DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT, HttpSettings, create_app
from .asgi import MEDIA_TYPE
from .routes.system import manifest
from .serve import InsecureBinding, ServeConfig, serve

__all__ = [
    "DEFAULT_MAX_BODY_BYTES", "DEFAULT_REQUEST_TIMEOUT", "MEDIA_TYPE", "HttpSettings",
    "InsecureBinding", "ServeConfig", "create_app",
    "manifest", "serve",
]  # fmt: skip
