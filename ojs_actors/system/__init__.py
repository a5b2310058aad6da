"""The job system: QueueActors, the Scheduler, and the embedded API that drives them."""

from .checkpoints import Checkpoint
from .clock import Clock, trio_wall_clock
from .event_cursor import EventCursor
from .job_context import JobContext, current_job, report_progress
from .queue_actor import QueueActor
from .scheduler import Scheduler
from .settle import Ack, Nack, Outcome
from .system import Heartbeat, Settings, System, open_system
from .worker_group import Handler, WorkerGroup, WorkerGroupStats
from .worker_outcomes import RateLimitExceeded

__all__ = [
    "Ack", "Clock", "EventCursor", "Handler", "Heartbeat", "Nack", "Outcome", "QueueActor", "Scheduler",
    "Settings", "System", "WorkerGroup", "WorkerGroupStats", "open_system", "trio_wall_clock",
    "Checkpoint", "JobContext", "current_job", "report_progress", "RateLimitExceeded",
]  # fmt: skip
