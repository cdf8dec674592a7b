"""The memcached kind's address parsing, plan line and `version` exchange, the server played by a
socketpair: whatever bytes come back, only NotReady or ready, within the bound."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol.errors import NotReady
from portpatrol.kinds import memcached
from tests.cacheservers import wire_to


def talk(server_bytes: bytes, *, close: bool = True, bound: float = 2.0) -> str:
    with wire_to(server_bytes, bound=bound, close=close) as wire:
        try:
            memcached.converse(wire)
        except NotReady as error:
            return str(error)
    return ""


def test_addresses_and_plan() -> None:
    assert memcached.parse("memcached://cache", {}) == memcached.Settings("cache", 11211)
    got = memcached.parse("memcached://[::1]:11300/", {})
    assert memcached.describe(got) == "[::1]:11300 login=no tls=off"
    assert memcached.secrets(got) == frozenset()


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("redis://cache", "starts with memcached://"),
        ("memcached://cache/x", "no /path"),
        ("memcached://user:hunter2@cache", "no login"),
        ("memcached://cache:99999", "port"),
    ],
)
def test_bad_addresses(address: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        memcached.parse(address, {})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"VERSION 1.6.18\r\n", ""),
        (
            b"SERVER_ERROR out of memory\r\n",
            "the server answered version with 'SERVER_ERROR out of memory', not VERSION",
        ),
        (b"ERROR\r\n", "answered version with 'ERROR'"),
        (b"VERSION", "closed the connection during the answer to version"),
        (b"V" * 2000, "longer than 1024 bytes"),
        (b"\x1b[2J\r\n", "answered version with '\\u001b[2J'"),
    ],
)
def test_answers(reply: bytes, reason: str) -> None:
    got = talk(reply)
    assert reason in got if reason else got == ""


def test_a_silent_server_ends_in_the_bound() -> None:
    started = time.monotonic()
    assert talk(b"", close=False, bound=0.3) == "no answer within 300ms (the answer to version)"
    assert time.monotonic() - started < 3


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.lists(st.sampled_from([b"VERSION ", b"\r\n", b"SERVER_ERROR", b"\xff", b"1.6"])).map(b"".join),
    )
)
def test_any_server_bytes_give_ready_or_a_named_reason(data: bytes) -> None:
    started = time.monotonic()
    reason = talk(data)
    assert time.monotonic() - started < 3
    if reason == "":
        assert data.startswith(b"VERSION ")
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in reason)  # escaped: cannot drive a terminal
