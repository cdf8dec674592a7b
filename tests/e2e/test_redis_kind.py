"""The redis kind against a real redis-server (Debian's 7.0, as nobody, on a free loopback port), with
redis-cli as the oracle: plain, requirepass, an ACL user, a dataset still LOADING, TLS, and peers that
misbehave: first one attempt at a time (the kind's attempt()), then the installed command, from every
source."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portpatrol.errors import NotReady
from portpatrol.kinds import redis
from tests.cacheservers import RedisServer, ScriptedPeer, certificates, never_shown, waits_for_a_late_start
from tests.peers import Running, run_portpatrol

PASSWORD = "pa:ss@w/rd"  # characters a URL must encode
IN_URL = "pa%3Ass%40w%2Frd"


def outcome(address: str, block: dict[str, Any] | None = None, bound: float = 2.0) -> str:
    """The reason the attempt gives ("" when ready); it must end within its bound (with slack)."""
    started = time.monotonic()
    try:
        redis.attempt(redis.parse(address, block or {}), time.monotonic() + bound, bound)
    except NotReady as error:
        reason = str(error)
    else:
        reason = ""
    assert time.monotonic() - started < bound + 2
    return reason


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        started.start()
        started.until(lambda: started.cli("ping") == "PONG")
        yield started


def test_ready_when_ping_answers_pong(server: RedisServer) -> None:
    assert server.cli("ping") == "PONG"
    assert outcome(f"redis://127.0.0.1:{server.port}") == ""
    assert outcome(f"redis://localhost:{server.port}/15") == ""
    assert "DB index is out of range" in outcome(f"redis://127.0.0.1:{server.port}/16")


def test_not_started_is_refused() -> None:
    with RedisServer() as never:
        assert "Connection refused" in never.cli("ping")
        assert outcome(f"redis://127.0.0.1:{never.port}") == "connection refused"


def test_requirepass_needs_the_password(server: RedisServer) -> None:
    server.cli("config", "set", "requirepass", PASSWORD)
    assert server.cli("ping").startswith("NOAUTH")
    assert server.cli("ping", password=PASSWORD) == "PONG"
    address = f"redis://127.0.0.1:{server.port}"
    assert outcome(address) == "the server needs a password (NOAUTH Authentication required.)"
    assert outcome(f"redis://:{IN_URL}@127.0.0.1:{server.port}/1") == ""
    assert outcome(address, {"password": PASSWORD}) == ""
    wrong = outcome(f"redis://:wrong@127.0.0.1:{server.port}")
    assert wrong.startswith("the server refused the login: WRONGPASS")
    assert "wrong" not in wrong.replace("WRONGPASS", "")


def test_an_acl_user_logs_in(server: RedisServer) -> None:
    assert server.cli("acl", "setuser", "app", "on", f">{PASSWORD}", "+ping", "+select", "allkeys") == "OK"
    assert server.cli("ping", user="app", password=PASSWORD) == "PONG"
    assert outcome(f"redis://app:{IN_URL}@127.0.0.1:{server.port}/2") == ""
    refused = outcome(f"redis://app:nope@127.0.0.1:{server.port}")
    assert refused == (
        "the server refused the login: WRONGPASS invalid username-password pair or user is disabled."
    )
    assert server.cli("acl", "setuser", "app", "-select") == "OK"
    assert "NOPERM" in outcome(f"redis://app:{IN_URL}@127.0.0.1:{server.port}/2")


def test_loading_is_not_ready_until_the_dataset_is_in(server: RedisServer) -> None:
    """A dump of 30,000 keys loaded with a delay per key (and events served often, so clients get
    LOADING rather than a queue): redis-cli and the kind both see LOADING for seconds, then PONG."""
    server.stop()
    server.start("--enable-debug-command", "yes")  # DEBUG POPULATE makes the dataset; off by default
    server.until(lambda: server.cli("ping") == "PONG")
    assert server.cli("debug", "populate", "30000") == "OK"
    assert server.cli("save") == "OK"
    server.stop()
    server.start("--key-load-delay", "20", "--loading-process-events-interval-bytes", "1024")
    server.until(lambda: server.cli("ping").startswith("LOADING"))
    reasons: list[str] = []
    began = time.monotonic()
    while (reason := outcome(f"redis://127.0.0.1:{server.port}")) and time.monotonic() - began < 60:
        reasons.append(reason)
        time.sleep(0.1)
    assert reason == "", reasons[-3:]
    assert server.cli("ping") == "PONG"
    assert server.cli("dbsize") == "30000"
    loading = [r for r in reasons if r.startswith("the server is loading its dataset (LOADING")]
    assert len(loading) >= 5, reasons[:3]  # seconds of it, every 0.1s
    assert reasons[0] == "the server is loading its dataset (LOADING Redis is loading the dataset in memory)"


def test_rediss_verifies_the_server() -> None:
    with RedisServer() as server:
        ca, *_ = tls = certificates(server)
        server.start(tls=tls)
        server.until(lambda: server.cli("ping", ca=ca) == "PONG")
        address = f"rediss://127.0.0.1:{server.port}"
        assert outcome(address, {"ca_file": str(ca)}) == ""
        assert outcome(f"rediss://localhost:{server.port}/1", {"ca_file": str(ca)}) == ""
        assert outcome(address, {"skip_tls_verify": True}) == ""
        assert outcome(address).startswith("TLS failed: CERTIFICATE_VERIFY_FAILED")
        assert outcome(f"redis://127.0.0.1:{server.port}")  # plain RESP to a TLS port: not ready


@pytest.mark.parametrize(
    ("script", "hold", "reason"),
    [
        (b"", True, "no answer within 1s (the reply to PING)"),
        (b"+PO", False, "the server closed the connection during the reply to PING"),
        (b"", False, "the server closed the connection during the reply to PING"),
        (b"\x15\x03\x03\x00\x02\x02\x46\r\n", False, "reply to PING is not Redis (RESP): '\\u0015"),
        (b"$99999999999999\r\n", False, "the server announced 99999999999999 bytes in the reply to PING"),
        (b"+" + b"x" * 100_000, True, "the server sent a line longer than 65536 bytes"),
    ],
)
def test_misbehaving_peers_give_bounded_named_reasons(script: bytes, hold: bool, reason: str) -> None:
    with ScriptedPeer(script, hold=hold, listen_first=True) as peer:
        assert reason in outcome(f"redis://127.0.0.1:{peer.port}", bound=1.0)


# --------------------------------------------------------------------------- the installed command


def test_the_command_waits_for_a_redis_started_late() -> None:
    with RedisServer() as server:
        late = waits_for_a_late_start(
            f"redis://127.0.0.1:{server.port}", server.start, lambda: server.cli("ping") == "PONG"
        )
    assert late < 3  # a few 250 ms intervals, on a loaded machine


def test_requirepass_without_a_password_is_not_ready_naming_the_password(server: RedisServer) -> None:
    server.cli("config", "set", "requirepass", PASSWORD)
    assert server.cli("ping").startswith("NOAUTH")
    env = {"TARGET_ADDRESS": f"redis://127.0.0.1:{server.port}", "CHECK_INTERVAL": "200ms"}
    result = run_portpatrol(env, ["--timeout", "2s"])
    assert result.code == 124, result.lines
    assert "the server needs a password (NOAUTH Authentication required.)" in result.lines[-1]


def test_a_wrong_password_is_retried_until_the_timeout_and_never_shown(
    server: RedisServer, tmp_path: Path
) -> None:
    server.cli("config", "set", "requirepass", PASSWORD)
    wrong = "wr0ng-S3cret"
    report = tmp_path / "report.json"
    env = {
        "TARGET_ADDRESS": f"redis://127.0.0.1:{server.port}",
        "REDIS_PASSWORD": wrong,  # the block's password replaces the address's (none here)
        "CHECK_INTERVAL": "200ms",
    }
    result = run_portpatrol(env, ["--timeout", "3s", "--report", str(report)])
    assert result.code == 124, result.lines
    refused = [line for line in result.lines if "WRONGPASS invalid username-password pair" in line]
    assert len(refused) >= 3, result.lines  # retried, every interval
    never_shown(wrong, result.stdout, result.stderr, report.read_text())
    assert "WRONGPASS" in json.loads(report.read_text())["targets"][0]["last_error"]
    assert "AUTH failed: WRONGPASS" in server.cli("ping", password=wrong)  # the oracle agrees


def test_the_right_password_from_a_config_file_with_a_variable(server: RedisServer, tmp_path: Path) -> None:
    server.cli("config", "set", "requirepass", PASSWORD)
    config = tmp_path / "pp.yaml"
    # The block's password replaces the address's (a wrong one here): one rule for every kind.
    config.write_text(
        "targets:\n"
        f"  - address: redis://:stale@127.0.0.1:{server.port}/3\n"
        "    redis:\n"
        '      password: "${REDIS_SECRET}"\n'
    )
    report = tmp_path / "report.json"
    result = run_portpatrol({"REDIS_SECRET": PASSWORD}, ["--config", str(config), "--report", str(report)])
    assert result.code == 0, result.lines
    assert server.cli("ping", password=PASSWORD) == "PONG"
    never_shown(PASSWORD, result.stdout, result.stderr, report.read_text())
    plan = run_portpatrol({"REDIS_SECRET": PASSWORD}, ["validate", "--config", str(config)])
    assert plan.code == 0, plan.stderr
    assert "db=3 login=yes tls=off" in plan.stdout
    never_shown(PASSWORD, plan.stdout, plan.stderr)


def test_loading_shows_in_the_log_lines_then_ready(server: RedisServer) -> None:
    """redis-cli says LOADING, the command's lines say it too, then it exits 0 when PING gets PONG."""
    server.stop()
    server.start("--enable-debug-command", "yes")
    server.until(lambda: server.cli("ping") == "PONG")
    assert server.cli("debug", "populate", "30000") == "OK"
    assert server.cli("save") == "OK"
    server.stop()
    server.start("--key-load-delay", "20", "--loading-process-events-interval-bytes", "1024")
    server.until(lambda: server.cli("ping").startswith("LOADING"))
    address = f"redis://127.0.0.1:{server.port}"
    with Running(args=["--interval", "100ms", "--timeout", "90s", address]) as running:
        line = running.wait_for_line("LOADING", 15)
        assert (
            'error="the server is loading its dataset (LOADING Redis is loading the dataset in memory)"'
            in line
        )
        assert running.wait(90) == 0, running.lines[-3:]
    assert server.cli("ping") == "PONG"
    assert server.cli("dbsize") == "30000"
    assert "is ready ✓" in running.lines[-1]
