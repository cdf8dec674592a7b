"""The redis kind against a real redis-server (Debian's 7.0, as nobody, on a free loopback port), with
redis-cli as the oracle: plain, requirepass, an ACL user, a dataset still LOADING, TLS, and peers that
misbehave. Until the kinds registry lands (issue 10) the kind's attempt() is called directly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from portpatrol.errors import NotReady
from portpatrol.kinds import redis
from tests.cacheservers import RedisServer, ScriptedPeer, certificates

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
