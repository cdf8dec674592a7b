"""ICMP: one echo request, ready on the matching echo reply.

icmplib opens the socket (an unprivileged ping socket, or a raw one) and builds and sends the
request. The reply is read here, because icmplib's receive neither checks who answered nor
keeps to one deadline when unrelated packets arrive (a raw socket sees every ICMP packet on
the host, our own request on loopback among them)."""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
import time
from functools import cache
from itertools import count

from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError, SocketBroadcastError, SocketPermissionError
from icmplib.utils import unique_identifier

from portpatrol.checks import NotReady, lower_first, net, reason
from portpatrol.errors import SetupError
from portpatrol.model import IcmpSpec
from portpatrol.sources.values import format_duration

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
    for raw in (False, True):
        try:
            ICMPv4Socket(privileged=raw).close()
        except SocketPermissionError:
            continue
        return raw
    raise SetupError(NOT_PERMITTED)


class IcmpCheck:
    def __init__(self, spec: IcmpSpec, dial_timeout: float) -> None:
        self.spec = spec
        self.dial_timeout = dial_timeout
        self.raw = raw_socket_needed()
        self.sequence = count(1)

    def attempt(self) -> None:
        infos = net.resolve(self.spec.host, time.monotonic() + self.dial_timeout)
        family, _, _, _, sockaddr = infos[0]
        ip = sockaddr[0]
        sequence = next(self.sequence) % 65536
        opener = ICMPv6Socket if family == socket.AF_INET6 else ICMPv4Socket
        try:
            with opener(privileged=self.raw) as icmp:
                request = ICMPRequest(destination=ip, id=unique_identifier(), sequence=sequence)
                icmp.send(request)  # a ping socket's kernel replaces the id; send() reads it back
                self._receive(icmp.sock, ip, request.id, sequence, family == socket.AF_INET6)
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
