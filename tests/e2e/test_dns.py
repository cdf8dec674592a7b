"""The dns kind against dnsmasq (tests/dnsserver.py) and misbehaving UDP peers, all on loopback.
dnsmasq's own query log (--log-queries) is the oracle: it shows what the server answered."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from portpatrol.errors import NotReady
from portpatrol.kinds import dns
from tests.dnsserver import NOBODY, Dnsmasq

RECORDS = [
    "--mx-host=mail.pp.test,mx1.pp.test,10",
    "--txt-record=txt.pp.test,v=ready,build 42",
    "--srv-host=_db._tcp.pp.test,db1.pp.test,5432,0,5",
    "--cname=alias.pp.test,a.pp.test",
]


@pytest.fixture(scope="module")
def server() -> Iterator[Dnsmasq]:
    peer = Dnsmasq(RECORDS)
    try:
        yield peer
    finally:
        peer.stop()


def reason(address: str, block: dict[str, object] | None = None, bound: float = 2.0) -> str:
    with pytest.raises(NotReady) as caught:
        dns.attempt(dns.parse(address, block or {}), time.monotonic() + bound, bound)
    return str(caught.value)


def ready(address: str, block: dict[str, object] | None = None) -> None:
    dns.attempt(dns.parse(address, block or {}), time.monotonic() + 2, 2)


def test_dnsmasq_runs_unprivileged(server: Dnsmasq) -> None:
    assert server.uid() == NOBODY


def test_a_record_added_then_sighup_becomes_ready(server: Dnsmasq) -> None:
    server.set_hosts("")
    address = server.url("late.pp.test")
    assert reason(address) == "late.pp.test does not exist (NXDOMAIN)"
    assert "late.pp.test is NXDOMAIN" in server.log.read_text()
    server.set_hosts("127.0.0.7 late.pp.test\n")
    ready(address)
    ready(address, {"expect": ["127.0.0.7"]})
    ready(address, {"match": r"^127\.0\.0\.7$"})
    assert "late.pp.test is 127.0.0.7" in server.log.read_text()


def test_a_wrong_value_is_never_ready(server: Dnsmasq) -> None:
    server.set_hosts("127.0.0.8 wrong.pp.test\n")
    address = server.url("wrong.pp.test")
    ready(address)
    for _ in range(3):
        assert reason(address, {"expect": ["127.0.0.9"]}) == "A answers 127.0.0.8; expected 127.0.0.9"
    assert reason(address, {"match": "^10\\."}) == "no A answer matches ^10\\.: 127.0.0.8"
    assert reason(address, {"expect": "127.0.0.8, 127.0.0.9"}).endswith("expected 127.0.0.9")  # DNS_EXPECT


def test_nodata_is_not_nxdomain(server: Dnsmasq) -> None:
    server.set_hosts("127.0.0.10 v4only.pp.test\n")
    assert (
        reason(server.url("v4only.pp.test", "AAAA"))
        == "no AAAA record for v4only.pp.test (NOERROR, no answer)"
    )
    assert reason(server.url("gone.pp.invalid")) == "gone.pp.invalid does not exist (NXDOMAIN)"


def test_aaaa_and_cname_chain(server: Dnsmasq) -> None:
    server.set_hosts("::1 six.pp.test\n127.0.0.11 a.pp.test\n")
    ready(server.url("six.pp.test", "AAAA"), {"expect": ["0:0::1"]})
    ready(server.url("alias.pp.test"), {"expect": ["127.0.0.11"]})  # A through the CNAME
    ready(server.url("alias.pp.test", "CNAME"), {"expect": ["A.pp.test."]})


def test_mx_txt_srv(server: Dnsmasq) -> None:
    ready(server.url("mail.pp.test", "MX"), {"expect": ["10 mx1.pp.test"]})
    ready(server.url("txt.pp.test", "TXT"), {"match": "build 42"})
    ready(server.url("_db._tcp.pp.test", "SRV"), {"expect": ["0 5 5432 db1.pp.test."]})
    assert reason(server.url("mail.pp.test", "MX"), {"expect": ["20 mx1.pp.test"]}) == (
        "MX answers 10 mx1.pp.test; expected 20 mx1.pp.test"
    )


def test_truncated_udp_answer_is_asked_again_over_tcp(server: Dnsmasq) -> None:
    """Forty addresses make a UDP answer over 512 bytes: dnsmasq sets TC, and TCP brings them all."""
    many = [f"127.0.1.{i}" for i in range(1, 41)]
    server.set_hosts("".join(f"{ip} many.pp.test\n" for ip in many))
    ready(server.url("many.pp.test"), {"expect": many})


def test_nothing_listening_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert reason(f"dns://127.0.0.1:{port}/x.test") == f"udp 127.0.0.1:{port}: connection refused"


class UdpPeer:
    """A UDP socket on loopback whose answer to each query is `reply(query)` (None: silence)."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[bytes] = []
        self._reply = reply
        self._stop = threading.Event()
        self.sock.settimeout(0.05)  # a closed socket does not wake a blocked recvfrom: poll the flag
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.queries.append(data)
            answer = self._reply(data)
            if answer is not None:
                self.sock.sendto(answer, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def answering(reply: Callable[[bytes], bytes | None]) -> Iterator[UdpPeer]:
    peer = UdpPeer(reply)
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture
def silent() -> Iterator[UdpPeer]:
    yield from answering(lambda query: None)


def test_a_silent_server_is_a_bounded_timeout_and_the_query_is_resent(silent: UdpPeer) -> None:
    started = time.monotonic()
    assert (
        reason(f"dns://127.0.0.1:{silent.port}/x.test", bound=2.5)
        == f"no answer within 2.5s from 127.0.0.1:{silent.port}"
    )
    assert time.monotonic() - started < 5
    assert len(silent.queries) >= 2  # resent within the attempt
    ident = struct.unpack("!H", silent.queries[0][:2])[0]
    assert all(struct.unpack("!H", q[:2])[0] == ident for q in silent.queries)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (lambda q: b"garbage", "shorter than a DNS header"),
        (lambda q: bytes([q[0] ^ 1, q[1]]) + q[2:], "another id, or not a response"),  # wrong id
        (lambda q: q, "another id, or not a response"),  # our query echoed: QR not set
        (
            lambda q: q[:2] + b"\x81\x80" + q[4:12] + b"\x05other\x04test\x00\x00\x01\x00\x01",
            "another question",
        ),
        (lambda q: q[:2] + b"\x81\x80" + q[4:12] + b"\xc0\x0c", "does not point backwards"),
    ],
)
def test_answers_that_are_not_ours_are_skipped_and_named(reply: Callable[[bytes], bytes], why: str) -> None:
    for peer in answering(reply):
        text = reason(f"dns://127.0.0.1:{peer.port}/x.test", bound=1.5)
        assert text.startswith("no answer within 1.5s; the server sent only messages that are not an answer")
        assert why in text


def test_a_malformed_answer_to_our_question_is_named() -> None:
    def reply(query: bytes) -> bytes:
        header = query[:2] + b"\x81\x80" + struct.pack("!HHHH", 1, 1, 0, 0)
        question = query[12:]
        record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4000) + b"\x7f\x00"  # rdlength past the end
        return header + question + record

    for peer in answering(reply):
        assert reason(f"dns://127.0.0.1:{peer.port}/x.test") == (
            "malformed DNS message: a record's data runs past its end"
        )


def test_servfail_is_its_own_reason() -> None:
    for peer in answering(lambda q: q[:2] + b"\x81\x82" + q[4:]):
        assert reason(f"dns://127.0.0.1:{peer.port}/x.test") == "the server answered SERVFAIL for x.test A"


def test_system_resolver_localhost() -> None:
    ready("dns:localhost", {"expect": ["127.0.0.1"]})
    assert reason("dns:localhost", {"expect": ["127.0.0.2"]}) == "A answers 127.0.0.1; expected 127.0.0.2"


def test_system_resolver_unknown_name() -> None:
    """`.invalid` never resolves (RFC 6761); the system resolver says so, or fails to ask, in the bound."""
    started = time.monotonic()
    text = reason("dns:nothing-here.invalid", bound=3)
    assert text.startswith("lookup nothing-here.invalid: ")
    assert time.monotonic() - started < 6
