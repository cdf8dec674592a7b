"""TARGET_ADDRESS=host:port, as the original's users run it: the installed command against real listeners."""

from __future__ import annotations

import itertools
import signal

from tests.peers import Running, TcpListener, free_port, line_time, parse_line, run_portpatrol

FAST = {"CHECK_INTERVAL": "100ms", "DIAL_TIMEOUT": "1s"}


def test_listener_that_starts_late() -> None:
    with TcpListener(start_after=0.8) as listener:
        result = run_portpatrol({"TARGET_ADDRESS": listener.address, **FAST})
    assert result.code == 0, result.stderr
    assert result.stdout == ""  # logs go to standard error
    records = result.records
    assert records[0]["level"] == "INFO"
    assert records[0]["msg"] == "Waiting for 127.0.0.1 to become ready..."
    failures = [r for r in records if r["msg"] == "127.0.0.1 is not ready ✗"]
    assert len(failures) >= 2, result.stderr  # 0.8 s of refusals at a 100 ms interval
    assert all(r["level"] == "WARN" and r["error"] == "connection refused" for r in failures)
    ready = [i for i, r in enumerate(records) if r["msg"] == "127.0.0.1 is ready ✓"]
    assert len(ready) == 1
    assert records[ready[0]]["level"] == "INFO"
    assert all(r["msg"] != "127.0.0.1 is not ready ✗" for r in records[ready[0] :])
    assert listener.accepted >= 1
    assert result.elapsed < 10


def test_ready_at_once_without_failures() -> None:
    with TcpListener() as listener:
        result = run_portpatrol({"TARGET_ADDRESS": f"tcp://{listener.address}"})
    assert result.code == 0, result.stderr
    messages = [r["msg"] for r in result.records]
    assert messages[:2] == ["Waiting for 127.0.0.1 to become ready...", "127.0.0.1 is ready ✓"]
    assert not any("not ready" in m for m in messages)
    assert result.elapsed < 5


def test_ipv6_literal() -> None:
    with TcpListener("::1") as listener:
        result = run_portpatrol({"TARGET_ADDRESS": listener.address, **FAST})
    assert result.code == 0, result.stderr
    assert "::1 is ready ✓" in result.stderr


def test_localhost_tries_every_address() -> None:
    # localhost resolves to 127.0.0.1 (and ::1 where /etc/hosts says so); listening on one is enough.
    with TcpListener("127.0.0.1") as listener:
        result = run_portpatrol({"TARGET_ADDRESS": f"localhost:{listener.port}", **FAST})
    assert result.code == 0, result.stderr
    assert "localhost is ready ✓" in result.stderr


def test_target_name_in_every_message() -> None:
    with TcpListener(start_after=0.4) as listener:
        result = run_portpatrol({"TARGET_ADDRESS": listener.address, "TARGET_NAME": "My DB", **FAST})
    assert result.code == 0, result.stderr
    messages = [r["msg"] for r in result.records if "My DB" in r.get("msg", "")]
    assert messages[0] == "Waiting for My DB to become ready..."
    assert messages[-1] == "My DB is ready ✓"
    assert "My DB is not ready ✗" in messages


def test_interval_paces_the_attempts() -> None:
    port = free_port()
    with Running({"TARGET_ADDRESS": f"127.0.0.1:{port}", "CHECK_INTERVAL": "300ms"}) as running:
        for _ in range(4):
            running.wait_for_line("not ready", timeout=5)
        running.signal(signal.SIGTERM)
        assert running.wait() == 143
    failures = [line for line in running.lines if "not ready" in line]
    gaps = [b - a for a, b in itertools.pairwise(map(line_time, failures))]
    assert all(0.25 <= gap < 2.0 for gap in gaps), gaps


def test_extra_fields_for_tcp() -> None:
    with TcpListener(start_after=0.3) as listener:
        result = run_portpatrol(
            {"TARGET_ADDRESS": listener.address, "LOG_EXTRA_FIELDS": "true", "CHECK_INTERVAL": "100ms"}
        )
    assert result.code == 0, result.stderr
    failure = next(parse_line(line) for line in result.lines if "not ready" in line)
    assert list(failure) == [
        "time",
        "level",
        "msg",
        "target_address",
        "interval",
        "dial_timeout",
        "checker_type",
        "version",
        "error",
    ]
    assert failure["target_address"] == listener.address
    assert (failure["interval"], failure["dial_timeout"], failure["checker_type"]) == ("100ms", "1s", "TCP")
    assert failure["version"] == "0.1.0"


def test_success_threshold_needs_consecutive_successes() -> None:
    with TcpListener() as listener:
        result = run_portpatrol({"TARGET_ADDRESS": listener.address, "SUCCESS_THRESHOLD": "3", **FAST})
    assert result.code == 0, result.stderr
    assert listener.accepted >= 3
