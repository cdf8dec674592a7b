"""gRPC health checks: `grpc.health.v1.Health/Check`, ready only on SERVING (as the Kubernetes gRPC probe).

Addresses: `grpc://host:port[/service]` speaks HTTP/2 in cleartext with prior knowledge (h2c);
`grpcs://host:port[/service]` speaks it over TLS, offering ALPN `h2`. The port is required: gRPC has no
port that every server uses (50051 in the examples of grpc.io, 443 behind an ingress, 8080, 9090...),
and the Kubernetes gRPC probe requires one too; a guessed default would make a missing port look like a
refused connection. DEFAULT_PORT is None for that reason, and parse() says what to write.

Block `grpc:` keys: `service` (the name asked about; empty = the server as a whole), `ca_file`,
`cert_file`, `key_file`, `skip_tls_verify`, with the meaning they have for HTTP (portpatrol.tls).

Environment: GRPC_SERVICE, GRPC_CA_FILE, GRPC_CERT_FILE, GRPC_KEY_FILE, GRPC_SKIP_TLS_VERIFY. Not the
HTTP_ names: a program that waits for an HTTPS endpoint and a gRPC service may trust different CAs and
show different client certificates, and a variable named HTTP_ that changes a gRPC check surprises.

HTTP/2 framing is the `h2` library, imported only inside attempt() so that other runs never load it
(docs/grpc.md); the two protobuf messages are encoded and decoded here by hand (no grpcio, no protobuf).
The conversation runs on a portpatrol.wire.Wire: every read and write under the attempt's deadline, one
frame at a time, each frame's length checked before it is read."""

from __future__ import annotations

from dataclasses import dataclass, field

from portpatrol.address import split_netloc
from portpatrol.errors import NotReady
from portpatrol.text import quote
from portpatrol.values import parse_bool
from portpatrol.wire import Wire, peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping
    from typing import Any

NAME = "grpc"
SCHEMES = ("grpc", "grpcs")
DEFAULT_PORT: int | None = None  # required in the address: see the module's docstring

SCHEMA: dict[str, Any] = {
    "description": "Settings of a gRPC health check (grpc:// or grpcs://); docs/grpc.md.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"service": "shop.Orders"}, {"ca_file": "/etc/tls/ca.crt"}],
    "properties": {
        "service": {
            "description": (
                "The service name asked about (HealthCheckRequest.service, like GRPC_SERVICE); empty: "
                "the server as a whole. The address's path says the same."
            ),
            "type": "string",
            "default": "",
            "examples": ["shop.Orders", ""],
        },
        "ca_file": {
            "description": "Trust this CA bundle (PEM) instead of the system store (grpcs; GRPC_CA_FILE).",
            "type": "string",
            "default": "",
            "examples": ["/etc/tls/ca.crt"],
        },
        "cert_file": {
            "description": "A client certificate (PEM) shown to the server, for mTLS (GRPC_CERT_FILE).",
            "type": "string",
            "default": "",
            "examples": ["/etc/tls/client.crt"],
        },
        "key_file": {
            "description": "The key of cert_file, when not in cert_file itself (GRPC_KEY_FILE).",
            "type": "string",
            "default": "",
            "examples": ["/etc/tls/client.key"],
        },
        "skip_tls_verify": {
            "description": "Accept any server certificate (grpcs; GRPC_SKIP_TLS_VERIFY).",
            "type": "boolean",
            "default": False,
            "examples": [False, True],
        },
    },
}
ENV = {
    "GRPC_SERVICE": "service",
    "GRPC_CA_FILE": "ca_file",
    "GRPC_CERT_FILE": "cert_file",
    "GRPC_KEY_FILE": "key_file",
    "GRPC_SKIP_TLS_VERIFY": "skip_tls_verify",
}
SECRET_KEYS: frozenset[str] = frozenset()  # file names only; the key itself never leaves its file

EXAMPLE = "(e.g. grpc://api:50051, grpc://api:50051/my.pkg.Orders or grpcs://api:443)"
PATH = "/grpc.health.v1.Health/Check"
MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE's default, which we never raise: a longer frame is an error
MAX_MESSAGE = 16384  # a HealthCheckResponse is 2 bytes; a server sending more is not answering Check
MAX_TOTAL = 256 * 1024  # bytes a server may send in one attempt (settings, headers, pings, data)
MAX_VARINT = 10  # bytes of a 64-bit protobuf varint

# grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING = 1
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
# google.rpc.Code, as grpc-status carries it
# fmt: off
GRPC_CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)
# fmt: on


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    service: str = ""
    tls: bool = False
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Made once by parse() (a missing or mismatched file is a config error, not a retried failure).
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    scheme, sep, rest = address.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"a gRPC address starts with grpc:// or grpcs:// {EXAMPLE}")
    netloc, slash, path = rest.partition("/")
    if any(c in rest for c in "?# \t\r\n"):
        raise ValueError(f"a gRPC address has no query, fragment or spaces {EXAMPLE}")
    userinfo, host, port = split_netloc(netloc, EXAMPLE)
    if userinfo:
        raise ValueError(f"a gRPC address has no user or password {EXAMPLE}")
    if port is None:
        raise ValueError(f"a gRPC address needs a port; gRPC has no standard one {EXAMPLE}")
    service = percent_decode(path.encode()) if slash else ""  # not urllib.parse: ~2 ms of start-up
    block_service = block.get("service")
    if block_service is not None:
        if service and block_service != service:
            raise ValueError(
                f"the service is {quote(service)} in the address but {quote(block_service)} in the block; "
                f"name it once {EXAMPLE}"
            )
        service = block_service
    skip = block.get("skip_tls_verify", False)
    try:
        verify = not (parse_bool(skip) if isinstance(skip, str) else bool(skip))
    except ValueError:
        raise ValueError("skip_tls_verify is not a boolean (e.g. skip_tls_verify: true)") from None
    files = {key: block.get(key) or None for key in ("ca_file", "cert_file", "key_file")}
    if files["key_file"] and not files["cert_file"]:
        raise ValueError("key_file needs cert_file (e.g. cert_file: client.pem, key_file: client.key)")
    tls = scheme.lower() == "grpcs"
    if not tls and any(files.values()):
        raise ValueError(f"ca_file, cert_file and key_file need TLS: use grpcs:// {EXAMPLE}")
    context = None
    if tls:
        import ssl

        from portpatrol import tls as tls_

        try:
            context = tls_.context(verify=verify, alpn=("h2",), **files)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(
                f"cannot use the TLS files ({peer_text(str(error))}) "
                "(e.g. ca_file: ca.pem, cert_file: client.pem, key_file: client.key)"
            ) from None
    return Settings(host, port, service, tls, verify, **files, context=context)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    service = f"service={quote(settings.service)}" if settings.service else "service=overall"
    if not settings.tls:
        return f"{settings.authority} {service} tls=no"
    verify = "off" if not settings.verify else ("ca_file" if settings.ca_file else "system")
    client = " client_cert=yes" if settings.cert_file else ""
    return f"{settings.authority} {service} tls=yes verify={verify}{client}"


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    import socket

    from portpatrol.checks.net import connect

    wire = Wire(connect(settings.host, settings.port, deadline, bound, socket.socket), deadline, bound)
    try:
        if settings.context is not None:
            wire.start_tls(settings.context, server_hostname=settings.host)  # ssl sends no SNI for an IP
            chosen = wire.sock.selected_alpn_protocol()  # type: ignore[attr-defined]
            if chosen != "h2":
                raise NotReady(f"the server did not agree to HTTP/2 over TLS (ALPN {chosen or 'none'})")
        health_check(wire, settings.authority, settings.service, "https" if settings.tls else "http")
    except NotReady as error:
        if str(error) != CLOSED_AT_PREFACE:
            raise
        if not settings.tls:  # a TLS-only server (grpcio's among them) or an HTTP/1-only one closes here
            raise NotReady(f"{error} (does it want TLS, grpcs://, or speak only HTTP/1?)") from None
        if not settings.cert_file:
            # A server requiring a client certificate ends TLS 1.3 this way: the handshake looks
            # complete to the client, and the server closes before its first HTTP/2 frame.
            raise NotReady(
                f"{error} right after TLS (does it require a client certificate? cert_file)"
            ) from None
        raise
    finally:
        wire.close()


def health_check(wire: Wire, authority: str, service: str, scheme: str = "http") -> None:
    """One health Check over a connected (and, for grpcs, TLS) wire: return on SERVING, else NotReady.
    Apart from the wire's own NotReady, nothing the peer sends makes this raise anything else."""
    import hpack
    import hyperframe.exceptions
    from h2.exceptions import H2Error

    try:
        answer = call(wire, authority, scheme, PATH, frame_message(encode_request(service)))
    except (H2Error, hpack.HPACKError, hyperframe.exceptions.HyperframeError) as error:
        raise NotReady(f"the server broke HTTP/2 ({type(error).__name__}: {peer_text(str(error))})") from None
    verdict(answer, service)


def verdict(answer: Answer, service: str) -> None:
    """Ready, or the reason why not, from what the server answered."""
    headers = answer.headers
    status = headers.get(":status", "")
    content_type = headers.get("content-type", "")
    if status != "200":
        raise NotReady(f"not a gRPC server: HTTP/2 status {peer_text(status, 3)}{_shown(content_type)}")
    if not content_type.startswith("application/grpc"):
        raise NotReady(f"not a gRPC server: HTTP/2 answer{_shown(content_type) or ' without a content-type'}")
    code_text = answer.trailers.get("grpc-status", headers.get("grpc-status"))
    message = answer.trailers.get("grpc-message", headers.get("grpc-message", ""))
    if code_text is None:
        raise NotReady("not a gRPC server: the answer has no grpc-status")
    words = peer_text(percent_decode(message.encode("latin-1")))
    said = f": {words}" if words else ""
    if code_text != "0":
        code = int(code_text) if code_text.isdigit() and len(code_text) < 4 else -1
        name = GRPC_CODES[code] if 0 <= code < len(GRPC_CODES) else "unknown code"
        shown = f"grpc-status {peer_text(code_text, 10)} {name}{said}"
        if code == 12:
            raise NotReady(f"the server has no health service ({shown})")
        if code == 5:
            raise NotReady(f"SERVICE_UNKNOWN: the health service does not know {quote(service)} ({shown})")
        raise NotReady(f"the health check failed ({shown})")
    try:
        serving = decode_response(unframe_message(answer.data))
    except ValueError as error:
        raise NotReady(f"the health answer is not a HealthCheckResponse: {error}") from None
    if serving != SERVING:
        name = SERVING_STATUS.get(serving, f"status {serving} (not in grpc.health.v1)")
        who = f"service {quote(service)}" if service else "the server"
        raise NotReady(f"{who} is {name}{said}")


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


def _shown(content_type: str) -> str:
    return f" (content-type {peer_text(content_type, 60)})" if content_type else ""


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
