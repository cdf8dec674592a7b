"""The grpc kind's hand-written pieces: the two protobuf messages (checked against the real protobuf
runtime that grpcio-health-checking brings), gRPC's length prefix, grpc-message's percent-encoding,
the verdict on an answer, the address and block, and the HTTP/2 conversation fed arbitrary bytes as
the server's side of a socketpair (only NotReady or ready comes out, and never late)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import quote as url_quote

import hpack
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portpatrol import grpcwire
from portpatrol.errors import NotReady
from portpatrol.kinds import grpc as kind
from portpatrol.wire import Wire

# --------------------------------------------------------------------------- protobuf by hand


@given(st.text())
def test_request_encodes_as_protobuf_does(service: str) -> None:
    assert (
        grpcwire.encode_request(service) == health_pb2.HealthCheckRequest(service=service).SerializeToString()
    )


def test_request_bytes() -> None:
    assert grpcwire.encode_request("") == b""
    assert grpcwire.encode_request("a.B") == b"\x0a\x03a.B"
    assert grpcwire.encode_request("x" * 200)[:3] == b"\x0a\xc8\x01"  # a two-byte varint length


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_response_decodes_as_protobuf_encodes(status: int) -> None:
    data = health_pb2.HealthCheckResponse(status=status).SerializeToString()
    assert grpcwire.decode_response(data) % 2**32 == status % 2**32  # negative enums are 10-byte varints


def _field(number: int, wire_type: int, value: bytes | int) -> bytes:
    key = grpcwire.encode_varint(number << 3 | wire_type)
    if wire_type == 0:
        assert isinstance(value, int)
        return key + grpcwire.encode_varint(value)
    assert isinstance(value, bytes)
    if wire_type == 2:
        return key + grpcwire.encode_varint(len(value)) + value
    return key + value


unknown_fields = st.lists(
    st.one_of(
        st.builds(_field, st.integers(2, 2**29 - 1), st.just(0), st.integers(0, 2**64 - 1)),
        st.builds(_field, st.integers(2, 2**29 - 1), st.just(1), st.binary(min_size=8, max_size=8)),
        st.builds(_field, st.integers(2, 2**29 - 1), st.just(2), st.binary(max_size=40)),
        st.builds(_field, st.integers(2, 2**29 - 1), st.just(5), st.binary(min_size=4, max_size=4)),
    ),
    max_size=5,
)


@given(unknown_fields, st.integers(0, 3), unknown_fields)
def test_unknown_fields_are_skipped(before: list[bytes], status: int, after: list[bytes]) -> None:
    data = b"".join(before) + _field(1, 0, status) + b"".join(after)
    assert grpcwire.decode_response(data) == status
    assert health_pb2.HealthCheckResponse.FromString(data).status == status  # the oracle agrees


def test_absent_status_is_unknown_and_the_last_one_wins() -> None:
    assert grpcwire.decode_response(b"") == 0
    assert grpcwire.decode_response(b"\x08\x02\x08\x01") == 1


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x08", "varint is cut short"),
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x0a\x01\x01", "status has wire type 2"),
        (b"\x12\x05ab", "runs past the end"),
        (b"\x13", "wire type 3"),
        (b"\x00\x01", "field number 0"),
    ],
)
def test_malformed_responses_are_named(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        grpcwire.decode_response(data)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_valueerror(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        assert grpcwire.decode_response(data) >= 0


# --------------------------------------------------------------------------- gRPC framing and text


def test_length_prefix() -> None:
    assert grpcwire.frame_message(b"\x08\x01") == b"\x00\x00\x00\x00\x02\x08\x01"
    assert grpcwire.unframe_message(b"\x00\x00\x00\x00\x02\x08\x01") == b"\x08\x01"
    with pytest.raises(ValueError, match="compressed"):
        grpcwire.unframe_message(b"\x01\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="2 bytes announced, 1 sent"):
        grpcwire.unframe_message(b"\x00\x00\x00\x00\x02\x08")
    with pytest.raises(ValueError, match="at least 5"):
        grpcwire.unframe_message(b"")


@given(st.text())
def test_percent_decoding_inverts_percent_encoding(text: str) -> None:
    assert (
        grpcwire.percent_decode(url_quote(text, safe="").encode()) == text.encode("utf-8", "replace").decode()
    )


@given(st.binary())
def test_percent_decoding_never_fails(data: bytes) -> None:
    assert isinstance(grpcwire.percent_decode(data), str)


def test_percent_decoding_leaves_malformed_escapes() -> None:
    assert grpcwire.percent_decode(b"caf%C3%A9 %zz 100% %4") == "café %zz 100% %4"


# --------------------------------------------------------------------------- the verdict on an answer


def _answer(
    status: str = "200", ctype: str = "application/grpc", data: bytes = b"", **trailers: str
) -> grpcwire.Answer:
    headers = {":status": status, "content-type": ctype} if ctype else {":status": status}
    return grpcwire.Answer(headers, {k.replace("_", "-"): v for k, v in trailers.items()}, data)


SERVING = grpcwire.frame_message(b"\x08\x01")


@pytest.mark.parametrize(
    ("answer", "service", "reason"),
    [
        (_answer(data=grpcwire.frame_message(b"\x08\x02"), grpc_status="0"), "", "the server is NOT_SERVING"),
        (
            _answer(data=grpcwire.frame_message(b"\x08\x03"), grpc_status="0"),
            "a",
            'service "a" is SERVICE_UNKNOWN',
        ),
        (_answer(data=grpcwire.frame_message(b""), grpc_status="0"), "", "the server is UNKNOWN"),
        (
            _answer(data=grpcwire.frame_message(b"\x08\x09"), grpc_status="0"),
            "",
            "status 9 (not in grpc.health.v1)",
        ),
        (
            _answer(grpc_status="12", grpc_message="Method%20not%20found"),
            "",
            "no health service (grpc-status 12 ",
        ),
        (
            _answer(grpc_status="5", grpc_message="unknown service"),
            "x",
            "SERVICE_UNKNOWN: the health service does",
        ),
        (_answer(grpc_status="14", grpc_message="bye%0a"), "", r"grpc-status 14 UNAVAILABLE: bye\n"),
        (_answer(grpc_status="99"), "", "grpc-status 99 unknown code"),
        (_answer("404", "text/html"), "", "not a gRPC server: HTTP/2 status 404 (content-type text/html)"),
        (_answer(ctype="text/html", grpc_status="0"), "", "not a gRPC server: HTTP/2 answer (content-type"),
        (_answer(ctype=""), "", "not a gRPC server: HTTP/2 answer without a content-type"),
        (_answer(data=SERVING), "", "not a gRPC server: the answer has no grpc-status"),
        (_answer(data=SERVING[:-1], grpc_status="0"), "", "not a HealthCheckResponse: a message of 2 bytes"),
    ],
)
def test_verdicts_name_what_was_seen(answer: grpcwire.Answer, service: str, reason: str) -> None:
    with pytest.raises(NotReady) as caught:
        kind.verdict(answer, service)
    assert reason in str(caught.value)


def test_serving_is_ready_with_the_status_in_headers_or_trailers() -> None:
    kind.verdict(_answer(data=SERVING, grpc_status="0"), "")
    kind.verdict(
        grpcwire.Answer(
            {":status": "200", "content-type": "application/grpc+proto", "grpc-status": "0"}, {}, SERVING
        ),
        "",
    )


# --------------------------------------------------------------------------- address and block


def test_parse_and_describe() -> None:
    plain = kind.parse("grpc://127.0.0.1:50051", {})
    assert (plain.host, plain.port, plain.service, plain.tls) == ("127.0.0.1", 50051, "", False)
    assert kind.describe(plain) == "127.0.0.1:50051 service=overall tls=no"
    named = kind.parse("grpc://[::1]:9090/my.pkg.Orders", {})
    assert kind.describe(named) == '[::1]:9090 service="my.pkg.Orders" tls=no'
    assert kind.parse("grpc://h:1/a%2Fb", {}).service == "a/b"
    assert kind.parse("grpc://h:1", {"service": "x"}).service == "x"
    secure = kind.parse("grpcs://localhost:443", {"skip_tls_verify": "true"})  # from the environment
    assert kind.describe(secure) == "localhost:443 service=overall tls=yes verify=off"
    assert (
        kind.describe(kind.parse("grpcs://localhost:443", {}))
        == "localhost:443 service=overall tls=yes verify=system"
    )
    assert kind.secrets(secure) == frozenset()


@pytest.mark.parametrize(
    ("address", "block", "message"),
    [
        ("grpc://api", {}, "needs a port"),
        ("http://api:1", {}, "starts with grpc:// or grpcs://"),
        ("grpc://api:1?x=1", {}, "no query"),
        ("grpc://u:p@api:1", {}, "no user or password"),
        ("grpc://api:1/a", {"service": "b"}, 'is "a" in the address but "b" in the block'),
        ("grpc://api:1", {"ca_file": "ca.pem"}, "need TLS: use grpcs://"),
        ("grpcs://api:1", {"key_file": "k.pem"}, "key_file needs cert_file"),
        ("grpcs://api:1", {"ca_file": "/nonexistent/ca.pem"}, "cannot use the TLS files"),
        ("grpcs://api:1", {"skip_tls_verify": "maybe"}, "not a boolean"),
    ],
)
def test_parse_errors_say_what_to_write(address: str, block: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\.") as caught:
        kind.parse(address, block)
    assert message in str(caught.value)


# --------------------------------------------------------------------------- the conversation, fuzzed


def _converse(server_bytes: bytes, bound: float = 2.0) -> str | None:
    """health_check() against a peer that sends `server_bytes` and then ends its side; the reason, or None
    when the bytes made a SERVING answer."""
    client, server = socket.socketpair()
    drained = threading.Thread(target=_drain, args=(server,), daemon=True)
    drained.start()
    try:
        server.sendall(server_bytes)
        server.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        try:
            kind.health_check(Wire(client, start + bound, bound), "peer:1", "")
        except NotReady as error:
            return str(error)
        finally:
            assert time.monotonic() - start < bound + 1
        return None
    finally:
        client.close()
        drained.join(2)
        server.close()


def _drain(sock: socket.socket) -> None:
    while sock.recv(65536):  # what the client sends, so that its writes never block
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_only_notready(data: bytes) -> None:
    assert _converse(data) != ""


def _frame(kind_: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind_, flags]) + stream.to_bytes(4, "big") + payload


header_fields = st.lists(
    st.sampled_from(
        [
            (":status", "404"),
            ("content-type", "application/grpc"),
            ("content-type", "text/html"),
            ("grpc-status", "0"),
            ("grpc-status", "12"),
            ("grpc-message", "%ZZ%41"),
            ("x-other", "\x00\x7f"),
        ]
    ),
    max_size=5,
)
header_blocks = st.one_of(
    header_fields.map(lambda fields: hpack.Encoder().encode([(":status", "200"), *fields])),  # headers
    header_fields.map(
        lambda fields: hpack.Encoder().encode([f for f in fields if f[0] != ":status"])
    ),  # trailers
    header_fields.map(hpack.Encoder().encode),
)
messages = st.one_of(
    st.just(SERVING), st.binary(max_size=12).map(grpcwire.frame_message), st.binary(max_size=12)
)
# Mostly frames a server could send on stream 1 (so h2 accepts them and the answer gets judged),
# some anything at all.
frames = st.one_of(
    st.builds(_frame, st.just(1), st.sampled_from([4, 5, 0, 1]), st.just(1), header_blocks),
    st.builds(_frame, st.just(0), st.sampled_from([0, 1]), st.just(1), messages),
    st.builds(_frame, st.just(9), st.sampled_from([0, 4]), st.just(1), header_blocks),
    st.builds(_frame, st.just(3), st.just(0), st.just(1), st.binary(min_size=4, max_size=4)),
    st.builds(
        _frame, st.just(4), st.sampled_from([0, 1]), st.just(0), st.binary(max_size=3).map(lambda b: b * 6)
    ),
    st.builds(_frame, st.just(6), st.sampled_from([0, 1]), st.just(0), st.binary(min_size=8, max_size=8)),
    st.builds(_frame, st.just(7), st.just(0), st.just(0), st.binary(min_size=8, max_size=20)),
    st.builds(_frame, st.just(8), st.just(0), st.sampled_from([0, 1]), st.binary(min_size=4, max_size=4)),
    st.builds(
        _frame,
        st.integers(0, 12),
        st.integers(0, 255),
        st.sampled_from([0, 1, 3, 2**31 - 1]),
        st.one_of(header_blocks, messages, st.binary(max_size=40)),
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, max_size=8))
def test_arbitrary_frames_after_settings_give_only_notready_or_ready(sent: list[bytes]) -> None:
    reason = _converse(_frame(4, 0, 0, b"") + b"".join(sent))
    assert reason is None or reason


def test_a_well_formed_serving_answer_is_ready() -> None:
    headers = hpack.Encoder()
    answer = (
        _frame(4, 0, 0, b"")
        + _frame(1, 4, 1, headers.encode([(":status", "200"), ("content-type", "application/grpc")]))
        + _frame(0, 0, 1, SERVING)
        + _frame(1, 5, 1, headers.encode([("grpc-status", "0")]))
    )
    assert _converse(answer) is None
    assert _converse(answer[:-3]) == "the server closed the connection during the gRPC answer"
