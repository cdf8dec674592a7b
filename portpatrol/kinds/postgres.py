"""PostgreSQL: ready when the server itself says it accepts clients (as pg_isready), or, with a
user, when that user logs in and the optional query's first value is true.

Speaks only the frontend/backend protocol 3.0 messages readiness needs: SSLRequest, StartupMessage,
the authentication exchange (trust, cleartext, md5, SCRAM-SHA-256), one simple Query, Terminate.
`converse` is the whole conversation over a Wire, so tests drive it over a socketpair."""

from __future__ import annotations

import struct

from portpatrol import pgwire
from portpatrol.address import Address, authority, mask_userinfo
from portpatrol.errors import BadValue, NotReady
from portpatrol.model import Kind, Record, set_fields
from portpatrol.wire import Wire, peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable, Mapping
    from typing import Any


NAME = "postgres"
SCHEMES = ("postgres", "postgresql")
DEFAULT_PORT = 5432
SSLMODES = ("disable", "prefer", "require", "verify-ca", "verify-full")
_TEXT = {"type": "string", "minLength": 1}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"user": "app", "password": "${DB_PASSWORD}", "sslmode": "require"}],
    "description": "PostgreSQL (docs/databases.md). Without user and password: ready when the server "
    "accepts clients (as pg_isready). With them: ready when the login succeeds and the query, if any, "
    "is true. Each key wins over the same part of the address.",
    "properties": {
        "user": {
            **_TEXT,
            "description": "Log in as this user (wins over the address's user).",
            "examples": ["app"],
        },
        "password": {
            "type": "string",
            "description": "The user's password, a secret: `${VAR}` keeps it out of the file (wins over "
            "the address's password). Without a user it logs in as postgres.",
            "examples": ["${DB_PASSWORD}"],
        },
        "database": {
            **_TEXT,
            "description": "The database to log in to (default: the user's name).",
            "examples": ["app"],
        },
        "query": {
            **_TEXT,
            "description": "Run after login; ready when the first value of the first row is not "
            "NULL, false, 0 or empty. Needs a user.",
            "examples": ["SELECT NOT pg_is_in_recovery()", "SELECT count(*) FROM schema_migrations"],
        },
        "sslmode": {
            "enum": list(SSLMODES),
            "description": "As libpq's sslmode.",
            "default": "prefer",
            "examples": ["require", "verify-full"],
        },
        "sslrootcert": {
            **_TEXT,
            "description": "CA file that verifies the server (or 'system' for the system store).",
            "examples": ["/etc/ssl/db-ca.pem", "system"],
        },
    },
}
ENV = {
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGDATABASE": "database",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
    "POSTGRES_QUERY": "query",
}
SECRET_KEYS = frozenset({"password"})
EXAMPLE = "postgres://app:secret@db:5432/app?sslmode=require"
# Query parameters of a libpq URL that do not change what ready means here; accepted, unused, so a
# DATABASE_URL of the application works as it is (dial_timeout bounds every attempt instead).
IGNORED_PARAMETERS = frozenset({"application_name", "connect_timeout"})

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
PROTOCOL_3_0 = 196608
CANNOT_CONNECT_NOW = "57P03"  # starting up, shutting down, in recovery, hot standby off


class Settings(Record):
    """A record, not a dataclass: `import dataclasses` costs more than the rest of a postgres
    wait's start-up (docs/performance.md). The password is never in its repr."""

    __slots__ = ("host", "port", "user", "password", "database", "query", "sslmode", "sslrootcert")  # noqa: RUF023
    _unshown = ("password",)
    host: str
    port: int
    user: str | None  # None: no login, only the server's answer to a startup (as pg_isready)
    password: str | None
    database: str | None
    query: str | None
    sslmode: str
    sslrootcert: str | None

    def __init__(  # noqa: PLR0917 (the record's fields)
        self,
        host: str,
        port: int,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        query: str | None = None,
        sslmode: str = "prefer",
        sslrootcert: str | None = None,
    ) -> None:
        set_fields(
            self,
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            query=query,
            sslmode=sslmode,
            sslrootcert=sslrootcert,
        )

    @property
    def login(self) -> bool:
        return self.user is not None


# --------------------------------------------------------------------------- the address


def _decode(text: str, what: str) -> str:
    """Percent-decoding as libpq does it: every % starts two hex digits, %00 is refused, '+' stays."""
    if "%" not in text:
        return text
    raw = text.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == ord("%"):
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
                raise ValueError(
                    f"the {what} has a % not followed by two hex digits; write %25 for a %, "
                    "e.g. postgres://app:50%25off@db/app"
                )
            if pair == b"00":
                raise ValueError(f"the {what} holds %00, which PostgreSQL does not allow, e.g. {EXAMPLE}")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise ValueError(f"the {what} is not UTF-8 once percent-decoded, e.g. {EXAMPLE}") from None


def _split_host(hostport: str) -> tuple[str, int]:
    if "," in hostport:
        raise ValueError(f"one host per postgres address; write one target per host, e.g. {EXAMPLE}")
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 address is written in brackets, e.g. postgres://[::1]:5432/app")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = hostport.partition(":")
        host = _decode(host, "host")
    if not host:
        raise ValueError(f"the address needs a host (Unix sockets are not supported), e.g. {EXAMPLE}")
    if not port_text:
        return host, DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"the port must be a number from 1 to 65535, e.g. {EXAMPLE}")
    return host, int(port_text)


def _url(text: str) -> tuple[str, int, str, dict[str, str]]:
    """Host, port, the user part as written, and what the URL gives: user, password, database and
    parameters, percent-decoded. Raises ValueError for the first problem (never with the password)."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"a postgres address starts with postgres:// or postgresql://, e.g. {EXAMPLE}")
    rest, _, params = rest.partition("?")
    rest, _, path = rest.partition("/")
    # The last @ ends the user part, so a password with a raw @ still works (libpq takes the first).
    userinfo, at, hostport = rest.rpartition("@")
    host, port = _split_host(hostport)
    given: dict[str, str] = {}
    if at:
        name, colon, secret = userinfo.partition(":")
        if name:
            given["user"] = _decode(name, "user")
        if colon:
            given["password"] = _decode(secret, "password")
    if path:
        given["database"] = _decode(path, "database name")
    for pair in filter(None, params.split("&")):
        key, equals, value = pair.partition("=")
        key = _decode(key, "query parameter")
        if not equals or key not in ("sslmode", "sslrootcert", *IGNORED_PARAMETERS):
            raise ValueError(
                f"unknown query parameter {peer_text(key, 40)!r}: the parameters are sslmode and "
                f"sslrootcert, e.g. {EXAMPLE}"
            )
        if key not in IGNORED_PARAMETERS:
            given[key] = _decode(value, f"{key} parameter")
    if given.get("sslmode", "prefer") not in SSLMODES:
        raise ValueError(f"sslmode is one of {', '.join(SSLMODES)}, e.g. {EXAMPLE}")
    if "\0" in "".join(given.values()):
        raise ValueError(
            f"the address holds a NUL character, which PostgreSQL does not allow, e.g. {EXAMPLE}"
        )
    return host, port, userinfo if at else "", given


def address(scheme: str, rest: str) -> Address:
    """The registry's hook: the address checked as parse() reads it, its password masked."""
    text = f"{scheme}://{rest}"
    host, port, userinfo, _ = _url(text)
    # `user@` names a user, not a token: only a password is masked (mask_userinfo would hide both)
    display, hidden = mask_userinfo(userinfo, text) if ":" in userinfo else (text, frozenset[str]())
    return Address(Kind(NAME.upper()), host, port, text, display, hidden)


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    """Address `[user[:password]@]host[:port][/dbname][?sslmode=...&sslrootcert=...]`; a key of the
    block (from the config file, or from PGUSER, PGPASSWORD... in the env) wins over the same part
    of the address, so a secret from a Secret or `${VAR}` replaces what a shared URL says."""
    host, port, _, given = _url(address)
    # An empty value (PGPASSWORD= in an env file) means unset, as it does to libpq.
    block = {key: str(value) for key, value in block.items() if value not in (None, "")}
    for key, value in block.items():
        if "\0" in value:
            raise BadValue((key,), "holds a NUL character, which PostgreSQL does not allow", quoted=False)
    values = given | block
    sslmode = values.get("sslmode", "prefer")
    if sslmode not in SSLMODES:
        raise BadValue(("sslmode",), f"not an sslmode (use {', '.join(SSLMODES)}), e.g. require")
    login = values.get("user")
    password = values.get("password")
    if login is None and password is not None:
        login = "postgres"  # a password alone logs in as the superuser, as the postgres image's does
    if values.get("query") and login is None:
        raise BadValue(("query",), f"a query runs after a login: give a user, e.g. {EXAMPLE}", quoted=False)
    sslrootcert = values.get("sslrootcert")
    if sslrootcert and sslrootcert != "system" and _reads_files():
        # A CA file that cannot be read is a configuration error now, not a reason every attempt gives.
        try:
            with open(sslrootcert, "rb"):
                pass
        except OSError as error:
            raise BadValue(
                ("sslrootcert",), f"cannot be read: {error.strerror} (e.g. /etc/ssl/db-ca.pem)"
            ) from None
    return Settings(
        host=host,
        port=port,
        user=login,
        password=password,
        database=values.get("database"),
        query=values.get("query"),
        sslmode=sslmode,
        sslrootcert=sslrootcert,
    )


def _reads_files() -> bool:
    from portpatrol import tls  # (ssl: only when a CA file is named)

    return tls.READ_FILES


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset({settings.password}) if settings.password else frozenset()


def describe(settings: Settings) -> str:
    words = [authority(settings.host, settings.port)]
    if settings.login:
        words += [f"database={settings.database or settings.user}", f"login=yes user={settings.user}"]
    else:
        words += [f"database={settings.database}"] if settings.database else []
        words.append("login=no")
    words.append(f"tls={settings.sslmode}")
    if settings.sslrootcert:
        words.append(f"sslrootcert={settings.sslrootcert}")
    words.append(f"query={'yes' if settings.query else 'no'}")
    from portpatrol.text import printable

    return printable(" ".join(words))  # user, database and CA path may hold any character


# --------------------------------------------------------------------------- one attempt


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    import _socket

    # prefer without a login has nothing to protect, and the server's answer to a startup message
    # is the same with TLS or without (a hostssl-only server refuses with 28000: up, as pg_isready
    # says): no TLS then, which also keeps ssl out of the start-up of the commonest wait.
    plain = settings.sslmode == "disable" or (settings.sslmode == "prefer" and not settings.login)
    tls = None if plain else lambda: _tls_context(settings.sslmode, settings.sslrootcert)
    # _socket.socket unless TLS may follow (ssl wraps only socket.socket): `socket` costs ~10 ms
    # Wire uses only what both have, except start_tls, which is never reached without `tls`.
    make: type[socket.socket] = _socket.socket  # type: ignore[assignment]
    if tls is not None:
        import socket

        make = socket.socket
    with Wire.opened(settings.host, settings.port, deadline, bound, make) as wire:
        converse(wire, settings, tls)


_contexts: dict[tuple[str, str | None], ssl.SSLContext] = {}


def _tls_context(sslmode: str, sslrootcert: str | None) -> ssl.SSLContext:
    """One context per (mode, CA file), kept for every later attempt: loading a CA file each time
    costs more than the whole conversation. As libpq: prefer and require do not verify, except that
    require with a CA file verifies like verify-ca; verify-full also checks the host name."""
    key = (sslmode, sslrootcert)
    if key not in _contexts:
        from portpatrol import tls

        verify = sslmode in ("verify-ca", "verify-full") or (sslmode == "require" and bool(sslrootcert))
        ca_file = sslrootcert if verify and sslrootcert != "system" else None
        try:
            ctx = tls.context(verify=verify, ca_file=ca_file)
        except OSError as error:  # ssl.SSLError is an OSError too
            raise NotReady(f"cannot use sslrootcert: {peer_text(str(error))}") from None
        ctx.check_hostname = sslmode == "verify-full"
        _contexts[key] = ctx
    return _contexts[key]


def converse(
    wire: Wire, settings: Settings, tls: ssl.SSLContext | Callable[[], ssl.SSLContext] | None
) -> None:
    """The whole conversation: returns when ready, raises NotReady otherwise. `tls` (or the function
    that makes it, called only when the server agrees to TLS) None: no SSLRequest."""
    if tls is not None:
        _negotiate_tls(wire, settings, tls)
    params = [("user", settings.user or "postgres"), ("application_name", "portpatrol")]
    if settings.database:
        params.append(("database", settings.database))
    body = struct.pack("!i", PROTOCOL_3_0)
    body += b"".join(f"{key}\0{value}\0".encode() for key, value in params) + b"\0"
    wire.send(struct.pack("!i", len(body) + 4) + body)
    if not settings.login:
        # As pg_isready: asked to authenticate, or refused for any reason but "cannot connect now",
        # means the server is up and accepts clients.
        kind, body = pgwire.message(wire, "startup")
        while kind == b"N":  # a notice may come first
            kind, body = pgwire.message(wire, "startup")
        if kind == b"E" and pgwire.error_fields(body).get("C") == CANNOT_CONNECT_NOW:
            raise NotReady(pgwire.server_error(body))
        if kind not in (b"R", b"E"):
            raise pgwire.unexpected(kind, "startup")
        return
    pgwire.authenticate(wire, settings.user or "postgres", settings.password)
    if settings.query:
        pgwire.query(wire, settings.query, settings.password)
    pgwire.send(wire, b"X", b"")  # Terminate, so the server logs a clean end, not a lost connection


def _negotiate_tls(
    wire: Wire, settings: Settings, tls: ssl.SSLContext | Callable[[], ssl.SSLContext]
) -> None:
    wire.send(SSL_REQUEST)
    answer = wire.exact(1, "TLS negotiation")
    if answer == b"S":
        wire.start_tls(tls if not callable(tls) else tls(), settings.host)
    elif answer == b"N":
        if settings.sslmode != "prefer":
            raise NotReady(f"the server does not accept TLS (sslmode={settings.sslmode})")
    elif answer == b"E":  # an error before any protocol, e.g. the postmaster could not fork
        text = wire.line("TLS negotiation", 1024, b"\n")
        raise NotReady(f"the server refused the connection: {peer_text(text)}")
    else:
        raise NotReady(
            f"the server answered the TLS request with {peer_text(repr(answer)[1:], 10)}, not S or N"
        )
