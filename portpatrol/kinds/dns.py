"""The dns kind: wait until a name resolves, optionally to given values.

Two address forms:

- `dns:NAME` asks the system resolver (getaddrinfo: /etc/hosts, nsswitch, resolv.conf, whatever the
  programs on this machine see), so only `type=A` and `type=AAAA` are possible there. Reading the
  nameserver out of /etc/resolv.conf instead would be half a resolver (search lists, ndots, rotate, a
  127.0.0.53 stub, /etc/hosts bypassed) that answers differently from the application being waited
  for; other types name their server: `dns://SERVER/NAME?type=MX`. The lookup runs in
  checks.net.resolve's helper thread, which the attempt stops waiting for at its deadline.
- `dns://SERVER[:PORT]/NAME?type=A|AAAA|CNAME|MX|TXT|SRV|NS` (RFC 4501; `type=` and `class=IN` in
  any case, separated by `;` or `&`) asks SERVER directly with the stub resolver below: one UDP
  query (a fresh socket per attempt, so a random source port from the kernel, and a random id),
  resent each second until the deadline, then over TCP when the answer is truncated (TC).
  The UDP socket is connected, so the kernel drops datagrams from any other address; an answer
  counts only when its id and question match ours. Every length the server sends is checked, names
  are decompressed with pointers that must point backwards (so no loop), and a malformed message
  is a named reason.

Why no dnspython: measured here (best of 30 runs, a noisy shared machine), `python -c "import
dns.resolver"` (dnspython 2.9.2) takes 182 ms against 17 ms for `python -c pass`: alone 10x the
interpreter, where the issue allows a dns target's whole start-up 2.5x. `import portpatrol.kinds.dns`
takes 78 ms, of which ~9 ms is this module over the socket, dataclasses and wire imports every protocol
kind shares. dnspython would also be a run-time dependency for ~150 lines of RFC 1035.

Ready when the name has at least one answer of the type (following a CNAME chain in the answer
section), and, with `expect`, when every expected value is among the answers, or, with `match`,
when one answer matches the regular expression (re.search). Values are compared in presentation
form: `192.0.2.1`, `2001:db8::1`, `host.test` (no final dot, any case), `10 mail.test` (MX),
`0 5 5060 sip.test` (SRV: priority weight port target), TXT strings joined into one.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from portpatrol.checks import reason, timed_out
from portpatrol.errors import NotReady
from portpatrol.text import printable, quote
from portpatrol.wire import peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.address import Address

NAME = "dns"
SCHEMES = ("dns",)
DEFAULT_PORT = 53
SCHEMA: dict[str, Any] = {
    "description": "Settings of a dns target (dns:NAME, dns://SERVER/NAME); an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"expect": ["10.0.0.5"]}, {"match": "^10\\."}],
    "properties": {
        "expect": {
            "description": (
                "Values that must all be among the answers (like DNS_EXPECT, comma-separated there), in "
                "presentation form: 10.0.0.5, 2001:db8::1, host.test (CNAME, NS), 10 mail.test (MX), "
                "0 5 5060 sip.test (SRV), the joined strings of a TXT record."
            ),
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "default": [],
            "examples": [["10.0.0.5"], ["10 mail.test"]],
        },
        "match": {
            "description": (
                "A regular expression one answer must match (like DNS_MATCH; re.search). Empty: any answer."
            ),
            "type": "string",
            "default": "",
            "examples": ["^10\\.", "v=ready"],
        },
    },
}
ENV = {"DNS_EXPECT": "expect", "DNS_MATCH": "match"}  # DNS_EXPECT: comma-separated values
STILL = "still resolves"  # the reason an inverted target is not ready yet
SECRET_KEYS: frozenset[str] = frozenset()

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
_TYPE_NAMES = {code: name for name, code in TYPES.items()}
_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
EXAMPLE = "e.g. dns:db.internal or dns://127.0.0.1:53/db.internal?type=AAAA"
_RESEND = 1.0  # seconds between UDP queries within one attempt
_CHAIN = 16  # CNAMEs followed within one answer


@dataclass(frozen=True, slots=True)
class Settings:
    name: str  # ASCII (IDNA), no final dot
    rtype: str  # a key of TYPES
    server: str | None  # None: the system resolver
    port: int
    expect: tuple[str, ...] = ()  # normalised with _normal()
    match: re.Pattern[str] | None = None


def address(scheme: str, rest: str) -> Address:
    """`dns:NAME` (the registry passes scheme "dns:") or `dns://SERVER/NAME?type=...`: named after
    the name looked up, shown as written."""
    from portpatrol.address import Address
    from portpatrol.model import Kind

    text = f"dns:{rest}" if scheme == "dns:" else f"dns://{rest}"
    settings = parse(text, {})
    return Address(Kind.DNS, settings.name, None, text, text, frozenset())


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    from urllib.parse import unquote

    scheme, colon, rest = address.partition(":")
    if not colon or scheme.lower() != "dns":
        raise ValueError(f"a dns address starts with dns: ({EXAMPLE})")
    rest, _, query = rest.partition("?")
    server: str | None = None
    port = DEFAULT_PORT
    if rest.startswith("//"):
        authority, slash, rest = rest[2:].partition("/")
        if not slash or not authority:
            raise ValueError(f"dns://SERVER/NAME needs a server and a name ({EXAMPLE})")
        server, port = _server(authority)
    name = _name(unquote(rest))
    rtype = "A"
    for element in filter(None, query.replace("&", ";").split(";")):
        key, _, value = element.partition("=")
        if key.lower() == "type" and value.upper() in TYPES:
            rtype = value.upper()
        elif key.lower() == "class" and value.upper() == "IN":
            pass
        else:
            raise ValueError(f"unknown query {quote(element)}: use type={'|'.join(TYPES)} ({EXAMPLE})")
    if server is None and rtype not in ("A", "AAAA"):
        raise ValueError(
            f"the system resolver answers only A and AAAA: name a server for {rtype}, "
            f"e.g. dns://127.0.0.1/{name}?type={rtype}"
        )
    expect = block.get("expect", ())
    if isinstance(expect, str):  # from DNS_EXPECT
        expect = [value.strip() for value in expect.split(",") if value.strip()]
    match = None
    if block.get("match"):  # "" (the schema's default) asks for nothing
        import re

        try:
            match = re.compile(block["match"])
        except re.error as error:
            raise ValueError(f"dns match is not a regular expression: {error} (e.g. ^10\\.0\\.)") from None
    return Settings(name, rtype, server, port, tuple(_normal(rtype, v, strict=True) for v in expect), match)


def _server(authority: str) -> tuple[str, int]:
    host, port = authority, DEFAULT_PORT
    if authority.startswith("["):
        host, _, tail = authority[1:].partition("]")
        if tail and not tail.startswith(":"):
            raise ValueError(f"unexpected {quote(tail)} after the server ({EXAMPLE})")
        tail = tail[1:]
    elif authority.count(":") == 1:
        host, _, tail = authority.partition(":")
    else:
        tail = ""
    if tail:
        if not tail.isdigit() or not 0 < int(tail) < 65536:
            raise ValueError(f"the server's port {quote(tail)} is not 1-65535 ({EXAMPLE})")
        port = int(tail)
    if not host or any(c in host for c in "@/?#%") or not host.isprintable() or " " in host:
        raise ValueError(f"the server {quote(host)} is not a host name or an IP address ({EXAMPLE})")
    return host, port


def _name(text: str) -> str:
    text = text[:-1] if text.endswith(".") and text != "." else text
    if not text or text == ".":
        raise ValueError(f"the name to look up is missing ({EXAMPLE})")
    try:
        ascii_name = text if text.isascii() else text.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{quote(text)} is not a valid domain name ({EXAMPLE})") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(0 < len(label) <= 63 for label in labels):
        raise ValueError(f"{quote(text)} is not a valid domain name: labels of 1-63 characters ({EXAMPLE})")
    if not all(label.replace("-", "").replace("_", "").isalnum() for label in labels):
        raise ValueError(f"{quote(text)} holds characters no host name has ({EXAMPLE})")
    return ascii_name


def _normal(rtype: str, value: str, strict: bool = False) -> str:
    """`value` in the form answers are compared in. `strict`: a user's value, checked."""
    try:
        if rtype in ("A", "AAAA"):
            family = socket.AF_INET if rtype == "A" else socket.AF_INET6
            return socket.inet_ntop(family, socket.inet_pton(family, value))
    except OSError:
        raise ValueError(
            f"expected value {quote(value)} is not an {rtype} address (e.g. 127.0.0.1)"
        ) from None
    if rtype in ("CNAME", "NS"):
        return value.rstrip(".").lower()
    if rtype in ("MX", "SRV"):
        words = value.split()
        if strict and len(words) != (2 if rtype == "MX" else 4):
            example = "10 mail.test" if rtype == "MX" else "0 5 5060 sip.test"
            raise ValueError(f"expected {rtype} value {quote(value)}: write it as e.g. {example!r}")
        return " ".join([*words[:-1], words[-1].rstrip(".").lower()]) if words else ""
    return value


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    where = "system resolver" if settings.server is None else f"server {_hostport(settings)}"
    line = f"{settings.name} type={settings.rtype} via {where}"
    if settings.expect:
        line += f" expect={','.join(settings.expect)}"
    if settings.match is not None:
        line += f" match={settings.match.pattern}"
    return printable(line)


def _hostport(settings: Settings) -> str:
    host = f"[{settings.server}]" if settings.server and ":" in settings.server else settings.server
    return f"{host}:{settings.port}"


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    _judge(
        settings, _system(settings, deadline) if settings.server is None else _ask(settings, deadline, bound)
    )


def _system(settings: Settings, deadline: float) -> list[str]:
    from portpatrol.checks.net import resolve

    family = socket.AF_INET if settings.rtype == "A" else socket.AF_INET6
    infos = resolve(settings.name, deadline)
    found = [str(info[4][0]) for info in infos if info[0] == family]
    if not found:
        raise NotReady(f"{settings.name} has no {settings.rtype} address (system resolver)")
    return list(dict.fromkeys(found))


def _judge(settings: Settings, answers: list[str]) -> None:
    if not answers:
        raise NotReady(f"no {settings.rtype} record for {settings.name} (NOERROR, no answer)")
    have = {_normal(settings.rtype, answer) for answer in answers}
    shown = peer_text(", ".join(answers))
    missing = [value for value in settings.expect if value not in have]
    if missing:
        raise NotReady(f"{settings.rtype} answers {shown}; expected {printable(', '.join(missing))}")
    if settings.match is not None and not any(settings.match.search(answer) for answer in answers):
        raise NotReady(f"no {settings.rtype} answer matches {printable(settings.match.pattern)}: {shown}")


# --- the stub resolver (RFC 1035) -------------------------------------------------------------


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


def _ask(settings: Settings, deadline: float, bound: float) -> list[str]:
    ident = int.from_bytes(os.urandom(2), "big")
    message = query(settings.name, settings.rtype, ident)
    response = _udp(settings, message, ident, deadline, bound)
    if response.truncated:
        response = _tcp(settings, message, ident, deadline, bound)
        if response.truncated:
            raise NotReady("the server truncated its answer over TCP too")
    rcode = response.rcode
    if rcode:
        words = _RCODES.get(rcode, f"rcode {rcode}")
        if rcode == 3:
            raise NotReady(f"{settings.name} does not exist (NXDOMAIN)")
        raise NotReady(f"the server answered {words} for {settings.name} {settings.rtype}")
    names, answers = {settings.name.lower()}, response.answers
    wanted = TYPES[settings.rtype]
    for _ in range(_CHAIN if wanted != TYPES["CNAME"] else 0):
        more = {value.lower() for owner, kind, value in answers if kind == 5 and owner.lower() in names}
        if more <= names:
            break
        names |= more
    return [value for owner, kind, value in answers if kind == wanted and owner.lower() in names]


def _udp(settings: Settings, message: bytes, ident: int, deadline: float, bound: float) -> Response:
    from portpatrol.checks.net import resolve

    assert settings.server is not None
    family, _, _, _, sockaddr = resolve(settings.server, deadline)[0]
    peer = (sockaddr[0], settings.port, *sockaddr[2:])
    skipped: str | None = None
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(peer)  # the kernel now drops datagrams from any other address
            resend = 0.0
            while (left := deadline - time.monotonic()) > 0:
                if time.monotonic() >= resend:
                    sock.send(message)
                    resend = time.monotonic() + _RESEND
                sock.settimeout(min(left, max(0.01, resend - time.monotonic())))
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                try:
                    return parse_response(data, settings.name, settings.rtype, ident)
                except Mismatch as error:
                    skipped = str(error)
        except OSError as error:
            raise NotReady(f"udp {_hostport(settings)}: {reason(error, bound)}") from None
    if skipped is not None:
        raise NotReady(
            f"{timed_out(bound)}; the server sent only messages that are not an answer ({skipped})"
        )
    raise NotReady(f"{timed_out(bound)} from {_hostport(settings)}")


def _tcp(settings: Settings, message: bytes, ident: int, deadline: float, bound: float) -> Response:
    from portpatrol.checks.net import connect
    from portpatrol.wire import Wire

    assert settings.server is not None
    sock = connect(settings.server, settings.port, deadline, bound, socket.socket)
    wire = Wire(sock, deadline, bound)
    try:
        wire.send(struct.pack("!H", len(message)) + message)
        (length,) = struct.unpack("!H", wire.exact(2, "a DNS answer over TCP"))
        data = wire.exact(length, "a DNS answer over TCP")
    finally:
        wire.close()
    try:
        return parse_response(data, settings.name, settings.rtype, ident)
    except Mismatch as error:
        raise NotReady(f"the server's TCP answer is not an answer to the query ({error})") from None
