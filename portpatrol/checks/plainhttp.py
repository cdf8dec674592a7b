"""Plain http:// GET and HEAD, without a proxy or credentials in the URL, on a bare socket.

That is what most readiness endpoints are, and such a wait should not pay for importing httpx:
httpx, httpcore, h11, ssl, email and urllib.request are about two thirds of an HTTP start-up
(docs/performance.md). The request is the one the httpx check sends (same header order and
defaults), redirects are followed the same way while they stay plain http, and every failure
reads the same. Anything else (a redirect elsewhere, a 1xx, an answer that does not parse as
plainly as expected) is handed to the httpx check (checks/http.py) within the same attempt's
deadline, so httpx is imported only by the waits that need it."""

from __future__ import annotations

import socket
import time

from portpatrol.checks import NotReady, net, reason, timed_out
from portpatrol.kinds.http import Settings as HttpSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portpatrol.checks.http import HttpCheck

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10  # as the httpx check's client
MAX_HEAD = 64 * 1024
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
        and spec.method in ("GET", "HEAD")
        and split(spec.url) is not None
        and all(name.isascii() and value.isascii() for name, value in spec.headers)
    )


def request(method: str, url: _Url, headers: list[tuple[str, str]]) -> bytes:
    """httpx's request: its default headers first, those the user wrote replacing them, then the
    user's (the User-Agent first) in the order written."""
    host = ("Host", url.host_header)
    for index, (name, value) in enumerate(headers):
        if name.lower() == "host":  # httpx sends a Host the user wrote first, where its own would be
            host = (name, value)
            headers = headers[:index] + headers[index + 1 :]
            break
    given = {name.lower() for name, _ in headers}
    defaults = [
        host,
        ("Accept", "*/*"),
        ("Accept-Encoding", "gzip, deflate"),
        ("Connection", "keep-alive"),
    ]
    lines = [f"{method} {url.target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in defaults if name.lower() not in given]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def parse_head(head: bytes) -> tuple[int, str | None]:
    """The status and the Location of a response head; _Unusual when it is not plainly
    HTTP/1.x with a final status (h11, behind httpx, then judges it)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _Unusual
    code = parts[1]
    if not (len(code) == 3 and code.isdigit()) or code.startswith(b"1"):
        raise _Unusual
    locations = [line.split(b":", 1)[1].strip() for line in lines[1:] if line[:9].lower() == b"location:"]
    if len(locations) > 1 or not all(value.isascii() for value in locations):
        raise _Unusual
    return int(code), locations[0].decode("ascii") if locations else None


class PlainHttpCheck:
    def __init__(self, spec: HttpSpec, dial_timeout: float) -> None:
        self.spec = spec
        self.dial_timeout = dial_timeout
        self._httpx: HttpCheck | None = None

    def attempt(self) -> None:
        deadline = time.monotonic() + self.dial_timeout
        try:
            status = self._follow(deadline)
        except _Unusual:
            self._handover().attempt(deadline)
            return
        if status not in self.spec.expected:
            raise NotReady(f"status {status}, expected {self.spec.expected}")

    def _handover(self) -> HttpCheck:
        if self._httpx is None:
            from portpatrol.checks.http import HttpCheck

            self._httpx = HttpCheck(self.spec, self.dial_timeout)
        return self._httpx

    def _follow(self, deadline: float) -> int:
        """The final status, following redirects as httpx does (same method, Authorization
        dropped when the origin changes, at most 10)."""
        address = self.spec.url
        headers = list(self.spec.headers)
        followed = 0
        while True:
            url = split(address)
            if url is None:
                raise _Unusual
            status, location = self._exchange(url, request(self.spec.method, url, headers), deadline)
            if not (self.spec.follow_redirects and status in REDIRECTS and location is not None):
                return status
            if followed == MAX_REDIRECTS:
                raise NotReady(f"more than {MAX_REDIRECTS} redirects")
            followed += 1
            from urllib.parse import urljoin

            target = urljoin(address, location)
            after = split(target)
            if after is not None and (after.host, after.port) != (url.host, url.port):
                headers = [(name, value) for name, value in headers if name.lower() != "authorization"]
            address = target

    def _exchange(self, url: _Url, message: bytes, deadline: float) -> tuple[int, str | None]:
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
        except OSError as error:
            raise NotReady(reason(error, bound)) from None
        finally:
            sock.close()
        return parse_head(bytes(head[:end]))

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReady(timed_out(self.dial_timeout))
        return left
