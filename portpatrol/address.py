"""The syntax of addresses, shared by the kinds: schemes, host and port, URLs, and the secrets in
them (user info, token-like query parameters), masked in the form shown.

Every pod's start-up runs this module (docs/performance.md), so what a TCP target from the
environment needs is plain str methods: `import re`, ipaddress and urllib.parse are imported only
by the paths that need them."""

from __future__ import annotations

from portpatrol.model import Kind, Record, set_fields
from portpatrol.text import HIDDEN_QUERY_NAME, MASK, quote

_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN = "!#$%&'*+-.^_`|~" + _DIGITS + _LETTERS  # RFC 9110 tchar
_SCHEME_CHARS = "+-." + _DIGITS + _LETTERS  # RFC 3986, after a first letter
CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"  # C0 and DEL
# Characters that never belong in a host name (besides whitespace); catches typos such as
# `http://exam ple.com`.
BAD_HOST = CONTROLS + "/\\?#@[]<>\"'{}|^`%,;"


def has_any(text: str, chars: str, spaces: bool = True) -> bool:
    """Whether `text` holds one of `chars` or, with `spaces`, whitespace (as re's \\s: Unicode's)."""
    return any(c in chars or (spaces and c.isspace()) for c in text)


def is_token(text: str) -> bool:
    return bool(text) and not text.strip(TOKEN)


def scheme(text: str) -> str | None:
    """The scheme of `scheme://rest` as written, or None when `text` does not start with one."""
    name, sep, _ = text.partition("://")
    valid = sep and name and name[0] in _LETTERS and not name.strip(_SCHEME_CHARS)
    return name if valid else None


class Address(Record):
    """A record, not a dataclass: on every pod's start-up path (model.Record says why)."""

    __slots__ = ("kind", "host", "port", "url", "display", "secrets")  # noqa: RUF023
    kind: Kind
    host: str  # as written, IPv6 brackets removed; the inferred name
    port: int | None
    url: str | None  # URL kinds only: the URL as requested
    display: str  # the address with passwords masked
    secrets: frozenset[str]

    def __init__(  # noqa: PLR0917 (built positionally by the parsers)
        self, kind: Kind, host: str, port: int | None, url: str | None, display: str, secrets: frozenset[str]
    ) -> None:
        set_fields(self, kind=kind, host=host, port=port, url=url, display=display, secrets=secrets)


def url_address(kind: Kind, url: str, default_port: int | None, example: str) -> Address:
    """A URL `scheme://[user[:password]@]host[:port][/path][?query]`, its password and token-like
    query values masked in the form shown."""
    import re
    from urllib.parse import unquote, urlsplit

    if has_any(url, CONTROLS):
        raise ValueError(f"a URL has no spaces or control characters {example}")
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ValueError(f"not a URL: {error} {example}") from None
    if "@" in parts.path + parts.fragment or any("@" in p.partition("=")[0] for p in parts.query.split("&")):
        # `http://user:pa/ss@host` is host `user` with the path `/ss@host`: a password holding `/`,
        # `?` or `#` unencoded would be shown (and sent) as the host and path.
        raise ValueError(
            "an '@' after the host: percent-encode a '/', '?' or '#' in the password "
            f"(%2F, %3F, %23) and an '@' in the path (%40) {example}"
        )
    userinfo, host, port = split_netloc(parts.netloc, example)
    display, secrets = mask_userinfo(userinfo, url)
    query = []
    for pair in parts.query.split("&") if parts.query else ():
        name, eq, value = pair.partition("=")
        secret = bool(eq and value and re.search(HIDDEN_QUERY_NAME, name))
        if secret:
            secrets |= {value, unquote(value)}
        query.append(f"{name}=***" if secret else pair)
    if secrets and parts.query:
        display = display.replace(parts.query, "&".join(query), 1)
    if parts.fragment and query != parts.query.split("&"):  # a `#` ends a hidden value: its rest
        display = display[: display.rindex("#")] + "#" + MASK
    return Address(kind, host, port or default_port, url, display, secrets)


def split_netloc(netloc: str, example: str) -> tuple[str, str, int | None]:
    userinfo, _, hostport = netloc.rpartition("@")
    port_text: str | None
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"not a bracketed IPv6 address {example}")
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{quote(host)} is not an IPv6 address {example}") from None
        port_text = after[1:] if after else None
    else:
        if hostport.count(":") > 1:
            raise ValueError(f"an IPv6 address with a port goes in brackets {example}")
        host, colon, port_text_raw = hostport.partition(":")
        port_text = port_text_raw if colon else None
        if not host:
            raise ValueError(f"the address has no host {example}")
        if has_any(host, BAD_HOST):
            raise ValueError(f"{quote(host)} is not a host name {example}")
    if port_text is None:
        return userinfo, host, None
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"the port must be a number from 1 to 65535 {example}")
    return userinfo, host, int(port_text)


def authority(host: str, port: int) -> str:
    """`host:port` as an address writes it, an IPv6 address in brackets (`[::1]:5432`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def percent_decoded(text: str, what: str, example: str) -> str:
    """User info or a path segment percent-decoded (`p%40ss` is `p@ss`), the result UTF-8."""
    from urllib.parse import unquote

    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"the {what} is not UTF-8 once percent-decoded {example}") from None


def mask_userinfo(userinfo: str, text: str) -> tuple[str, frozenset[str]]:
    """Hide the whole user info of `user:password@` (or a bare `token@`) in the display form: a
    token is often written as the user (`https://TOKEN@host`, `TOKEN:x-oauth-basic@`, `TOKEN:@`),
    so no part of it is shown. Its secrets are the password and a user that may be a token (no
    password, or a long one), each also percent-decoded."""
    if not userinfo:
        return text, frozenset()
    from urllib.parse import unquote

    user, _, password = userinfo.partition(":")
    hidden = [password]
    if not password or len(user) >= 16:  # a token is long; a user name rarely is
        hidden.append(user)
    hidden += [unquote(item) for item in hidden]
    secrets = frozenset(item for item in hidden if item)
    return text.replace(userinfo + "@", MASK + "@", 1), secrets


def unquote_to_bytes(text: str) -> bytes:
    """%XX escapes to their bytes, everything else as UTF-8: urllib's unquote_to_bytes without the
    ~30 ms its module imports (re, ipaddress, warnings) add to a start-up."""
    raw = text.encode("utf-8", "surrogateescape")
    if b"%" not in raw:
        return raw
    pieces = raw.split(b"%")
    out = bytearray(pieces[0])
    for piece in pieces[1:]:
        if len(piece) >= 2 and all(c in b"0123456789abcdefABCDEF" for c in piece[:2]):
            out += bytes([int(piece[:2], 16)]) + piece[2:]
        else:
            out += b"%" + piece
    return bytes(out)
