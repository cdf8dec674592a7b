"""MySQL and MariaDB: ready means the server greets a client (and, with a user, lets it log in).

Address: `mysql://` or `mariadb://` `[user[:password]@]host[:port][/database][?ssl-mode=MODE&ssl-ca=FILE]`,
port 3306 by default, user, password and database percent-decoded (`p%40ss` is `p@ss`).

Block keys (`mysql:` in a config file; each wins over the same part of the address):
  user, password, database   the login; a password needs a user
  query                      run after login; ready when the first value of the first row is not
                             NULL, empty, a number equal to 0, or `false`
  ssl_mode                   as the mysql client's --ssl-mode: DISABLED; PREFERRED (the default: TLS
                             when the server offers it, unverified); REQUIRED (TLS or not ready,
                             unverified); VERIFY_CA (the chain is checked); VERIFY_IDENTITY (the chain
                             and the host name). Upper or lower case.
  ca_file                    the CA bundle VERIFY_CA and VERIFY_IDENTITY trust instead of the system
                             store (the client's --ssl-ca); refused with the other modes

Environment (with TARGET_ADDRESS=mysql://...): MYSQL_PWD (the password: the mysql client's own
variable), MYSQL_QUERY, MYSQL_SSL_MODE, MYSQL_SSL_CA. The user and database go in the address.
MYSQL_USER, MYSQL_PASSWORD and MYSQL_DATABASE are deliberately not read: the mysql and mariadb images
use them to create an account at first start, and an env file shared with the server must not make
portpatrol log in half-configured.

Ready without a user: the server sends its handshake greeting (protocol 10); an ERR packet instead
(1040 too many connections, 1129 host blocked, 1130 host not allowed) is not ready with the server's
words and code. With ssl-mode REQUIRED or stricter the TLS handshake must succeed too. The connection is
then closed without a login, as a TCP check would: the server logs it as an aborted connection
("closed normally without authentication", a warning) and, for a client that is not on loopback, counts
it towards max_connect_errors (one per wait that ends ready; a later successful login resets it).

Ready with a user: the login succeeds with mysql_native_password or caching_sha2_password (the server
may switch plugins with an AuthSwitchRequest). caching_sha2_password's full authentication (an account
not yet in the server's cache) sends the password over TLS as the protocol says; without TLS it would
need the server's RSA key, which portpatrol does not do: that attempt is not ready with a reason saying
TLS is needed. Then the query, if any, and COM_QUIT.

The conversation is `converse(wire, settings)` over a portpatrol.wire.Wire, so tests can feed it any
bytes: every read is bounded by the deadline and every length is checked before it is trusted. The
bytes (packets, scrambles, the login and the query) are portpatrol.mysqlwire's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from portpatrol import mysqlwire
from portpatrol.address import Address, authority, mask_userinfo
from portpatrol.errors import BadValue, NotReady
from portpatrol.model import Kind
from portpatrol.wire import Wire, peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~2 ms of start-up; only mypy needs these names
    import ssl
    from collections.abc import Callable, Mapping
    from typing import Any

NAME = "mysql"
SCHEMES = ("mysql", "mariadb")
DEFAULT_PORT = 3306
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"user": "app", "password": "${DB_PASSWORD}", "database": "appdb"}],
    "description": "MySQL and MariaDB (docs/databases.md). Without a user: ready when the server sends "
    "its greeting (as mysqladmin ping). With one: ready when the login succeeds and the query, if any, "
    "is true. Each key wins over the same part of the address.",
    "properties": {
        "user": {
            "type": "string",
            "minLength": 1,
            "description": "Log in as this user.",
            "examples": ["app"],
        },
        "password": {
            "type": "string",
            "description": "The user's password, a secret: `${VAR}` keeps it out of the file. Needs a user.",
            "examples": ["${DB_PASSWORD}"],
        },
        "database": {
            "type": "string",
            "minLength": 1,
            "description": "The database to log in to.",
            "examples": ["appdb"],
        },
        "query": {
            "type": "string",
            "minLength": 1,
            "description": "Run after login; ready when the first value of the first row is not NULL, "
            "false, 0 or empty. Needs a user.",
            "examples": ["SELECT COUNT(*) FROM flyway_schema_history"],
        },
        "ssl_mode": {
            "type": "string",
            "enum": [*SSL_MODES, *(mode.lower() for mode in SSL_MODES)],
            "description": "As the mysql client's --ssl-mode (upper or lower case).",
            "default": "PREFERRED",
            "examples": ["REQUIRED", "VERIFY_IDENTITY"],
        },
        "ca_file": {
            "type": "string",
            "default": "",
            "description": "CA file that VERIFY_CA and VERIFY_IDENTITY trust instead of the system store.",
            "examples": ["/etc/ssl/db-ca.pem"],
        },
    },
}
ENV = {
    "MYSQL_PWD": "password",
    "MYSQL_QUERY": "query",
    "MYSQL_SSL_MODE": "ssl_mode",
    "MYSQL_SSL_CA": "ca_file",
}
SECRET_KEYS = frozenset({"password"})

EXAMPLE = "(e.g. mysql://app:secret@db:3306/appdb?ssl-mode=REQUIRED)"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    user: str | None = None
    password: str = field(default="", repr=False)
    database: str | None = None
    query: str | None = None
    ssl_mode: str = "PREFERRED"
    ca_file: str | None = None
    # the password as written in the address too (percent-encoded), so no form of it reaches a line
    hidden: frozenset[str] = field(default=frozenset(), repr=False)


# --------------------------------------------------------------------------- the address


def _decode(text: str, what: str) -> str:
    from urllib.parse import unquote_to_bytes

    try:
        return unquote_to_bytes(text).decode()
    except UnicodeDecodeError:
        raise ValueError(f"the {what} is not UTF-8 once percent-decoded {EXAMPLE}") from None


def _host_port(hostport: str) -> tuple[str, int]:
    port_text: str | None = None
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"not a bracketed IPv6 address {EXAMPLE}")
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address {EXAMPLE}") from None
        port_text = after[1:] if after else None
    else:
        if hostport.count(":") > 1:
            raise ValueError(f"an IPv6 address with a port goes in brackets {EXAMPLE}")
        host, colon, rest = hostport.partition(":")
        port_text = rest if colon else None
        if not host:
            raise ValueError(f"the address has no host {EXAMPLE}")
        if any(ch in host for ch in " \t\r\n/\\?#@%") or not host.isprintable():
            raise ValueError(f"{host!r} is not a host name {EXAMPLE}")
    if port_text is None:
        return host, DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"the port must be a number from 1 to 65535 {EXAMPLE}")
    return host, int(port_text)


def _url(text: str) -> tuple[str, int, str, dict[str, str]]:
    """Host, port, the user part as written, and what the URL gives (user, password, database,
    ssl_mode, ca_file), decoded. Raises ValueError for the first problem (never with the password)."""
    scheme, sep, rest = text.strip().partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"a MySQL address starts with mysql:// or mariadb:// {EXAMPLE}")
    rest, _, _fragment = rest.partition("#")
    rest, _, query_text = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    host, port = _host_port(hostport)
    given: dict[str, str] = {}
    if at and userinfo:
        user_text, colon, password_text = userinfo.partition(":")
        if user_text:
            given["user"] = _decode(user_text, "user")
        if colon:
            given["password"] = _decode(password_text, "password")
    if slash and path:
        given["database"] = _decode(path, "database")
    names = {"ssl-mode": "ssl_mode", "ssl-ca": "ca_file"}
    for pair in query_text.split("&") if query_text else ():
        name, _, value = pair.partition("=")
        if name not in names:
            raise ValueError(
                f"unknown option {peer_text(name, 40)!r} in the address (use ssl-mode or ssl-ca) {EXAMPLE}"
            )
        given[names[name]] = _decode(value, name)
    if given.get("ssl_mode", "PREFERRED").upper() not in SSL_MODES:
        raise ValueError(f"ssl-mode must be one of {', '.join(SSL_MODES)} {EXAMPLE}")
    if given.get("ca_file") and given.get("ssl_mode", "").upper() not in ("VERIFY_CA", "VERIFY_IDENTITY"):
        raise ValueError(
            f"{_CA_ONLY_TO_VERIFY} (e.g. mysql://db?ssl-mode=VERIFY_CA&ssl-ca=/etc/ssl/db-ca.pem)"
        )
    if given.get("ca_file"):
        _load_ca(given["ssl_mode"].upper(), given["ca_file"], ValueError)
    if "\0" in "".join(given.values()):  # the protocol ends these strings with a NUL
        raise ValueError(f"the user, password and database cannot hold a NUL character {EXAMPLE}")
    if given.get("password") and not given.get("user"):
        raise ValueError(f"a password needs a user {EXAMPLE}")
    return host, port, userinfo if at else "", given


_CA_ONLY_TO_VERIFY = "a CA file is only used to verify: set ssl-mode to VERIFY_CA or VERIFY_IDENTITY"


def _load_ca(mode: str, ca_file: str, error: Callable[[str], ValueError]) -> None:
    """Loaded once while reading the settings, so that a missing or bad file is a configuration
    error (exit 2), not a retry."""
    try:
        tls_context(mode, ca_file)
    except (OSError, ValueError) as failure:  # ssl.SSLError is an OSError
        raise error(f"the CA file {ca_file!r} cannot be used: {peer_text(str(failure))} {EXAMPLE}") from None


def address(scheme: str, rest: str) -> Address:
    """The registry's hook: the address checked as parse() reads it, its password masked."""
    text = f"{scheme}://{rest}"
    host, port, userinfo, _ = _url(text)
    # `user@` names a user, not a token: only a password is masked (mask_userinfo would hide both)
    display, hidden = mask_userinfo(userinfo, text) if ":" in userinfo else (text, frozenset[str]())
    return Address(Kind(NAME.upper()), host, port, text, display, hidden)


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    """The address, then the block (`mysql:` in a config file, or MYSQL_PWD... in the env): a key of
    the block wins over the same part of the address."""
    host, port, userinfo, given = _url(address)
    hidden = {userinfo.partition(":")[2], given.get("password", "")}
    values = given | {key: value for key, value in block.items() if key == "password" or value}
    for key in ("user", "password", "database"):
        if "\0" in values.get(key, ""):
            raise BadValue(
                (key,), f"cannot hold a NUL character (the protocol ends it with one) {EXAMPLE}", quoted=False
            )
    mode = values.get("ssl_mode", "PREFERRED").upper()
    if mode not in SSL_MODES:
        raise BadValue(("ssl_mode",), f"not an ssl-mode (use {', '.join(SSL_MODES)}), e.g. REQUIRED")
    ca_file = values.get("ca_file") or None
    if ca_file and mode not in ("VERIFY_CA", "VERIFY_IDENTITY"):
        raise BadValue(("ca_file",), f"{_CA_ONLY_TO_VERIFY}, e.g. ssl_mode: VERIFY_CA")
    if ca_file and "ca_file" in block:  # the address's was loaded by _url()
        _load_ca(mode, ca_file, lambda message: BadValue(("ca_file",), message))
    user = values.get("user") or None
    password = values.get("password", "")
    hidden.add(password)
    if password and not user:
        raise BadValue(("password",), f"a password needs a user {EXAMPLE}", quoted=False)
    query = values.get("query") or None
    if query is not None and not user:
        raise BadValue(("query",), f"a query runs after a login: give a user {EXAMPLE}", quoted=False)
    database = values.get("database") or None
    return Settings(host, port, user, password, database, query, mode, ca_file, frozenset(hidden - {""}))


def secrets(settings: Settings) -> frozenset[str]:
    return settings.hidden | ({settings.password} if settings.password else frozenset())


def describe(settings: Settings) -> str:
    parts = [authority(settings.host, settings.port)]
    if settings.database:
        parts.append(f"database={peer_text(settings.database, 80)}")
    parts.append(f"login=yes user={peer_text(settings.user, 80)}" if settings.user else "login=no")
    parts.append(f"tls={settings.ssl_mode}")
    parts.append(f"query={'yes' if settings.query else 'no'}")
    return " ".join(parts)


# --------------------------------------------------------------------------- one attempt


def _wants_tls(settings: Settings, greeting: mysqlwire.Greeting) -> bool:
    if settings.ssl_mode == "DISABLED":
        return False
    if not greeting.capabilities & mysqlwire.SSL:
        if settings.ssl_mode != "PREFERRED":
            raise NotReady(f"the server does not offer TLS (ssl-mode {settings.ssl_mode})")
        return False
    # PREFERRED without a login has nothing to protect: the greeting alone answers
    return settings.user is not None or settings.ssl_mode != "PREFERRED"


_contexts: dict[tuple[str, str | None], ssl.SSLContext] = {}


def tls_context(mode: str, ca_file: str | None) -> ssl.SSLContext:
    """One context per mode and CA file: loading the system store on every attempt costs ms."""
    context = _contexts.get((mode, ca_file))
    if context is None:
        from portpatrol import tls

        context = tls.context(verify=mode.startswith("VERIFY"), ca_file=ca_file)
        if mode == "VERIFY_CA":
            context.check_hostname = False  # the chain only, as the client's VERIFY_CA
        _contexts[(mode, ca_file)] = context
    return context


def _client_flags(settings: Settings, greeting: mysqlwire.Greeting, tls: bool) -> int:
    flags = (
        mysqlwire.LONG_PASSWORD | mysqlwire.PROTOCOL_41 | mysqlwire.TRANSACTIONS | mysqlwire.SECURE_CONNECTION
    )
    flags |= greeting.capabilities & (mysqlwire.PLUGIN_AUTH | mysqlwire.PLUGIN_AUTH_LENENC)
    if settings.database and greeting.capabilities & mysqlwire.CONNECT_WITH_DB:
        flags |= mysqlwire.CONNECT_WITH_DB
    return flags | (mysqlwire.SSL if tls else 0)


def converse(wire: Wire, settings: Settings) -> None:
    """The whole conversation of one attempt: returns when ready, raises NotReady when not."""
    talk = mysqlwire.Conversation(wire)
    greeting = mysqlwire.parse_greeting(talk.read("the greeting"))
    tls = _wants_tls(settings, greeting)
    flags = _client_flags(settings, greeting, tls)
    if tls:
        # SSLRequest: the first 32 bytes of a login, then the TLS handshake
        talk.send(
            flags.to_bytes(4, "little")
            + mysqlwire.MAX_PACKET.to_bytes(4, "little")
            + bytes([mysqlwire.UTF8MB4])
            + bytes(23)
        )
        try:
            context = tls_context(settings.ssl_mode, settings.ca_file)
        except OSError as error:  # the CA file went away after the start
            raise NotReady(f"the CA file cannot be used: {error}") from None
        wire.start_tls(context, settings.host)
    if settings.user is None:
        return
    mysqlwire.login(
        talk, greeting, flags, tls, user=settings.user, secret=settings.password, database=settings.database
    )
    try:
        if settings.query is not None:
            mysqlwire.query(talk, settings.query)
    finally:
        # COM_QUIT: a clean goodbye, not an "aborted connection" in the server's log; the answer is in
        with contextlib.suppress(NotReady):
            talk.send(b"\x01", new_command=True)


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    with Wire.opened(settings.host, settings.port, deadline, bound) as wire:
        converse(wire, settings)
