"""Peers on the same Redis: the no-op workload of ``bench._workload`` on other job queues.

Each peer runs in its own virtualenv under ``.venv-bench/<peer>/`` (never the project's
``.venv``): their redis-py requirements clash with each other and with ours (arq needs
redis-py < 6, saq < 8, taskiq-redis ≥ 8), so one environment cannot hold them all at their
latest releases. ``bench/peers/requirements/<peer>.txt`` pins each environment.

A measurement is one subprocess, ``python -m bench.peers.run --peer NAME ...``, run by that
peer's python with the repository root on ``PYTHONPATH``; it prints
``LifecycleResult.as_dict()`` as one JSON line. This module imports only the stdlib, so the
runner works in an environment without ojs-actors.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from bench._workload import LifecycleResult

PEERS = ("huey", "dramatiq", "taskiq", "saq", "arq", "rq", "celery")

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
REQUIREMENTS_DIR = Path(__file__).resolve().parent / "requirements"
ENV_ROOT = REPO_ROOT / ".venv-bench"
INSTALL_TIMEOUT_S = 900.0
# Beyond the runner's own per-phase deadlines: interpreter start, imports, connecting, stopping.
RUNNER_SLACK_S = 60.0
STDERR_TAIL_CHARS = 3000


class PeerRunError(RuntimeError):
    """A peer's runner failed, printed no result, or overran its time."""


def _check_peer(name: str) -> None:
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; peers are {', '.join(PEERS)}")


def requirements_file(name: str) -> Path:
    _check_peer(name)
    return REQUIREMENTS_DIR / f"{name}.txt"


def _environment_key(requirements: Path) -> str:
    """Changes whenever the pins or the interpreter the environment is built from change."""
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_peer_env(name: str) -> Path:
    """The python of ``.venv-bench/<name>``, created and installed first if missing or stale.

    Stale means the requirements file (or the interpreter) changed since the install: then
    the environment is rebuilt from scratch. A file lock keeps two callers from building the
    same environment at once.
    """
    requirements = requirements_file(name)
    env_dir = ENV_ROOT / name
    python = env_dir / "bin" / "python"
    stamp = env_dir / ".requirements.sha256"
    key = _environment_key(requirements)
    ENV_ROOT.mkdir(exist_ok=True)
    with (ENV_ROOT / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text().strip() == key:
            return python
        shutil.rmtree(env_dir, ignore_errors=True)
        _run_setup_step([sys.executable, "-m", "venv", str(env_dir)], f"create {env_dir}")
        _run_setup_step(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(requirements)],
            f"install {requirements.name} into {env_dir}",
        )  # fmt: skip
        stamp.write_text(key + "\n")
    return python


def ensure_peer_envs() -> dict[str, Path]:
    """Every peer's environment (see :func:`ensure_peer_env`)."""
    return {name: ensure_peer_env(name) for name in PEERS}


def _run_setup_step(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerRunError(f"could not {what}: no answer in {INSTALL_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-STDERR_TAIL_CHARS:]
        raise PeerRunError(f"could not {what} (exit {done.returncode}):\n{tail}")


def run_peer(
    name: str, redis_url: str, jobs: int, latency_jobs: int, timeout_s: float
) -> LifecycleResult:
    """One lifecycle run of peer ``name`` against ``redis_url`` (its db is flushed first).

    Returns the runner's result, also when a phase hit ``timeout_s`` (then ``ok`` is false).
    Raises :class:`PeerRunError` when the runner fails, prints no result, or outlives its
    three phases' deadlines plus slack; then it is killed.
    """
    python = ensure_peer_env(name)
    command = [str(python), "-m", "bench.peers.run", "--peer", name, "--redis-url", redis_url,
               "--jobs", str(jobs), "--latency-jobs", str(latency_jobs),
               "--timeout", str(timeout_s)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    hard_limit_s = 3 * timeout_s + RUNNER_SLACK_S
    # stderr goes to a file: a chatty peer could otherwise fill a pipe and stall.
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as stderr:
        with subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        ) as process:
            try:
                stdout, _ = process.communicate(timeout=hard_limit_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise PeerRunError(
                    f"peer {name}: runner still running after {hard_limit_s:.0f} s, killed\n"
                    f"{_tail(stderr)}"
                ) from None
            except BaseException:
                process.kill()
                raise
        if process.returncode != 0:
            raise PeerRunError(f"peer {name}: runner exited {process.returncode}\n{_tail(stderr)}")
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise PeerRunError(f"peer {name}: runner printed no result\n{_tail(stderr)}")
        fields = json.loads(lines[-1])
    fields.pop("ok", None)
    return LifecycleResult(**fields)


def _tail(stderr_file: IO[str]) -> str:
    stderr_file.seek(0)
    text = stderr_file.read()
    return "stderr tail:\n" + text[-STDERR_TAIL_CHARS:] if text else "(no stderr)"
