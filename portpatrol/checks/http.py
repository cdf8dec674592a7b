"""HTTP(S) through httpx: one request (and its redirects, followed here by httppolicy.next_hop as
the plain-HTTP check does), ready when the status is in the expected set and the answer holds what
`expect` says. The response is streamed: a redirect's body is never read (the connection closes),
the final body goes through httpanswer.read_body, bounded, only when an expectation needs it.

httpx bounds each read and write, not a whole request, so a peer that drips one byte a second
would hold an attempt forever. The network backend below gives every socket operation only
the time left until the attempt's deadline, and resolves names through the bounded resolver."""

from __future__ import annotations

import ast
import base64
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from portpatrol.checks import NotReady, net, reason, timed_out
from portpatrol.checks.httppolicy import REDIRECTS, next_hop
from portpatrol.errors import SetupError
from portpatrol.kinds.http import Settings as HttpSpec
from portpatrol.kinds.httpanswer import ACCEPT_ENCODING
from portpatrol.text import cut, lower_first


class _Backend(httpcore.NetworkBackend):
    """Clients are shared by targets, and a worker thread makes one attempt at a time,
    so the attempt's deadline and bound live in a thread-local."""

    def __init__(self, proxy: tuple[str, int] | None = None) -> None:
        self.attempt = threading.local()
        self.proxy = proxy  # (host, port) of the proxy every connection of this client goes to

    def start(self, bound: float, deadline: float | None = None) -> None:
        self.attempt.bound = bound
        self.attempt.deadline = time.monotonic() + bound if deadline is None else deadline

    @property
    def bound(self) -> float:
        bound: float = self.attempt.bound
        return bound

    @property
    def deadline(self) -> float:
        deadline: float = self.attempt.deadline
        return deadline

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout(timed_out(self.bound))
        return left

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            sock = net.connect(host, port, self.deadline, self.bound, socket.socket)
        except NotReady as error:
            # Through a proxy every connection goes to the proxy: say so, or "connection refused"
            # would read as the target's answer. Host and port only, never the proxy's credentials.
            where = ""
            if (host, port) == self.proxy:
                where = f"proxy [{host}]:{port}: " if ":" in host else f"proxy {host}:{port}: "
            raise httpcore.ConnectError(where + str(error)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Stream(sock, self)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Stream(httpcore.NetworkStream):
    def __init__(self, sock: socket.socket, backend: _Backend) -> None:
        self.sock = sock
        self.backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self.sock.settimeout(self.backend.left())
            return self.sock.recv(max_bytes)
        except OSError as error:
            raise self._mapped(error, httpcore.ReadTimeout, httpcore.ReadError) from None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            while buffer:
                self.sock.settimeout(self.backend.left())
                buffer = buffer[self.sock.send(buffer) :]
        except OSError as error:
            raise self._mapped(error, httpcore.WriteTimeout, httpcore.WriteError) from None

    def close(self) -> None:
        self.sock.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        try:
            _load_certificates(ssl_context)
            self.sock.settimeout(self.backend.left())
            tls = ssl_context.wrap_socket(self.sock, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError as error:
            self.sock.close()
            raise httpcore.ConnectError(f"TLS certificate: {error.verify_message}") from None
        except OSError as error:
            self.sock.close()
            raise self._mapped(
                error, httpcore.ConnectTimeout, httpcore.ConnectError, "TLS handshake: "
            ) from None
        return _Stream(tls, self.backend)

    def get_extra_info(self, info: str) -> object:
        if info == "ssl_object" and isinstance(self.sock, ssl.SSLSocket):
            return self.sock  # httpcore asks it for the negotiated ALPN protocol
        if info == "socket":
            return self.sock
        return None

    def _mapped(
        self, error: OSError, on_timeout: type[Exception], otherwise: type[Exception], prefix: str = ""
    ) -> Exception:
        if isinstance(error, TimeoutError):
            return on_timeout(prefix + timed_out(self.backend.bound))
        if isinstance(error, ssl.SSLError):
            return otherwise(prefix + (error.reason or "TLS error").lower().replace("_", " "))
        return otherwise(prefix + reason(error, self.backend.bound))


@cache
def _ssl_context(verify: bool) -> ssl.SSLContext:
    """One context per kind, shared by all targets. Its CA certificates are loaded on the first
    TLS handshake (_load_certificates): that takes tens of milliseconds a plain-HTTP wait need
    not pay."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


_loaded: set[int] = set()
_loading = threading.Lock()


def _load_certificates(context: ssl.SSLContext) -> None:
    """The system store (which honours SSL_CERT_FILE and SSL_CERT_DIR) and certifi's."""
    if context.verify_mode == ssl.CERT_NONE or id(context) in _loaded:
        return
    with _loading:
        if id(context) not in _loaded:
            import certifi

            context.load_default_certs()
            context.load_verify_locations(certifi.where())
            _loaded.add(id(context))


def _host_port(url: httpx.URL) -> tuple[str, int]:
    return url.host, url.port or (443 if url.scheme == "https" else 80)


# h11 quotes what the peer sent when it cannot parse it ("illegal status line: bytearray(b'...')").
# Those bytes are the peer's to choose and may echo our own request, credentials included.
_PEER_BYTES = re.compile(r":?\s*(?:bytearray\()?b['\"].*", re.DOTALL)
# httpx shows a bad character of a URL (a redirect's Location) as Python's repr (`'\x01'`): the
# character itself is put back, and the line's own escaping shows it (`\u0001`).
_REPR_CHARS = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[\\'nrt]))+'")


def _basic_credentials(url: str) -> frozenset[str]:
    """The Authorization value httpx derives from user info in `url`: a secret in another form."""
    parts = urlsplit(url)
    if parts.username is None:
        return frozenset()
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return frozenset({base64.b64encode(pair.encode()).decode()})


# httpcore's errors as httpx's, most specific first (what httpx's own transport does).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _translated(error: Exception) -> Exception:
    for theirs, ours in _ERRORS:
        if isinstance(error, theirs):
            return ours(str(error))
    return error


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.stream
        except Exception as error:
            raise _translated(error) from error

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()


class _Transport(httpx.BaseTransport):
    """httpx's transport interface over an httpcore pool built here: httpx takes no network
    backend, httpcore's public pools do (ConnectionPool, HTTPProxy)."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self.pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        sent = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = self.pool.handle_request(sent)
        except Exception as error:
            raise _translated(error) from error
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.pool.close()


@cache
def _client(
    verify: bool, proxy: str | None, context: ssl.SSLContext | None = None
) -> tuple[httpx.Client, _Backend]:
    """One client per kind of target, not per target: thousands of HTTP targets stay cheap.
    Connections are never reused, so every attempt proves the peer accepts new ones. Redirects
    are followed by HttpCheck, not httpx: httpx reads a redirect's whole body. `context`: a
    target's own (ca_file, client certificate), used as made, without the system store."""
    if context is not None:
        _loaded.add(id(context))
    ssl_context = _ssl_context(verify) if context is None else context
    backend = _Backend(_host_port(httpx.URL(proxy)) if proxy else None)
    pool: httpcore.ConnectionPool
    if proxy is None:
        pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=0,
            network_backend=backend,
        )
    else:
        via = httpx.Proxy(proxy)  # the URL without its credentials, which go as proxy_auth
        pool = httpcore.HTTPProxy(
            proxy_url=httpcore.URL(
                scheme=via.url.raw_scheme, host=via.url.raw_host, port=via.url.port, target=via.url.raw_path
            ),
            proxy_auth=via.raw_auth,
            proxy_headers=via.headers.raw,
            ssl_context=ssl_context,
            proxy_ssl_context=via.ssl_context,
            max_connections=None,
            max_keepalive_connections=0,
            network_backend=backend,
        )
    client = httpx.Client(
        transport=_Transport(pool),
        trust_env=False,  # the source already chose the proxy from the environment
        follow_redirects=False,
        # What httpanswer.read_body decodes, whatever optional decoders httpx finds installed.
        # Given whole, in httpx's own order: giving one would move it to the end.
        headers={"Accept": "*/*", "Accept-Encoding": ACCEPT_ENCODING, "Connection": "keep-alive"},
        timeout=None,  # noqa: S113 (the backend bounds the whole attempt, not each phase)
    )
    return client, backend


class HttpCheck:
    def __init__(self, spec: HttpSpec, dial_timeout: float) -> None:
        self.spec = spec
        self.dial_timeout = dial_timeout
        try:
            context = spec.tls.context if spec.tls is not None else None
            self.client, self.backend = _client(not spec.skip_tls_verify, spec.proxy, context)
        except httpx.InvalidURL as error:
            # A proxy the source let through but httpx cannot use (a host that is not valid IDNA,
            # e.g. HTTP_PROXY=http://\x80:3128). httpx names the bad part only, never a password.
            reason = cut(lower_first(str(error)), 200)  # it may quote a huge host
            raise SetupError(f"the HTTP proxy cannot be used: {reason}") from None
        # Credentials in the URL become Basic auth, but as in Go's client (the original's), an
        # Authorization header the user wrote wins: httpx would replace it; a no-op Auth keeps it.
        self.auth: httpx.Auth | None = (
            httpx.Auth() if any(name.lower() == "authorization" for name, _ in spec.headers) else None
        )
        self.hidden = _basic_credentials(spec.url) | _basic_credentials(spec.proxy or "")
        # As bytes: httpx encodes str values as ASCII and fails on any other character, where Go's
        # client (the original's) sends the value's UTF-8 bytes as written.
        self.headers = [(name.encode(), value.encode()) for name, value in spec.headers]

    def _reason(self, error: httpx.HTTPError | httpx.InvalidURL) -> str:
        """The library's words for a failure, without the peer's bytes or any credential."""
        text = _PEER_BYTES.sub("", str(error)).rstrip(".")
        text = _REPR_CHARS.sub(lambda found: str(ast.literal_eval(found[0])), text)
        for secret in self.hidden:
            text = text.replace(secret, "***")
        text = cut(text, 300)  # a reason phrase is the peer's to choose
        return lower_first(text or type(error).__name__)

    def attempt(self, deadline: float | None = None) -> None:
        """`deadline`: when the plain-HTTP check hands over an attempt it began (checks/plainhttp.py)."""
        self.backend.start(self.dial_timeout, deadline)
        spec = self.spec
        url, method, body = spec.url, spec.method, spec.body
        headers = list(spec.headers)
        followed = 0
        try:
            while True:
                sent = [(name.encode(), value.encode()) for name, value in headers]
                request = self.client.build_request(method, url, headers=sent, content=body)
                response = self.client.send(request, auth=self.auth, stream=True)
                try:
                    status = response.status_code
                    location = response.headers.get("location")
                    if spec.follow_redirects and status in REDIRECTS and location is not None:
                        if followed == spec.max_redirects:
                            raise NotReady(f"more than {spec.max_redirects} redirects")
                        followed += 1
                        url, method, headers, body = next_hop(
                            url, status, location, method=method, headers=headers, body=body
                        )
                        httpx.URL(url)  # a Location httpx cannot use fails here, named below
                        continue  # closed unread below: a redirect's body costs nothing
                    self._judge(response, method)
                    return
                finally:
                    response.close()
        except httpx.InvalidURL as error:  # not an HTTPError: e.g. a host that is not valid IDNA
            raise NotReady(f"invalid URL: {self._reason(error)}") from None
        except httpx.ProxyError as error:  # the proxy refused the tunnel (CONNECT), e.g. with 407
            raise NotReady(f"proxy answered {self._reason(error)}") from None
        except httpx.HTTPError as error:
            raise NotReady(self._reason(error)) from None

    def _judge(self, response: httpx.Response, method: str) -> None:
        status = response.status_code
        if status not in self.spec.expected:
            if status == 407 and self.spec.proxy is not None:  # the proxy's own answer, not the target's
                reason = "status 407 from the proxy (proxy authentication required)"
                raise NotReady(f"{reason}, expected {self.spec.expected}")
            raise NotReady(f"status {status}, expected {self.spec.expected}")
        expect = self.spec.expect
        if expect is None:
            return
        from portpatrol.kinds.httpanswer import read_body

        body = b""
        if expect.reads_body and method != "HEAD":
            encoding = ", ".join(response.headers.get_list("content-encoding")) or None
            body = read_body(response.iter_raw(), encoding, expect.max_body)
        expect.judge(response.headers.multi_items(), body, response.headers.get("content-type"))
