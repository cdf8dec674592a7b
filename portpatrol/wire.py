"""Bounded conversations with a peer, for the kinds that speak a protocol (postgres, redis, ...).

Every read and write runs under the attempt's deadline, every length the peer sends is checked
before it is trusted, and whatever the peer says is cut and escaped before it becomes a reason."""

from __future__ import annotations

import time

from portpatrol.checks import timed_out
from portpatrol.errors import NotReady
from portpatrol.text import cut, printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket  # only a type here: `socket` costs ~10 ms of start-up (enum, selectors)
    import ssl

PEER_TEXT = 200  # characters of a peer's own words shown in a reason


def peer_text(data: bytes | str, limit: int = PEER_TEXT) -> str:
    """A peer's words as a reason may show them: decoded leniently, escaped, cut."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return printable(cut(text, limit))


class Wire:
    """A connected socket whose every operation ends by `deadline` (time.monotonic()).
    `bound` is the attempt's length, only for the wording of a timeout."""

    def __init__(self, sock: socket.socket, deadline: float, bound: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.bound = bound
        self._buffer = bytearray()

    @classmethod
    def opened(
        cls, host: str, port: int, deadline: float, bound: float, make: type[socket.socket] | None = None
    ) -> Wire:
        """A wire to host:port, connected within the deadline (checks.net.connect); use it in a
        `with` block, which closes it. `make` is the socket class (socket.socket by default)."""
        from portpatrol.checks.net import connect

        if make is None:
            import socket

            make = socket.socket
        return cls(connect(host, port, deadline, bound, make), deadline, bound)

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise NotReady(timed_out(self.bound))
        return left

    def send(self, data: bytes) -> None:
        try:
            self.sock.settimeout(self._left())
            self.sock.sendall(data)
        except TimeoutError:
            raise NotReady(timed_out(self.bound)) from None
        except OSError as error:
            raise NotReady(f"sending failed: {_os_reason(error)}") from None

    def _fill(self, what: str) -> None:
        try:
            self.sock.settimeout(self._left())
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise NotReady(f"{timed_out(self.bound)} ({what})") from None
        except OSError as error:
            raise NotReady(f"connection failed during {what}: {_os_reason(error)}") from None
        if not chunk:
            raise NotReady(f"the server closed the connection during {what}")
        self._buffer += chunk

    def exact(self, size: int, what: str) -> bytes:
        """Exactly `size` bytes; the caller has checked `size` against the protocol's limits."""
        while len(self._buffer) < size:
            self._fill(what)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def line(self, what: str, limit: int = 4096, end: bytes = b"\r\n") -> bytes:
        """Bytes up to `end` (not included), refusing a line longer than `limit`."""
        while True:
            found = self._buffer.find(end)
            if found >= 0:
                data = bytes(self._buffer[:found])
                del self._buffer[: found + len(end)]
                return data
            if len(self._buffer) > limit:
                raise NotReady(f"the server sent a line longer than {limit} bytes during {what}")
            self._fill(what)

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """Wraps the socket in TLS, the handshake bounded like every read."""
        import ssl

        if self._buffer:  # bytes sent before the handshake could be injected by a machine in the middle
            raise NotReady("the server sent data before the TLS handshake")
        try:
            self.sock.settimeout(self._left())
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except TimeoutError:
            raise NotReady(f"{timed_out(self.bound)} (TLS handshake)") from None
        except ssl.SSLError as error:
            raise NotReady(f"TLS failed: {peer_text(error.reason or str(error))}") from None
        except OSError as error:
            raise NotReady(f"TLS failed: {_os_reason(error)}") from None

    def close(self) -> None:
        self.sock.close()


def _os_reason(error: OSError) -> str:
    from portpatrol.checks import reason

    return reason(error, 0.0)
