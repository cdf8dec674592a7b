"""TCP: resolve, connect, close. Nothing is sent.

A target given by IP address needs no lookup, so its attempt is a non-blocking connect that the
runner's own thread watches with poll() (Connecting): no worker thread and no hand-off per attempt,
which is most of the idle cost of a thousand waiting targets (docs/performance.md). A name goes to
a worker: its lookup blocks (checks/net.py). This module uses `_socket`, the C module under
`socket`: `import socket` brings `enum` and costs ~4 ms of every pod's start-up."""

from __future__ import annotations

import _socket
import errno
import time

from portpatrol.checks import SELF_CONNECT, NotReady, connected_to_itself, describe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portpatrol.kinds.tcp import TcpSpec


class Connecting:
    """One non-blocking connect. The runner polls `fd` for writability, then asks result()."""

    __slots__ = ("bound", "code", "fd", "sock")

    def __init__(self, family: int, sockaddr: tuple[Any, ...], bound: float) -> None:
        self.bound = bound
        self.sock = _socket.socket(family, _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK)
        try:  # 0 (connected), EINPROGRESS (poll for it), or the reason at once (no route, ...)
            code = self.sock.connect_ex(sockaddr)
            if code == errno.EINPROGRESS:
                # A port of this machine that refuses has answered within connect(): its reason
                # is here already, and the runner need not poll for it (0: not yet, or connected).
                code = self.sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR) or code
            self.code = code
        except OSError:
            self.sock.close()
            raise
        self.fd: int = self.sock.fileno()

    @property
    def waiting(self) -> bool:
        return self.code == errno.EINPROGRESS

    def result(self) -> str | None:
        """Why the connect failed, or None when it succeeded. Closes the socket."""
        try:
            code = self.code
            if code == errno.EINPROGRESS:
                code = self.sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
            if not code and connected_to_itself(self.sock):
                return SELF_CONNECT
        finally:
            self.sock.close()
        return describe(code, self.bound) if code else None

    def close(self) -> None:
        self.sock.close()


class TcpCheck:
    def __init__(self, spec: TcpSpec, dial_timeout: float) -> None:
        self.spec = spec
        self.dial_timeout = dial_timeout
        self.literal: tuple[int, tuple[Any, ...]] | None = None  # (family, sockaddr) of an IP address
        try:  # as bytes: a str would go through the idna codec, ~2 ms of imports on first use
            family, _, _, _, sockaddr = _socket.getaddrinfo(
                spec.host.encode(), spec.port, 0, _socket.SOCK_STREAM, 0, _socket.AI_NUMERICHOST
            )[0]
            # The address as bytes again: connect() then skips converting it on every attempt.
            self.literal = (family, (str(sockaddr[0]).encode(), *sockaddr[1:]))
        except (OSError, UnicodeError):
            pass  # a name

    def dial(self) -> Connecting | None:
        """A connect for the runner's poll loop, for an IP address (`literal`); None for a name,
        whose lookup blocks: attempt() on a worker."""
        if self.literal is None:
            return None
        try:
            return Connecting(*self.literal, self.dial_timeout)
        except OSError as error:  # no socket at all, e.g. too many open files
            raise NotReady(describe(error.errno or errno.EIO, self.dial_timeout)) from None

    def attempt(self) -> None:
        """The whole attempt, blocking, within its bound: for a worker thread."""
        from portpatrol.checks import net

        deadline = time.monotonic() + self.dial_timeout
        net.connect(self.spec.host, self.spec.port, deadline, self.dial_timeout, _socket.socket).close()
