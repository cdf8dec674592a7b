"""ICMP: one echo request, ready on the matching echo reply.

icmplib opens the socket (an unprivileged ping socket, or a raw one) and builds and sends the
request. The reply is read here, because icmplib's receive neither checks who answered nor
keeps to one deadline when unrelated packets arrive (a raw socket sees every ICMP packet on
the host, our own request on loopback among them)."""

from __future__ import annotations

import ipaddress
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from itertools import count
from typing import TYPE_CHECKING, Any

from portpatrol.address import BAD_HOST, Address, has_any
from portpatrol.checks import NotReady, reason
from portpatrol.errors import BadValue, SetupError
from portpatrol.model import Kind
from portpatrol.text import lower_first
from portpatrol.values import format_duration, parse_duration

if TYPE_CHECKING:
    import socket

NAME = "icmp"
SCHEMES = ("icmp",)
DEFAULT_PORT = None  # ICMP has no ports
ENV = {"ICMP_READ_TIMEOUT": "read_timeout"}
SECRET_KEYS: frozenset[str] = frozenset()
SCHEMA: dict[str, Any] = {
    "description": "Settings of an ICMP target; an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"read_timeout": "1s"}],
    "properties": {
        "read_timeout": {
            "description": "How long to wait for the echo reply (like ICMP_READ_TIMEOUT), on top of "
            "dial_timeout. A duration, e.g. 1s, 500ms. `${VAR}` and `${VAR:-default}` are replaced from "
            "the environment when the file is loaded.",
            "$ref": "#/$defs/duration",
            "examples": ["1s", "500ms"],
            "default": "1s",
        }
    },
}
_EXAMPLE = "(e.g. icmp://gateway, icmp://10.0.0.1 or icmp://[::1])"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    read_timeout: float = 1.0

    @property
    def extra_time(self) -> float:
        return self.read_timeout


IcmpSpec = Settings  # the name the rest of the code knew it by


def address(scheme: str, rest: str) -> Address:
    """`icmp://host`: no port, no path."""
    host = rest[1:-1] if rest.startswith("[") and rest.endswith("]") else rest
    if host != rest or ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"an ICMP address takes no port or path {_EXAMPLE}") from None
    elif not host or has_any(host, BAD_HOST):
        raise ValueError(f"not a host name or IP address {_EXAMPLE}")
    return Address(Kind.ICMP, host, None, None, rest, frozenset())


def parse(text: str, block: Mapping[str, Any]) -> Settings:
    """`block["read_timeout"]`: a duration as text (env) or already in seconds (a config file)."""
    timeout = block.get("read_timeout", 1.0)
    if isinstance(timeout, str):
        try:
            timeout = parse_duration(timeout)
        except ValueError as error:
            raise BadValue(("read_timeout",), str(error)) from None
    return Settings(address("icmp", text.split("://", 1)[-1]).host, timeout)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    return f"read timeout {format_duration(settings.read_timeout)}"


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    check(settings, bound).attempt()


def check(settings: Settings, dial_timeout: float) -> IcmpCheck:
    return IcmpCheck(settings, dial_timeout)


NOT_PERMITTED = (
    "ICMP is not permitted here: neither an unprivileged ping socket nor a raw socket could be opened. "
    'Allow ping sockets for this group with net.ipv4.ping_group_range="0 2147483647" (Kubernetes: '
    "the pod's securityContext.sysctls), or run with the CAP_NET_RAW capability (as root)"
)

# (echo reply, error types with their meaning) for IPv4 and IPv6.
_V4 = (0, {3: "destination unreachable", 11: "time exceeded"})
_V6 = (129, {1: "destination unreachable", 3: "time exceeded"})


@cache
def raw_socket_needed() -> bool:
    """False when an unprivileged ping socket works, True when only a raw one does."""
    from icmplib import ICMPv4Socket
    from icmplib.exceptions import SocketPermissionError

    for raw in (False, True):
        try:
            ICMPv4Socket(privileged=raw).close()
        except SocketPermissionError:
            continue
        return raw
    raise SetupError(NOT_PERMITTED)


class IcmpCheck:
    def __init__(self, spec: Settings, dial_timeout: float) -> None:
        self.spec = spec
        self.dial_timeout = dial_timeout
        self.raw = raw_socket_needed()
        self.sequence = count(1)

    def attempt(self) -> None:
        # icmplib only here: validate and the other kinds never load it.
        import socket

        from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
        from icmplib.exceptions import ICMPLibError, SocketBroadcastError
        from icmplib.utils import unique_identifier

        from portpatrol.checks import net

        infos = net.resolve(self.spec.host, time.monotonic() + self.dial_timeout)
        family, _, _, _, sockaddr = infos[0]
        ip = sockaddr[0]
        sequence = next(self.sequence) % 65536
        v6 = family == socket.AF_INET6
        opener = ICMPv6Socket if v6 else ICMPv4Socket
        try:
            with opener(privileged=self.raw) as icmp:
                request = ICMPRequest(destination=ip, id=unique_identifier(), sequence=sequence)
                icmp.send(request)  # a ping socket's kernel replaces the id; send() reads it back
                self._receive(icmp.sock, ip, request.id, sequence, v6)
        except SocketBroadcastError:
            # icmplib turns every EACCES/EPERM from sendto() into "broadcast is not allowed", but a
            # `prohibit` route or a firewall rule rejecting the packet raise the same errors.
            raise NotReady("permission denied (sending refused by a route or firewall rule)") from None
        except ICMPLibError as error:  # icmplib words socket errors as "[Errno 101] Network is unreachable"
            text = re.sub(r"^\[Errno -?\d+\] ", "", str(error)).rstrip(".")
            raise NotReady(lower_first(text) or type(error).__name__) from None

    def _receive(self, sock: socket.socket, ip: str, ident: int, sequence: int, v6: bool) -> None:
        end = time.monotonic() + self.spec.read_timeout
        reply_type, errors = _V6 if v6 else _V4
        target = ipaddress.ip_address(ip.split("%", maxsplit=1)[0])
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, source = sock.recvfrom(2048)
            except TimeoutError:
                break
            except OSError as error:
                raise NotReady(reason(error, self.spec.read_timeout)) from None
            if self.raw and not v6:  # a raw IPv4 socket also returns the IP header
                packet = packet[(packet[0] & 0x0F) * 4 :]
            if len(packet) < 8:
                continue
            kind = packet[0]
            if kind == reply_type:
                if struct.unpack("!HH", packet[4:8]) == (ident, sequence) and (
                    ipaddress.ip_address(source[0].split("%")[0]) == target
                ):
                    return
            elif kind in errors and _quoted_request(packet, v6) == (ident, sequence):
                raise NotReady(f"{errors[kind]} (from {source[0]})")
        raise NotReady(f"no echo reply within {format_duration(self.spec.read_timeout)}")


def _quoted_request(packet: bytes, v6: bool) -> tuple[int, int] | None:
    """The (id, sequence) of the echo request an ICMP error message quotes."""
    start = 8 + (40 if v6 else (packet[8] & 0x0F) * 4 if len(packet) > 8 else 0)
    quoted = packet[start : start + 8]
    if len(quoted) < 8:
        return None
    ids: tuple[int, int] = struct.unpack("!HH", quoted[4:8])
    return ids
