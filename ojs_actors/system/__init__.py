"""The job system: QueueActors, the Scheduler, and the embedded API that drives them."""

from .clock import Clock, trio_wall_clock
from .queue_actor import QueueActor
from .scheduler import Scheduler
from .system import Heartbeat, Settings, System, open_system

__all__ = [
    "Clock", "Heartbeat", "QueueActor", "Scheduler", "Settings", "System", "open_system",
    "trio_wall_clock",
]  # fmt: skip
