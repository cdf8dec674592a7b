"""The plain-HTTP check sends what the httpx check sends, and leaves everything else to it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol.checks import NotReady
from portpatrol.checks.http import HttpCheck
from portpatrol.checks.plainhttp import PlainHttpCheck, split, suits
from portpatrol.kinds import build
from portpatrol.kinds.http import HttpSpec, StatusCodes
from portpatrol.model import Target, Timing


class Recorder:
    """Accepts connections on loopback, records each request head, answers `reply`."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.heads: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                head, _, body = head.partition(b"\r\n\r\n")
                length = [
                    int(line[15:])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                while length and len(body) < length[0] and (chunk := conn.recv(4096)):
                    body += chunk
                self.heads.append(head + b"\r\n\r\n" + body)
                conn.sendall(self.reply)


@pytest.fixture
def ok() -> Iterator[Recorder]:
    recorder = Recorder(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    yield recorder
    recorder.sock.close()


def spec(url: str, **kwargs: object) -> HttpSpec:
    headers = (("User-Agent", "portpatrol/0.1.0"), *kwargs.pop("headers", ()))  # type: ignore[misc]
    return HttpSpec(url, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "host_header", "target"),
    [
        ("http://127.0.0.1:8080/healthz?x=1#frag", "127.0.0.1:8080", "/healthz?x=1"),
        ("http://API:80", "api", "/"),
        ("http://[::1]:9000?q", "[::1]:9000", "/?q"),
        ("HTTP://db/a/b/", "db", "/a/b/"),
    ],
)
def test_split(url: str, host_header: str, target: str) -> None:
    parts = split(url)
    assert parts is not None
    assert (parts.host_header, parts.target) == (host_header, target)


@pytest.mark.parametrize(
    "url",
    [
        "https://db/",
        "http://user:pw@db/",
        "http://dé.example/",
        "http://db/a b",
        "http://db/{x}",
        "http://[fe80::1%25eth0]:80/",
        "http://db:99999/",
        "http://db:x/",
    ],
)
def test_left_to_httpx(url: str) -> None:
    assert split(url) is None
    assert not suits(spec(url))


def test_any_method_without_proxy() -> None:
    assert suits(spec("http://db/", method="HEAD"))
    assert suits(spec("http://db/", method="POST", body=b'{"probe": true}'))
    assert not suits(spec("http://db/", proxy="http://proxy:3128"))
    assert not suits(spec("http://db/", headers=(("X-Name", "Zoë"),)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"method": "HEAD"},
        {"headers": (("X-Zeta", "1"), ("X-Alpha", "a=b"), ("x-alpha", "two"))},
        {"headers": (("Accept", "text/plain"), ("Authorization", "Bearer t"))},
        {"headers": (("User-Agent", "kube-probe/1.30"),)},
        {"headers": (("X-B", "2"), ("host", "a.test"), ("Connection", "close"))},
        {"method": "POST"},
        {"method": "POST", "body": b'{"probe": true}'},
        {"method": "PUT", "body": b"x", "headers": (("Content-Type", "text/plain"),)},
        {"method": "OPTIONS"},
    ],
)
def test_same_request_as_httpx(ok: Recorder, kwargs: dict[str, object]) -> None:
    wanted = spec(f"http://127.0.0.1:{ok.port}/ready?x=1", **kwargs)
    HttpCheck(wanted, 2.0).attempt()
    PlainHttpCheck(wanted, 2.0).attempt()
    assert len(ok.heads) == 2
    assert ok.heads[1] == ok.heads[0]


def test_a_header_value_beyond_ascii_is_sent_as_utf8_as_go_does(ok: Recorder) -> None:
    wanted = spec(f"http://127.0.0.1:{ok.port}/", headers=(("X-Name", "Zoë ✓"),))
    assert not suits(wanted)  # the httpx check sends it
    HttpCheck(wanted, 2.0).attempt()
    assert "\r\nX-Name: Zoë ✓\r\n".encode() in ok.heads[0]


def test_status_outside_the_set() -> None:
    recorder = Recorder(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
    check = PlainHttpCheck(spec(f"http://127.0.0.1:{recorder.port}/", expected=StatusCodes()), 2.0)
    with pytest.raises(NotReady, match=r"^status 503, expected 200$"):
        check.attempt()
    recorder.sock.close()


def test_silence_is_bounded() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        check = PlainHttpCheck(spec(f"http://127.0.0.1:{server.getsockname()[1]}/"), 0.3)
        with pytest.raises(NotReady, match=r"^no answer within 300ms$"):
            check.attempt()


def test_garbage_is_judged_by_httpx() -> None:
    recorder = Recorder(b"garbage\r\n\r\n")
    check = PlainHttpCheck(spec(f"http://127.0.0.1:{recorder.port}/"), 2.0)
    with pytest.raises(NotReady, match="illegal status line"):
        check.attempt()
    recorder.sock.close()


def test_build_picks_it_and_httpx_is_not_imported(ok: Recorder) -> None:
    target = Target("api", "api", spec(f"http://127.0.0.1:{ok.port}/"), Timing())
    assert isinstance(build(target), PlainHttpCheck)
    code = (
        "import sys\n"
        "from portpatrol.kinds import build\n"
        "from portpatrol.kinds.http import HttpSpec\n"
        "from portpatrol.model import Target\n"
        f"build(Target('api', 'api', HttpSpec('http://127.0.0.1:{ok.port}/'))).attempt()\n"
        "assert 'httpx' not in sys.modules and 'ssl' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# --------------------------------------------------------------------------- a body's bytes, arbitrary


def read_answer(data: bytes, expect: dict[str, object]) -> str:
    """The plain check's reading of an answer (head, framing, body, judging) from `data` sent whole
    by a peer that then closes: "ready", a reason, or "handed over" (httpx judges those)."""
    from portpatrol.checks.plainhttp import Head, _Unusual, parse_head
    from portpatrol.kinds import http

    spec = http.parse("http://127.0.0.1/", {"expect": expect})
    check = PlainHttpCheck(spec, 2.0)
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(data[data.find(b"\r\n\r\n") + 4 :] if b"\r\n\r\n" in data else b"")
        theirs.close()
        head_bytes, _, _ = data.partition(b"\r\n\r\n")
        try:
            head: Head = parse_head(head_bytes)
            check._judge(ours, head, b"", "GET", time.monotonic() + 2.0)
        except _Unusual:
            return "handed over"
        except NotReady as error:
            return str(error)
        return "ready"
    finally:
        ours.close()


EXPECTS: list[dict[str, object]] = [
    {"json": [{"path": "$.status", "equals": "UP"}]},
    {"body": "ok"},
    {"headers": {"Content-Type": "json"}},
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"HTTP/1.1 200 OK\r\n",
                    b"Content-Length: 5\r\n",
                    b"Content-Length: x\r\n",
                    b"Transfer-Encoding: chunked\r\n",
                    b"Content-Encoding: gzip\r\n",
                    b"Content-Type: application/json; charset=latin-1\r\n",
                    b"\r\n",
                    b"5\r\nhello\r\n",
                    b"0\r\n\r\n",
                    b"fffffffffffffffff\r\n",
                    b'{"status": "UP"}',
                ]
            ),
        ),
        max_size=10,
    ),
    st.sampled_from(EXPECTS),
)
def test_arbitrary_answers_give_only_a_verdict(pieces: list[bytes], expect: dict[str, object]) -> None:
    outcome = read_answer(b"".join(pieces), expect)
    assert isinstance(outcome, str)


def test_chunked_and_sized_bodies_are_read() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    up: dict[str, object] = {"json": [{"path": "$.status", "equals": "UP"}]}
    assert read_answer(head + b"Content-Length: 16\r\n\r\n" + b'{"status": "UP"}', up) == "ready"
    chunked = b'Transfer-Encoding: chunked\r\n\r\n6\r\n{"stat\r\nA\r\nus": "UP"}\r\n0\r\n\r\n'
    assert read_answer(head + chunked, up) == "ready"
    assert read_answer(head + b"\r\n" + b'{"status": "UP"}', up) == "ready"  # up to the close
    short = read_answer(head + b"Content-Length: 99\r\n\r\n{}", up)
    assert short == "server disconnected before the whole body was sent"
    assert read_answer(head + b"Transfer-Encoding: gzip, chunked\r\n\r\n", up) == "handed over"
