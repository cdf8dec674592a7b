"""AMQP 0-9-1, the connection class a readiness check speaks over channel 0: frames (read with a
size limit and their end octet checked), method arguments read and written (short and long strings,
field tables), the methods' ids and names, and the client properties portpatrol sends.
Every length in a method is checked against what is left of it, so whatever a peer sends ends in
NotReady, never another exception. What to say and when is portpatrol.kinds.amqp's."""

from __future__ import annotations

import struct
from contextlib import suppress

from portpatrol.errors import NotReady

TYPE_CHECKING = False  # typing and collections.abc are for mypy only: the kind loads this at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.wire import Wire

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
FRAME_MIN = 4096  # the smallest frame-max a peer may ask for (AMQP 0-9-1, 4.2.3)
FRAME_MAX = 128 * 1024  # frames larger than this are refused, before Tune and after
CHANNEL_MAX = 2047  # ours when the server sets no limit; only channel 0 is ever used
TABLE_DEPTH = 16  # nested tables and arrays: deeper is an attack on the stack, not server properties

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


def expect(wire: Wire, want: tuple[int, int], frame_max: int, password: str) -> Reader:
    """The next method, which must be `want`; the server's Connection.Close becomes its reason."""
    what = METHODS[want]
    method, reader = next_method(wire, frame_max, what)
    if method == CLOSE:
        code, text = reader.short(), reader.shortstr()
        with suppress(NotReady):  # the reason is the server's, not whether it heard our goodbye
            wire.send(method_frame(CLOSE_OK, b""))
        if password:  # a broker never echoes it, but a reason must not show it even if one did
            text = text.replace(password, "***")
        raise NotReady(f"the server closed the connection: {code} {peer(text)}")
    if method != want:
        name = METHODS.get(method, "method {}.{}".format(*method))
        raise NotReady(f"the server sent {name} instead of {what}")
    return reader


def next_method(wire: Wire, frame_max: int, what: str) -> tuple[tuple[int, int], Reader]:
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
        raise NotReady(f"the server does not speak AMQP: it sent {peer(header)} instead of {what}")
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
                raise self.fail(f"unknown field type {peer(tag)}")
        return value


# Field types with a fixed size: AMQP 0-9-1 with RabbitMQ's errata ('s' is a signed short there; the
# spec's 'U' and 'u' and 'L' are accepted too, so a table from either dialect parses).
_FIXED = {"b": ">b", "B": ">B", "s": ">h", "U": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "L": ">Q",
          "f": ">f", "d": ">d", "T": ">Q"}  # fmt: skip


def peer(text: bytes | str) -> str:
    from portpatrol.wire import peer_text

    return peer_text(text)


def shortstr(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return bytes([len(data)]) + data


def longstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def method_frame(method: tuple[int, int], arguments: bytes) -> bytes:
    payload = struct.pack(">HH", *method) + arguments
    return struct.pack(">BHI", FRAME_METHOD, 0, len(payload)) + payload + bytes([FRAME_END])


def _table(fields: Mapping[str, str | bool | Mapping[str, bool]]) -> bytes:
    out = b""
    for name, value in fields.items():
        if isinstance(value, bool):
            out += shortstr(name) + b"t" + bytes([value])
        elif isinstance(value, str):
            out += shortstr(name) + b"S" + longstr(value.encode())
        else:
            out += shortstr(name) + b"F" + _table(value)
    return longstr(out)


# authentication_failure_close: RabbitMQ then says why a login failed (403 ACCESS_REFUSED) instead of
# dropping the connection without a word.
CLIENT_PROPERTIES = _table(
    {
        "product": "portpatrol",
        "information": "readiness check",
        "capabilities": {"authentication_failure_close": True},
    }
)
