"""The machine a run was measured on, recorded beside its figures."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from ojs_actors.testing.services import (
    KafkaBroker,
    MissingBinary,
    NatsServer,
    RedisServer,
    Service,
)

REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _command(*words: str) -> str:
    try:
        done = subprocess.run(words, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _version(service: type[Service]) -> str:
    """What the service's binary says of its version."""
    try:
        return _command(service.find_binary(), "--version")
    except MissingBinary:
        return "not installed"


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "git_commit": _command("git", "rev-parse", "HEAD"),
        "git_dirty": _command("git", "status", "--porcelain", "--untracked-files=no") != "",
        "redis_server": _version(RedisServer),
        "nats_server": _version(NatsServer),
        "kafka_broker": _version(KafkaBroker),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }
