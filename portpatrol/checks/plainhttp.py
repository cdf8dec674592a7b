"""Plain http:// requests, without a proxy or credentials in the URL, on a bare socket.

That is what most readiness endpoints are, and such a wait should not pay for importing httpx:
httpx, httpcore, h11, ssl, email and urllib.request are about two thirds of an HTTP start-up
(docs/performance.md). The request is the one the httpx check sends (same header order and
defaults), redirects are followed the same way while they stay plain http, and every failure
reads the same. The body, when an `expect` block needs it, is read bounded (Content-Length,
chunked, or up to the close) under the attempt's deadline and handed to httpanswer.read_body.
Anything else (a redirect to https, a 1xx, an answer that does not parse as plainly as expected)
is handed to the httpx check (checks/http.py) within the same attempt's deadline, so httpx is
imported only by the waits that need it. A redirect's body is never read: the connection closes."""

from __future__ import annotations

import socket
import time

from portpatrol.checks import NotReady, net, reason, timed_out
from portpatrol.checks.httppolicy import REDIRECTS, next_hop
from portpatrol.kinds.http import Settings as HttpSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from portpatrol.checks.http import HttpCheck

MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096
# What may stand in a request target as it is; httpx percent-encodes anything else.
_TARGET_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?[]@!$&'()*+,;=%"
)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._:")
_DISCONNECTED = "server disconnected without sending a response"  # httpcore's words


class _Unusual(Exception):
    """Something the httpx check should judge: the attempt is handed over."""


class _Url:
    __slots__ = ("host", "host_header", "port", "target")

    def __init__(self, host: str, host_header: str, port: int, target: str) -> None:
        self.host = host  # for connecting: no brackets
        self.host_header = host_header
        self.port = port
        self.target = target  # path and query


def split(url: str) -> _Url | None:
    """A plain http URL taken apart as the httpx check would send it, or None when it is not
    one this check sends as written (another scheme, credentials, non-ASCII, odd characters)."""
    if url[:7].lower() != "http://" or not url.isascii():
        return None
    rest = url[7:].split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, target = rest[:cut].lower(), rest[cut:]
    if not target.startswith("/"):
        target = "/" + target
    if netloc.startswith("["):
        host, bracket, after = netloc[1:].partition("]")
        port_text = after[1:] if bracket and after.startswith(":") else None if after or not bracket else ""
    else:
        host, _, port_text = netloc.partition(":")
    # Credentials, a zone (%25eth0), odd characters: httpx decides how to send those.
    if (
        "@" in netloc
        or not set(target) <= _TARGET_CHARS
        or not host
        or not set(host) <= _HOST_CHARS
        or port_text is None
        or (port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536))
    ):
        return None
    port = int(port_text) if port_text else 80
    shown = f"[{host}]" if ":" in host else host
    return _Url(host, shown if port == 80 else f"{shown}:{port}", port, target)


def suits(spec: HttpSpec) -> bool:
    """Whether this check sends exactly what the httpx check would for `spec`."""
    return (
        spec.proxy is None
        and split(spec.url) is not None
        and all(name.isascii() and value.isascii() for name, value in spec.headers)
    )


def request(method: str, url: _Url, headers: list[tuple[str, str]], body: bytes | None = None) -> bytes:
    """httpx's request: its default headers first, those the user wrote replacing them, then the
    user's (the User-Agent first) in the order written, then the body's length."""
    host = ("Host", url.host_header)
    for index, (name, value) in enumerate(headers):
        if name.lower() == "host":  # httpx sends a Host the user wrote first, where its own would be
            host = (name, value)
            headers = headers[:index] + headers[index + 1 :]
            break
    given = {name.lower() for name, _ in headers}
    defaults = [host]
    if body is None and method in ("POST", "PUT", "PATCH"):
        defaults.append(("Content-Length", "0"))
    defaults += [("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"), ("Connection", "keep-alive")]
    lines = [f"{method} {url.target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in defaults if name.lower() not in given]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


class Head:
    """A response head: status, headers as sent (names and values ASCII), the Location if any."""

    __slots__ = ("headers", "location", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], location: str | None) -> None:
        self.status, self.headers, self.location = status, headers, location

    def get(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name]


def parse_head(head: bytes) -> Head:
    """A response head; _Unusual when it is not plainly HTTP/1.x with a final status and ASCII
    header lines (h11, behind httpx, then judges it)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _Unusual
    code = parts[1]
    if not (len(code) == 3 and code.isdigit()) or code.startswith(b"1"):
        raise _Unusual
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not line.isascii() or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise _Unusual  # obsolete folding, a bad name, bytes h11 decides about
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("ascii")))
    found = Head(int(code), headers, None)
    locations = found.get("location")
    if len(locations) > 1:
        raise _Unusual
    found.location = locations[0] if locations else None
    return found


class PlainHttpCheck:
    def __init__(self, spec: HttpSpec, dial_timeout: float) -> None:
        self.spec = spec
        self.dial_timeout = dial_timeout
        self._httpx: HttpCheck | None = None

    def attempt(self) -> None:
        deadline = time.monotonic() + self.dial_timeout
        try:
            self._follow(deadline)
        except _Unusual:
            self._handover().attempt(deadline)

    def _handover(self) -> HttpCheck:
        if self._httpx is None:
            from portpatrol.checks.http import HttpCheck

            self._httpx = HttpCheck(self.spec, self.dial_timeout)
        return self._httpx

    def _follow(self, deadline: float) -> None:
        """The final answer judged, following redirects by httppolicy.next_hop as the httpx check does."""
        spec = self.spec
        address, method, headers, body = spec.url, spec.method, list(spec.headers), spec.body
        followed = 0
        while True:
            url = split(address)
            if url is None:
                raise _Unusual
            sock, head, rest = self._exchange(url, request(method, url, headers, body), deadline)
            try:
                if spec.follow_redirects and head.status in REDIRECTS and head.location is not None:
                    if followed == spec.max_redirects:
                        raise NotReady(f"more than {spec.max_redirects} redirects")
                    followed += 1
                    address, method, headers, body = next_hop(
                        address, head.status, head.location, method=method, headers=headers, body=body
                    )
                    continue  # the redirect's body is never read: the socket closes below
                if head.status not in spec.expected:
                    raise NotReady(f"status {head.status}, expected {spec.expected}")
                if spec.expect is not None:
                    self._judge(sock, head, rest, method, deadline)
                return
            finally:
                sock.close()

    def _judge(self, sock: socket.socket, head: Head, rest: bytes, method: str, deadline: float) -> None:
        from portpatrol.kinds.httpanswer import read_body

        expect = self.spec.expect
        assert expect is not None
        body = b""
        if expect.reads_body and method != "HEAD" and head.status not in (204, 304):
            chunks = _Body(sock, rest, deadline, self)
            encoding = ", ".join(head.get("content-encoding")) or None
            try:
                body = read_body(chunks.framed(head), encoding, expect.max_body)
            except OSError as error:
                raise NotReady(reason(error, self.dial_timeout)) from None
        types = head.get("content-type")
        expect.judge(head.headers, body, types[0] if types else None)

    def _exchange(self, url: _Url, message: bytes, deadline: float) -> tuple[socket.socket, Head, bytes]:
        """Sends the request, reads the head: the open socket (the caller closes it), the head, and
        what came after the head."""
        bound = self.dial_timeout
        sock = net.connect(url.host, url.port, deadline, bound, socket.socket)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while message:
                sock.settimeout(self._left(deadline))
                message = message[sock.send(message) :]
            head = bytearray()
            while (end := head.find(b"\r\n\r\n")) < 0:
                if b"\n\n" in head or len(head) > MAX_HEAD:
                    raise _Unusual
                sock.settimeout(self._left(deadline))
                chunk = sock.recv(65536)
                if not chunk:
                    raise NotReady(_DISCONNECTED)
                head += chunk
            return sock, parse_head(bytes(head[:end])), bytes(head[end + 4 :])
        except OSError as error:
            sock.close()
            raise NotReady(reason(error, bound)) from None
        except BaseException:
            sock.close()
            raise

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReady(timed_out(self.dial_timeout))
        return left


class _Body:
    """The body's bytes as they arrive, transfer coding undone: Content-Length, chunked, or up to
    the close. Every read under the attempt's deadline; framing h11 would judge is handed over."""

    def __init__(self, sock: socket.socket, rest: bytes, deadline: float, check: PlainHttpCheck) -> None:
        self.sock, self.buffer, self.deadline, self.check = sock, bytearray(rest), deadline, check

    def _more(self) -> bool:
        self.sock.settimeout(self.check._left(self.deadline))
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def framed(self, head: Head) -> Iterator[bytes]:
        codings = [c.strip().lower() for value in head.get("transfer-encoding") for c in value.split(",")]
        lengths = head.get("content-length")
        if codings:
            if codings != ["chunked"] or lengths:
                raise _Unusual
            return self._chunked()
        if lengths:
            if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
                raise _Unusual
            return self._sized(int(lengths[0]))
        return self._to_close()

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _sized(self, size: int) -> Iterator[bytes]:
        while size > 0:
            if not self.buffer and not self._more():
                raise NotReady("server disconnected before the whole body was sent")
            data = self._take(size)
            size -= len(data)
            yield data

    def _to_close(self) -> Iterator[bytes]:
        while self.buffer or self._more():
            yield self._take(len(self.buffer))

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_CHUNK_LINE:
                raise _Unusual
            if not self._more():
                raise NotReady("server disconnected before the whole body was sent")
        return self._take(end + 2)[:-2]

    def _chunked(self) -> Iterator[bytes]:
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            if (
                not size_text
                or len(size_text) > 16
                or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
            ):
                raise _Unusual
            size = int(size_text, 16)
            if size == 0:
                return  # trailers are not read: the answer is complete for what we judge
            yield from self._sized(size)
            if self._line() != b"":
                raise _Unusual
