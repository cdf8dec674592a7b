"""Parsers shared by every source. Each takes text and returns a typed value or raises
ValueError whose message says what is wrong and shows a valid example."""

from __future__ import annotations

from portpatrol.model import Kind, Record, StatusCodes, _set

# Every pod's start-up runs this module (docs/performance.md), so what a TCP target from the
# environment needs is plain str methods: `import re` costs ~5 ms, json ~1.5 ms, and
# ipaddress and urllib.parse more; those are imported only by the paths that need them.
TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms; their names are only needed by mypy
if TYPE_CHECKING:
    from collections.abc import Mapping

# json.dumps(text, ensure_ascii=False)'s escapes, and more: JSON leaves DEL, the C1 controls (NEL
# among them) and the Unicode line separators raw; some terminals and log collectors take those
# as line breaks or commands, so they are escaped too.
LINE_UNSAFE = (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)  # code points escaped in any line
# Bidirectional overrides and isolates, zero-width characters and the byte order mark: they reorder or
# hide what a line shows (a peer's `\u202e` turns a reason around), so they are escaped too.
LINE_UNSAFE += (*range(0x200B, 0x2010), *range(0x202A, 0x202F), 0x2060, *range(0x2066, 0x206A), 0xFEFF)
_ESCAPES = {c: f"\\u{c:04x}" for c in LINE_UNSAFE}
_ESCAPES |= {ord(c): "\\" + short for c, short in zip('"\\\b\f\n\r\t', '"\\bfnrt', strict=True)}
# The same escapes without those of the quote and the backslash: for text shown unquoted (a path).
_UNQUOTED_ESCAPES = {c: escape for c, escape in _ESCAPES.items() if c not in (ord('"'), ord("\\"))}


def json_string(text: str) -> str:
    """`text` as a JSON string literal, with every character that could end or forge a line escaped."""
    return f'"{text.translate(_ESCAPES)}"'


DURATION_EXAMPLE = "use a unit, e.g. 5s, 500ms, 1m30s"

_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_MAX_DURATION = 8760 * 3600  # a year, in seconds: far beyond any wait, well inside every timer
_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOKEN = "!#$%&'*+-.^_`|~" + _DIGITS + _LETTERS  # RFC 9110 tchar
_SCHEME_CHARS = "+-." + _DIGITS + _LETTERS  # RFC 3986, after a first letter
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_SCHEME_KINDS = {"tcp": Kind.TCP, "http": Kind.HTTP, "https": Kind.HTTP, "icmp": Kind.ICMP}
# Regular expressions of the paths that import re (HTTP, and messages about what did not parse);
# re caches them compiled.
_HIDDEN_QUERY_NAME = r"(?i)token|key|secret|pass|pwd|auth|sig|credential|session|code"
_QUERY_PAIR = r"([?&;]([^=&#;?]*)=)[^&#;]*"
_CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"  # C0 and DEL
_HEADER_CONTROLS = _CONTROLS.replace("\t", "")
# Characters that never belong in a host name (besides whitespace); catches typos such as
# `http://exam ple.com`.
_BAD_HOST = _CONTROLS + "/\\?#@[]<>\"'{}|^`%,;"


def _has_any(text: str, chars: str, spaces: bool = True) -> bool:
    """Whether `text` holds one of `chars` or, with `spaces`, whitespace (as re's \\s: Unicode's)."""
    return any(c in chars or (spaces and c.isspace()) for c in text)


def _is_token(text: str) -> bool:
    return bool(text) and not text.strip(_TOKEN)


def _scheme(text: str) -> str | None:
    """The scheme of `scheme://rest` as written, or None when `text` does not start with one."""
    scheme, sep, _ = text.partition("://")
    valid = sep and scheme and scheme[0] in _LETTERS and not scheme.strip(_SCHEME_CHARS)
    return scheme if valid else None


def printable(text: str) -> str:
    """`text` as json_string escapes it but unquoted: no character in it can break or drive a line."""
    return text.translate(_UNQUOTED_ESCAPES)


def not_utf8(text: str) -> bool:
    """Whether `text` holds a lone surrogate: a byte that was not UTF-8, decoded with surrogateescape."""
    return not text.isascii() and any("\ud800" <= c <= "\udfff" for c in text)


def utf8_text(text: str, example: str) -> str:
    """`text`, unless it holds bytes that are not UTF-8 (lone surrogates, from an environment variable
    or argument): no host name, URL or header value can hold those, nor a name a report can write."""
    if not_utf8(text):
        raise ValueError(f"holds bytes that are not UTF-8 (shown as \\udcXX); write it in UTF-8 {example}")
    return text


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and an ellipsis when it is longer."""
    return text if len(text) <= limit else text[:limit] + "…"


def quote(value: str, limit: int = 80) -> str:
    """A value as it appears in an error line: quoted, escaped, and cut when huge."""
    return json_string(cut(value, limit))


def mask_secrets(text: str) -> str:
    """Text that may hold `scheme://user:password@` or `?token=...`, with user info and the values
    of token-like query parameters hidden: for messages about addresses that did not even parse."""
    import re

    text = re.sub(r"(?<=://)[^/?#@\s]*@", "***@", text)
    return re.sub(_QUERY_PAIR, lambda m: f"{m[1]}***" if re.search(_HIDDEN_QUERY_NAME, m[2]) else m[0], text)


def parse_duration(text: str) -> float:
    """Go's duration syntax (`2s`, `500ms`, `1m30s`, `1.5h`) to seconds; must be > 0."""
    pieces = _duration_pieces(text) if len(text) <= 64 else None
    if not pieces:
        raise ValueError(f"not a duration ({DURATION_EXAMPLE})")
    ns = sum(float(number) * _NS[unit] for number, unit in pieces)
    if ns < 1:
        raise ValueError(f"must be greater than 0 ({DURATION_EXAMPLE})")
    if ns / 1e9 > _MAX_DURATION:
        raise ValueError("must be at most 8760h (a year)")
    return ns / 1e9


def _duration_pieces(text: str) -> list[tuple[str, str]] | None:
    """The (number, unit) pieces of `text`, each number `\\d+(\\.\\d*)?|\\.\\d+` in ASCII digits
    (as Go and the schema), or None when `text` is anything else."""
    pieces = []
    i, end = 0, len(text)
    while i < end:
        start = i
        while i < end and text[i] in _DIGITS:
            i += 1
        digits = i > start
        if i < end and text[i] == ".":
            i += 1
            fraction = i
            while i < end and text[i] in _DIGITS:
                i += 1
            digits = digits or i > fraction
        unit = text[i : i + 2] if text[i : i + 2] in _NS else text[i : i + 1]
        if not digits or unit not in _NS:
            return None
        pieces.append((text[start:i], unit))
        i += len(unit)
    return pieces


def format_duration(seconds: float) -> str:
    """Seconds in Go's Duration.String form: `2s`, `500ms`, `1m30s`, `1h0m0s`."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        unit, size = ("ns", 1) if ns < 10**3 else ("µs", 10**3) if ns < 10**6 else ("ms", 10**6)
        return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _decimal(rest, 10**9) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(len(str(size)) - 1, '0').rstrip('0')}"


def parse_threshold(text: str) -> int:
    """A count of consecutive successes: a whole number from 1 to 1000."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 1000):
        raise ValueError("not a whole number from 1 to 1000 (e.g. 3)")
    return int(text)


def parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean (use true or false)")


def parse_method(text: str) -> str:
    if not _is_token(text):
        raise ValueError("not an HTTP method (e.g. GET, HEAD, POST)")
    return text


def parse_status_codes(text: str) -> StatusCodes:
    """`200,301-302,404,500-502`: codes and inclusive ranges, all within 100-599."""
    example = "(e.g. 200,301-302,500-502)"
    ranges: list[tuple[int, int]] = []
    for raw in text.split(","):
        piece = raw.strip()
        low, dash, high = piece.partition("-")
        bounds = (low.strip(), high.strip()) if dash else (low, low)
        if not all(b.isascii() and b.isdigit() for b in bounds):
            raise ValueError(f"{quote(piece)} is not a status code or range {example}")
        lo, hi = int(bounds[0]), int(bounds[1])
        if not (100 <= lo <= 599 and 100 <= hi <= 599):
            raise ValueError(f"{quote(piece)} is outside 100-599 {example}")
        if lo > hi:
            raise ValueError(f"{quote(piece)} is a range that ends before it starts {example}")
        ranges.append((lo, hi))
    return StatusCodes(tuple(ranges))


def parse_headers(text: str, allow_duplicates: bool) -> tuple[tuple[str, str], ...]:
    """`Name=value,Other=value`: split on commas, each on its first `=`. Error messages name
    the piece by its position and never quote a value, which may be a credential."""
    example = "(e.g. Authorization=Bearer token,Accept=application/json)"
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, piece in enumerate(text.split(","), 1):
        if not piece.strip():
            continue
        name, eq, value = piece.partition("=")
        name, value = name.strip(), value.strip()
        if not eq:
            raise ValueError(f"header {number} has no '=' between name and value {example}")
        if not _is_token(name):
            shown = "an empty name" if not name else f"the name {quote(name, 40)}, which is not valid"
            raise ValueError(f"header {number} has {shown} {example}")
        if _has_any(value, _HEADER_CONTROLS, spaces=False):
            raise ValueError(f"header {quote(name)} has a control character in its value {example}")
        if not_utf8(value):
            raise ValueError(f"header {quote(name)} has bytes that are not UTF-8 in its value {example}")
        if name.lower() in seen and not allow_duplicates:
            raise ValueError(
                f"header {quote(name)} is given twice (set HTTP_ALLOW_DUPLICATE_HEADERS=true to send both)"
            )
        seen.add(name.lower())
        headers.append((name, value))
    return tuple(headers)


def parse_check_type(text: str) -> str:
    kind = text.strip().lower()
    if kind not in _SCHEME_KINDS:
        raise ValueError("not a check type (use tcp, http, https or icmp)")
    return kind


class Address(Record):
    __slots__ = ("kind", "host", "port", "url", "display", "secrets")  # noqa: RUF023
    kind: Kind
    host: str  # as written, IPv6 brackets removed; the inferred name
    port: int | None
    url: str | None  # HTTP only: the URL requested
    display: str  # the address with passwords masked
    secrets: frozenset[str]

    def __init__(  # noqa: PLR0917 (built positionally by the parsers below)
        self, kind: Kind, host: str, port: int | None, url: str | None, display: str, secrets: frozenset[str]
    ) -> None:
        for name, value in zip(self.__slots__, (kind, host, port, url, display, secrets), strict=True):
            _set(self, name, value)


def parse_address(text: str, check_type: str | None, type_key: str) -> Address:
    """An address in any documented form. `check_type` is an already parsed type, or None;
    `type_key` names where it came from, for the message when the two contradict."""
    text = utf8_text(text, "(e.g. db:5432 or http://api:8080/healthz)").strip()
    written = _scheme(text)
    scheme = written and written.lower()
    if scheme is not None and scheme not in _SCHEME_KINDS:
        raise ValueError(f"unknown scheme {quote(scheme)} (use tcp://, http://, https:// or icmp://)")
    if scheme and check_type and _SCHEME_KINDS[scheme] is not _SCHEME_KINDS[check_type]:
        raise ValueError(
            f"the scheme {quote(scheme)} contradicts {type_key} {quote(check_type)} "
            f"(drop one, or make them agree, e.g. {scheme}://host:port)"
        )
    kind_name = scheme or check_type or "tcp"
    kind = _SCHEME_KINDS[kind_name]
    rest = text[len(written) + 3 :] if written else text
    if kind is Kind.HTTP:
        return _http_address(f"{kind_name}://{rest}")
    if kind is Kind.ICMP:
        return _icmp_address(rest)
    return _tcp_address(rest)


def intended_kind(text: str, check_type: str | None) -> Kind | None:
    """The kind an address that did not parse was meant to have, when that is clear: so the
    variables of that kind can still be checked and every problem reported at once."""
    written = _scheme(text.strip())
    scheme = written and written.lower()
    kinds = {_SCHEME_KINDS[name] for name in (scheme, check_type) if name in _SCHEME_KINDS}
    if len(kinds) != 1 or (scheme is not None and scheme not in _SCHEME_KINDS):
        return None
    return kinds.pop()


def _tcp_address(rest: str) -> Address:
    example = "(e.g. db:5432, tcp://db:5432 or [::1]:5432)"
    netloc, _, tail = rest.partition("/")
    if tail:
        raise ValueError(f"a TCP address has no path {example}")
    userinfo, host, port = _split_netloc(netloc, example)
    if port is None:
        raise ValueError(f"a TCP address needs a port {example}")
    display, secrets = _mask_secrets(userinfo, rest)
    return Address(Kind.TCP, host, port, None, display, secrets)


def _icmp_address(rest: str) -> Address:
    example = "(e.g. icmp://gateway, icmp://10.0.0.1 or icmp://[::1])"
    host = rest[1:-1] if rest.startswith("[") and rest.endswith("]") else rest
    if host != rest or ":" in host:
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"an ICMP address takes no port or path {example}") from None
    elif not host or _has_any(host, _BAD_HOST):
        raise ValueError(f"not a host name or IP address {example}")
    return Address(Kind.ICMP, host, None, None, rest, frozenset())


def _http_address(url: str) -> Address:
    import re
    from urllib.parse import unquote, urlsplit

    example = "(e.g. http://api:8080/healthz)"
    if _has_any(url, _CONTROLS):
        raise ValueError(f"a URL has no spaces or control characters {example}")
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ValueError(f"not a URL: {error} {example}") from None
    userinfo, host, port = _split_netloc(parts.netloc, example)
    display, secrets = _mask_secrets(userinfo, url)
    query = []
    for pair in parts.query.split("&") if parts.query else ():
        name, eq, value = pair.partition("=")
        secret = bool(eq and value and re.search(_HIDDEN_QUERY_NAME, name))
        if secret:
            secrets |= {value, unquote(value)}
        query.append(f"{name}=***" if secret else pair)
    if secrets and parts.query:
        display = display.replace(parts.query, "&".join(query), 1)
    return Address(Kind.HTTP, host, port, url, display, secrets)


def _split_netloc(netloc: str, example: str) -> tuple[str, str, int | None]:
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
        if _has_any(host, _BAD_HOST):
            raise ValueError(f"{quote(host)} is not a host name {example}")
    if port_text is None:
        return userinfo, host, None
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"the port must be a number from 1 to 65535 {example}")
    return userinfo, host, int(port_text)


def _mask_secrets(userinfo: str, text: str) -> tuple[str, frozenset[str]]:
    """Hide the password of `user:password@` (or a bare `token@`) in the display form."""
    if not userinfo:
        return text, frozenset()
    from urllib.parse import unquote

    user, colon, password = userinfo.partition(":")
    hidden = password if colon else user
    masked = f"{user}:***" if colon else "***"
    secrets = frozenset(s for s in (hidden, unquote(hidden)) if s)
    return text.replace(userinfo + "@", masked + "@", 1), secrets


def select_proxy(url: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The proxy for `url` by the usual variables (lower case wins over upper case), as
    (variable, proxy URL), or None when none is set or NO_PROXY bypasses the host.
    A proxy without a scheme is an http:// one."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    found = _proxy_variable(environ, f"{parts.scheme}_proxy") or _proxy_variable(environ, "all_proxy")
    if found is None:
        return None
    no_proxy = _proxy_variable(environ, "no_proxy")
    if no_proxy and _bypassed(parts.hostname or "", parts.port, no_proxy[1]):
        return None
    key, proxy = found
    return key, proxy if "://" in proxy else "http://" + proxy


def _proxy_variable(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for key in (name.lower(), name.upper()):
        if environ.get(key, "").strip():
            return key, environ[key].strip()
    return None


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    import ipaddress

    host = host.lower()
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if not entry:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
                continue
            except ValueError:
                pass
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False
