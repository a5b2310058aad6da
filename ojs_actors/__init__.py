"""ojs-actors: an Open Job Spec job server and embeddable job dispatcher on trio actors."""

from .backends import Backend, MemoryBackend, SqliteBackend, create_backend
from .core import Job, OJSError, RetryPolicy, State
from .library import JobDefinition, JobRegistry, JobTimeout
from .system import (
    Ack,
    Handler,
    Heartbeat,
    Nack,
    Settings,
    System,
    WorkerGroup,
    WorkerGroupStats,
    open_system,
)

__version__ = "0.1.0"

__all__ = [
    "Ack", "Backend", "Handler", "Heartbeat", "Job", "JobDefinition", "JobRegistry", "JobTimeout",
    "MemoryBackend", "Nack", "OJSError", "RetryPolicy", "Settings", "SqliteBackend", "State",
    "System", "WorkerGroup", "WorkerGroupStats", "__version__", "create_backend", "open_system",
]  # fmt: skip
