"""amqp: ready when a RabbitMQ (or any AMQP 0-9-1 broker) answers.

Without credentials the protocol header must get Connection.Start; with them the connection must open
(PLAIN, Tune, Open of the vhost) and is then closed cleanly. Only the connection class of AMQP 0-9-1 is
spoken, over channel 0; every frame is checked against a size limit and its end octet, every length in a
method against what is left of it, so whatever a peer sends ends in NotReady, never another exception."""

from __future__ import annotations

import struct
import time
from contextlib import suppress
from dataclasses import dataclass, field

from portpatrol.errors import BadValue, NotReady

TYPE_CHECKING = False  # typing and collections.abc are for mypy only: a kind loads at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.wire import Wire

_VAR = " `${VAR}` and `${VAR:-default}` are replaced from the environment when the file is loaded."
NAME = "amqp"
SCHEMES = ("amqp", "amqps")
DEFAULT_PORT = 5672
TLS_PORT = 5671
SCHEMA: dict[str, Any] = {
    "description": "Settings of an AMQP 0-9-1 target (RabbitMQ); an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"user": "app", "password": "${RABBITMQ_PASSWORD}", "vhost": "orders"}],
    "properties": {
        "user": {
            "description": "User to log in as, PLAIN (like AMQP_USER); replaces the address's." + _VAR,
            "type": "string",
            "examples": ["app"],
        },
        "password": {
            "description": (
                "Password of that user (like AMQP_PASSWORD); replaces the address's; never shown." + _VAR
            ),
            "type": "string",
            "examples": ["${RABBITMQ_PASSWORD}"],
        },
        "vhost": {
            "description": (
                "Virtual host to open, as is, not percent-encoded (like AMQP_VHOST); replaces the "
                "address's path." + _VAR
            ),
            "type": "string",
            "examples": ["/", "orders"],
        },
        "ca_file": {
            "description": "PEM bundle to trust instead of the system's (amqps://)." + _VAR,
            "type": "string",
            "default": "",
            "examples": ["/etc/ssl/rabbitmq-ca.pem"],
        },
        "skip_tls_verify": {
            "description": "Do not verify the server's certificate (amqps://).",
            "type": "boolean",
            "default": False,
            "examples": [True],
        },
    },
}
ENV = {
    "AMQP_USER": "user",
    "AMQP_PASSWORD": "password",
    "AMQP_VHOST": "vhost",
    "AMQP_CA_FILE": "ca_file",
    "AMQP_SKIP_TLS_VERIFY": "skip_tls_verify",
}
SECRET_KEYS = frozenset({"password"})

EXAMPLE = "(e.g. amqp://guest:guest@localhost:5672/%2F)"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
FRAME_MIN = 4096  # the smallest frame-max a peer may ask for (AMQP 0-9-1, 4.2.3)
FRAME_MAX = 128 * 1024  # frames larger than this are refused, before Tune and after
CHANNEL_MAX = 2047  # ours when the server sets no limit; only channel 0 is ever used
TABLE_DEPTH = 16  # nested tables and arrays: deeper is an attack on the stack, not server properties
CLOSE_WAIT = 1.0  # seconds to wait for Close-Ok once ready: readiness is known, only politeness is left

METHODS = {
    (10, 10): "Connection.Start",
    (10, 11): "Connection.Start-Ok",
    (10, 20): "Connection.Secure",
    (10, 30): "Connection.Tune",
    (10, 31): "Connection.Tune-Ok",
    (10, 40): "Connection.Open",
    (10, 41): "Connection.Open-Ok",
    (10, 50): "Connection.Close",
    (10, 51): "Connection.Close-Ok",
    (10, 60): "Connection.Blocked",
    (10, 61): "Connection.Unblocked",
}
START, START_OK, TUNE, TUNE_OK, OPEN, OPEN_OK, CLOSE, CLOSE_OK = (
    (10, 10), (10, 11), (10, 30), (10, 31), (10, 40), (10, 41), (10, 50), (10, 51)
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    vhost: str
    tls: bool = False
    user: str | None = None  # None: no login, only the protocol header
    password: str = field(default="", repr=False)
    ca_file: str | None = None
    verify: bool = True


# --------------------------------------------------------------------------- address and block


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    from urllib.parse import urlsplit

    from portpatrol.address import split_netloc
    from portpatrol.values import parse_bool

    try:
        parts = urlsplit(address)
    except ValueError as error:
        raise ValueError(f"not an AMQP address: {error} {EXAMPLE}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"an AMQP address starts with amqp:// or amqps:// {EXAMPLE}")
    if parts.fragment:
        raise ValueError(f"an AMQP address has no #fragment {EXAMPLE}")
    userinfo, host, port = split_netloc(parts.netloc, EXAMPLE)
    tls = scheme == "amqps"
    user: str | None = None
    password = ""
    if userinfo:
        raw_user, _, raw_password = userinfo.partition(":")
        user, password = _decoded(raw_user, "user"), _decoded(raw_password, "password")
    user = block.get("user", user)
    password = block.get("password", password)
    if not user and password:
        raise ValueError(f"a password needs a user {EXAMPLE}")
    if "\0" in f"{user}{password}":
        raise ValueError("user and password cannot hold a NUL character (PLAIN separates them with it)")
    vhost = block["vhost"] if "vhost" in block else _vhost(parts.path)
    if len(vhost.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError(f"a vhost name is at most 255 bytes {EXAMPLE}")
    skip = block.get("skip_tls_verify", False)
    if isinstance(skip, str):
        try:
            skip = parse_bool(skip.strip().lower())
        except ValueError:
            raise BadValue(("skip_tls_verify",), "not true or false (e.g. true)") from None
    ca_file = block.get("ca_file") or None
    if not tls and (skip or ca_file):
        key = "ca_file" if ca_file else "skip_tls_verify"
        raise BadValue((key,), "applies to amqps:// only (e.g. amqps://broker/)")
    if ca_file is not None:
        from portpatrol.tls import shared

        shared(not skip, ca_file, checking=True)
    default = TLS_PORT if tls else DEFAULT_PORT
    return Settings(host, port or default, vhost, tls, user or None, password, ca_file, not skip)


def _vhost(path: str) -> str:
    """The vhost of the RabbitMQ URI spec: no path is the default vhost `/`, a bare `/` is the empty
    vhost, and the rest is one percent-decoded segment (`/%2F` is `/`; an unencoded `/` is an error)."""
    if not path:
        return "/"
    segment = path[1:]
    if "/" in segment:
        raise ValueError(f"a / inside a vhost name is written %2F {EXAMPLE}")
    return _decoded(segment, "vhost")


def _decoded(text: str, what: str) -> str:
    """Percent-decoded as the RabbitMQ URI spec says, the result UTF-8 like every AMQP string."""
    from urllib.parse import unquote

    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"the {what} is not UTF-8 once percent-decoded {EXAMPLE}") from None


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset({settings.password} - {""})


def describe(settings: Settings) -> str:
    from portpatrol.text import printable

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    vhost = printable(settings.vhost) if settings.vhost else '""'
    tls = "off"
    if settings.tls:
        tls = "verify" if settings.verify else "skip-verify"
        tls += f" ca_file={printable(settings.ca_file)}" if settings.ca_file else ""
    login = "no" if settings.user is None else f"yes user={printable(settings.user)}"
    return f"{host}:{settings.port} vhost={vhost} login={login} tls={tls}"


# --------------------------------------------------------------------------- one attempt


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    import socket

    from portpatrol.checks.net import connect
    from portpatrol.wire import Wire

    wire = Wire(connect(settings.host, settings.port, deadline, bound, socket.socket), deadline, bound)
    try:
        if settings.tls:
            from portpatrol.tls import shared  # (ssl: only for TLS)

            wire.start_tls(shared(settings.verify, settings.ca_file), settings.host)
        converse(wire, settings)
    finally:
        wire.close()


def converse(wire: Wire, settings: Settings) -> None:
    """The whole conversation over a connected (and, for amqps, TLS) wire: returns when ready."""
    wire.send(PROTOCOL_HEADER)
    start = _expect(wire, START, FRAME_MAX, settings.password)
    major, minor = start.octet(), start.octet()
    start.table()  # server-properties: checked, not needed
    mechanisms = start.longstr().split()
    start.longstr()  # locales
    if (major, minor) != (0, 9):
        raise NotReady(f"the server speaks AMQP {major}-{minor}, not 0-9-1 (version mismatch)")
    if settings.user is None:
        return
    if b"PLAIN" not in mechanisms:
        offered = b" ".join(mechanisms).decode("ascii", "replace")
        raise NotReady(f"the server does not offer PLAIN login (it offers: {_peer(offered)})")
    response = b"\0" + settings.user.encode() + b"\0" + settings.password.encode()
    wire.send(
        _method(START_OK, CLIENT_PROPERTIES + _shortstr("PLAIN") + _longstr(response) + _shortstr("en_US"))
    )
    tune = _expect(wire, TUNE, FRAME_MAX, settings.password)
    channel_max, frame_max = tune.short(), tune.long()
    tune.short()  # the server's heartbeat: we ask for none, the connection lives for a moment
    if 0 < frame_max < FRAME_MIN:
        raise NotReady(f"the server asked for frames of at most {frame_max} bytes, below AMQP's {FRAME_MIN}")
    frame_max = min(frame_max or FRAME_MAX, FRAME_MAX)
    wire.send(
        _method(TUNE_OK, struct.pack(">HIH", min(channel_max or CHANNEL_MAX, CHANNEL_MAX), frame_max, 0))
    )
    wire.send(_method(OPEN, _shortstr(settings.vhost) + _shortstr("") + b"\0"))
    _expect(wire, OPEN_OK, frame_max, settings.password)
    _close(wire, frame_max)


def _close(wire: Wire, frame_max: int) -> None:
    """Closes the open connection as AMQP asks, briefly: the target is ready whatever happens here."""
    wire.deadline = min(wire.deadline, time.monotonic() + CLOSE_WAIT)
    with suppress(NotReady):
        wire.send(_method(CLOSE, struct.pack(">H", 200) + _shortstr("ready") + struct.pack(">HH", 0, 0)))
        while (answer := _next_method(wire, frame_max, "Connection.Close-Ok")[0]) != CLOSE_OK:
            if answer == CLOSE:  # both closed at once: answer theirs and be done
                wire.send(_method(CLOSE_OK, b""))
                return


# --------------------------------------------------------------------------- frames and methods


def _expect(wire: Wire, want: tuple[int, int], frame_max: int, password: str) -> Reader:
    """The next method, which must be `want`; the server's Connection.Close becomes its reason."""
    what = METHODS[want]
    method, reader = _next_method(wire, frame_max, what)
    if method == CLOSE:
        code, text = reader.short(), reader.shortstr()
        with suppress(NotReady):  # the reason is the server's, not whether it heard our goodbye
            wire.send(_method(CLOSE_OK, b""))
        if password:  # a broker never echoes it, but a reason must not show it even if one did
            text = text.replace(password, "***")
        raise NotReady(f"the server closed the connection: {code} {_peer(text)}")
    if method != want:
        name = METHODS.get(method, "method {}.{}".format(*method))
        raise NotReady(f"the server sent {name} instead of {what}")
    return reader


def _next_method(wire: Wire, frame_max: int, what: str) -> tuple[tuple[int, int], Reader]:
    """The next method frame on channel 0, skipping heartbeats."""
    while True:
        kind, channel, payload = read_frame(wire, frame_max, what)
        if kind == FRAME_HEARTBEAT:
            continue
        if kind != FRAME_METHOD:
            raise NotReady(f"the server sent a content frame (type {kind}) instead of {what}")
        if channel != 0:
            raise NotReady(f"the server sent a method on channel {channel} instead of {what}")
        reader = Reader(payload, what)
        return (reader.short(), reader.short()), reader


def read_frame(wire: Wire, frame_max: int, what: str) -> tuple[int, int, bytes]:
    """One frame (type, channel, payload) of at most `frame_max` bytes in all, end octet checked."""
    header = wire.exact(7, what)
    if header.startswith(b"AMQP"):  # the server's protocol header: it wants another version
        version = ".".join(str(b) for b in header[4:7] + wire.exact(1, what))
        raise NotReady(f"the server answered with its protocol header (AMQP {version}): version mismatch")
    if header[0] in (0x15, 0x16) and header[1] == 3:  # a TLS alert or handshake record
        raise NotReady("the server speaks TLS: use amqps://")
    kind, channel, size = struct.unpack(">BHI", header)
    if kind not in (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT):
        raise NotReady(f"the server does not speak AMQP: it sent {_peer(header)} instead of {what}")
    if size > frame_max - 8:
        raise NotReady(f"the server sent a frame of {size} bytes, more than {frame_max - 8}, during {what}")
    payload = wire.exact(size, what)
    if wire.exact(1, what)[0] != FRAME_END:
        raise NotReady(f"the server sent a frame without its end octet (0xCE) during {what}")
    return kind, channel, payload


class Reader:
    """Fields of one method's arguments; every length is checked against what is left."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.at = 0
        self.what = what

    def fail(self, detail: str) -> NotReady:
        return NotReady(f"the server sent a malformed {self.what}: {detail}")

    def take(self, size: int) -> bytes:
        if size > len(self.data) - self.at:
            raise self.fail(f"a field of {size} bytes runs past the end")
        self.at += size
        return self.data[self.at - size : self.at]

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def octet(self) -> int:
        return int(self.unpack(">B"))

    def short(self) -> int:
        return int(self.unpack(">H"))

    def long(self) -> int:
        return int(self.unpack(">I"))

    def shortstr(self) -> str:
        return self.take(self.octet()).decode("utf-8", "replace")

    def longstr(self) -> bytes:
        return self.take(self.long())

    def table(self, depth: int = 0) -> dict[str, object]:
        inner = Reader(self.longstr(), self.what)
        values: dict[str, object] = {}
        while inner.at < len(inner.data):
            name = inner.shortstr()
            values[name] = inner.value(depth + 1)
        return values

    def array(self, depth: int) -> list[object]:
        inner = Reader(self.longstr(), self.what)
        items: list[object] = []
        while inner.at < len(inner.data):
            items.append(inner.value(depth + 1))
        return items

    def value(self, depth: int) -> object:
        if depth > TABLE_DEPTH:
            raise self.fail(f"tables nested deeper than {TABLE_DEPTH}")
        tag = chr(self.octet())
        if tag in _FIXED:
            return self.unpack(_FIXED[tag])
        value: object
        match tag:
            case "t":
                value = self.octet() != 0
            case "D":  # decimal: a scale and an unscaled value, kept apart (no float rounding)
                value = (self.octet(), self.unpack(">i"))
            case "S":
                value = self.longstr().decode("utf-8", "replace")
            case "x":
                value = self.longstr()
            case "F":
                value = self.table(depth)
            case "A":
                value = self.array(depth)
            case "V":
                value = None
            case _:
                raise self.fail(f"unknown field type {_peer(tag)}")
        return value


# Field types with a fixed size: AMQP 0-9-1 with RabbitMQ's errata ('s' is a signed short there; the
# spec's 'U' and 'u' and 'L' are accepted too, so a table from either dialect parses).
_FIXED = {"b": ">b", "B": ">B", "s": ">h", "U": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "L": ">Q",
          "f": ">f", "d": ">d", "T": ">Q"}  # fmt: skip


def _peer(text: bytes | str) -> str:
    from portpatrol.wire import peer_text

    return peer_text(text)


def _shortstr(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return bytes([len(data)]) + data


def _longstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _method(method: tuple[int, int], arguments: bytes) -> bytes:
    payload = struct.pack(">HH", *method) + arguments
    return struct.pack(">BHI", FRAME_METHOD, 0, len(payload)) + payload + bytes([FRAME_END])


def _table(fields: Mapping[str, str | bool | Mapping[str, bool]]) -> bytes:
    out = b""
    for name, value in fields.items():
        if isinstance(value, bool):
            out += _shortstr(name) + b"t" + bytes([value])
        elif isinstance(value, str):
            out += _shortstr(name) + b"S" + _longstr(value.encode())
        else:
            out += _shortstr(name) + b"F" + _table(value)
    return _longstr(out)


# authentication_failure_close: RabbitMQ then says why a login failed (403 ACCESS_REFUSED) instead of
# dropping the connection without a word.
CLIENT_PROPERTIES = _table(
    {
        "product": "portpatrol",
        "information": "readiness check",
        "capabilities": {"authentication_failure_close": True},
    }
)
