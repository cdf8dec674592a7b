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

The call itself is portpatrol.grpcwire's: HTTP/2 framing is the `h2` library, imported only when an
attempt runs so that other runs never load it (docs/grpc.md); the two protobuf messages are encoded and
decoded there by hand (no grpcio, no protobuf). The conversation runs on a portpatrol.wire.Wire: every
read and write under the attempt's deadline, one frame at a time, each frame's length checked before it
is read. This module holds the settings and reads the answer (verdict)."""

from __future__ import annotations

from dataclasses import dataclass, field

from portpatrol import grpcwire
from portpatrol.address import authority, split_netloc
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
        return authority(self.host, self.port)


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
    service = grpcwire.percent_decode(path.encode()) if slash else ""  # not urllib.parse: ~2 ms of start-up
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
    with Wire.opened(settings.host, settings.port, deadline, bound) as wire:
        try:
            _call(wire, settings)
        except NotReady as error:
            _explain(error, settings)


def _call(wire: Wire, settings: Settings) -> None:
    if settings.context is not None:
        wire.start_tls(settings.context, server_hostname=settings.host)  # ssl sends no SNI for an IP
        chosen = wire.sock.selected_alpn_protocol()  # type: ignore[attr-defined]
        if chosen != "h2":
            raise NotReady(f"the server did not agree to HTTP/2 over TLS (ALPN {chosen or 'none'})")
    health_check(wire, settings.authority, settings.service, "https" if settings.tls else "http")


def _explain(error: NotReady, settings: Settings) -> None:
    """Re-raises `error`, with a guess at the cause when the server closed at the preface."""
    if str(error) != grpcwire.CLOSED_AT_PREFACE:
        raise error
    if not settings.tls:  # a TLS-only server (grpcio's among them) or an HTTP/1-only one closes here
        raise NotReady(f"{error} (does it want TLS, grpcs://, or speak only HTTP/1?)") from None
    if not settings.cert_file:
        # A server requiring a client certificate ends TLS 1.3 this way: the handshake looks
        # complete to the client, and the server closes before its first HTTP/2 frame.
        raise NotReady(f"{error} right after TLS (does it require a client certificate? cert_file)") from None
    raise error


def health_check(wire: Wire, authority: str, service: str, scheme: str = "http") -> None:
    """One health Check over a connected (and, for grpcs, TLS) wire: return on SERVING, else NotReady.
    Apart from the wire's own NotReady, nothing the peer sends makes this raise anything else."""
    import hpack
    import hyperframe.exceptions
    from h2.exceptions import H2Error

    try:
        answer = grpcwire.call(
            wire, authority, scheme, PATH, grpcwire.frame_message(grpcwire.encode_request(service))
        )
    except (H2Error, hpack.HPACKError, hyperframe.exceptions.HyperframeError) as error:
        raise NotReady(f"the server broke HTTP/2 ({type(error).__name__}: {peer_text(str(error))})") from None
    verdict(answer, service)


def verdict(answer: grpcwire.Answer, service: str) -> None:
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
    words = peer_text(grpcwire.percent_decode(message.encode("latin-1")))
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
        serving = grpcwire.decode_response(grpcwire.unframe_message(answer.data))
    except ValueError as error:
        raise NotReady(f"the health answer is not a HealthCheckResponse: {error}") from None
    if serving != SERVING:
        name = SERVING_STATUS.get(serving, f"status {serving} (not in grpc.health.v1)")
        who = f"service {quote(service)}" if service else "the server"
        raise NotReady(f"{who} is {name}{said}")


def _shown(content_type: str) -> str:
    return f" (content-type {peer_text(content_type, 60)})" if content_type else ""
