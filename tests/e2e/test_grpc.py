"""The grpc kind against real peers on loopback: grpcio servers with the standard health servicer
(plain, TLS with a CA made here, and one requiring a client certificate), an HTTP/1.1 server, an HTTP/2
server that is not gRPC (h2 server-side), and misbehaving peers. grpcio's own client is the oracle for
the server's state, so a test cannot pass for the wrong reason.

Most tests drive the kind through its contract (parse, then attempt with a deadline); the last ones run
the installed command with grpc:// targets from arguments, the environment and a config file."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import h2.events
import pytest
import trustme
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from h2.config import H2Configuration
from h2.connection import H2Connection

from portpatrol.errors import NotReady
from portpatrol.kinds import grpc as kind
from tests.peers import HttpPeer, Running, Serving, TcpListener, run_portpatrol

BOUND = 2.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def outcome(address: str, block: Mapping[str, Any] | None = None, bound: float = BOUND) -> str:
    """One attempt: "ready" or the reason; never longer than the bound (generous margin)."""
    settings = kind.parse(address, block or {})
    start = time.monotonic()
    try:
        kind.attempt(settings, start + bound, bound)
    except NotReady as error:
        return str(error)
    finally:
        assert time.monotonic() - start < bound + 2
    return "ready"


# --------------------------------------------------------------------------- grpcio servers


@contextlib.contextmanager
def grpc_server(
    *, with_health: bool = True, credentials: grpc.ServerCredentials | None = None
) -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    if with_health:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None).wait(5)


def oracle(port: int, service: str = "") -> str:
    """What grpcio's own client gets from Check: the serving status's name or the gRPC code's name."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def test_not_serving_then_serving() -> None:
    with grpc_server() as (port, servicer):
        servicer.set("", NOT_SERVING)
        assert oracle(port) == "NOT_SERVING"
        assert outcome(f"grpc://127.0.0.1:{port}") == "the server is NOT_SERVING"
        servicer.set("", SERVING)
        assert oracle(port) == "SERVING"
        assert outcome(f"grpc://127.0.0.1:{port}") == "ready"
        assert outcome(f"grpc://localhost:{port}") == "ready"  # a name, looked up locally


def test_a_server_without_the_health_service() -> None:
    with grpc_server(with_health=False) as (port, _):
        assert oracle(port) == "UNIMPLEMENTED"
        reason = outcome(f"grpc://127.0.0.1:{port}")
    assert reason.startswith("the server has no health service (grpc-status 12 UNIMPLEMENTED")


def test_a_named_service() -> None:
    with grpc_server() as (port, servicer):
        servicer.set("shop.Orders", NOT_SERVING)
        assert outcome(f"grpc://127.0.0.1:{port}/shop.Orders") == 'service "shop.Orders" is NOT_SERVING'
        servicer.set("shop.Orders", SERVING)
        assert oracle(port, "shop.Orders") == "SERVING"
        assert outcome(f"grpc://127.0.0.1:{port}/shop.Orders") == "ready"
        assert outcome(f"grpc://127.0.0.1:{port}", {"service": "shop.Orders"}) == "ready"
        assert oracle(port, "shop.Missing") == "NOT_FOUND"
        reason = outcome(f"grpc://127.0.0.1:{port}/shop.Missing")
    assert reason.startswith(
        'SERVICE_UNKNOWN: the health service does not know "shop.Missing" (grpc-status 5'
    )


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    client = ca.issue_cert("portpatrol-client.invalid")
    paths = {
        "ca_file": tmp_path / "ca.pem",
        "cert_file": tmp_path / "client.pem",
        "key_file": tmp_path / "key.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca_file"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert_file"]))
    client.private_key_pem.write_to_path(str(paths["key_file"]))
    return {key: str(path) for key, path in paths.items()}


def server_credentials(ca: trustme.CA, *, client_auth: bool) -> grpc.ServerCredentials:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    return grpc.ssl_server_credentials(
        [(cert.private_key_pem.bytes(), b"".join(pem.bytes() for pem in cert.cert_chain_pems))],
        root_certificates=ca.cert_pem.bytes() if client_auth else None,
        require_client_auth=client_auth,
    )


def test_grpcs_with_a_private_ca(ca: trustme.CA, files: dict[str, str]) -> None:
    with grpc_server(credentials=server_credentials(ca, client_auth=False)) as (port, servicer):
        servicer.set("", SERVING)
        assert outcome(f"grpcs://127.0.0.1:{port}", {"ca_file": files["ca_file"]}) == "ready"
        assert outcome(f"grpcs://localhost:{port}", {"ca_file": files["ca_file"]}) == "ready"
        assert outcome(f"grpcs://127.0.0.1:{port}", {"skip_tls_verify": True}) == "ready"
        untrusted = outcome(f"grpcs://127.0.0.1:{port}")  # the system store does not know our CA
        plain = outcome(f"grpc://127.0.0.1:{port}")
    assert untrusted.startswith("TLS failed: CERTIFICATE_VERIFY_FAILED")
    assert plain == (
        "the server closed the connection during the HTTP/2 connection preface "
        "(does it want TLS, grpcs://, or speak only HTTP/1?)"
    )


def test_grpcs_requiring_a_client_certificate(ca: trustme.CA, files: dict[str, str]) -> None:
    with grpc_server(credentials=server_credentials(ca, client_auth=True)) as (port, servicer):
        servicer.set("", SERVING)
        assert outcome(f"grpcs://127.0.0.1:{port}", files) == "ready"
        without = outcome(f"grpcs://127.0.0.1:{port}", {"ca_file": files["ca_file"]})
    assert without == (
        "the server closed the connection during the HTTP/2 connection preface right after TLS "
        "(does it require a client certificate? cert_file)"
    )


# --------------------------------------------------------------------------- peers that are not gRPC


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.talk(self.request)  # type: ignore[attr-defined]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, talk: Callable[[socket.socket], None]) -> None:
        self.talk = talk
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is what several tests do


@contextlib.contextmanager
def peer(talk: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback server running `talk(connection)` for each client; yields its grpc:// address."""
    server = _Server(talk)
    with Serving(server):
        yield f"grpc://127.0.0.1:{server.socket.getsockname()[1]}"


def h2_server(respond: Callable[[H2Connection, int], None]) -> Callable[[socket.socket], None]:
    """An HTTP/2 server (h2, server side) that answers each request with `respond(conn, stream)`."""

    def talk(sock: socket.socket) -> None:
        sock.settimeout(5)
        conn = H2Connection(H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    respond(conn, event.stream_id)
            sock.sendall(conn.data_to_send())

    return talk


def html_page(conn: H2Connection, stream: int) -> None:
    conn.send_headers(stream, [(":status", "200"), ("content-type", "text/html")])
    conn.send_data(stream, b"<html>hello</html>", end_stream=True)


def test_an_http2_server_that_is_not_grpc() -> None:
    with peer(h2_server(html_page)) as address:
        assert outcome(address) == "not a gRPC server: HTTP/2 answer (content-type text/html)"


def test_an_http11_server() -> None:
    with HttpPeer() as http:  # http.server answers "PRI * HTTP/2.0" with an error page, no status line
        reason = outcome(f"grpc://{http.hostport}")
        assert http.requests == []  # it did not take the preface for a request it could answer
    assert reason == "not an HTTP/2 server: it sent <!DOCTYPE where SETTINGS go"


def http11_answer(sock: socket.socket) -> None:
    """What nginx, Apache and most HTTP/1.1 servers send back for the HTTP/2 preface."""
    sock.recv(65536)
    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_an_http11_server_answering_with_a_status_line() -> None:
    with peer(http11_answer) as address:
        assert outcome(address) == "the server speaks HTTP/1.x, not HTTP/2 (HTTP/1.1 400 Bad Request)"


def huge_message(conn: H2Connection, stream: int) -> None:
    conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
    conn.send_data(stream, b"\x00\x7f\xff\xff\xff\x08\x01")


def goaway(conn: H2Connection, stream: int) -> None:
    conn.close_connection(error_code=11, additional_data=b"calm\ndown")


def reset(conn: H2Connection, stream: int) -> None:
    conn.reset_stream(stream, error_code=7)


@pytest.mark.parametrize(
    ("respond", "reason"),
    [
        (huge_message, "the server sent a gRPC message of 2147483647 bytes (at most 16384)"),
        (goaway, r"the server ended the HTTP/2 connection (GOAWAY ENHANCE_YOUR_CALM: calm\ndown)"),
        (reset, "the server reset the stream (RST_STREAM REFUSED_STREAM)"),
    ],
)
def test_http2_failures_are_named(respond: Callable[[H2Connection, int], None], reason: str) -> None:
    with peer(h2_server(respond)) as address:
        assert outcome(address) == reason


def garbage(sock: socket.socket) -> None:
    sock.sendall(b"\x16\x03\x01garbage that is no protocol at all\r\n")


def half_settings(sock: socket.socket) -> None:
    sock.settimeout(5)
    sock.recv(65536)  # the client's preface and request, sent at once
    sock.sendall(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03")  # a SETTINGS frame cut short
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):  # until the client closes: closing with unread bytes would be a reset
        pass


def absurd_frame(sock: socket.socket) -> None:
    sock.sendall(b"\xff\xff\xff\x04\x00\x00\x00\x00\x00")


@pytest.mark.parametrize(
    ("talk", "reason"),
    [
        (garbage, r"not an HTTP/2 server: it sent \x16\x03\x01garbag where SETTINGS go"),
        (half_settings, "the server closed the connection during the server's HTTP/2 SETTINGS"),
        (absurd_frame, "the server sent an HTTP/2 frame of 16777215 bytes (at most 16384)"),
        (
            lambda sock: None,
            "the server closed the connection during the HTTP/2 connection preface "
            "(does it want TLS, grpcs://, or speak only HTTP/1?)",
        ),
    ],
)
def test_misbehaving_peers_get_named_reasons(talk: Callable[[socket.socket], None], reason: str) -> None:
    with peer(talk) as address:
        assert outcome(address) == reason


def test_a_silent_peer_ends_in_the_bound() -> None:
    with TcpListener(silent=True) as silent:
        start = time.monotonic()
        reason = outcome(f"grpc://{silent.address}", bound=1.0)
        assert time.monotonic() - start < 3
    assert reason == "no answer within 1s (the HTTP/2 connection preface)"


# --------------------------------------------------------------------------- through the command


def test_the_command_waits_until_the_server_switches_to_serving(tmp_path: Path) -> None:
    """Argument, environment and config file: not ready (NOT_SERVING) until the servicer switches,
    then exit 0; the switch happens after the command has said it is not ready."""
    config = tmp_path / "grpc.yaml"
    with grpc_server() as (port, servicer):
        config.write_text(
            f"targets:\n  - address: grpc://127.0.0.1:{port}\n    grpc: {{service: shop.Orders}}\n"
        )
        servicer.set("", NOT_SERVING)
        servicer.set("shop.Orders", NOT_SERVING)
        for env, args in (
            ({}, [f"grpc://127.0.0.1:{port}"]),
            ({"TARGET_ADDRESS": f"grpc://127.0.0.1:{port}", "GRPC_SERVICE": "shop.Orders"}, []),
            ({}, ["--config", str(config)]),
        ):
            servicer.set("", NOT_SERVING)
            servicer.set("shop.Orders", NOT_SERVING)
            with Running(env, [*args, "--interval", "100ms", "--timeout", "30s"]) as running:
                line = running.wait_for_line("is not ready", timeout=15)
                assert "NOT_SERVING" in line, line
                assert running.proc.poll() is None  # still waiting
                servicer.set("", SERVING)
                servicer.set("shop.Orders", SERVING)
                assert oracle(port) == oracle(port, "shop.Orders") == "SERVING"
                assert running.wait(20) == 0, running.lines
                assert "is ready" in running.lines[-1], running.lines


def test_the_command_names_an_unknown_service_and_times_out() -> None:
    with grpc_server() as (port, _):
        assert oracle(port, "shop.Missing") == "NOT_FOUND"
        result = run_portpatrol(
            {}, [f"grpc://127.0.0.1:{port}/shop.Missing", "--timeout", "2s", "--interval", "200ms"]
        )
    assert result.code == 124, result.stderr
    assert "SERVICE_UNKNOWN" in result.lines[-1], result.lines
