"""The amqp kind without a broker: addresses (the RabbitMQ URI spec's vhost rules), the block, and the
AMQP 0-9-1 frames and field tables it reads, over a real socketpair. The frames the tests send are
encoded here from the spec, not with the module's own encoder, so a shared mistake cannot hide."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portpatrol import amqpwire
from portpatrol.errors import NotReady
from portpatrol.kinds import amqp
from portpatrol.wire import Wire

# --------------------------------------------------------------------------- encoding, from the spec


def shortstr(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return bytes([len(data)]) + data


def longstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def frame(payload: bytes, kind: int = 1, channel: int = 0, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes([end])


def method(class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    return frame(struct.pack(">HH", class_id, method_id) + arguments)


def start(
    mechanisms: bytes = b"AMQPLAIN PLAIN", properties: bytes = b"", version: bytes = b"\0\x09"
) -> bytes:
    return method(10, 10, version + longstr(properties) + longstr(mechanisms) + longstr(b"en_US"))


def tune(channel_max: int = 2047, frame_max: int = 131072, heartbeat: int = 60) -> bytes:
    return method(10, 30, struct.pack(">HIH", channel_max, frame_max, heartbeat))


OPEN_OK = method(10, 41, shortstr(""))
CLOSE_OK = method(10, 51)
HEARTBEAT = frame(b"", kind=8)


def close(code: int, text: str) -> bytes:
    return method(10, 50, struct.pack(">H", code) + shortstr(text) + struct.pack(">HH", 10, 40))


# --------------------------------------------------------------------------- a peer over a socketpair


class Peer:
    """The server's end of a socketpair, run by `script` in a thread; records what it read."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.client, self.server = socket.socketpair()
        self.elapsed = 0.0
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script: Callable[[socket.socket], None]) -> None:
        try:
            script(self.server)
        except OSError:
            pass  # the client hung up first: its side is what the test checks
        finally:
            self.server.close()

    def converse(self, target: amqp.Settings, bound: float = 2.0) -> None:
        """Runs the client's conversation, timed in `elapsed` (the peer may linger after)."""
        started = time.monotonic()
        try:
            amqp.converse(Wire(self.client, started + bound, bound), target)
        finally:
            self.elapsed = time.monotonic() - started
            self.client.close()
            self.thread.join(5)


def read_frame(sock: socket.socket) -> tuple[int, int, bytes]:
    """One frame the client sent: (class, method, arguments), the frame checked as the spec says."""
    header = recv_exact(sock, 7)
    kind, channel, size = struct.unpack(">BHI", header)
    payload = recv_exact(sock, size)
    assert (kind, channel, recv_exact(sock, 1)) == (1, 0, b"\xce")
    class_id, method_id = struct.unpack(">HH", payload[:4])
    return class_id, method_id, payload[4:]


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"the client closed after {data!r}"
        data += chunk
    return data


GUEST = amqp.parse("amqp://guest:guest@127.0.0.1/", {})
ANONYMOUS = amqp.parse("amqp://127.0.0.1", {})


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "vhost"),
    [
        ("amqp://host", "/"),  # no path: the default vhost
        ("amqp://host:5672", "/"),
        ("amqp://host/", ""),  # a bare slash: the empty vhost
        ("amqp://host/%2F", "/"),
        ("amqp://host/%2f", "/"),
        ("amqp://host/app", "app"),
        ("amqp://host/a%2Fb", "a/b"),
        ("amqp://host/caf%C3%A9", "café"),
        ("amqp://host/with%20space", "with space"),
        ("amqp://host/app?heartbeat=10", "app"),  # client tuning in the query does not matter to readiness
    ],
)
def test_vhost_follows_the_rabbitmq_uri_spec(address: str, vhost: str) -> None:
    assert amqp.parse(address, {}).vhost == vhost


def test_ports_credentials_and_tls_come_from_the_address() -> None:
    plain = amqp.parse("amqp://us%40er:p%3Aw%2F@broker", {})
    assert (plain.host, plain.port, plain.tls, plain.user, plain.password) == (
        "broker",
        5672,
        False,
        "us@er",
        "p:w/",
    )
    secure = amqp.parse("AMQPS://[::1]/", {})
    assert (secure.host, secure.port, secure.tls, secure.verify, secure.user) == (
        "::1",
        5671,
        True,
        True,
        None,
    )
    assert amqp.parse("amqp://u@h:1", {}).password == ""


def test_the_block_replaces_the_address_and_takes_strings_from_the_environment() -> None:
    target = amqp.parse(
        "amqps://u:p@h/v", {"user": "admin", "password": "s3:cr@t", "vhost": "%2F", "skip_tls_verify": "true"}
    )
    assert (target.user, target.password, target.vhost, target.verify) == ("admin", "s3:cr@t", "%2F", False)
    assert amqp.parse("amqps://h", {"skip_tls_verify": False}).verify
    assert set(amqp.ENV.values()) <= set(amqp.SCHEMA["properties"])


@pytest.mark.parametrize(
    ("address", "block", "words"),
    [
        ("http://h", {}, "amqp:// or amqps://"),
        ("amqp://", {}, "no host"),
        ("amqp://h:0", {}, "port"),
        ("amqp://h:x", {}, "port"),
        ("amqp://h/a/b", {}, "%2F"),
        ("amqp://h/%FF", {}, "not UTF-8"),
        ("amqp://h/#x", {}, "fragment"),
        ("amqp://:s3cret@h", {}, "needs a user"),
        ("amqp://u:s3cret%FF@h", {}, "not UTF-8"),
        ("amqp://u:s3cret%00@h", {}, "NUL"),
        ("amqp://u:s3cret@h", {"vhost": "v" * 256}, "255 bytes"),
        ("amqp://u:s3cret@h", {"skip_tls_verify": "maybe"}, "true or false"),
        ("amqp://u:s3cret@h", {"skip_tls_verify": True}, "amqps:// only"),
        ("amqps://u:s3cret@h", {"ca_file": "/nonexistent/ca.pem"}, "cannot be used"),
    ],
)
def test_bad_addresses_and_blocks_are_refused_with_an_example_and_no_secret(
    address: str, block: dict[str, object], words: str
) -> None:
    with pytest.raises(ValueError, match=words) as raised:
        amqp.parse(address, block)
    assert "s3cret" not in str(raised.value)


def test_describe_shows_the_plan_and_never_the_password() -> None:
    target = amqp.parse("amqps://guest:hunter2@[::1]:5999/", {"skip_tls_verify": True})
    assert amqp.describe(target) == '[::1]:5999 vhost="" login=yes user=guest tls=skip-verify'
    assert amqp.describe(ANONYMOUS) == "127.0.0.1:5672 vhost=/ login=no tls=off"
    verify = amqp.parse("amqps://h/%2F", {})
    assert amqp.describe(verify) == "h:5671 vhost=/ login=no tls=verify"
    assert "hunter2" not in repr(target)
    assert amqp.secrets(target) == {"hunter2"}
    assert amqp.secrets(ANONYMOUS) == frozenset()


# --------------------------------------------------------------------------- field tables


def reader(data: bytes) -> amqpwire.Reader:
    return amqpwire.Reader(data, "Connection.Start")


def test_every_field_type_is_read() -> None:
    fields = (
        shortstr("t") + b"t\x01"
        + shortstr("b") + b"b\xff"
        + shortstr("B") + b"B\xff"
        + shortstr("s") + b"s\xff\xfe"
        + shortstr("u") + b"u\xff\xfe"
        + shortstr("I") + b"I" + struct.pack(">i", -5)
        + shortstr("i") + b"i" + struct.pack(">I", 2**32 - 1)
        + shortstr("l") + b"l" + struct.pack(">q", -(2**40))
        + shortstr("f") + b"f" + struct.pack(">f", 1.5)
        + shortstr("d") + b"d" + struct.pack(">d", -2.25)
        + shortstr("D") + b"D\x02" + struct.pack(">i", 12345)
        + shortstr("T") + b"T" + struct.pack(">Q", 1_700_000_000)
        + shortstr("V") + b"V"
        + shortstr("S") + b"S" + longstr("RabbitMQ é".encode())
        + shortstr("x") + b"x" + longstr(b"\x00\xff")
        + shortstr("A") + b"A" + longstr(b"I" + struct.pack(">i", 7) + b"S" + longstr(b"seven") + b"V")
        + shortstr("F") + b"F" + longstr(shortstr("publisher_confirms") + b"t\x01")
    )  # fmt: skip
    assert reader(longstr(fields)).table() == {
        "t": True,
        "b": -1,
        "B": 255,
        "s": -2,
        "u": 65534,
        "I": -5,
        "i": 2**32 - 1,
        "l": -(2**40),
        "f": 1.5,
        "d": -2.25,
        "D": (2, 12345),
        "T": 1_700_000_000,
        "V": None,
        "S": "RabbitMQ é",
        "x": b"\x00\xff",
        "A": [7, "seven", None],
        "F": {"publisher_confirms": True},
    }


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "runs past the end"),
        (struct.pack(">I", 10) + b"abc", "a field of 10 bytes runs past the end"),
        (longstr(shortstr("k") + b"Z"), "unknown field type Z"),
        (longstr(shortstr("k") + b"S" + struct.pack(">I", 2**32 - 1)), "runs past the end"),
        (longstr(shortstr("k") + b"I\x00\x01"), "runs past the end"),  # a value cut by its table's end
        (longstr(b"\x05ab"), "runs past the end"),  # a name longer than what is left
        (longstr(shortstr("k") + b"A" + longstr(b"Q")), "unknown field type Q"),
    ],
)
def test_malformed_tables_are_named(data: bytes, words: str) -> None:
    with pytest.raises(NotReady, match=f"malformed Connection.Start: .*{words}"):
        reader(data).table()


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    table = longstr(b"")
    for _ in range(5000):
        table = longstr(shortstr("k") + b"F" + table)
    with pytest.raises(NotReady, match="nested deeper than 16"):
        reader(table).table()
    nested = longstr(b"")
    for _ in range(16):
        nested = longstr(shortstr("k") + b"F" + nested)
    assert reader(nested).table()  # as deep as allowed


# --------------------------------------------------------------------------- conversations


def test_without_credentials_connection_start_is_ready() -> None:
    def broker(sock: socket.socket) -> None:
        assert recv_exact(sock, 8) == b"AMQP\x00\x00\x09\x01"
        sock.sendall(start(properties=shortstr("product") + b"S" + longstr(b"RabbitMQ")))
        assert sock.recv(1) == b""  # and the client says nothing more

    peer = Peer(broker)
    peer.converse(ANONYMOUS)
    assert peer.elapsed < 2


def test_with_credentials_the_connection_opens_and_closes() -> None:
    seen: list[tuple[int, int, bytes]] = []
    target = amqp.parse("amqp://us%C3%A9r:p%40ss@127.0.0.1/a%2Fb", {})

    def broker(sock: socket.socket) -> None:
        recv_exact(sock, 8)
        sock.sendall(HEARTBEAT + start() + HEARTBEAT)
        seen.append(read_frame(sock))  # Start-Ok
        sock.sendall(tune(channel_max=0, frame_max=1_000_000, heartbeat=60))
        seen.append(read_frame(sock))  # Tune-Ok
        seen.append(read_frame(sock))  # Open
        sock.sendall(OPEN_OK)
        seen.append(read_frame(sock))  # Close
        sock.sendall(CLOSE_OK)

    Peer(broker).converse(target)
    assert [(c, m) for c, m, _ in seen] == [(10, 11), (10, 31), (10, 40), (10, 50)]
    start_ok = amqpwire.Reader(seen[0][2], "Start-Ok")
    properties = start_ok.table()
    assert properties["product"] == "portpatrol"
    assert properties["capabilities"] == {"authentication_failure_close": True}
    assert (start_ok.shortstr(), start_ok.longstr()) == ("PLAIN", "\0usér\0p@ss".encode())
    # channel-max 0 (no limit) and a frame-max above ours become our limits; no heartbeat
    assert struct.unpack(">HIH", seen[1][2]) == (2047, 131072, 0)
    assert seen[2][2] == shortstr("a/b") + shortstr("") + b"\x00"
    assert struct.unpack(">H", seen[3][2][:2]) == (200,)


def test_the_servers_limits_are_accepted_when_below_ours() -> None:
    seen: list[tuple[int, int, bytes]] = []

    def broker(sock: socket.socket) -> None:
        recv_exact(sock, 8)
        sock.sendall(start())
        read_frame(sock)
        sock.sendall(tune(channel_max=16, frame_max=4096, heartbeat=0))
        seen.append(read_frame(sock))
        read_frame(sock)
        sock.sendall(OPEN_OK)  # and never answers the Close: ready all the same, within CLOSE_WAIT
        sock.recv(100)
        time.sleep(3)

    peer = Peer(broker)
    peer.converse(GUEST, bound=10)
    assert peer.elapsed < 1 + amqp.CLOSE_WAIT
    assert struct.unpack(">HIH", seen[0][2]) == (16, 4096, 0)


def after_start_ok(reply: bytes) -> Callable[[socket.socket], None]:
    def broker(sock: socket.socket) -> None:
        recv_exact(sock, 8)
        sock.sendall(start())
        read_frame(sock)
        sock.sendall(reply)
        time.sleep(0.2)

    return broker


@pytest.mark.parametrize(
    ("target", "script", "reason"),
    [
        (
            GUEST,
            after_start_ok(
                close(403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN")
            ),
            "the server closed the connection: 403 ACCESS_REFUSED - Login was refused",
        ),
        (
            amqp.parse("amqp://u:hunter2@h", {}),
            after_start_ok(close(403, "password hunter2 is wrong\x1b[2J")),
            r"403 password \*\*\* is wrong\\u001b\[2J$",
        ),
        (GUEST, after_start_ok(tune(frame_max=100)), "frames of at most 100 bytes, below AMQP's 4096"),
        (GUEST, after_start_ok(method(10, 20, longstr(b"challenge"))), "sent Connection.Secure instead of"),
        (GUEST, after_start_ok(method(60, 40)), "sent method 60.40 instead of Connection.Tune"),
        (GUEST, after_start_ok(frame(b"x", kind=3)), "a content frame .type 3. instead of Connection.Tune"),
        (GUEST, after_start_ok(method(10, 30)[:1] + b"\x00\x01" + method(10, 30)[3:]), "on channel 1"),
        (GUEST, after_start_ok(b""), "the server closed the connection during Connection.Tune"),
        (GUEST, after_start_ok(tune()[:9]), "the server closed the connection during Connection.Tune"),
        (GUEST, after_start_ok(tune(heartbeat=0)[:-1] + b"\x00"), "without its end octet .0xCE."),
        (
            GUEST,
            after_start_ok(method(10, 30, b"\x00")),
            "malformed Connection.Tune: a field of 2 bytes runs past the end",
        ),
    ],
)
def test_each_failure_after_the_login_is_named(
    target: amqp.Settings, script: Callable[[socket.socket], None], reason: str
) -> None:
    peer = Peer(script)
    with pytest.raises(NotReady, match=reason):
        peer.converse(target)


def replies(data: bytes, then_wait: float = 0.0) -> Callable[[socket.socket], None]:
    def broker(sock: socket.socket) -> None:
        recv_exact(sock, 8)
        sock.sendall(data)
        time.sleep(then_wait)

    return broker


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (replies(b"AMQP\x00\x00\x09\x00"), r"its protocol header \(AMQP 0.0.9.0\): version mismatch"),
        (replies(b"AMQP\x01\x01\x00\x0a"), r"its protocol header \(AMQP 1.1.0.10\): version mismatch"),
        (replies(start(version=b"\x00\x08")), "speaks AMQP 0-8, not 0-9-1"),
        (replies(b"HTTP/1.1 400 Bad Request\r\n\r\n"), "does not speak AMQP: it sent HTTP/1"),
        (replies(b"\x15\x03\x01\x00\x02\x02\x0a"), "the server speaks TLS: use amqps://"),
        (replies(b"\x01\x00\x00\xff\xff\xff\xff"), "a frame of 4294967295 bytes, more than 131064"),
        (replies(frame(b"\x00" * 200_000)), "a frame of 200000 bytes"),
        (replies(start()[:20], then_wait=3), r"no answer within 1s \(Connection.Start\)"),
        (replies(b"", then_wait=3), r"no answer within 1s \(Connection.Start\)"),
        (replies(start()[:20]), "the server closed the connection during Connection.Start"),
        (replies(close(541, "INTERNAL_ERROR")), "the server closed the connection: 541 INTERNAL_ERROR"),
        (replies(OPEN_OK), "sent Connection.Open-Ok instead of Connection.Start"),
    ],
)
def test_each_failure_before_the_login_is_named_and_bounded(
    script: Callable[[socket.socket], None], reason: str
) -> None:
    peer = Peer(script)
    with pytest.raises(NotReady, match=reason):
        peer.converse(ANONYMOUS, bound=1.0)
    assert peer.elapsed < 3


def test_a_server_without_plain_is_named() -> None:
    with pytest.raises(NotReady, match=r"does not offer PLAIN login \(it offers: EXTERNAL AMQPLAIN\)"):
        Peer(replies(start(mechanisms=b"EXTERNAL AMQPLAIN"))).converse(GUEST)


# --------------------------------------------------------------------------- any bytes at all


def feed(data: bytes, target: amqp.Settings) -> None:
    """Whatever `data` is, the conversation returns or raises NotReady, within its bound."""

    def broker(sock: socket.socket) -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # read what the client says until it hangs up
            pass

    peer, reason = Peer(broker), "ready"
    try:
        peer.converse(target, bound=2.0)
    except NotReady as error:
        reason = str(error)
    assert reason
    assert peer.elapsed < 4


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.booleans())
def test_arbitrary_bytes_give_only_not_ready(data: bytes, login: bool) -> None:
    feed(data, GUEST if login else ANONYMOUS)


pieces = st.one_of(
    st.sampled_from(
        [start(), tune(), OPEN_OK, CLOSE_OK, HEARTBEAT, close(403, "ACCESS_REFUSED"), tune(0, 0, 0)]
    ),
    st.binary(max_size=40).map(lambda args: method(10, 10, args)),  # a Start with arguments of any shape
    st.binary(max_size=40).map(lambda args: method(10, 30, args)),
    st.binary(max_size=60).map(lambda table: start(properties=table)),
    st.binary(max_size=20),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pieces, max_size=6), st.booleans())
def test_frames_near_valid_give_only_ready_or_not_ready(frames: list[bytes], login: bool) -> None:
    feed(b"".join(frames), GUEST if login else ANONYMOUS)
