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

from portpatrol.errors import NotReady
from portpatrol.model import Record, set_fields
from portpatrol.text import cut, printable, quote

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

TYPES = ("A", "NS", "CNAME", "MX", "TXT", "AAAA", "SRV")
EXAMPLE = "e.g. dns:db.internal or dns://127.0.0.1:53/db.internal?type=AAAA"


class Settings(Record):
    """A record, not a dataclass: `import dataclasses` would be most of a dns target's start-up
    (docs/performance.md); the stub resolver (dnswire) is imported only for `dns://SERVER/`."""

    __slots__ = ("name", "rtype", "server", "port", "expect", "match")  # noqa: RUF023
    name: str  # ASCII (IDNA), no final dot
    rtype: str  # one of TYPES
    server: str | None  # None: the system resolver
    port: int
    expect: tuple[str, ...]  # normalised with _normal()
    match: re.Pattern[str] | None

    def __init__(  # noqa: PLR0917 (positional, as the dataclass it was)
        self,
        name: str,
        rtype: str,
        server: str | None,
        port: int,
        expect: tuple[str, ...] = (),
        match: re.Pattern[str] | None = None,
    ) -> None:
        set_fields(self, name=name, rtype=rtype, server=server, port=port, expect=expect, match=match)


def address(scheme: str, rest: str) -> Address:
    """`dns:NAME` (the registry passes scheme "dns:") or `dns://SERVER/NAME?type=...`: named after
    the name looked up, shown as written."""
    from portpatrol.address import Address
    from portpatrol.model import Kind

    text = f"dns:{rest}" if scheme == "dns:" else f"dns://{rest}"
    settings = parse(text, {})
    return Address(Kind.DNS, settings.name, None, text, text, frozenset())


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    from portpatrol.address import unquote_to_bytes

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
    name = _name(unquote_to_bytes(rest).decode("utf-8", "replace"))
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
            import socket

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
    from portpatrol.address import authority

    where = (
        "system resolver"
        if settings.server is None
        else f"server {authority(settings.server, settings.port)}"
    )
    line = f"{settings.name} type={settings.rtype} via {where}"
    if settings.expect:
        line += f" expect={','.join(settings.expect)}"
    if settings.match is not None:
        line += f" match={settings.match.pattern}"
    return printable(line)


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    if settings.server is None:
        answers = _system(settings, deadline)
    else:
        from portpatrol.dnswire import ask

        answers = ask(
            settings.server, settings.port, settings.name, settings.rtype, deadline=deadline, bound=bound
        )
    _judge(settings, answers)


def _system(settings: Settings, deadline: float) -> list[str]:
    import socket

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
    shown = printable(cut(", ".join(answers), 200))
    missing = [value for value in settings.expect if value not in have]
    if missing:
        raise NotReady(f"{settings.rtype} answers {shown}; expected {printable(', '.join(missing))}")
    if settings.match is not None and not any(settings.match.search(answer) for answer in answers):
        raise NotReady(f"no {settings.rtype} answer matches {printable(settings.match.pattern)}: {shown}")
