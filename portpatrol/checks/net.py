"""Name resolution and connecting, both bounded by a deadline.

getaddrinfo() cannot be interrupted and may block far longer than an attempt's bound when no
resolver answers, so lookups run in a helper thread that the attempt stops waiting for at its
deadline. A lookup still running is shared by the next attempt instead of starting another,
and at most LOOKUP_THREADS run at once, so a dead resolver cannot multiply threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

# The wording of reasons is shared by every check; other checks reach it as net.reason etc. too.
from portpatrol.checks import NotReady, lower_first, reason, timed_out

TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from typing import Any

    AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


class _Lookup:
    def __init__(self, host: str) -> None:
        self.host = host
        self.done = threading.Event()
        self.result: Sequence[AddrInfo] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.result = socket.getaddrinfo(self.host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            self.error = _gai_reason(error)
        finally:
            with _lock:
                _running.pop(self.host, None)
            _threads.release()
            self.done.set()


# Lookup threads are few, so a dead resolver cannot multiply threads: with the runner's workers
# and the main thread, a default run never has more than 64.
LOOKUP_THREADS = 15
_threads = threading.BoundedSemaphore(LOOKUP_THREADS)
_lock = threading.Lock()
_running: dict[str, _Lookup] = {}


def _gai_reason(error: Exception) -> str:
    if isinstance(error, socket.gaierror) and error.errno in (socket.EAI_NONAME, socket.EAI_NODATA):
        return "no such host"
    if isinstance(error, OSError) and error.strerror:
        return lower_first(error.strerror)
    return str(error) or type(error).__name__


def resolve(host: str, deadline: float) -> Sequence[AddrInfo]:
    """Every address `host` resolves to, IP literals at once, names by deadline."""
    # As bytes: a str goes through the idna codec, whose first use imports unicodedata and
    # stringprep (~2 ms of start-up); an IP literal is ASCII and needs no codec.
    if host.isascii():
        try:
            return socket.getaddrinfo(
                host.encode(), None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            pass
    lookup = _running.get(host)
    if lookup is None:
        if not _threads.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise NotReady(f"lookup {host}: no answer in time ({LOOKUP_THREADS} other lookups still running)")
        with _lock:
            lookup = _running.get(host)
            if lookup is None:
                lookup = _running[host] = _Lookup(host)
                threading.Thread(target=lookup.run, name=f"lookup {host}", daemon=True).start()
            else:
                _threads.release()
    if not lookup.done.wait(max(0.0, deadline - time.monotonic())):
        raise NotReady(f"lookup {host}: no answer in time")
    if lookup.error is not None:
        raise NotReady(f"lookup {host}: {lookup.error}")
    return lookup.result


def connect(host: str, port: int, deadline: float, bound: float) -> socket.socket:
    """A connected socket to the first address of `host` that accepts, within the deadline.
    `bound` is only for the message when time runs out."""
    reasons: dict[str, str] = {}
    for family, kind, proto, _, sockaddr in resolve(host, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        peer = (sockaddr[0], port, *sockaddr[2:])
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(peer)
        except OSError as error:
            sock.close()
            reasons[_show(family, peer[0], port)] = reason(error, bound)
            continue
        return sock
    if not reasons:
        raise NotReady(timed_out(bound))
    if len(set(reasons.values())) == 1:
        raise NotReady(next(iter(reasons.values())))
    raise NotReady("; ".join(f"{peer}: {why}" for peer, why in reasons.items()))


def _show(family: socket.AddressFamily, ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
