"""The memcached kind against a real memcached (Debian's 1.6, as nobody, on a free loopback port), with
`version` over a raw socket as the oracle, and peers that misbehave: one attempt at a time (the kind's
attempt()), then the installed command."""

from __future__ import annotations

import time

import pytest

from portpatrol.errors import NotReady
from portpatrol.kinds import memcached
from tests.cacheservers import MemcachedServer, ScriptedPeer, waits_for_a_late_start


def outcome(address: str, bound: float = 2.0) -> str:
    """The reason the attempt gives ("" when ready); it must end within its bound (with slack)."""
    started = time.monotonic()
    try:
        memcached.attempt(memcached.parse(address, {}), time.monotonic() + bound, bound)
    except NotReady as error:
        reason = str(error)
    else:
        reason = ""
    assert time.monotonic() - started < bound + 2
    return reason


def test_ready_when_version_answers_and_refused_before() -> None:
    with MemcachedServer() as server:
        assert server.version() is None
        assert outcome(f"memcached://127.0.0.1:{server.port}") == "connection refused"
        server.start()
        server.until(lambda: server.version() is not None)
        assert (server.version() or "").startswith("VERSION 1.")
        assert outcome(f"memcached://127.0.0.1:{server.port}") == ""
        assert outcome(f"memcached://localhost:{server.port}") == ""
        server.stop()
        assert server.version() is None
        assert outcome(f"memcached://127.0.0.1:{server.port}") == "connection refused"


@pytest.mark.parametrize(
    ("script", "hold", "reason"),
    [
        (b"", True, "no answer within 1s (the answer to version)"),
        (b"VERS", False, "the server closed the connection during the answer to version"),
        (
            b"SERVER_ERROR out of memory\r\n",
            False,
            "the server answered version with 'SERVER_ERROR out of memory'",
        ),
        (b"\x80\x0b\x00\x00garbage\r\n", False, "the server answered version with '\ufffd\\u000b\\u0000"),
        (b"V" * 100_000, True, "the server sent a line longer than 1024 bytes"),
    ],
)
def test_misbehaving_peers_give_bounded_named_reasons(script: bytes, hold: bool, reason: str) -> None:
    with ScriptedPeer(script, hold=hold, listen_first=True) as peer:
        assert outcome(f"memcached://127.0.0.1:{peer.port}", bound=1.0).startswith(reason)


def test_the_command_waits_for_a_memcached_started_late() -> None:
    with MemcachedServer() as server:
        late = waits_for_a_late_start(
            f"memcached://127.0.0.1:{server.port}",
            server.start,
            lambda: (server.version() or "").startswith("VERSION "),
        )
    assert late < 3
