"""The ``ojs-actors serve`` processes of a chaos run: started on the run's store with the
actor-kill hook armed (:mod:`ojs_actors.system.chaos_hook`), killed with SIGKILL and
restarted on the same port, and the :class:`Cluster` the workload talks to (any server
that is up; all of them share the store, so any one will do)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from ojs_actors.testing.services import free_port

from ._proxy import HOST

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 40.0
"""Past ``serve``'s own shutdown timeout (30 s)."""
KILL_LINE = "chaos hook: killed actor"


class ServerProcess:
    def __init__(
        self, name: str, backend: str, environment: dict[str, str], directory: Path, poll_s: float
    ) -> None:
        self.name = name
        self.poll_s = poll_s
        self.backend = backend
        self.environment = environment
        self.port = free_port()
        self.log_path = directory / f"{name}.log"
        self.process: trio.Process | None = None
        self.starts = 0
        self.ready = False
        """Up and answering (its SIGUSR1 hook installed: before that, SIGUSR1 ends it)."""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, client: httpx.AsyncClient) -> None:
        """Start it and wait until its health check answers 200."""
        env = os.environ | self.environment | {
            "OJS_CHAOS_ACTOR_KILLS": "1",
            "OJS_POLL_INTERVAL": str(self.poll_s),
            "OJS_LOG_LEVEL": "WARNING",
        }  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "ojs_actors", "serve", "--backend", self.backend,
                 "--host", HOST, "--port", str(self.port)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.starts += 1
        with trio.fail_after(START_TIMEOUT_S):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited at start with {self.process.returncode}:\n"
                        f"{self.log_tail()}"
                    )
                try:
                    response = await client.get(f"{self.url}/ojs/v1/health")
                    if response.status_code == 200:
                        self.ready = True
                        return
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.05)

    async def sigkill(self) -> None:
        self.ready = False
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await self.process.wait()

    def kill_an_actor(self) -> None:
        if self.ready and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)

    async def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not ended within its grace period."""
        self.ready = False
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        with trio.move_on_after(STOP_GRACE_S):
            await process.wait()
            return
        process.kill()
        await process.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def actor_kills(self) -> int:
        return self.log_text().count(KILL_LINE)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Cluster:
    """The servers of a run and one HTTP client for all of them."""

    def __init__(self, servers: list[ServerProcess], client: httpx.AsyncClient) -> None:
        self.servers = servers
        self.client = client
        self._turn = 0

    def any_url(self) -> str:
        """A server that is up, in turn (the first if none is)."""
        for _ in range(len(self.servers)):
            self._turn = (self._turn + 1) % len(self.servers)
            server = self.servers[self._turn]
            if server.up:
                return server.url
        return self.servers[0].url
