"""The mysql kind's protocol, against scripted servers over a socketpair, published scramble vectors and
arbitrary bytes. The real MariaDB is in tests/e2e/test_mysql.py; what Debian's MariaDB cannot show
(caching_sha2_password, its full authentication over TLS) is proven here."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portpatrol import mysqlwire
from portpatrol.errors import NotReady
from portpatrol.kinds import mysql
from portpatrol.wire import Wire

# --------------------------------------------------------------------------- scrambles

# Published vectors. mysql_native_password: the challenge and response Boost.MySQL's unit tests
# captured with Wireshark for the password "root" (boostorg/mysql, test_auth, "Values snooped using
# Wireshark"). caching_sha2_password: the challenge and response they captured from the MySQL Python
# connector for the password "hola" (same file, "Values snooped using the MySQL Python connector").
NATIVE_CHALLENGE = bytes.fromhex("79643d121d7174475f483e3e0b620a033d273a4c")
NATIVE_ROOT = bytes.fromhex("f1b2fb1c8de75db8eba8126ad10fe9b11050d428")
SHA2_CHALLENGE = bytes.fromhex("3e3b04550470163a4c1535031576732246081801")
SHA2_HOLA = bytes.fromhex("a1c1e1e91bb6544ba7374b9c566d693e06ca070298acd10618c690389d88e120")


def test_native_scramble_matches_the_published_capture() -> None:
    assert mysqlwire.native_scramble(b"root", NATIVE_CHALLENGE) == NATIVE_ROOT


def test_caching_sha2_scramble_matches_the_published_capture() -> None:
    assert mysqlwire.sha2_scramble(b"hola", SHA2_CHALLENGE) == SHA2_HOLA


def test_native_scramble_passes_the_servers_check_of_the_documented_hash() -> None:
    """The MySQL 5.7 manual's PASSWORD('mypass') is *6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4, the
    SHA1(SHA1(password)) a server stores. The server checks a response as the protocol documentation
    says: SHA1(response XOR SHA1(nonce + stored)) == stored."""
    stored = bytes.fromhex("6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4")
    nonce = bytes(range(1, 21))
    response = mysqlwire.native_scramble(b"mypass", nonce)
    mask = hashlib.sha1(nonce + stored).digest()
    candidate = bytes(a ^ b for a, b in zip(response, mask, strict=True))
    assert hashlib.sha1(candidate).digest() == stored
    assert mysqlwire.native_scramble(b"not mypass", nonce) != response


def test_an_empty_password_is_an_empty_response() -> None:
    assert mysqlwire.native_scramble(b"", NATIVE_CHALLENGE) == b""
    assert mysqlwire.sha2_scramble(b"", SHA2_CHALLENGE) == b""


# --------------------------------------------------------------------------- addresses


def test_an_address_with_everything_percent_decoded() -> None:
    got = mysql.parse("mariadb://app:p%40ss%3Aw%2Fd@db.example.test:3307/my%20db?ssl-mode=required", {})
    assert (got.host, got.port, got.user, got.password, got.database) == (
        "db.example.test",
        3307,
        "app",
        "p@ss:w/d",
        "my db",
    )
    assert got.ssl_mode == "REQUIRED"
    assert mysql.secrets(got) == {"p@ss:w/d", "p%40ss%3Aw%2Fd"}
    assert "p@ss" not in repr(got)
    assert "p%40ss" not in repr(got)
    assert (
        mysql.describe(got) == "db.example.test:3307 database=my db login=yes user=app tls=REQUIRED query=no"
    )


def test_defaults_ipv6_and_the_block_winning(tls_files: tuple[ssl.SSLContext, Path]) -> None:
    got = mysql.parse("mysql://[::1]", {})
    assert (got.host, got.port, got.user, got.ssl_mode) == ("::1", 3306, None, "PREFERRED")
    assert mysql.describe(got) == "[::1]:3306 login=no tls=PREFERRED query=no"
    block = {"user": "u", "password": "a:b@c", "database": "d", "query": "SELECT 1", "ssl_mode": "verify_ca"}
    got = mysql.parse("mysql://x:y@h/other", {**block, "ca_file": str(tls_files[1])})
    assert (got.user, got.password, got.database, got.query, got.ssl_mode, got.ca_file) == (
        "u",
        "a:b@c",
        "d",
        "SELECT 1",
        "VERIFY_CA",
        str(tls_files[1]),
    )
    assert "a:b@c" in mysql.secrets(got)
    assert "y" in mysql.secrets(got)


@pytest.mark.parametrize(
    ("address", "block", "words"),
    [
        ("postgres://h", {}, "starts with mysql://"),
        ("mysql://:pw@h", {}, "a password needs a user"),
        ("mysql://h:0", {}, "port must be a number"),
        ("mysql://h:99999", {}, "port must be a number"),
        ("mysql://", {}, "no host"),
        ("mysql://h?sslmode=require", {}, "unknown option"),
        ("mysql://h?ssl-mode=sometimes", {}, "ssl-mode must be one of"),
        ("mysql://h?ssl-ca=/ca.pem", {}, "VERIFY_CA or VERIFY_IDENTITY"),
        ("mysql://h", {"query": "SELECT 1"}, "give a user"),
        ("mysql://u:%ff%fe@h", {}, "not UTF-8"),
        ("mysql://u%00x@h", {}, "NUL character"),
        ("mysql://u@h", {"password": "a\0b"}, "NUL character"),
        ("mysql://::1:3306", {}, "brackets"),
        ("mysql://[nope]:3306", {}, "not an IPv6 address"),
    ],
)
def test_bad_addresses_say_what_is_wrong_with_an_example(
    address: str, block: dict[str, str], words: str
) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        mysql.parse(address, block)
    assert "mysql://" in str(caught.value)
    assert "pw" not in str(caught.value).replace("password", "")


def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be used"):
        mysql.parse(f"mysql://h?ssl-mode=VERIFY_CA&ssl-ca={tmp_path / 'missing.pem'}", {})
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot be used"):
        mysql.parse("mysql://h", {"ssl_mode": "verify_identity", "ca_file": str(tmp_path / "junk.pem")})


def test_a_bad_address_never_shows_the_password() -> None:
    with pytest.raises(ValueError, match="port") as caught:
        mysql.parse("mysql://app:Hunter2Secret@h:70000", {})
    assert "Hunter2Secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "ready"),
    [
        (None, False),
        (b"", False),
        (b"0", False),
        (b"0.000", False),
        (b"-0", False),
        (b"false", False),
        (b"FALSE", False),
        (b"\0", False),
        (b"1", True),
        (b"42", True),
        (b"t", True),
        (b"yes", True),
        (b"\x01", True),
    ],
)
def test_which_first_values_mean_ready(value: bytes | None, ready: bool) -> None:
    assert mysqlwire.truthy(value) is ready


# --------------------------------------------------------------------------- scripted servers

NONCE = bytes(range(0x21, 0x21 + 20))  # printable, no NUL, as servers send
SERVER_CAPS = (
    mysqlwire.LONG_PASSWORD
    | mysqlwire.CONNECT_WITH_DB
    | mysqlwire.PROTOCOL_41
    | mysqlwire.TRANSACTIONS
    | mysqlwire.SECURE_CONNECTION
    | mysqlwire.PLUGIN_AUTH
    | mysqlwire.PLUGIN_AUTH_LENENC
)
OK = b"\x00\x00\x00\x02\x00\x00\x00"


def packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def greeting(
    plugin: bytes = b"caching_sha2_password", caps: int = SERVER_CAPS, nonce: bytes = NONCE
) -> bytes:
    return (
        b"\x0a8.0.36\0"
        + (7).to_bytes(4, "little")
        + nonce[:8]
        + b"\0"
        + (caps & 0xFFFF).to_bytes(2, "little")
        + bytes([255])
        + b"\x02\x00"
        + (caps >> 16).to_bytes(2, "little")
        + bytes([21])
        + bytes(10)
        + nonce[8:]
        + b"\0"
        + plugin
        + b"\0"
    )


class Peer:
    """The server end of a socketpair, with helpers to read the client's packets."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(5)

    def recv_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def read(self) -> tuple[int, bytes]:
        header = self.recv_exact(4)
        return header[3], self.recv_exact(int.from_bytes(header[:3], "little"))

    def send(self, seq: int, payload: bytes) -> None:
        self.sock.sendall(packet(seq, payload))


def converse(
    script: Callable[[Peer], None], target: mysql.Settings, bound: float = 3.0
) -> tuple[str | None, list[BaseException]]:
    """Runs the client against `script`; returns the NotReady reason (None: ready) and the script's errors."""
    client, server = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            script(Peer(server))
        except BaseException as error:  # reported to the test, which asserts on it
            errors.append(error)
        finally:
            server.close()

    thread = threading.Thread(target=serve)
    thread.start()
    wire = Wire(client, time.monotonic() + bound, bound)
    try:
        mysql.converse(wire, target)
        reason = None
    except NotReady as error:
        reason = str(error)
    finally:
        wire.close()
        thread.join(10)
    return reason, errors


def login_fields(payload: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(flags, user, auth response, plugin) of a HandshakeResponse41 with lenenc auth data."""
    flags = int.from_bytes(payload[:4], "little")
    rest = payload[32:]
    user, _, rest = rest.partition(b"\0")
    size = rest[0]
    auth, rest = rest[1 : 1 + size], rest[1 + size :]
    if flags & mysqlwire.CONNECT_WITH_DB:
        _, _, rest = rest.partition(b"\0")
    plugin = rest.partition(b"\0")[0]
    return flags, user, auth, plugin


USER = mysql.Settings("127.0.0.1", 3306, user="app", password="hola")


def test_caching_sha2_fast_path_then_a_query_then_com_quit() -> None:
    seen: list[bytes] = []

    def script(peer: Peer) -> None:
        peer.send(0, greeting())
        seq, login = peer.read()
        _flags, user, auth, plugin = login_fields(login)
        assert (seq, user, plugin) == (1, b"app", b"caching_sha2_password")
        assert auth == mysqlwire.sha2_scramble(b"hola", NONCE)
        peer.send(2, b"\x01\x03")  # fast authentication succeeded
        peer.send(3, OK)
        seq, query = peer.read()
        assert (seq, query) == (0, b"\x03SELECT 1")
        peer.send(1, b"\x01")  # one column
        peer.send(2, b"\x03def\0\0\0\x011\0\x0c\x3f\0\x01\0\0\0\x08\x81\0\0\0\0")
        peer.send(3, b"\xfe\0\0\x02\0")
        peer.send(4, b"\x011")
        peer.send(5, b"\xfe\0\0\x02\0")
        seen.append(peer.read()[1])

    reason, errors = converse(script, mysql.Settings("127.0.0.1", 3306, "app", "hola", query="SELECT 1"))
    assert (reason, errors) == (None, [])
    assert seen == [b"\x01"]  # COM_QUIT


def test_an_auth_switch_to_native_is_answered_with_the_new_nonce() -> None:
    fresh = bytes(range(0x41, 0x41 + 20))

    def script(peer: Peer) -> None:
        peer.send(0, greeting())
        peer.read()
        peer.send(2, b"\xfemysql_native_password\0" + fresh + b"\0")
        seq, answer = peer.read()
        assert (seq, answer) == (3, mysqlwire.native_scramble(b"hola", fresh))
        peer.send(4, OK)
        peer.read()

    assert converse(script, USER) == (None, [])


def test_full_caching_sha2_authentication_without_tls_names_tls() -> None:
    def script(peer: Peer) -> None:
        peer.send(0, greeting())
        peer.read()
        peer.send(2, b"\x01\x04")
        with pytest.raises(EOFError):
            peer.read()  # the password is never sent in the clear

    reason, errors = converse(script, USER)
    assert reason is not None
    assert "needs TLS" in reason
    assert "RSA" in reason
    assert errors == []


@pytest.fixture(scope="module")
def tls_files() -> Iterator[tuple[ssl.SSLContext, Path]]:
    authority = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        ca = Path(folder) / "ca.pem"
        authority.cert_pem.write_to_path(str(ca))
        yield server, ca


def test_full_caching_sha2_authentication_over_tls_sends_the_password(
    tls_files: tuple[ssl.SSLContext, Path],
) -> None:
    server_context, ca = tls_files
    got: list[bytes] = []

    def script(peer: Peer) -> None:
        peer.send(0, greeting(caps=SERVER_CAPS | mysqlwire.SSL))
        seq, request = peer.read()
        assert seq == 1
        assert len(request) == 32
        assert int.from_bytes(request[:4], "little") & mysqlwire.SSL
        peer.sock = server_context.wrap_socket(peer.sock, server_side=True)
        seq, _login = peer.read()
        assert seq == 2
        peer.send(3, b"\x01\x04")  # not in the cache: full authentication
        got.append(peer.read()[1])
        peer.send(5, OK)
        peer.read()

    target = mysql.Settings("localhost", 3306, "app", "hola", ssl_mode="VERIFY_IDENTITY", ca_file=str(ca))
    assert converse(script, target) == (None, [])
    assert got == [b"hola\0"]


def test_verify_identity_refuses_a_certificate_for_another_name(
    tls_files: tuple[ssl.SSLContext, Path],
) -> None:
    server_context, ca = tls_files

    def script(peer: Peer) -> None:
        peer.send(0, greeting(caps=SERVER_CAPS | mysqlwire.SSL))
        peer.read()
        with pytest.raises(ssl.SSLError):
            server_context.wrap_socket(peer.sock, server_side=True)

    target = mysql.Settings("db.other.test", 3306, "app", "hola", ssl_mode="VERIFY_IDENTITY", ca_file=str(ca))
    reason, _ = converse(script, target)
    assert reason is not None
    assert reason.startswith("TLS failed")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"\xfeclient_ed25519\0abc", "the authentication plugin client_ed25519; portpatrol speaks"),
        (b"\xfe", "pre-4.1 password scheme"),
        (b"\xff\x15\x04#28000Access denied for user 'app'@'localhost'", "login failed: Access denied"),
        (b"\x01\x09", "unknown caching_sha2_password step"),
        (b"\x07", "unexpected packet (0x07)"),
    ],
)
def test_login_answers_that_are_not_ready(answer: bytes, words: str) -> None:
    def script(peer: Peer) -> None:
        peer.send(0, greeting())
        peer.read()
        peer.send(2, answer)
        with contextlib.suppress(EOFError, OSError):
            peer.read()

    reason, errors = converse(script, USER)
    assert reason is not None
    assert words in reason
    assert "hola" not in reason
    assert errors == []


def test_an_endless_auth_switch_loop_ends() -> None:
    def script(peer: Peer) -> None:
        peer.send(0, greeting())
        try:
            while True:
                seq, _ = peer.read()
                peer.send(seq + 1, b"\xfemysql_native_password\0" + NONCE + b"\0")
        except (EOFError, OSError):
            pass

    reason, _ = converse(script, USER)
    assert reason == f"the login did not end within {mysqlwire.MAX_AUTH_STEPS} steps"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"\xff\x10\x04Too many connections", "Too many connections (error 1040)"),
        (b"\xff\x69\x04Host '10.0.0.9' is blocked because of many connection errors", "(error 1129)"),
        (b"\x09old", "protocol 9, expected 10"),
        (b"", "empty greeting"),
        (b"\x0a5.0\0\x01\0\0\0abcdefgh\0\x00\x00", "pre-4.1 protocol"),
        (b"\x0a8.0\0\x01\0", "too short for the greeting"),
    ],
)
def test_greetings_that_are_not_ready(payload: bytes, words: str) -> None:
    reason, errors = converse(lambda peer: peer.send(0, payload), mysql.Settings("h", 3306))
    assert reason is not None
    assert words in reason
    assert errors == []


def test_a_greeting_alone_is_ready_without_a_user() -> None:
    assert converse(lambda peer: peer.send(0, greeting()), mysql.Settings("h", 3306)) == (None, [])


def test_required_tls_from_a_server_without_it() -> None:
    reason, _ = converse(
        lambda peer: peer.send(0, greeting()), mysql.Settings("h", 3306, ssl_mode="REQUIRED")
    )
    assert reason == "the server does not offer TLS (ssl-mode REQUIRED)"


def test_an_absurd_length_is_refused_before_it_is_read() -> None:
    reason, _ = converse(lambda peer: peer.sock.sendall(b"\xff\xff\xff\x00"), mysql.Settings("h", 3306))
    assert (
        reason
        == f"the server sent a packet of 16777215 bytes during the greeting (limit {mysqlwire.MAX_PACKET})"
    )


def _query_script(rows: list[bytes]) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        peer.send(0, greeting(b"mysql_native_password"))
        peer.read()
        peer.send(2, OK)
        peer.read()
        for seq, payload in enumerate(rows, start=1):
            peer.send(seq, payload)
        with contextlib.suppress(EOFError, OSError):
            peer.read()

    return script


COLUMN = b"\x03def\0\0\0\x01v\0\x0c\x3f\0\x01\0\0\0\x08\x81\0\0\0\0"
EOF = b"\xfe\0\0\x02\0"


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([b"\x01", COLUMN, EOF, b"\x011", EOF], None),
        ([b"\x01", COLUMN, EOF, b"\x04true", EOF], None),
        ([b"\x01", COLUMN, EOF, b"\x010", EOF], "the query returned 0"),
        ([b"\x01", COLUMN, EOF, b"\xfb", EOF], "the query returned NULL"),
        ([b"\x01", COLUMN, EOF, b"\x00", EOF], "the query returned an empty value"),
        ([b"\x01", COLUMN, EOF, EOF], "the query returned no rows"),
        (
            [b"\xff\x7a\x04#42S02Table 'x' doesn't exist"],
            "the query failed: Table 'x' doesn't exist (error 1146)",
        ),
        ([b"\x00\x00\x00\x02\x00\x00\x00"], "the query returned no result set (use a SELECT)"),
        ([b"\xfb/etc/passwd"], "the server asked for a local file, which portpatrol never sends"),
        ([b"\xfe" + (1 << 40).to_bytes(8, "little")], "the server announced 1099511627776 columns"),
        ([b"\x01", COLUMN, b"\x011"], "the server did not end the query's columns"),
    ],
)
def test_query_results(rows: list[bytes], reason: str | None) -> None:
    target = mysql.Settings("h", 3306, "app", "", query="SELECT v")
    assert converse(_query_script(rows), target) == (reason, [])


# --------------------------------------------------------------------------- arbitrary bytes


def _feed(data: bytes, target: mysql.Settings) -> None:
    """Any bytes from a server, then its close: ready or NotReady, nothing else, within the bound."""
    client, server = socket.socketpair()

    def write() -> None:
        server.sendall(data)
        server.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write)
    writer.start()
    started = time.monotonic()
    wire = Wire(client, started + 2.0, 2.0)
    try:
        mysql.converse(wire, target)
    except NotReady:
        pass
    finally:
        wire.close()
        writer.join(10)
        server.close()
    assert time.monotonic() - started < 4.0


TARGETS = st.sampled_from(
    [
        mysql.Settings("h", 3306),
        mysql.Settings("h", 3306, ssl_mode="REQUIRED"),
        mysql.Settings("h", 3306, "app", "pw", "db", "SELECT 1"),
        mysql.Settings("h", 3306, "app", "", query="SELECT 1", ssl_mode="DISABLED"),
    ]
)
PACKETS = st.lists(
    st.builds(packet, st.integers(0, 255), st.binary(max_size=64)),
    max_size=12,
).map(b"".join)
PAYLOAD_STARTS = st.sampled_from([b"\x00", b"\x01", b"\x01\x03", b"\x01\x04", b"\xfe", b"\xff", b"\xfb", b""])
SHAPED = st.lists(
    st.builds(
        lambda seq, head, tail: packet(seq, head + tail),
        st.integers(0, 255),
        PAYLOAD_STARTS,
        st.binary(max_size=40),
    ),
    max_size=12,
).map(b"".join)
GREETINGS = st.builds(
    greeting,
    st.sampled_from([b"caching_sha2_password", b"mysql_native_password", b"client_ed25519", b""]),
    st.one_of(
        st.sampled_from(
            [SERVER_CAPS, SERVER_CAPS & ~mysqlwire.PLUGIN_AUTH_LENENC, SERVER_CAPS & ~mysqlwire.PLUGIN_AUTH]
        ),
        st.integers(0, 0xFFFFFFFF),
    ),
    st.binary(min_size=20, max_size=20),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), TARGETS)
def test_arbitrary_bytes_give_only_not_ready(data: bytes, target: mysql.Settings) -> None:
    _feed(data, target)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(GREETINGS, st.one_of(PACKETS, SHAPED), TARGETS)
def test_a_greeting_then_arbitrary_packets_give_only_not_ready(
    hello: bytes, rest: bytes, target: mysql.Settings
) -> None:
    _feed(packet(0, hello) + rest, target)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_greetings_parse_or_are_not_ready(payload: bytes) -> None:
    with contextlib.suppress(NotReady):
        mysqlwire.parse_greeting(payload)


def test_a_server_that_stops_after_the_first_row_does_not_hold_the_answer_to_the_deadline() -> None:
    target = mysql.Settings("h", 3306, "app", "", query="SELECT v")
    started = time.monotonic()
    assert converse(_query_script([b"\x01", COLUMN, EOF, b"\x011"]), target, bound=10.0) == (None, [])
    assert time.monotonic() - started < 5.0  # the rest is waited for a second, not the 10 s bound
