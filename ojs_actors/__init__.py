"""ojs-actors: an Open Job Spec job server and embeddable job dispatcher on trio actors."""

from .backends import Backend, MemoryBackend, SqliteBackend, create_backend
from .core import Job, OJSError, State
from .system import Heartbeat, Settings, System, open_system

__version__ = "0.1.0"

__all__ = [
    "Backend", "Heartbeat", "Job", "MemoryBackend", "OJSError", "Settings", "SqliteBackend", "State",
    "System", "__version__", "create_backend", "open_system",
]  # fmt: skip
