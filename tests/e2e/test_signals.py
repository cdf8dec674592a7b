"""SIGTERM and SIGINT (behaviour.md 7): exit 143 / 130 within a fraction of a second, even with an attempt
in flight that could take 30 s. (The original exited 0, so a deleted pod's init step looked successful.)"""

from __future__ import annotations

import signal
import time

import pytest

from tests.peers import HttpPeer, Running, TcpListener, free_port, parse_line

SIGNALS = [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]


def stop_and_time(running: Running, signum: signal.Signals) -> tuple[int, float]:
    sent = time.monotonic()
    running.signal(signum)
    code = running.wait(timeout=10)
    return code, time.monotonic() - sent


@pytest.mark.parametrize(("signum", "status", "name"), SIGNALS)
def test_signal_during_an_http_attempt_against_a_silent_peer(
    signum: signal.Signals, status: int, name: str
) -> None:
    with TcpListener(silent=True) as silent:
        env = {"TARGET_ADDRESS": f"http://127.0.0.1:{silent.port}/", "DIAL_TIMEOUT": "30s"}
        with Running(env) as running:
            running.wait_for_line("Waiting for 127.0.0.1 to become ready...")
            deadline = time.monotonic() + 5
            while silent.accepted == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert silent.accepted == 1  # the attempt is in flight: connected, waiting for an answer
            time.sleep(0.2)
            code, took = stop_and_time(running, signum)
    assert code == status, running.lines
    assert took < 2, took
    assert not any("Traceback" in line for line in running.lines)
    last = parse_line(running.lines[-1])
    assert last["level"] == "WARN"
    assert last["msg"] == f"Interrupted by {name} while waiting for 127.0.0.1"


@pytest.mark.parametrize(("signum", "status", "name"), SIGNALS)
def test_signal_during_the_pause_between_attempts(signum: signal.Signals, status: int, name: str) -> None:
    env = {"TARGET_ADDRESS": f"127.0.0.1:{free_port()}", "CHECK_INTERVAL": "30s", "TARGET_NAME": "db"}
    with Running(env) as running:
        running.wait_for_line("db is not ready ✗")
        code, took = stop_and_time(running, signum)
    assert code == status, running.lines
    assert took < 2, took
    assert f"Interrupted by {name}" in running.lines[-1]


def test_sigterm_during_a_slow_http_answer() -> None:
    with HttpPeer() as peer:
        env = {"TARGET_ADDRESS": peer.url("/sleep/30/200"), "DIAL_TIMEOUT": "30s"}
        with Running(env) as running:
            running.wait_for_line("Waiting for")
            deadline = time.monotonic() + 5
            while not peer.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            assert peer.requests  # the request reached the server; its answer is 30 s away
            code, took = stop_and_time(running, signal.SIGTERM)
    assert code == 143, running.lines
    assert took < 2, took
