"""The benchmark harness itself: its maths, its response parser, and a tiny end-to-end run.

The end-to-end tests run ``python -m bench --quick`` with real servers (ojs-actors on
memory, redis and nats, ``serve --workers 2``, the hello-world app, redis-server,
nats-server) and check
that every job of every lifecycle run really completed and that the table, the JSON and
the PNGs are written and readable. The peers scenario is left out: it builds a
virtualenv per peer, which takes minutes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import parse_args
from bench._load import LoadSpec, ProtocolError, build_request, generate_load, parse_response
from bench._results import Ratio, Series, percentile, ratio_of
from bench._servers import ServerGroup
from bench._workload import LifecycleResult

REPO = Path(__file__).resolve().parent.parent

OK = (
    b"HTTP/1.1 201 \r\ncontent-type: application/json\r\nContent-Length: 17\r\n"
    b"server: hypercorn-h11\r\n\r\n"
)


# -- response parsing ------------------------------------------------------------------------


def test_parse_response_waits_for_the_whole_body() -> None:
    whole = OK + b'{"hello":"world"}'
    for cut in range(len(whole)):
        assert parse_response(whole[:cut]) is None
    response = parse_response(whole)
    assert response is not None
    assert (response.status, response.end, response.closes) == (201, len(whole), False)
    assert whole[response.body_start : response.end] == b'{"hello":"world"}'


def test_parse_response_reads_only_the_first_of_two() -> None:
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    second = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    response = parse_response(bytearray(first + second))
    assert response is not None and response.status == 200 and response.end == len(first)
    following = parse_response(second)
    assert following is not None and following.status == 404 and following.end == len(second)


def test_parse_response_sees_connection_close_and_empty_bodies() -> None:
    response = parse_response(b"HTTP/1.1 204 \r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert response is not None and response.closes and response.body_start == response.end


def test_parse_response_refuses_what_it_cannot_frame() -> None:
    with pytest.raises(ProtocolError):
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello")
    with pytest.raises(ProtocolError):
        parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_build_request_frames_the_body() -> None:
    request = build_request("POST", "/ojs/v1/jobs", b'{"a":1}', port=8080)
    head, body = request.split(b"\r\n\r\n")
    assert head.startswith(b"POST /ojs/v1/jobs HTTP/1.1\r\n")
    assert b"Content-Length: 7" in head and body == b'{"a":1}'


# -- results maths ---------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_ratio_pairs_runs_and_skips_failed_ones() -> None:
    ours = Series("s", "ours", "jobs/s", [100.0, 90.0, math.nan])
    theirs = Series("s", "theirs", "jobs/s", [50.0, 60.0, 10.0])
    ratio = ratio_of(ours, theirs, "ours / theirs", target=1.6)
    assert ratio.values[:2] == [2.0, 1.5] and math.isnan(ratio.values[2])
    assert ratio.median == 1.75 and ratio.met is True
    assert (ours.median, ours.low, ours.high) == (95.0, 90.0, 100.0)
    summary = ratio.summary()
    assert (summary["min"], summary["max"]) == (1.5, 2.0)
    with pytest.raises(ValueError):
        ratio_of(ours, Series("s", "short", "jobs/s", [1.0]), "unpaired")


def test_ratio_targets_in_both_directions() -> None:
    assert Ratio("s", "p99 ms", [4.0, 6.0, 4.5], target=5.0, at_most=True).met is True
    assert Ratio("s", "p99 ms", [6.0, 6.0, 4.5], target=5.0, at_most=True).met is False
    assert Ratio("s", "rate", [0.5], target=0.9).met is False
    assert Ratio("s", "no target", [0.5]).met is None
    assert Ratio("s", "all failed", [math.nan], target=1.0).met is None


def test_round_trips_per_job_cover_enqueue_and_process_and_latency_apart() -> None:
    def result(round_trips: dict[str, int] | None) -> LifecycleResult:
        return LifecycleResult.measured(
            "s", jobs=1000, completed=1000, enqueue_per_s=1.0, process_per_s=1.0,
            latencies_s=[0.001] * 10, latency_jobs=10, settings="", round_trips=round_trips,
        )  # fmt: skip

    counted = result({"enqueue": 5, "process": 21, "latency": 40})
    assert counted.round_trips_per_job == 0.026 and counted.latency_round_trips_per_job == 4.0
    assert counted.as_dict()["round_trips"] == {"enqueue": 5, "process": 21, "latency": 40}
    assert math.isnan(counted.messages_per_job) and counted.messages == {}
    unfinished = result({"enqueue": 5})  # the process phase timed out: no figure
    assert math.isnan(unfinished.round_trips_per_job)
    assert math.isnan(unfinished.latency_round_trips_per_job)
    uncounted = result(None)  # memory, sqlite, the peers
    assert uncounted.round_trips == {} and math.isnan(uncounted.round_trips_per_job)
    # a result still loads from its JSON form (the isolated runs' and the peers' way)
    fields = json.loads(json.dumps(counted.as_dict()))
    fields.pop("ok")
    # (compared as JSON: the figures not counted are NaN, which equals nothing)
    assert json.dumps(LifecycleResult(**fields).as_dict()) == json.dumps(counted.as_dict())


def test_messages_per_job_are_summed_like_round_trips() -> None:
    sent = {"enqueue": 3100, "process": 7500, "latency": 260}
    result = LifecycleResult.measured(
        "s", jobs=1000, completed=1000, enqueue_per_s=1.0, process_per_s=1.0,
        latencies_s=[0.001] * 10, latency_jobs=10, settings="",
        round_trips={"enqueue": 5, "process": 21, "latency": 40},
        messages=sent, client_messages=dict(sent),
    )  # fmt: skip
    assert result.messages_per_job == 10.6 and result.latency_messages_per_job == 26.0
    assert result.as_dict()["client_messages"] == sent
    fields = json.loads(json.dumps(result.as_dict()))
    fields.pop("ok")
    assert LifecycleResult(**fields) == result


def test_scenario_numbers_keep_6_as_1_to_3() -> None:
    def chosen(*words: str) -> tuple[str, ...]:
        return parse_args(["--only", *words])[0].scenarios

    assert chosen("6") == ("http_enqueue", "http_lifecycle", "embedded")
    assert chosen("8", "3", "7") == ("embedded", "redis_client", "scale_out")
    assert chosen("redis_client", "5") == ("growth", "redis_client")
    with pytest.raises(SystemExit):
        chosen("9")


# -- the load generator against a real server -------------------------------------------------


def test_load_generator_counts_every_response_of_a_real_server() -> None:
    with ServerGroup("test-load") as group:
        hello = group.hello()
        group.wait_ready()
        request = build_request("POST", "/hello", b"{}", port=hello.port)
        result = generate_load(LoadSpec("127.0.0.1", hello.port, request, 4, 300, 30.0))
    assert result.requests == 300 and result.failures == 0
    assert result.statuses == {"201": 300}
    assert 0 < result.p50_ms <= result.p99_ms


def test_load_generator_reconnects_when_the_server_closes() -> None:
    with ServerGroup("test-reconnect") as group:
        static = group.static(close_after=100)
        group.wait_ready()
        request = build_request("POST", "/", b"{}", port=static.port)
        result = generate_load(LoadSpec("127.0.0.1", static.port, request, 1, 250, 30.0))
    assert (result.requests, result.failures, result.reconnects) == (250, 0, 2)


# -- the whole harness, tiny ------------------------------------------------------------------


def test_quick_run_completes_every_job_and_writes_the_report(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path),
               "--only", "http_enqueue", "http_lifecycle", "embedded", "growth",
               "--backends", "memory", "redis", "nats"]  # fmt: skip
    finished = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=240, check=False
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    table = finished.stdout
    for title in ("1. HTTP enqueue", "2. HTTP worker lifecycle", "3. Embedded lifecycle",
                  "5. Cost growth"):  # fmt: skip
        assert title in table
    assert "memory enqueue / hello-world req/s, c=1" in table
    assert "nats enqueue / hello-world req/s, c=1" in table

    folder = tmp_path / "latest"
    document = json.loads((folder / "results.json").read_text())
    assert (folder / "table.txt").read_text() in table
    scenarios = {scenario["scenario"]: scenario for scenario in document["scenarios"]}
    assert list(scenarios) == ["http_enqueue", "http_lifecycle", "embedded", "growth"]

    lifecycle_runs = scenarios["http_lifecycle"]["runs"] + scenarios["embedded"]["runs"]
    assert len(lifecycle_runs) == 3 * 2 + 3  # (memory, redis, nats) x (fetch 1, 50), embedded
    for run in lifecycle_runs:
        assert run["ok"], run
        assert run["completed"] == run["jobs"] > 0
        assert run["process_per_s"] > 0 and run["latency_p50_ms"] > 0

    # Redis round trips: counted for embedded redis only, every phase of it
    embedded = {run["subject"]: run for run in scenarios["embedded"]["runs"]}
    counted = embedded["embedded redis"]
    assert set(counted["round_trips"]) == {"enqueue", "process", "latency"}
    assert 0 < counted["round_trips_per_job"] < 1  # batched: fewer round trips than jobs
    assert counted["latency_round_trips_per_job"] >= 1  # single jobs: at least their enqueue
    assert embedded["embedded memory"]["round_trips"] == {}
    assert counted["messages"] == {}  # messages are counted on nats only
    # NATS: round trips, and the messages the nats-server received, every phase
    nats = embedded["embedded nats"]
    assert set(nats["round_trips"]) == set(nats["messages"]) == {"enqueue", "process", "latency"}
    assert 0 < nats["round_trips_per_job"] < 1
    # each job is written at least twice (enqueued, then claimed and completed), each
    # write at least its record and its outbox entry
    assert nats["messages_per_job"] > 4 and nats["latency_messages_per_job"] > 4
    # the embedded process is the server's only client: /varz agrees with the client's own
    # count. Not to the message at each phase boundary: the snapshot is taken while the
    # outbox relay's batches may be on the wire (written, not yet read by the server), so
    # they move to the next phase; over the whole run those cancel out.
    client = nats["client_messages"]
    for phase, count in nats["messages"].items():
        assert abs(count - client[phase]) <= 0.15 * client[phase], (phase, nats)
    total, client_total = sum(nats["messages"].values()), sum(client.values())
    assert abs(total - client_total) <= 0.02 * client_total, nats
    rows = {(series["subject"], series["metric"]) for series in scenarios["embedded"]["series"]}
    assert ("embedded redis", "round trips/job") in rows
    assert ("embedded nats", "round trips/job") in rows
    assert ("embedded nats", "messages/job") in rows
    assert ("embedded memory", "round trips/job") not in rows
    assert ("embedded redis", "messages/job") not in rows
    embedded_ratios = {ratio["name"]: ratio for ratio in scenarios["embedded"]["ratios"]}
    of_redis = embedded_ratios["embedded nats / embedded redis, process jobs/s"]
    assert of_redis["target"] == 0.5 and of_redis["met"] is not None

    enqueue_runs = scenarios["http_enqueue"]["runs"]
    assert enqueue_runs and all(
        run["failures"] == 0 and run["requests"] > 0 for run in enqueue_runs
    )
    growth = scenarios["growth"]
    waiting_notes = [note for note in growth["notes"] if note.endswith("waiting at the end")]
    assert len(waiting_notes) == 9 and not any("drifted" in note for note in growth["notes"])
    growth_ratios = {ratio["name"]: ratio for ratio in growth["ratios"]}
    nats_kept = growth_ratios["nats enqueue rate at 5,000 / at 100 waiting"]
    assert nats_kept["target"] == 0.8 and nats_kept["met"] is not None
    assert any(series["subject"] == "nats JetStream store" for series in growth["series"])
    for scenario in scenarios.values():
        assert all(series["median"] is not None for series in scenario["series"]), scenario
        assert scenario["ratios"]

    import matplotlib.image

    for name in ("http_enqueue", "http_lifecycle", "embedded", "growth"):
        image = matplotlib.image.imread(folder / f"{name}.png")
        assert image.shape[0] > 100 and image.shape[1] > 100


def test_quick_redis_client_and_scale_out(tmp_path: Path) -> None:
    """Scenarios 7 and 8, tiny: the client beside raw RESP; serve --workers 1 and 2."""
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path),
               "--only", "redis_client", "scale_out"]  # fmt: skip
    finished = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    table = finished.stdout
    assert "7. Redis client round trip" in table and "8. Scale-out" in table
    document = json.loads((tmp_path / "latest" / "results.json").read_text())
    scenarios = {scenario["scenario"]: scenario for scenario in document["scenarios"]}
    assert list(scenarios) == ["redis_client", "scale_out"]

    client = scenarios["redis_client"]
    [run] = client["runs"]
    assert set(run["median_us"]) == {"client EVALSHA", "raw EVALSHA", "client PING", "raw PING"}
    assert all(0 < value < 100_000 for value in run["median_us"].values())
    # the client's calls only: warm-up and timed calls of EVALSHA and PING
    assert run["round_trips_counted"] == 2 * (run["warmup"] + run["blocks"] * run["calls"])
    ratios = {ratio["name"]: ratio for ratio in client["ratios"]}
    evalsha = ratios["Redis client / raw RESP round trip, EVALSHA"]
    assert evalsha["target"] == 1.5 and evalsha["at_most"] and evalsha["met"] is not None

    scale = scenarios["scale_out"]
    lifecycles = [run for run in scale["runs"] if "completed" in run]
    loads = [run for run in scale["runs"] if "requests" in run]
    assert len(lifecycles) == len(loads) == 2  # --workers 1 and 2, one run each
    for run in lifecycles:
        assert run["ok"] and run["completed"] == run["jobs"] > 0, run
    for run in loads:
        assert run["requests"] > 0 and run["failures"] == 0, run
    assert any("--workers 2: CPU seconds per serving process" in note for note in scale["notes"])
    assert not any("serving processes at the end" in note for note in scale["notes"])
    names = {ratio["name"] for ratio in scale["ratios"]}
    assert "--workers 2 / --workers 1: HTTP lifecycle process jobs/s" in names
    for scenario in scenarios.values():
        assert all(series["median"] is not None for series in scenario["series"]), scenario


def test_quick_observability(tmp_path: Path) -> None:
    """The observability scenario, tiny: every mode's lifecycles complete, traced runs
    export spans to the harness's receiver, and every mode has its cost and ratio rows."""
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path),
               "--only", "observability"]  # fmt: skip
    finished = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    assert "Observability: metrics and tracing" in finished.stdout
    document = json.loads((tmp_path / "latest" / "results.json").read_text())
    [scenario] = document["scenarios"]
    lifecycles = [run for run in scenario["runs"] if "completed" in run]
    assert len(lifecycles) == 4 * (1 + 2)  # per mode: embedded, HTTP fetch count 1 and 50
    for run in lifecycles:
        assert run["ok"] and run["completed"] == run["jobs"] > 0, run
    loads = [run for run in scenario["runs"] if "requests" in run]
    assert len(loads) == 1 + 4 and all(run["failures"] == 0 for run in loads)
    series = {(row["subject"], row["metric"]): row for row in scenario["series"]}
    # traced embedded runs export spans (enqueue, fetch, process, ack); untraced ones none
    assert series[("embedded, tracing", "spans/job")]["median"] >= 2
    assert series[("embedded, both", "spans/job")]["median"] >= 2
    assert ("embedded, off", "spans/job") not in series
    assert ("embedded, metrics", "extra µs/job (process jobs/s)") in series
    served = [note for note in scenario["notes"] if note.startswith("ojs-actors serve (")]
    assert len(served) == 2 and all(" 0 spans" not in note for note in served), served
    names = {ratio["name"] for ratio in scenario["ratios"]}
    for mode in ("metrics", "tracing", "both"):
        assert f"embedded: {mode} / off, process jobs/s" in names
        assert f"HTTP enqueue c=16: {mode} / off, req/s" in names
        assert f"HTTP lifecycle fetch count 50: {mode} / off, process jobs/s" in names
    assert "enqueue, off / hello-world req/s, c=16" in names
