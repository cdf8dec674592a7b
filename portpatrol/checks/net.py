"""Name resolution and connecting, both bounded by a deadline.

getaddrinfo() cannot be interrupted and may block far longer than an attempt's bound when no
resolver answers, so lookups run in a helper thread that the attempt stops waiting for at its
deadline. A lookup still running is shared by the next attempt instead of starting another,
and at most LOOKUP_THREADS run at once, so a dead resolver cannot multiply threads.
Only C modules here (`_socket`, `_thread`, `_queue`): `socket` and `threading` cost ~6 ms of the
start-up of a wait for `db:5432` (docs/performance.md)."""

from __future__ import annotations

import _queue
import _socket
import _thread
import time

# The wording of reasons is shared by every check (checks/__init__.py).
from portpatrol.checks import SELF_CONNECT, NotReady, connected_to_itself, lower_first, reason, timed_out

TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

    AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
    Socket = TypeVar("Socket", bound=_socket.socket)


class _Lookup:
    def __init__(self, host: str) -> None:
        self.host = host
        self._done = _thread.allocate_lock()  # held until the lookup has ended
        self._done.acquire()
        self.result: Sequence[AddrInfo] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            # An ASCII name as bytes: a str goes through the idna codec, whose first use imports
            # unicodedata, stringprep and re (~6 ms of start-up) to change nothing in it.
            host = self.host.encode() if self.host.isascii() else self.host
            self.result = _socket.getaddrinfo(host, None, 0, _socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            self.error = _gai_reason(error)
        finally:
            with _lock:
                _running.pop(self.host, None)
            _slots.put(None)
            self._done.release()

    def wait(self, seconds: float) -> bool:
        """Whether the lookup ended within `seconds`; any number of attempts may wait."""
        if not self._done.acquire(timeout=max(0.0, seconds)):
            return False
        self._done.release()
        return True


# Lookup threads are few, so a dead resolver cannot multiply threads: with the runner's workers
# and the main thread, a default run never has more than 64. A queue of tokens is the semaphore.
LOOKUP_THREADS = 15
_slots: _queue.SimpleQueue[None] = _queue.SimpleQueue()
for _ in range(LOOKUP_THREADS):
    _slots.put(None)
_lock = _thread.allocate_lock()
_running: dict[str, _Lookup] = {}


def _gai_reason(error: Exception) -> str:
    if isinstance(error, _socket.gaierror) and error.errno in (_socket.EAI_NONAME, _socket.EAI_NODATA):
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
            return _socket.getaddrinfo(host.encode(), None, 0, _socket.SOCK_STREAM, 0, _socket.AI_NUMERICHOST)
        except _socket.gaierror:
            pass
    lookup = _running.get(host)
    if lookup is None:
        try:
            _slots.get(timeout=max(0.0, deadline - time.monotonic()))
        except _queue.Empty:
            raise NotReady(
                f"lookup {host}: no answer in time ({LOOKUP_THREADS} other lookups still running)"
            ) from None
        with _lock:
            lookup = _running.get(host)
            if lookup is None:
                lookup = _running[host] = _Lookup(host)
                _thread.start_new_thread(lookup.run, ())
            else:
                _slots.put(None)
    if not lookup.wait(deadline - time.monotonic()):
        raise NotReady(f"lookup {host}: no answer in time")
    if lookup.error is not None:
        raise NotReady(f"lookup {host}: {lookup.error}")
    return lookup.result


def connect(
    host: str, port: int, deadline: float, bound: float, make: Callable[[int, int, int], Socket]
) -> Socket:
    """A connected socket (made by `make`: `_socket.socket`, or `socket.socket` where a library
    needs one) to the first address of `host` that accepts, within the deadline.
    `bound` is only for the message when time runs out."""
    reasons: dict[str, str] = {}
    for family, kind, proto, _, sockaddr in resolve(host, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        peer = (sockaddr[0], port, *sockaddr[2:])
        sock = make(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(peer)
        except OSError as error:
            sock.close()
            reasons[_show(family, peer[0], port)] = reason(error, bound)
            continue
        if connected_to_itself(sock):
            sock.close()
            reasons[_show(family, peer[0], port)] = SELF_CONNECT
            continue
        return sock
    if not reasons:
        raise NotReady(timed_out(bound))
    if len(set(reasons.values())) == 1:
        raise NotReady(next(iter(reasons.values())))
    raise NotReady("; ".join(f"{peer}: {why}" for peer, why in reasons.items()))


def _show(family: int, ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if family == _socket.AF_INET6 else f"{ip}:{port}"
