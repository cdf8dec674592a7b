"""HTTP(S): one request, ready when the status is in the expected set and, with an `expect` block,
when the answer holds what it says (kinds/httpanswer.py: headers, body, JSON; docs/http.md).

The request goes through checks/plainhttp.py when it can (most waits: no httpx to import), else
through httpx (checks/http.py): proxies, TLS, anything unusual. Both follow redirects and pick
proxies by one policy (checks/httppolicy.py), so both give the same verdict and reason for the same
answers."""

from __future__ import annotations

from portpatrol import __version__
from portpatrol.address import CONTROLS, Address, has_any, is_token, url_address
from portpatrol.errors import BadValue, ConfigError, Problem
from portpatrol.model import Kind, Record, set_fields
from portpatrol.text import mask_secrets, not_utf8, quote, utf8_text
from portpatrol.values import parse_bool

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.checks import Check
    from portpatrol.kinds.httpanswer import Expectations

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
    "HTTP_BODY": "body",
    # Keys with a dot are the env forms of nested keys: expect.body is `expect: {body: ...}`.
    "HTTP_EXPECT_BODY": "expect.body",
    "HTTP_EXPECT_JSON": "expect.json",
    "HTTP_MAX_BODY": "max_body",
    "HTTP_CA_FILE": "ca_file",
    "HTTP_CERT_FILE": "cert_file",
    "HTTP_KEY_FILE": "key_file",
    "HTTP_FOLLOW_REDIRECTS": "follow_redirects",
    "HTTP_MAX_REDIRECTS": "max_redirects",
}
MAX_REDIRECTS = 10  # the default of max_redirects, as Go's and httpx's clients
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
        "title": "a header value",
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
            "title": "a mapping of name to value (or a list of name and value)",
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
        "body": {
            "description": (
                "The request body (like HTTP_BODY), sent as UTF-8 with its Content-Length; empty: none. "
                "`${VAR}` and `${VAR:-default}` are replaced from the environment when the file is loaded."
            ),
            "type": "string",
            "default": "",
            "examples": ['{"probe": true}'],
        },
        "ca_file": {
            "description": (
                "Trust this PEM bundle instead of the system's store, as curl --cacert (like HTTP_CA_FILE). "
                "A missing or unreadable file is a configuration error at start."
            ),
            "type": "string",
            "default": "",
            "examples": ["/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"],
        },
        "cert_file": {
            "description": "A client certificate (PEM) for servers that require one (like HTTP_CERT_FILE).",
            "type": "string",
            "default": "",
            "examples": ["/etc/tls/client.crt"],
        },
        "key_file": {
            "description": (
                "The key of cert_file when it is not in that file (like HTTP_KEY_FILE); a key that does "
                "not match the certificate is a configuration error at start."
            ),
            "type": "string",
            "default": "",
            "examples": ["/etc/tls/client.key"],
        },
        "follow_redirects": {
            "description": (
                "Follow 301, 302, 303, 307 and 308 answers (like HTTP_FOLLOW_REDIRECTS). Default: yes, "
                "unless expected_status_codes lists a 3xx code. A redirect's body is never read; "
                "Authorization, Cookie and Host are dropped when a redirect leaves the origin."
            ),
            "type": "boolean",
            "examples": [True, False],
        },
        "max_redirects": {
            "description": "Redirects followed at most, then the attempt fails (like HTTP_MAX_REDIRECTS).",
            "type": "integer",
            "minimum": 0,
            "maximum": 100,
            "default": MAX_REDIRECTS,
            "examples": [10, 3],
        },
    },
}
_CONDITION: dict[str, Any] = {
    "description": "One condition on the JSON body: a path and one of equals, matches or exists.",
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "maxProperties": 2,  # the path and at most one of equals, matches, exists
    "examples": [{"path": "$.status", "equals": "UP"}, {"path": "$.maintenance", "exists": False}],
    "properties": {
        "path": {
            "description": "An RFC 9535 JSONPath; it must select at least one value (unless exists: false).",
            "type": "string",
            "minLength": 1,
            "examples": ["$.status", "$.checks[*].state", "$.checks[?@.status != 'UP']"],
        },
        "equals": {
            "description": "Every selected value equals this JSON value (1 equals 1.0; true is not 1).",
            "examples": ["UP", True, 0],
        },
        "matches": {
            "description": "Every selected value's text (a string as it is, else its JSON) matches this "
            "regular expression, searched anywhere in it.",
            "type": "string",
            "examples": ["^(pass|warn)$", "^(green|yellow)$"],
        },
        "exists": {
            "description": "false: the path selects nothing; true: it selects something.",
            "type": "boolean",
            "default": True,
            "examples": [False, True],
        },
    },
}
SIZE_PATTERN = r"^\s*[0-9]+\s*([kKmMgG]i?[bB]|[bB])?\s*$"
EXPECT: dict[str, Any] = {
    "description": (
        "What the answer must hold beyond its status code (docs/http.md): checked after the status, "
        "headers first, then the body, then its JSON. Invalid expressions and paths are configuration "
        "errors."
    ),
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"json": [{"path": "$.status", "equals": "UP"}]}, {"body": "ok|healthy"}],
    "properties": {
        "body": {
            "description": "A regular expression searched in the decoded body (like HTTP_EXPECT_BODY).",
            "type": "string",
            "default": "",
            "examples": ["ok|healthy", "^ok$"],
        },
        "json": {
            "description": (
                "Conditions on the body parsed as JSON; every one must hold (like HTTP_EXPECT_JSON, "
                'which also takes the shorthand {"$.status": "UP"}).'
            ),
            "type": "array",
            "items": _CONDITION,
            "default": [],
            "examples": [[{"path": "$.status", "equals": "UP"}]],
        },
        "headers": {
            "description": "Header name -> a regular expression its value must match (names in any case).",
            "type": "object",
            "propertyNames": {"$ref": "#/$defs/header_name"},
            "additionalProperties": {"type": "string"},
            "default": {},
            "examples": [{"Content-Type": "json"}],
        },
    },
}
MAX_BODY: dict[str, Any] = {
    "description": (
        "Read at most this much of the body, after decompression (like HTTP_MAX_BODY); more is a failed "
        "attempt. Only read when expect has body or json."
    ),
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 1024**3},
        {"type": "string", "pattern": SIZE_PATTERN},
    ],
    "default": "1MiB",
    "examples": ["1MiB", "64KiB", 500000],
}
SCHEMA["properties"] |= {"expect": EXPECT, "max_body": MAX_BODY}
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

    __slots__ = (  # noqa: RUF023 (the order of __init__)
        "url",
        "method",
        "headers",
        "expected",
        "skip_tls_verify",
        "proxy",
        "body",
        "expect",
        "follow",
        "max_redirects",
        "tls",
    )
    _unshown = ("tls",)
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    expected: StatusCodes
    skip_tls_verify: bool
    proxy: str | None
    body: bytes | None  # the request body
    expect: Expectations | None  # what the answer must hold beyond its status (kinds/httpanswer.py)
    follow: bool | None  # follow_redirects as written; None: the default (see follow_redirects)
    max_redirects: int
    tls: Identity | None  # ca_file, cert_file, key_file and the context made from them at start

    def __init__(  # noqa: PLR0917 (built positionally, as a dataclass would be)
        self,
        url: str,
        method: str = "GET",
        headers: tuple[tuple[str, str], ...] = (),
        expected: StatusCodes = StatusCodes(),  # noqa: B008 (immutable, shared on purpose)
        skip_tls_verify: bool = False,
        proxy: str | None = None,
        body: bytes | None = None,
        expect: Expectations | None = None,
        follow: bool | None = None,
        max_redirects: int = MAX_REDIRECTS,
        tls: Identity | None = None,
    ) -> None:
        set_fields(
            self,
            url=url,
            method=method,
            headers=headers,
            expected=expected,
            skip_tls_verify=skip_tls_verify,
            proxy=proxy,
            body=body,
            expect=expect,
            follow=follow,
            max_redirects=max_redirects,
            tls=tls,
        )

    @property
    def follow_redirects(self) -> bool:
        # By default a 3xx in the expected set must be seen, so redirects are then not followed.
        return not self.expected.has_redirect if self.follow is None else self.follow


class Identity(Record):
    """The TLS files of a target and the client context made from them once, at start: a missing
    file or a key that does not match is a configuration error, not a retried failure."""

    __slots__ = ("ca_file", "cert_file", "key_file", "context")  # noqa: RUF023
    _unshown = ("context",)
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    context: ssl.SSLContext

    def __init__(
        self, ca_file: str | None, cert_file: str | None, key_file: str | None, context: ssl.SSLContext
    ) -> None:
        set_fields(self, ca_file=ca_file, cert_file=cert_file, key_file=key_file, context=context)


HttpSpec = Settings  # the name the rest of the code knew it by


def address(scheme: str, rest: str) -> Address:
    return url_address(Kind.HTTP, f"{scheme}://{rest}", None, "(e.g. http://api:8080/healthz)")


def parse(text: str, block: Mapping[str, Any]) -> Settings:
    """The block from the environment (every value a string) or a config file (typed values).
    Reports every key's problem (an ExceptionGroup of BadValue), then the address's."""
    problems: list[ValueError] = []

    def value(key: str, parser: Any, default: Any, typed: Any = None) -> Any:
        """The value at `key`: text parsed by `parser`, a config file's typed value by `typed`."""
        if key not in block:
            return default
        raw = block[key]
        try:
            return parser(raw) if isinstance(raw, str) else typed(raw) if typed else raw
        except ValueError as error:
            problems.append(BadValue((key,), str(error), quoted=key not in SECRET_KEYS))
            return default

    method = value("method", parse_method, "GET")
    allow = value("allow_duplicate_headers", parse_bool, False)
    headers = value(
        "headers", lambda t: parse_headers(t, allow), (), lambda h: _header_items(h, allow, problems)
    )
    expected = value("expected_status_codes", parse_status_codes, StatusCodes(), _status_code)
    skip = value("skip_tls_verify", parse_bool, False)
    follow = value("follow_redirects", parse_bool, None)
    max_redirects = value("max_redirects", parse_max_redirects, MAX_REDIRECTS)
    if not (isinstance(max_redirects, int) and 0 <= max_redirects <= 100):
        problems.append(BadValue(("max_redirects",), "from 0 to 100 (e.g. max_redirects: 3)"))
    body = block.get("body") or None
    expect = None
    if any(
        block.get(key) not in (None, "", {}) for key in ("expect", "expect.body", "expect.json", "max_body")
    ):
        from portpatrol.kinds import httpanswer  # re, zlib, JSONPath: only for targets that expect

        try:
            expect = httpanswer.parse(block)
        except BadValue as error:
            problems.append(error)
    identity = None
    try:
        identity = tls_identity(block, not skip)
    except BadValue as error:
        problems.append(error)
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
    return Settings(
        url,
        method,
        headers,
        expected,
        skip,
        None,
        None if body is None else str(body).encode(),
        expect,
        follow,
        max_redirects,
        identity,
    )


def _header_items(raw: Any, allow: bool, problems: list[ValueError]) -> tuple[tuple[str, str], ...]:
    """Headers from a config file: a mapping of name to value, or a list of {name, value}.
    Messages never show a value, nor a name that is not one (it may be a whole credential)."""
    if isinstance(raw, tuple):  # already (name, value) pairs: the options' --header
        return raw
    pairs = list(raw.items()) if isinstance(raw, dict) else [(i["name"], i["value"]) for i in raw]
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, (name, text) in enumerate(pairs):
        where = ("headers", name) if isinstance(raw, dict) else ("headers", index)
        if not is_token(name):
            at = where if isinstance(where[-1], int) else ("headers",)
            why = f"the header {bad_header_name(name)} (e.g. Authorization, X-Request-Id)"
            problems.append(BadValue(at, why, quoted=False))
        elif has_any(text, _HEADER_CONTROLS, spaces=False):
            why = f"header {quote(name)} has a control character in its value"
            problems.append(BadValue(where, why, quoted=False))
        elif name.lower() in seen and not allow:
            why = f"header {quote(name)} is given twice (set allow_duplicate_headers: true to send both)"
            problems.append(BadValue(where, why, quoted=False))
        else:
            seen.add(name.lower())
            headers.append((name, text.strip()))
    return tuple(headers)


def _status_code(code: int) -> StatusCodes:
    if not 100 <= code <= 599:
        raise ValueError(f"{code} is outside 100-599 (e.g. 200,301-302,500-502)")
    return StatusCodes(((code, code),))


def parse_max_redirects(text: str) -> int:
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) > 100:
        raise ValueError("not a number of redirects from 0 to 100 (e.g. 3)")
    return int(text)


def tls_identity(block: Mapping[str, Any], verify: bool) -> Identity | None:
    """ca_file, cert_file and key_file made into a client context now, or None when none is given.
    BadValue at the file that is wrong; the message names the file and why, never its contents."""
    files = {key: str(block.get(key) or "") or None for key in ("ca_file", "cert_file", "key_file")}
    if not any(files.values()):
        return None
    if files["key_file"] and not files["cert_file"]:
        raise BadValue(
            ("key_file",), "key_file needs cert_file (e.g. cert_file: client.crt, key_file: client.key)"
        )
    from portpatrol import tls

    for key, path in files.items():
        if path is None or not tls.READ_FILES:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise BadValue((key,), f"cannot read {quote(path)}: {error.strerror or error}") from None
    import ssl

    def unusable(key: str, error: Exception) -> BadValue:
        reason = getattr(error, "reason", None)  # OpenSSL's words, e.g. KEY_VALUES_MISMATCH
        why = str(reason).lower().replace("_", " ") if reason else "not a PEM certificate with its key"
        if not reason and isinstance(error, OSError) and not isinstance(error, ssl.SSLError):
            why = error.strerror or str(error)
        return BadValue(
            (key,), f"cannot use {quote(files[key] or '')}: {why} (e.g. PEM files made by openssl)"
        )

    if files["ca_file"] and tls.READ_FILES:  # alone first, so a bad bundle is named as such
        try:
            ssl.create_default_context(cafile=files["ca_file"])
        except (OSError, ssl.SSLError) as error:
            raise unusable("ca_file", error) from None
    try:
        context = tls.context(
            verify=verify, ca_file=files["ca_file"], cert_file=files["cert_file"], key_file=files["key_file"]
        )
    except (OSError, ssl.SSLError) as error:  # the certificate, or a key that does not match it
        raise unusable(
            "key_file" if "KEY" in str(error).upper() and files["key_file"] else "cert_file", error
        ) from None
    return Identity(files["ca_file"], files["cert_file"], files["key_file"], context)


def environment(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """The proxy the environment selects for the URL (HTTP_PROXY, NO_PROXY...)."""
    from portpatrol.checks.httppolicy import select_proxy

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
    names = [name for name, value in settings.headers if (name, value) != ("User-Agent", USER_AGENT)]
    if names:  # the headers written, not the User-Agent portpatrol adds when none is
        details.append("headers " + ",".join(names))
    details += ["skip TLS verify"] if settings.skip_tls_verify else []
    details += ["via proxy"] if settings.proxy else []
    details += [f"body {len(settings.body)} bytes"] if settings.body else []
    if settings.expect is not None and settings.expect.describe():
        details.append(settings.expect.describe())
    if not settings.follow_redirects:
        details.append("redirects not followed")
    elif settings.max_redirects != MAX_REDIRECTS:
        details.append(f"at most {settings.max_redirects} redirects")
    if settings.tls is not None:
        details += [f"CA file {settings.tls.ca_file}"] if settings.tls.ca_file else []
        details += [f"client certificate {settings.tls.cert_file}"] if settings.tls.cert_file else []
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
