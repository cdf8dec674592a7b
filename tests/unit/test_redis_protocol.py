"""The redis kind's address parsing, plan line and conversation, the server played by a socketpair:
whatever bytes come back, only NotReady or ready, within the bound, and never the password."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol.errors import NotReady
from portpatrol.kinds import redis
from tests.cacheservers import wire_to

SECRET = "s3cr:t@/x"


def talk(server_bytes: bytes, address: str = "redis://h", *, close: bool = True, bound: float = 2.0) -> str:
    """The reason the conversation gives ("" when ready)."""
    with wire_to(server_bytes, bound=bound, close=close) as wire:
        try:
            redis.converse(wire, redis.parse(address, {}))
        except NotReady as error:
            return str(error)
    return ""


# --------------------------------------------------------------------------- addresses


def test_addresses_follow_redis_cli() -> None:
    assert redis.parse("redis://cache", {}) == redis.Settings("cache", 6379)
    plain = redis.parse("redis://:p%40ss@cache:7000/2", {})
    assert (plain.host, plain.port, plain.db, plain.user, plain.password) == ("cache", 7000, 2, None, "p@ss")
    assert redis.parse("redis://secret@cache", {}).password == "secret"  # no colon: the password
    acl = redis.parse("rediss://app:pw:with:colons@[::1]/0", {})
    assert (acl.host, acl.user, acl.password, acl.db, acl.tls, acl.verify) == (
        "::1",
        "app",
        "pw:with:colons",
        0,
        True,
        True,
    )


def test_block_keys_replace_the_address() -> None:
    block = {"user": "ops", "password": SECRET, "skip_tls_verify": "true"}
    got = redis.parse("rediss://app:old@cache", block)
    assert (got.user, got.password, got.verify) == ("ops", SECRET, False)
    assert SECRET not in repr(got)
    assert redis.secrets(got) == {SECRET}
    assert redis.secrets(redis.parse("redis://cache", {})) == frozenset()


@pytest.mark.parametrize(
    ("address", "block", "words"),
    [
        ("http://cache", {}, "starts with redis://"),
        ("redis://cache/x", {}, "database number"),
        ("redis://cache/1/2", {}, "database number"),
        ("redis://cache?db=1", {}, "no ?query"),
        ("redis://cache:0", {}, "port"),
        ("redis://", {}, "no host"),
        ("redis://app:@cache", {}, "needs a password"),
        ("redis://cache", {"ca_file": "/x"}, "rediss:// only"),
        ("rediss://cache", {"skip_tls_verify": "maybe"}, "true or false"),
        ("rediss://cache", {"ca_file": "/nonexistent/ca.pem"}, "cannot be used"),
        (f"redis://:{SECRET.replace('@', '%40').replace('/', '%2F')}@cache/x", {}, "database number"),
    ],
)
def test_bad_addresses_are_named_with_an_example(address: str, block: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=r"\(e\.g\. ") as caught:
        redis.parse(address, block)
    assert words in str(caught.value)
    assert SECRET not in str(caught.value)


def test_plan_line_shows_db_login_and_tls_never_the_password() -> None:
    assert redis.describe(redis.parse("redis://cache", {})) == "cache:6379 db=default login=no tls=off"
    line = redis.describe(
        redis.parse(f"rediss://app:{SECRET.replace('@', '%40').replace('/', '%2F')}@[::1]:7000/3", {})
    )
    assert line == "[::1]:7000 db=3 login=yes user=app tls=verify"
    assert redis.describe(redis.parse("rediss://:x@c", {"skip_tls_verify": True})).endswith(
        "login=yes tls=skip-verify"
    )


# --------------------------------------------------------------------------- the server's answers


def test_pong_is_ready_and_every_step_is_spoken() -> None:
    assert talk(b"+PONG\r\n") == ""
    assert talk(b"$4\r\nPONG\r\n") == ""
    assert talk(b"+OK\r\n+OK\r\n+PONG\r\n", "redis://u:p@h/5") == ""


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"-LOADING Redis is loading the dataset in memory\r\n",
         "the server is loading its dataset (LOADING Redis is loading the dataset in memory)"),
        (b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
         "the replica has lost its master (MASTERDOWN Link with MASTER is down"),
        (b"-BUSY Redis is busy running a script.\r\n", "busy running a script (BUSY Redis is busy"),
        (b"-NOAUTH Authentication required.\r\n", "needs a password (NOAUTH Authentication required.)"),
        (b"-ERR unknown command\r\n", "the server answered PING with an error: ERR unknown command"),
        (b"+PANG\r\n", "the server answered PING with 'PANG', not PONG"),
        (b"*1\r\n$4\r\nPONG\r\n", "is not Redis (RESP): '*1'"),
        (b"HTTP/1.1 400 Bad Request\r\n", "is not Redis (RESP): 'HTTP/1.1 400 Bad Request'"),
        (b"$99999999999\r\n", "announced 9999999999"),
        (b"$70000\r\n", "announced 70000 bytes in the reply to PING (limit 65536)"),
        (b"$-5\r\n", "not a number"),
        (b"$4\r\nPONGxx", "does not end in CRLF"),
        (b"+PO", "closed the connection during the reply to PING"),
        (b"", "closed the connection during the reply to PING"),
        (b"+" + b"A" * 70000, "longer than 65536 bytes"),
    ],
)  # fmt: skip
def test_answers_become_named_reasons(reply: bytes, reason: str) -> None:
    assert reason in talk(reply)


def test_login_and_select_failures_never_show_the_password() -> None:
    address = f"redis://app:{SECRET.replace('@', '%40').replace('/', '%2F')}@h/9"
    refused = talk(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n", address)
    assert (
        refused
        == "the server refused the login: WRONGPASS invalid username-password pair or user is disabled."
    )
    echoed = talk(f"-ERR bad password {SECRET}\r\n".encode(), address)  # a server echoing it is masked
    assert SECRET not in echoed
    assert "***" in echoed
    assert talk(b"+OK\r\n-ERR DB index is out of range\r\n", address) == (
        "the server answered SELECT 9 with an error: ERR DB index is out of range"
    )


def test_a_silent_server_ends_in_the_bound() -> None:
    started = time.monotonic()
    assert talk(b"", close=False, bound=0.3) == "no answer within 300ms (the reply to PING)"
    assert time.monotonic() - started < 3


def test_the_commands_are_resp_arrays_safe_for_any_password() -> None:
    assert redis.command("AUTH", "a b\r\n") == b"*2\r\n$4\r\nAUTH\r\n$5\r\na b\r\n\r\n"


resp_pieces = st.sampled_from(
    [b"+PONG\r\n", b"+OK\r\n", b"-LOADING x\r\n", b"-NOAUTH y\r\n", b"$4\r\nPONG\r\n", b"$-1\r\n",
     b"$999999\r\n", b"*2\r\n", b":12\r\n", b"\r\n", b"$", b"+", b"-", b"\x00\xff"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300), st.lists(st.one_of(resp_pieces, st.binary(max_size=8))).map(b"".join)
    ),
    address=st.sampled_from(["redis://h", "redis://:pw@h/1", "redis://u:pw@h"]),
)
def test_any_server_bytes_give_ready_or_a_named_reason(data: bytes, address: str) -> None:
    started = time.monotonic()
    reason = talk(data, address)
    assert time.monotonic() - started < 3
    assert "pw" not in reason.replace("password", "")
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in reason)  # escaped: cannot drive a terminal
