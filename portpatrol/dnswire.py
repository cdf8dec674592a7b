"""The stub resolver of the dns kind's `dns://SERVER/NAME` form (RFC 1035), imported only by targets
that name a server: one UDP query (a fresh connected socket per attempt, so a random source port from
the kernel, and a random id), resent each second until the deadline, then over TCP when the answer is
truncated. An answer counts only when its id and question match ours; every length the server sends is
checked; names are decompressed with pointers that must point backwards, so they cannot loop."""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from portpatrol.address import authority
from portpatrol.checks import reason, timed_out
from portpatrol.errors import NotReady

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
_TYPE_NAMES = {code: name for name, code in TYPES.items()}
_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_RESEND = 1.0  # seconds between UDP queries within one attempt
_CHAIN = 16  # CNAMEs followed within one answer


def query(name: str, rtype: str, ident: int) -> bytes:
    """A query message: header with RD set, one question of class IN."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split("."))
    return header + labels + b"\0" + struct.pack("!HH", TYPES[rtype], 1)


class Mismatch(Exception):
    """A message that is not the answer to our query: skipped (it may be a stray or forged one)."""


@dataclass(frozen=True, slots=True)
class Response:
    rcode: int
    truncated: bool
    answers: list[tuple[str, int, str]]  # (owner, type, value in presentation form)


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset`, decompressed, and the offset after it in the message. A pointer must
    point before itself, so following pointers always ends; the name is at most 255 bytes."""
    labels: list[str] = []
    size = 0
    after: int | None = None
    while True:
        if offset >= len(message):
            raise NotReady("malformed DNS message: a name runs past its end")
        length = message[offset]
        if length >= 0xC0:
            if offset + 1 >= len(message):
                raise NotReady("malformed DNS message: a name pointer runs past its end")
            target = (length & 0x3F) << 8 | message[offset + 1]
            if target >= offset:
                raise NotReady("malformed DNS message: a name pointer does not point backwards")
            if after is None:
                after = offset + 2
            offset = target
            continue
        if length >= 0x40:
            raise NotReady(f"malformed DNS message: unknown label type {length >> 6}")
        offset += 1
        if length == 0:
            return ".".join(labels), offset if after is None else after
        size += length + 1
        if size > 255 or offset + length > len(message):
            raise NotReady("malformed DNS message: a name is too long or runs past its end")
        labels.append(_label(message[offset : offset + length]))
        offset += length


def _label(raw: bytes) -> str:
    ok = b"-_*abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(chr(b) if b in ok else f"\\{b:03d}" for b in raw)


def parse_response(message: bytes, name: str, rtype: str, ident: int) -> Response:
    """The answer to our query (id `ident`, question `name` `rtype` IN). Raises Mismatch for a
    message that is not that answer, NotReady for the answer when it is malformed."""
    if len(message) < 12:
        raise Mismatch("shorter than a DNS header")
    got_id, flags, qdcount, ancount, _, _ = struct.unpack_from("!HHHHHH", message)
    if got_id != ident or not flags & 0x8000:
        raise Mismatch("another id, or not a response")
    if qdcount != 1:
        raise Mismatch(f"{qdcount} questions, not ours")
    try:
        qname, offset = read_name(message, 12)
    except NotReady as error:
        raise Mismatch(str(error)) from None
    if offset + 4 > len(message) or qname.lower() != name.lower():
        raise Mismatch("another question")
    if struct.unpack_from("!HH", message, offset) != (TYPES[rtype], 1):
        raise Mismatch("another question")
    offset += 4
    rcode = flags & 0x000F
    truncated = bool(flags & 0x0200)
    answers: list[tuple[str, int, str]] = []
    if rcode or truncated:
        return Response(rcode, truncated, answers)
    for _ in range(ancount):
        owner, offset = read_name(message, offset)
        if offset + 10 > len(message):
            raise NotReady("malformed DNS message: a record runs past its end")
        kind, klass, _, length = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        if offset + length > len(message):
            raise NotReady("malformed DNS message: a record's data runs past its end")
        if klass == 1 and kind in _TYPE_NAMES:
            answers.append((owner, kind, _rdata(message, offset, length, kind)))
        offset += length
    return Response(rcode, truncated, answers)


def _rdata(message: bytes, offset: int, length: int, kind: int) -> str:
    data = message[offset : offset + length]
    name = _TYPE_NAMES[kind]
    fixed = {"A": 4, "AAAA": 16}.get(name)
    if fixed is not None:
        if length != fixed:
            raise NotReady(f"malformed DNS message: an {name} record of {length} bytes")
        return socket.inet_ntop(socket.AF_INET if fixed == 4 else socket.AF_INET6, data)
    if name == "TXT":
        parts, at = [], 0
        while at < length:
            end = at + 1 + data[at]
            if end > length:
                raise NotReady("malformed DNS message: a TXT string runs past its record")
            parts.append(data[at + 1 : end])
            at = end
        return b"".join(parts).decode("utf-8", "replace")
    head = {"MX": 2, "SRV": 6}.get(name, 0)
    if length < head + 1:
        raise NotReady(f"malformed DNS message: a {name} record of {length} bytes")
    target, end = read_name(message, offset + head)
    if end > offset + length:
        raise NotReady(f"malformed DNS message: a {name} record's name runs past its record")
    numbers = struct.unpack_from("!" + "H" * (head // 2), message, offset)
    return " ".join([*map(str, numbers), target])


def ask(server: str, port: int, name: str, rtype: str, *, deadline: float, bound: float) -> list[str]:
    """The values of the answers of type `rtype` for `name` (following a CNAME chain), asked of
    SERVER; NotReady for NXDOMAIN, another error code, no answer in time, or a malformed one."""
    ident = int.from_bytes(os.urandom(2), "big")
    message = query(name, rtype, ident)
    asked = _Asked(server, port, name, rtype, ident, message)
    response = _udp(asked, deadline, bound)
    if response.truncated:
        response = _tcp(asked, deadline, bound)
        if response.truncated:
            raise NotReady("the server truncated its answer over TCP too")
    rcode = response.rcode
    if rcode:
        words = _RCODES.get(rcode, f"rcode {rcode}")
        if rcode == 3:
            raise NotReady(f"{name} does not exist (NXDOMAIN)")
        raise NotReady(f"the server answered {words} for {name} {rtype}")
    names, answers = {name.lower()}, response.answers
    wanted = TYPES[rtype]
    for _ in range(_CHAIN if wanted != TYPES["CNAME"] else 0):
        more = {value.lower() for owner, kind, value in answers if kind == 5 and owner.lower() in names}
        if more <= names:
            break
        names |= more
    return [value for owner, kind, value in answers if kind == wanted and owner.lower() in names]


@dataclass(frozen=True, slots=True)
class _Asked:
    server: str
    port: int
    name: str
    rtype: str
    ident: int
    message: bytes


def _udp(asked: _Asked, deadline: float, bound: float) -> Response:
    from portpatrol.checks.net import resolve

    family, _, _, _, sockaddr = resolve(asked.server, deadline)[0]
    peer = (sockaddr[0], asked.port, *sockaddr[2:])
    skipped: str | None = None
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(peer)  # the kernel now drops datagrams from any other address
            resend = 0.0
            while (left := deadline - time.monotonic()) > 0:
                if time.monotonic() >= resend:
                    sock.send(asked.message)
                    resend = time.monotonic() + _RESEND
                sock.settimeout(min(left, max(0.01, resend - time.monotonic())))
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                try:
                    return parse_response(data, asked.name, asked.rtype, asked.ident)
                except Mismatch as error:
                    skipped = str(error)
        except OSError as error:
            raise NotReady(f"udp {authority(asked.server, asked.port)}: {reason(error, bound)}") from None
    if skipped is not None:
        raise NotReady(
            f"{timed_out(bound)}; the server sent only messages that are not an answer ({skipped})"
        )
    raise NotReady(f"{timed_out(bound)} from {authority(asked.server, asked.port)}")


def _tcp(asked: _Asked, deadline: float, bound: float) -> Response:
    from portpatrol.checks.net import connect
    from portpatrol.wire import Wire

    sock = connect(asked.server, asked.port, deadline, bound, socket.socket)
    wire = Wire(sock, deadline, bound)
    try:
        wire.send(struct.pack("!H", len(asked.message)) + asked.message)
        (length,) = struct.unpack("!H", wire.exact(2, "a DNS answer over TCP"))
        data = wire.exact(length, "a DNS answer over TCP")
    finally:
        wire.close()
    try:
        return parse_response(data, asked.name, asked.rtype, asked.ident)
    except Mismatch as error:
        raise NotReady(f"the server's TCP answer is not an answer to the query ({error})") from None
