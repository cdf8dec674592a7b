"""TCP: ready when a connection is accepted. Nothing is sent. The check, with the runner's
poll-loop fast path for IP addresses, is checks/tcp.py."""

from __future__ import annotations

from portpatrol.address import Address, mask_userinfo, split_netloc
from portpatrol.model import Kind, Record, set_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.checks.tcp import TcpCheck

NAME = "tcp"
SCHEMES = ("tcp",)
DEFAULT_PORT = None  # a TCP address always names its port
SCHEMA = None  # no block of settings in a config target
ENV: dict[str, str] = {}
STILL = "still accepting connections"  # the reason an inverted target is not ready yet
SECRET_KEYS: frozenset[str] = frozenset()
_EXAMPLE = "(e.g. db:5432, tcp://db:5432 or [::1]:5432)"


class Settings(Record):
    """A record, not a dataclass: on every pod's start-up path (model.Record says why)."""

    __slots__ = ("host", "port")
    host: str
    port: int

    def __init__(self, host: str, port: int) -> None:
        set_fields(self, host=host, port=port)


TcpSpec = Settings  # the name the rest of the code knew it by


def address(scheme: str, rest: str) -> Address:
    """`host:port`, with or without `tcp://`."""
    if _last[0] == rest:  # parse() right after the registry's address() for the same target
        known: Address = _last[1]
        return known
    netloc, _, tail = rest.partition("/")
    if tail:
        raise ValueError(f"a TCP address has no path {_EXAMPLE}")
    userinfo, host, port = split_netloc(netloc, _EXAMPLE)
    if port is None:
        raise ValueError(f"a TCP address needs a port {_EXAMPLE}")
    display, secrets = mask_userinfo(userinfo, rest)
    found = Address(Kind.TCP, host, port, None, display, secrets)
    _last[:] = (rest, found)  # a file of 10,000 targets: 0.15 s less than parsing each twice
    return found


_last: list[Any] = [None, None]


def parse(text: str, block: Mapping[str, Any]) -> Settings:
    found = address("tcp", text.split("://", 1)[-1])
    assert found.port is not None
    return Settings(found.host, found.port)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    return ""


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    import socket

    from portpatrol.checks import net

    net.connect(settings.host, settings.port, deadline, bound, socket.socket).close()


def check(settings: Settings, dial_timeout: float) -> TcpCheck:
    """The check with the runner's fast path (checks/tcp.py): validate never loads it."""
    from portpatrol.checks.tcp import TcpCheck

    return TcpCheck(settings, dial_timeout)
