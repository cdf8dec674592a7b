"""The nats kind's address parsing, plan line and conversation, the server played by a socketpair:
whatever bytes come back, only NotReady or ready, within the bound, and never a secret."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol.errors import NotReady
from portpatrol.kinds import nats
from tests.cacheservers import wire_to

INFO = b'INFO {"server_id":"X","version":"2.9.10","max_payload":1048576}\r\n'
AUTH_INFO = b'INFO {"server_id":"X","auth_required":true}\r\n'


def talk(server_bytes: bytes, address: str = "nats://h", *, close: bool = True, bound: float = 2.0) -> str:
    """The reason the conversation gives ("" when ready)."""
    with wire_to(server_bytes, bound=bound, close=close) as wire:
        try:
            nats.converse(wire, nats.parse(address, {}))
        except NotReady as error:
            return str(error)
    return ""


def test_addresses_user_password_or_token() -> None:
    assert nats.parse("nats://queue", {}) == nats.Settings("queue", 4222)
    login = nats.parse("nats://app:p%3As@queue:4333", {})
    assert (login.user, login.password, login.token, login.port) == ("app", "p:s", None, 4333)
    token = nats.parse("nats://t0ken@queue", {})
    assert (token.user, token.token) == (None, "t0ken")
    assert "t0ken" not in repr(token)
    assert nats.secrets(token) == {"t0ken"}
    assert nats.secrets(login) == {"p:s"}
    block = nats.parse("nats://queue", {"token": "tk", "skip_tls_verify": "true"})
    assert (block.token, block.verify) == ("tk", False)


def test_block_keys_replace_the_credentials_of_the_address() -> None:
    """One rule for every kind: a key of the block (YAML or env) beats the same part of the URL."""
    token = nats.parse("nats://u:p@queue", {"token": "tk"})
    assert (token.user, token.password, token.token) == (None, None, "tk")
    login = nats.parse("nats://tk@queue", {"user": "u", "password": "p"})
    assert (login.user, login.password, login.token) == ("u", "p", None)
    password = nats.parse("nats://u:old@queue", {"password": "new"})
    assert (password.user, password.password) == ("u", "new")


@pytest.mark.parametrize(
    ("address", "block", "words"),
    [
        ("tls://queue", {}, "starts with nats://"),
        ("nats://queue/sub", {}, "no /path"),
        ("nats://queue", {"user": "u", "password": "p", "token": "t"}, "not both"),
        ("nats://queue", {"user": "u"}, "needs a password"),
        ("nats://queue", {"skip_tls_verify": "often"}, "true or false"),
        ("nats://queue", {"ca_file": "/nonexistent.pem"}, "cannot be used"),
    ],
)
def test_bad_addresses_are_named(address: str, block: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        nats.parse(address, block)


def test_plan_line() -> None:
    assert nats.describe(nats.parse("nats://q", {})) == "q:4222 login=no tls=when-required verify"
    assert nats.describe(nats.parse("nats://a:b@q", {})) == "q:4222 login=yes user=a tls=when-required verify"
    assert nats.describe(nats.parse("nats://tok@q", {})).startswith("q:4222 login=yes token ")
    assert "tok@" not in nats.describe(nats.parse("nats://tok@q", {}))


def test_connect_carries_the_credentials_and_pong_is_ready() -> None:
    assert talk(INFO + b"PONG\r\n") == ""
    assert talk(INFO + b"+OK\r\nPING\r\nINFO {}\r\npong\r\n") == ""  # operations are case-insensitive


def test_connect_message() -> None:
    import socket

    from portpatrol.wire import Wire

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(INFO + b"PONG\r\n")
        nats.converse(Wire(ours, time.monotonic() + 2, 2), nats.parse("nats://app:pw@h", {}))
        sent = theirs.recv(65536)
    connect, ping, rest = sent.split(b"\r\n")
    assert (ping, rest) == (b"PING", b"")
    options = json.loads(connect.removeprefix(b"CONNECT "))
    assert options["verbose"] is False
    assert options["pedantic"] is False
    assert (options["user"], options["pass"], options["name"]) == ("app", "pw", "portpatrol")


@pytest.mark.parametrize(
    ("reply", "address", "reason"),
    [
        (b'INFO {"ldm":true}\r\n', "nats://h", "the server is in lame duck mode (shutting down)"),
        (AUTH_INFO + b"-ERR 'Authorization Violation'\r\n", "nats://h",
         "the server needs credentials: user:password@ or token@ in the address (Authorization Violation)"),
        (AUTH_INFO + b"-ERR 'Authorization Violation'\r\n", "nats://u:secret@h",
         "the server refused the connection: Authorization Violation"),
        (INFO + b"-ERR 'Maximum Connections Exceeded'\r\n", "nats://h",
         "the server refused the connection: Maximum Connections Exceeded"),
        (INFO + b"-ERR 'bad secret'\r\n", "nats://u:secret@h", "refused the connection: bad ***"),
        (b"INFO [1]\r\n", "nats://h", "INFO is not a JSON object"),
        (b"INFO {\r\n", "nats://h", "INFO is not valid JSON"),
        (b"INFO " + b"[" * 60000 + b"\r\n", "nats://h", "INFO is not valid JSON"),
        (b"INFO {\"a\":\"\xff\"}\r\n", "nats://h", "INFO is not valid JSON"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "nats://h", "so it is not NATS: 'SSH-2.0-OpenSSH_9.2'"),
        (b"INFO " + b" " * 70000, "nats://h", "longer than 65536 bytes"),
        (INFO + b"MSG x 1 5\r\n", "nats://h", "answer to PING is not NATS: 'MSG x 1 5'"),
        (INFO + b"+OK\r\n" * 20, "nats://h", "16 lines without PONG"),
        (INFO + b"PO", "nats://h", "closed the connection during the answer to CONNECT and PING"),
        (b"INFO {}", "nats://h", "closed the connection during the server's INFO"),
        (b'INFO {"tls_required":true}\r\n\x16\x03\x01', "nats://h", "sent data before the TLS handshake"),
    ],
)  # fmt: skip
def test_answers_become_named_reasons(reply: bytes, address: str, reason: str) -> None:
    got = talk(reply, address)
    assert reason in got
    assert "secret" not in got


def test_tls_required_starts_tls_after_info() -> None:
    """A peer that requires TLS but then closes: the handshake is attempted, and fails by name."""
    assert talk(b'INFO {"tls_required":true}\r\n').startswith("TLS failed")


def test_a_silent_server_ends_in_the_bound() -> None:
    started = time.monotonic()
    assert talk(b"", close=False, bound=0.3) == "no answer within 300ms (the server's INFO)"
    assert talk(INFO, close=False, bound=0.3) == "no answer within 300ms (the answer to CONNECT and PING)"
    assert time.monotonic() - started < 4


nats_pieces = st.sampled_from(
    [INFO, AUTH_INFO, b'INFO {"ldm":true}\r\n', b"PONG\r\n", b"PING\r\n", b"+OK\r\n", b"-ERR 'x'\r\n",
     b"INFO ", b"{", b"[", b"\r\n", b"\x00\xff", b'INFO {"tls_required":false}\r\n']
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300), st.lists(st.one_of(nats_pieces, st.binary(max_size=8))).map(b"".join)
    ),
    address=st.sampled_from(["nats://h", "nats://u:pw@h", "nats://tkn@h"]),
)
def test_any_server_bytes_give_ready_or_a_named_reason(data: bytes, address: str) -> None:
    started = time.monotonic()
    reason = talk(data, address)
    assert time.monotonic() - started < 3
    assert "tkn" not in reason
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in reason)  # escaped: cannot drive a terminal


def test_a_ca_file_requires_tls_so_a_stripped_info_gets_no_password(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    settings = nats.parse("nats://app:hunter22@127.0.0.1:4222", {"ca_file": str(ca_file)})
    assert "tls=required verify" in nats.describe(settings)
    info = b'INFO {"server_id":"x","auth_required":true}\r\n'  # a machine in the middle dropped tls_required
    with wire_to(info + b"PONG\r\n") as wire, pytest.raises(NotReady, match="does not offer TLS"):
        nats.converse(wire, settings)
