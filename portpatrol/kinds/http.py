"""HTTP(S): one request, ready when the status is in the expected set. The body is never read.

The request goes through checks/plainhttp.py when it can (most waits: no httpx to import), else
through httpx (checks/http.py): proxies, TLS, methods other than GET and HEAD."""

from __future__ import annotations

from portpatrol import __version__
from portpatrol.address import CONTROLS, Address, has_any, is_token, url_address
from portpatrol.errors import BadValue, ConfigError, Problem
from portpatrol.model import Kind, Record, set_fields
from portpatrol.text import mask_secrets, not_utf8, quote, utf8_text
from portpatrol.values import parse_bool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.checks import Check

NAME = "http"
SCHEMES = ("http", "https")
DEFAULT_PORT = None  # 80 or 443 by the scheme: the URL keeps what was written
USER_AGENT = f"portpatrol/{__version__}"
ENV = {
    "HTTP_METHOD": "method",
    "HTTP_ALLOW_DUPLICATE_HEADERS": "allow_duplicate_headers",
    "HTTP_HEADERS": "headers",
    "HTTP_EXPECTED_STATUS_CODES": "expected_status_codes",
    "HTTP_SKIP_TLS_VERIFY": "skip_tls_verify",
}
SECRET_KEYS = frozenset({"headers"})
# Header names and values, by the block's schema (`$defs` of the config file's schema).
DEFS: dict[str, Any] = {
    "header_name": {
        "description": "A header name: an HTTP token such as Authorization or X-Request-Id.",
        "type": "string",
        "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        "examples": ["Authorization", "Accept"],
    },
    "header_value": {
        "description": (
            "A header value; never logged. No control characters. `${VAR}` and `${VAR:-default}` are "
            "replaced from the environment when the file is loaded."
        ),
        "type": "string",
        "pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$",
        "examples": ["Bearer ${API_TOKEN}", "application/json"],
    },
}
SCHEMA: dict[str, Any] = {
    "description": "Settings of an HTTP(S) target; an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"method": "HEAD", "expected_status_codes": "200-299"}],
    "properties": {
        "method": {
            "description": (
                "The request method (like HTTP_METHOD), an HTTP token. The request has no body. `${VAR}` "
                "and `${VAR:-default}` are replaced from the environment when the file is loaded."
            ),
            "type": "string",
            "pattern": "^(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+|.*\\$\\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\\}.*)$",
            "default": "GET",
            "examples": ["GET", "HEAD", "POST"],
        },
        "headers": {
            "description": (
                "Request headers (like HTTP_HEADERS), sent in the order written: a mapping of name to "
                "value, or a list of {name, value} items to send one name twice (with "
                "allow_duplicate_headers: true). Names are compared case-insensitively. Values are never "
                "logged. User-Agent is portpatrol/VERSION unless set here. `${VAR}` and "
                "`${VAR:-default}` are replaced from the environment when the file is loaded."
            ),
            "default": {},
            "examples": [
                {"Authorization": "Bearer ${API_TOKEN}", "Accept": "application/json"},
                [{"name": "X-Tag", "value": "a"}, {"name": "X-Tag", "value": "b"}],
            ],
            "anyOf": [
                {
                    "type": "object",
                    "propertyNames": {"$ref": "#/$defs/header_name"},
                    "additionalProperties": {"$ref": "#/$defs/header_value"},
                },
                {
                    "type": "array",
                    "items": {
                        "description": "One header.",
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "value"],
                        "properties": {
                            "name": {"$ref": "#/$defs/header_name"},
                            "value": {"$ref": "#/$defs/header_value"},
                        },
                    },
                },
            ],
        },
        "allow_duplicate_headers": {
            "description": (
                "Allow one header name twice and send every value (like HTTP_ALLOW_DUPLICATE_HEADERS); "
                "otherwise a duplicate name is an error."
            ),
            "type": "boolean",
            "default": False,
            "examples": [True, False],
        },
        "expected_status_codes": {
            "description": (
                "The status codes that mean ready (like HTTP_EXPECTED_STATUS_CODES): a comma list of "
                "codes and inclusive ranges, or one code as a number. Redirects are followed unless a "
                "3xx code is listed here. `${VAR}` and `${VAR:-default}` are replaced from the "
                "environment when the file is loaded."
            ),
            "anyOf": [
                {
                    "type": "string",
                    "pattern": "^(?:\\s*[1-5][0-9][0-9](?:\\s*-\\s*[1-5][0-9][0-9])?\\s*(?:,\\s*[1-5][0-9][0-9](?:\\s*-\\s*[1-5][0-9][0-9])?\\s*)*|.*\\$\\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\\}.*)$",  # noqa: E501 (a pattern reads best whole)
                },
                {"type": "integer", "minimum": 100, "maximum": 599},
            ],
            "default": "200",
            "examples": ["200", "200-299", "200,301-302,404", 204],
        },
        "skip_tls_verify": {
            "description": "Do not verify the server's TLS certificate (like HTTP_SKIP_TLS_VERIFY).",
            "type": "boolean",
            "default": False,
            "examples": [False, True],
        },
    },
}
_HEADER_CONTROLS = CONTROLS.replace("\t", "")


class StatusCodes(Record):
    """Inclusive ranges of HTTP status codes, as written (`200,300-302`)."""

    __slots__ = ("ranges",)
    ranges: tuple[tuple[int, int], ...]

    def __init__(self, ranges: tuple[tuple[int, int], ...] = ((200, 200),)) -> None:
        set_fields(self, ranges=ranges)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(lo <= code <= hi for lo, hi in self.ranges)

    @property
    def has_redirect(self) -> bool:
        return any(lo <= 399 and hi >= 300 for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


class Settings(Record):
    """A record, not a dataclass: a plain HTTP wait's start-up pays no `import dataclasses`
    (model.Record says why)."""

    __slots__ = ("url", "method", "headers", "expected", "skip_tls_verify", "proxy")  # noqa: RUF023
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    expected: StatusCodes
    skip_tls_verify: bool
    proxy: str | None

    def __init__(  # noqa: PLR0917 (built positionally, as a dataclass would be)
        self,
        url: str,
        method: str = "GET",
        headers: tuple[tuple[str, str], ...] = (),
        expected: StatusCodes = StatusCodes(),  # noqa: B008 (immutable, shared on purpose)
        skip_tls_verify: bool = False,
        proxy: str | None = None,
    ) -> None:
        set_fields(
            self,
            url=url,
            method=method,
            headers=headers,
            expected=expected,
            skip_tls_verify=skip_tls_verify,
            proxy=proxy,
        )

    @property
    def follow_redirects(self) -> bool:
        # A 3xx in the expected set must be seen, so redirects are then not followed.
        return not self.expected.has_redirect


HttpSpec = Settings  # the name the rest of the code knew it by


def address(scheme: str, rest: str) -> Address:
    return url_address(Kind.HTTP, f"{scheme}://{rest}", None, "(e.g. http://api:8080/healthz)")


def parse(text: str, block: Mapping[str, Any]) -> Settings:
    """The block from the environment (every value a string) or a config file (typed values).
    Reports every key's problem (an ExceptionGroup of BadValue), then the address's."""
    problems: list[ValueError] = []

    def value(key: str, parser: Any, default: Any) -> Any:
        if key not in block:
            return default
        raw = block[key]
        try:
            return parser(raw) if isinstance(raw, str) else raw
        except ValueError as error:
            problems.append(BadValue((key,), str(error), quoted=key not in SECRET_KEYS))
            return default

    method = value("method", parse_method, "GET")
    allow = value("allow_duplicate_headers", parse_bool, False)
    headers = value("headers", lambda t: parse_headers(t, allow), ())
    expected = value("expected_status_codes", parse_status_codes, StatusCodes())
    skip = value("skip_tls_verify", parse_bool, False)
    try:
        scheme, sep, rest = text.partition("://")
        url = address(scheme, rest).url if sep else address("http", text).url
    except ValueError as error:
        problems.append(error)
        url = None
    if problems:
        raise ExceptionGroup("the HTTP settings", problems)
    assert url is not None
    if not any(name.lower() == "user-agent" for name, _ in headers):
        headers = (("User-Agent", USER_AGENT), *headers)
    return Settings(url, method, headers, expected, skip)


def environment(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """The proxy the environment selects for the URL (HTTP_PROXY, NO_PROXY...)."""
    proxy = select_proxy(settings.url, environ)
    if proxy is None:
        return settings
    key, proxy_url = proxy
    where = f"{key}={quote(mask_secrets(environ[key]))}"
    if proxy_url.partition("://")[0].lower() not in ("http", "https"):
        problem = "only http:// and https:// proxies are supported (e.g. http://proxy:3128)"
        raise ConfigError([Problem(where, problem)])
    try:
        utf8_text(proxy_url, "(e.g. db:5432 or http://api:8080/healthz)")  # as any address
        address(*proxy_url.split("://", 1))
    except ValueError as error:
        raise ConfigError([Problem(where, f"not a proxy URL: {error}")]) from None
    return settings.replace(proxy=proxy_url)


def secrets(settings: Settings) -> frozenset[str]:
    """Header values (credentials, often) and the proxy's password."""
    found = frozenset(value for _, value in settings.headers if value and value != USER_AGENT)
    if settings.proxy is not None:
        found |= address(*settings.proxy.split("://", 1)).secrets
    return found


def describe(settings: Settings) -> str:
    details = [settings.method, f"expect {settings.expected}"]
    if len(settings.headers) > 1:
        details.append("headers " + ",".join(name for name, _ in settings.headers[1:]))
    details += ["skip TLS verify"] if settings.skip_tls_verify else []
    details += ["via proxy"] if settings.proxy else []
    return ", ".join(details)


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    check(settings, bound).attempt()


def check(settings: Settings, dial_timeout: float) -> Check:
    from portpatrol.checks import plainhttp

    if plainhttp.suits(settings):  # most waits: no need to import httpx (docs/performance.md)
        return plainhttp.PlainHttpCheck(settings, dial_timeout)
    from portpatrol.checks.http import HttpCheck

    return HttpCheck(settings, dial_timeout)


def parse_method(text: str) -> str:
    if not is_token(text):
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
        if not is_token(name):
            raise ValueError(f"header {number} {bad_header_name(name)} {example}")
        if value and not value.strip("="):  # `HTTP_HEADERS=$TOKEN`: base64's padding split a token
            raise ValueError(
                f"header {number} has only '=' as its value (a token without its name?) {example}"
            )
        if has_any(value, _HEADER_CONTROLS, spaces=False):
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


def bad_header_name(name: str) -> str:
    """What is wrong with a header name, without showing it: a name that is not a token is often
    curl's `Authorization: Basic <credentials>`, a whole header in the name's place."""
    if not name:
        return "has an empty name"
    bad = next((c for c in name if not is_token(c)), None)
    if bad is None:
        return "has a name that is not valid"
    if bad == ":":
        return "has a ':' in its name (curl's `Name: value` form; write Name=value)"
    return f"has a name holding {quote(bad)}, which a header name cannot hold"


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
