"""One unary gRPC call over HTTP/2, the byte-level part of a grpc.health.v1 Check: the request and
its answer exchanged on a bounded Wire with the `h2` library keeping HTTP/2's state (h2 is imported
inside call(), so importing this module never loads it), and the gRPC length-prefixed message with
the two protobuf messages of the health service encoded and decoded by hand (no grpcio, no protobuf).
Every frame's length is checked before it is read. What the answer means is portpatrol.kinds.grpc's."""

from __future__ import annotations

from dataclasses import dataclass

from portpatrol.errors import NotReady
from portpatrol.wire import Wire, peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE's default, which we never raise: a longer frame is an error
MAX_MESSAGE = 16384  # a HealthCheckResponse is 2 bytes; a server sending more is not answering Check
MAX_TOTAL = 256 * 1024  # bytes a server may send in one attempt (settings, headers, pings, data)
MAX_VARINT = 10  # bytes of a 64-bit protobuf varint


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server answered on the stream: header and trailer fields (names lower case, values
    decoded as Latin-1, the last of repeated fields) and the DATA bytes."""

    headers: dict[str, str]
    trailers: dict[str, str]
    data: bytes


def call(wire: Wire, authority: str, scheme: str, path: str, body: bytes) -> Answer:
    """A unary gRPC call over HTTP/2 on `wire`; the h2 library keeps the protocol's state, this
    loop reads one frame at a time (length checked first) and stops at the end of the stream."""
    import h2.events as ev
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.settings import SettingCodes
    from h2.settings import Settings as H2Settings

    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.local_settings = H2Settings(
        client=True,
        initial_values={SettingCodes.ENABLE_PUSH: 0, SettingCodes.MAX_HEADER_LIST_SIZE: MAX_FRAME},
    )
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    request = [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "portpatrol"),
    ]
    conn.send_headers(stream, request)
    conn.send_data(stream, body, end_stream=True)
    wire.send(conn.data_to_send())

    headers: dict[str, str] = {}
    trailers: dict[str, str] = {}
    data = bytearray()
    first = _first_frame(wire)
    received = len(first)
    frame = first
    while True:
        for event in conn.receive_data(frame):
            if isinstance(event, ev.ResponseReceived | ev.InformationalResponseReceived):
                headers = _fields(event.headers)
            elif isinstance(event, ev.TrailersReceived):
                trailers = _fields(event.headers)
            elif isinstance(event, ev.DataReceived):
                if headers.get(":status") != "200" or not headers.get("content-type", "").startswith(
                    "application/grpc"
                ):
                    return Answer(headers, trailers, b"")  # not gRPC: the verdict needs no body
                data += event.data or b""
                if len(data) >= 5 and int.from_bytes(data[1:5], "big") > MAX_MESSAGE:
                    size = int.from_bytes(data[1:5], "big")
                    raise NotReady(f"the server sent a gRPC message of {size} bytes (at most {MAX_MESSAGE})")
                if len(data) > 5 + MAX_MESSAGE:
                    raise NotReady("the server sent more than one gRPC message")
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, ev.StreamReset):
                code = _code_name(event.error_code)
                raise NotReady(f"the server reset the stream (RST_STREAM {code})")
            elif isinstance(event, ev.ConnectionTerminated):
                code = _code_name(event.error_code)
                said = f": {peer_text(event.additional_data)}" if event.additional_data else ""
                raise NotReady(f"the server ended the HTTP/2 connection (GOAWAY {code}{said})")
            elif isinstance(event, ev.StreamEnded):
                return Answer(headers, trailers, bytes(data))
        pending = conn.data_to_send()
        if pending:
            wire.send(pending)
        frame = _frame(wire, "the gRPC answer")
        received += len(frame)
        if received > MAX_TOTAL:
            raise NotReady(f"the server sent more than {MAX_TOTAL // 1024} KiB without ending the answer")


PREFACE = "the HTTP/2 connection preface"
CLOSED_AT_PREFACE = f"the server closed the connection during {PREFACE}"  # Wire's wording


def _first_frame(wire: Wire) -> bytes:
    """The server's first frame; an HTTP/1.x server answers the preface with a status line instead."""
    head = wire.exact(9, PREFACE)
    if head.startswith(b"HTTP/"):
        line = head + wire.line("the HTTP/1.x answer", limit=200)
        raise NotReady(f"the server speaks HTTP/1.x, not HTTP/2 ({peer_text(line, 60)})")
    if head[3] != 0x4:  # SETTINGS: the first frame of every HTTP/2 server (RFC 9113, 3.4)
        raise NotReady(f"not an HTTP/2 server: it sent {peer_text(repr(head)[2:-1], 60)} where SETTINGS go")
    return head + _payload(wire, head, "the server's HTTP/2 SETTINGS")


def _frame(wire: Wire, what: str) -> bytes:
    head = wire.exact(9, what)
    return head + _payload(wire, head, what)


def _payload(wire: Wire, head: bytes, what: str) -> bytes:
    size = int.from_bytes(head[:3], "big")
    if size > MAX_FRAME:
        raise NotReady(f"the server sent an HTTP/2 frame of {size} bytes (at most {MAX_FRAME})")
    return wire.exact(size, what)


def _fields(fields: Any) -> dict[str, str]:
    return {bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1") for name, value in fields}


def _code_name(code: Any) -> str:
    """An HTTP/2 error code's name (h2 gives a known one as an enum, an unknown one as an int)."""
    return getattr(code, "name", None) or f"code {code}"


# ----------------------------------------------------------------------------- protobuf and gRPC framing


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_request(service: str) -> bytes:
    """HealthCheckRequest{string service = 1}; proto3 leaves the empty string out."""
    if not service:
        return b""
    data = service.encode()
    return b"\x0a" + encode_varint(len(data)) + data


def frame_message(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed (0), 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for shift, index in enumerate(range(at, min(at + MAX_VARINT, len(data)))):
        byte = data[index]
        value |= (byte & 0x7F) << (7 * shift)
        if byte < 0x80:
            return value, index + 1
    raise ValueError("a varint is cut short or longer than 10 bytes")


def decode_response(message: bytes) -> int:
    """HealthCheckResponse.status (enum, field 1); unknown fields skipped; absent: 0 (UNKNOWN)."""
    status, at = 0, 0
    while at < len(message):
        key, at = _varint(message, at)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire_type == 0:
            value, at = _varint(message, at)
            if number == 1:
                status = value
            continue
        if number == 1:
            raise ValueError(f"status has wire type {wire_type}, not varint")
        if wire_type == 2:
            size, at = _varint(message, at)
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"wire type {wire_type} of field {number}")
        if at + size > len(message):
            raise ValueError(f"field {number} runs past the end of the message")
        at += size
    return status


def unframe_message(data: bytes) -> bytes:
    """The one message of a unary answer from its length-prefixed bytes."""
    if len(data) < 5:
        raise ValueError(f"{len(data)} bytes where a length-prefixed message needs at least 5")
    if data[0] != 0:
        raise ValueError("the message is compressed, which was not asked for")
    size = int.from_bytes(data[1:5], "big")
    if len(data) != 5 + size:
        raise ValueError(f"a message of {size} bytes announced, {len(data) - 5} sent")
    return data[5:]


def percent_decode(data: bytes) -> str:
    """grpc-message's encoding: %XX is a byte of UTF-8; a malformed % stays as it is (the spec asks
    receivers not to fail on it)."""
    out = bytearray()
    at = 0
    while at < len(data):
        pair = data[at + 1 : at + 3]
        if data[at] == 0x25 and len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair):
            out.append(int(pair, 16))
            at += 3
        else:
            out.append(data[at])
            at += 1
    return out.decode("utf-8", "replace")
