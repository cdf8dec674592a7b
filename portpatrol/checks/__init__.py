"""One module per check type behind one small protocol. A check knows its spec and nothing
about where it came from; library exceptions become NotReady reasons inside the check."""

from __future__ import annotations

from portpatrol.errors import PortpatrolError
from portpatrol.model import HttpSpec, IcmpSpec, Target

TYPE_CHECKING = False


class NotReady(PortpatrolError):
    """One attempt failed; the message says why, in a few words."""


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


def build(target: Target) -> Check:
    """The check for a target. Importing each library only here keeps start-up fast.
    Raises SetupError when the check cannot run on this machine at all."""
    spec = target.spec
    if isinstance(spec, HttpSpec):
        from portpatrol.checks import plainhttp

        if plainhttp.suits(spec):  # most waits: no need to import httpx (docs/performance.md)
            return plainhttp.PlainHttpCheck(spec, target.timing.dial_timeout)
        from portpatrol.checks.http import HttpCheck

        return HttpCheck(spec, target.timing.dial_timeout)
    if isinstance(spec, IcmpSpec):
        from portpatrol.checks.icmp import IcmpCheck

        return IcmpCheck(spec, target.timing.dial_timeout)
    from portpatrol.checks.tcp import TcpCheck

    return TcpCheck(spec, target.timing.dial_timeout)
