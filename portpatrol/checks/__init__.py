"""What the kinds share to talk to peers: the wording of failures (here), bounded lookups and
connects (net), the HTTP clients (plainhttp, http) and the redirect and proxy policy they share
(httppolicy). Library exceptions become NotReady reasons inside the kinds."""

from __future__ import annotations

import errno
import os

from portpatrol.errors import NotReady as NotReady  # re-exported: every check raises it
from portpatrol.text import lower_first as lower_first  # re-exported: net and the kinds word reasons with it
from portpatrol.values import format_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket  # an annotation only: the HTTP kind's environment() hook imports this package at start


def timed_out(bound: float) -> str:
    """The reason for an attempt that its bound ended: one wording for every check."""
    return f"no answer within {format_duration(bound)}"


def reason(error: OSError, bound: float) -> str:
    """A socket error in a few lower-case words, as a log line shows it."""
    if isinstance(error, TimeoutError):
        return timed_out(bound)
    if error.errno is not None:
        return describe(error.errno, bound)
    return str(error) or type(error).__name__


def describe(code: int, bound: float) -> str:
    """An errno in a few lower-case words: `connection refused`."""
    if code in (errno.ETIMEDOUT, errno.EAGAIN):
        return timed_out(bound)
    text = _described.get(code)
    if text is None:
        text = _described[code] = lower_first(os.strerror(code))
    return text


_described: dict[int, str] = {}  # errno: its words; a thousand refused connects ask for the same one

# A connect to a port of this machine's ephemeral range, with nothing listening on it, can be given
# that very port as its own and meet itself (TCP simultaneous open): connected, to nobody. As Go's
# dialer, every path that connects treats a socket whose two ends are one address as a failure.
SELF_CONNECT = "connected to itself (nothing listening on that port)"


def connected_to_itself(sock: _socket.socket) -> bool:
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:  # not connected after all (reset at once): the next use says why
        return False


if TYPE_CHECKING:
    from typing import Protocol

    class Check(Protocol):
        def attempt(self) -> None:
            """Return when the target is ready; raise NotReady otherwise. Returns or raises
            within the target's bound (Target.bound) whatever the peer does."""

else:

    class Check:
        """At run time only a name for annotations: importing typing for Protocol costs ~2 ms
        of start-up (docs/performance.md). mypy sees the Protocol above."""
