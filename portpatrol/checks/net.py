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
import errno
import time

# The wording of reasons is shared by every check (checks/__init__.py).
from portpatrol.checks import SELF_CONNECT, NotReady, connected_to_itself, describe, lower_first, timed_out

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
                try:
                    _thread.start_new_thread(lookup.run, ())
                except RuntimeError as error:  # no thread to be had (RLIMIT_NPROC, memory)
                    # Undone, so the next attempt tries again instead of waiting on a lookup
                    # that never runs, for the rest of the wait.
                    del _running[host]
                    _slots.put(None)
                    raise NotReady(f"lookup {host}: cannot start a thread ({error})") from None
            else:
                _slots.put(None)
    if not lookup.wait(deadline - time.monotonic()):
        raise NotReady(f"lookup {host}: no answer in time")
    if lookup.error is not None:
        raise NotReady(f"lookup {host}: {lookup.error}")
    return lookup.result


# RFC 8305 section 5: the next address's connect starts 250 ms after the previous one unless that
# one fails first.
ATTEMPT_DELAY = 0.25
# RFC 6761 section 6.3: `localhost` and names under it are the loopback addresses, both families,
# whatever /etc/hosts says (Debian maps ::1 to ip6-localhost only). IPv6 first, as getaddrinfo's
# RFC 6724 order would put it.
_LOOPBACK: Sequence[AddrInfo] = (
    (_socket.AF_INET6, _socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0)),
    (_socket.AF_INET, _socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
)


def addresses(host: str, deadline: float) -> list[AddrInfo]:
    """The addresses to try, in Happy Eyeballs order (RFC 8305 section 4): duplicates dropped,
    then the families interleaved, starting with the family of the resolver's first answer."""
    name = host.lower().rstrip(".")
    found = _LOOPBACK if name == "localhost" or name.endswith(".localhost") else resolve(host, deadline)
    unique: dict[tuple[int, Any], AddrInfo] = {}
    for info in found:
        unique.setdefault((info[0], info[4][:2]), info)
    ordered = list(unique.values())
    if not ordered:
        return []
    first = [info for info in ordered if info[0] == ordered[0][0]]
    other = [info for info in ordered if info[0] != ordered[0][0]]
    mixed: list[AddrInfo] = []
    for index in range(max(len(first), len(other))):
        mixed += first[index : index + 1] + other[index : index + 1]
    return mixed


def connect(
    host: str, port: int, deadline: float, bound: float, make: Callable[[int, int, int], Socket]
) -> Socket:
    """A connected socket (made by `make`: `_socket.socket`, or `socket.socket` where a library
    needs one) to an address of `host`, within the deadline: every address is tried, the next one
    ATTEMPT_DELAY after the previous or as soon as it fails, the first to connect wins and the
    others are closed (Happy Eyeballs, RFC 8305). An address that swallows connects so uses up
    250 ms, not the attempt. `bound` is only for the message when time runs out."""
    import select

    pending = addresses(host, deadline)
    reasons: dict[str, str] = {}
    flying: dict[int, tuple[Socket, str]] = {}  # fd: (socket, shown address)
    poller = select.poll()
    next_start = time.monotonic()
    try:
        while pending or flying:
            now = time.monotonic()
            if now >= deadline:
                break
            if pending and (now >= next_start or not flying):
                family, kind, proto, _, sockaddr = pending.pop(0)
                peer = (sockaddr[0], port, *sockaddr[2:])
                shown = _show(family, peer[0], port)
                reasons[shown] = timed_out(bound)  # until it says otherwise; in the order tried
                sock = make(family, kind, proto)
                sock.setblocking(False)
                code = sock.connect_ex(peer)
                if code in (0, errno.EINPROGRESS):
                    flying[sock.fileno()] = (sock, shown)
                    poller.register(sock.fileno(), select.POLLOUT)
                    next_start = now + ATTEMPT_DELAY
                else:
                    sock.close()
                    reasons[shown] = describe(code, bound)
                continue
            wake = deadline if not pending else min(deadline, next_start)
            for fd, _ in poller.poll(max(0, int((wake - now) * 1000 + 0.999))):
                sock, shown = flying.pop(fd)
                poller.unregister(fd)
                code = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
                if not code and connected_to_itself(sock):
                    sock.close()
                    reasons[shown] = SELF_CONNECT
                elif code:
                    sock.close()
                    reasons[shown] = describe(code, bound)
                else:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    return sock
                next_start = time.monotonic()  # a failure starts the next address at once
    finally:
        for sock, _ in flying.values():
            sock.close()
    if not reasons:
        raise NotReady(timed_out(bound))
    if len(set(reasons.values())) == 1:
        raise NotReady(next(iter(reasons.values())))
    raise NotReady("; ".join(f"{peer}: {why}" for peer, why in reasons.items()))


def _show(family: int, ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if family == _socket.AF_INET6 else f"{ip}:{port}"
