"""The official OJS conformance suites against a real ``ojs-actors serve`` process.

The suites and their runner live outside this repository: by default in
``../shared/conformance`` next to the checkout, or wherever
``OJS_CONFORMANCE_DIR`` points. Without them these tests are skipped, and say so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE_DIR = Path(
    os.environ.get("OJS_CONFORMANCE_DIR", REPO.parent / "shared" / "conformance")
)
RUNNER = CONFORMANCE_DIR / "ojs_conformance.py"

# Suite defects: cases no server can pass honestly. Each is explained in the README
# ("Conformance"); they are excluded by id, so every other case must pass.
KNOWN_SUITE_DEFECTS = {
    # Expects errors[].type "ConnectionTimeout" / "RateLimitExceeded" / "InternalServerError"
    # for nacks whose error objects carry only code "handler_error" and a message: the
    # types appear nowhere in the requests, so they cannot be derived.
    "L1-RTR-014",
}

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not RUNNER.exists(), reason=f"no conformance runner at {RUNNER}"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ojs/v1/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"server at {url} not healthy within {timeout}s")


@pytest.fixture(params=["memory"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ojs_actors", "serve", "--backend", request.param,
         "--host", "127.0.0.1", "--port", str(port), "--allow-reset"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        server_log = (tmp_path / "server.log").read_text(errors="replace")
        assert "Traceback" not in server_log, f"server logged an error:\n{server_log}"


def run_suites(url: str, max_level: int) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, str(RUNNER), "--url", url,
        "--reset-url", f"{url}/ojs/v1/admin/reset",
        "--max-level", str(max_level), "--core-only",
    ]  # fmt: skip
    for test_id in sorted(KNOWN_SUITE_DEFECTS):
        command += ["--exclude", test_id]
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)


def test_levels_0_and_1(server: str) -> None:
    result = run_suites(server, max_level=1)
    last_line = result.stdout.strip().splitlines()[-1]
    failures = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("PASS"))
    assert result.returncode == 0, f"conformance failures:\n{failures}\n{result.stderr}"
    passed, failed = (int(part.split()[0]) for part in last_line.split(",")[:2])
    assert failed == 0 and passed >= 89, last_line
