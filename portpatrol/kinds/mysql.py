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
bytes: every read is bounded by the deadline and every length is checked before it is trusted.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from portpatrol.address import Address, mask_userinfo
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
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    parts = [f"{host}:{settings.port}"]
    if settings.database:
        parts.append(f"database={peer_text(settings.database, 80)}")
    parts.append(f"login=yes user={peer_text(settings.user, 80)}" if settings.user else "login=no")
    parts.append(f"tls={settings.ssl_mode}")
    parts.append(f"query={'yes' if settings.query else 'no'}")
    return " ".join(parts)


# --------------------------------------------------------------------------- the protocol

# Capability flags (MySQL client/server protocol, "Capabilities Flags").
LONG_PASSWORD = 0x1
CONNECT_WITH_DB = 0x8
PROTOCOL_41 = 0x200
SSL = 0x800
TRANSACTIONS = 0x2000
SECURE_CONNECTION = 0x8000
PLUGIN_AUTH = 0x80000
PLUGIN_AUTH_LENENC = 0x200000

UTF8MB4 = 45  # utf8mb4_general_ci, known to MySQL 5.5+ and every MariaDB
MAX_PACKET = 1 << 20  # the largest packet read: a greeting is ~100 bytes, a row we look at is small
MAX_AUTH_STEPS = 6  # switches and more-data rounds a login may take before it is called a loop
MAX_COLUMNS = 4096  # MySQL's own limit on the columns of a table
DRAIN_PACKETS = 1000  # rows read past the first so COM_QUIT finds a quiet connection
NATIVE = "mysql_native_password"
SHA2 = "caching_sha2_password"


def native_scramble(password: bytes, nonce: bytes) -> bytes:
    """mysql_native_password: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))."""
    import hashlib

    if not password:
        return b""
    stage1 = hashlib.sha1(password, usedforsecurity=False).digest()
    mask = hashlib.sha1(
        nonce + hashlib.sha1(stage1, usedforsecurity=False).digest(), usedforsecurity=False
    ).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def sha2_scramble(password: bytes, nonce: bytes) -> bytes:
    """caching_sha2_password's fast path: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)."""
    import hashlib

    if not password:
        return b""
    stage1 = hashlib.sha256(password).digest()
    mask = hashlib.sha256(hashlib.sha256(stage1).digest() + nonce).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


SCRAMBLES = {NATIVE: native_scramble, SHA2: sha2_scramble}


class Reader:
    """A packet's payload read front to back; running out is the server's fault, named as such."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def more(self) -> bool:
        return self.pos < len(self.data)

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise NotReady(f"the server sent a packet too short for {self.what}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def nul(self) -> bytes:
        """A NUL-terminated string; a missing NUL ends it at the packet's end (some servers omit it)."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            end = len(self.data)
        chunk = self.data[self.pos : end]
        self.pos = end + 1
        return chunk

    def lenenc(self) -> int:
        first = self.number(1)
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.number(2)
        if first == 0xFD:
            return self.number(3)
        if first == 0xFE:
            return self.number(8)
        raise NotReady(f"the server sent a malformed length in {self.what}")

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


class Conversation:
    """Packets over a Wire: a 3-byte length and a sequence id, then the payload."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.seq = 0  # the id of the next packet sent: one past the last received

    def read(self, what: str) -> bytes:
        header = self.wire.exact(4, what)
        length = int.from_bytes(header[:3], "little")
        if length > MAX_PACKET:
            raise NotReady(f"the server sent a packet of {length} bytes during {what} (limit {MAX_PACKET})")
        # A server's id out of step is tolerated: ours follow whatever it sent.
        self.seq = (header[3] + 1) % 256
        return self.wire.exact(length, what)

    def send(self, payload: bytes, *, new_command: bool = False) -> None:
        if new_command:
            self.seq = 0
        self.wire.send(len(payload).to_bytes(3, "little") + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) % 256


def error_reason(packet: bytes, what: str = "") -> str:
    """An ERR packet in the server's words: `Too many connections (error 1040)`."""
    reader = Reader(packet, "an error")
    reader.take(1)
    code = reader.number(2)
    if reader.data[reader.pos : reader.pos + 1] == b"#":
        reader.take(6)  # '#' and the SQLSTATE: the code already says it
    message = peer_text(reader.rest()) or "no message"
    return f"{what}{message} (error {code})"


@dataclass(frozen=True, slots=True)
class Greeting:
    capabilities: int
    nonce: bytes
    plugin: str


def parse_greeting(packet: bytes) -> Greeting:
    if not packet:
        raise NotReady("the server sent an empty greeting")
    if packet[0] == 0xFF:
        raise NotReady(error_reason(packet))
    if packet[0] != 10:
        raise NotReady(f"not a MySQL greeting: protocol {packet[0]}, expected 10")
    reader = Reader(packet, "the greeting")
    reader.take(1)
    reader.nul()  # server version
    reader.take(4)  # connection id
    nonce = reader.take(8)
    reader.take(1)
    capabilities = reader.number(2)
    plugin = NATIVE
    if reader.more():
        reader.take(3)  # character set, status flags
        capabilities |= reader.number(2) << 16
        data_length = reader.number(1)
        reader.take(10)
        if capabilities & SECURE_CONNECTION:
            part2 = reader.take(max(13, data_length - 8))
            nonce += part2[:-1] if part2.endswith(b"\0") else part2
        if capabilities & PLUGIN_AUTH:
            plugin = reader.nul().decode("ascii", "replace")
    if not capabilities & PROTOCOL_41 or not capabilities & SECURE_CONNECTION:
        raise NotReady("the server speaks the pre-4.1 protocol, which portpatrol does not")
    return Greeting(capabilities, nonce, plugin)


def _wants_tls(settings: Settings, greeting: Greeting) -> bool:
    if settings.ssl_mode == "DISABLED":
        return False
    if not greeting.capabilities & SSL:
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


def _client_flags(settings: Settings, greeting: Greeting, tls: bool) -> int:
    flags = LONG_PASSWORD | PROTOCOL_41 | TRANSACTIONS | SECURE_CONNECTION
    flags |= greeting.capabilities & (PLUGIN_AUTH | PLUGIN_AUTH_LENENC)
    if settings.database and greeting.capabilities & CONNECT_WITH_DB:
        flags |= CONNECT_WITH_DB
    return flags | (SSL if tls else 0)


def _login_packet(settings: Settings, flags: int, plugin: str, auth: bytes) -> bytes:
    packet = bytearray(flags.to_bytes(4, "little") + MAX_PACKET.to_bytes(4, "little"))
    packet += bytes([UTF8MB4]) + bytes(23)
    packet += (settings.user or "").encode() + b"\0"
    if flags & PLUGIN_AUTH_LENENC:
        packet += _lenenc(len(auth)) + auth
    else:
        packet += bytes([len(auth)]) + auth
    if flags & CONNECT_WITH_DB:
        packet += (settings.database or "").encode() + b"\0"
    if flags & PLUGIN_AUTH:
        packet += plugin.encode() + b"\0"
    return bytes(packet)


def _lenenc(value: int) -> bytes:
    if value < 0xFB:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    return b"\xfd" + value.to_bytes(3, "little")


def converse(wire: Wire, settings: Settings) -> None:
    """The whole conversation of one attempt: returns when ready, raises NotReady when not."""
    talk = Conversation(wire)
    greeting = parse_greeting(talk.read("the greeting"))
    tls = _wants_tls(settings, greeting)
    flags = _client_flags(settings, greeting, tls)
    if tls:
        # SSLRequest: the first 32 bytes of a login, then the TLS handshake
        talk.send(
            flags.to_bytes(4, "little") + MAX_PACKET.to_bytes(4, "little") + bytes([UTF8MB4]) + bytes(23)
        )
        try:
            context = tls_context(settings.ssl_mode, settings.ca_file)
        except OSError as error:  # the CA file went away after the start
            raise NotReady(f"the CA file cannot be used: {error}") from None
        wire.start_tls(context, settings.host)
    if settings.user is None:
        return
    _login(talk, settings, greeting, flags, tls)
    try:
        if settings.query is not None:
            _query(talk, settings.query)
    finally:
        # COM_QUIT: a clean goodbye, not an "aborted connection" in the server's log; the answer is in
        with contextlib.suppress(NotReady):
            talk.send(b"\x01", new_command=True)


def _login(talk: Conversation, settings: Settings, greeting: Greeting, flags: int, tls: bool) -> None:
    password = settings.password.encode()
    # Start with the server's default plugin when we speak it; otherwise the server switches us.
    plugin = greeting.plugin if greeting.plugin in SCRAMBLES else NATIVE
    talk.send(_login_packet(settings, flags, plugin, SCRAMBLES[plugin](password, greeting.nonce)))
    for _ in range(MAX_AUTH_STEPS):
        packet = talk.read("the login")
        head = packet[:1]
        if head == b"\x00":
            return
        if head == b"\xff":
            raise NotReady(error_reason(packet, "login failed: "))
        if head == b"\xfe":
            reader = Reader(packet[1:], "an authentication switch")
            if not reader.more():
                raise NotReady(
                    "the server asks for the pre-4.1 password scheme, which portpatrol does not speak"
                )
            plugin = reader.nul().decode("ascii", "replace")
            if plugin not in SCRAMBLES:
                raise NotReady(
                    f"the server asks for the authentication plugin {peer_text(plugin, 60)}; "
                    f"portpatrol speaks {NATIVE} and {SHA2}"
                )
            nonce = reader.rest()
            talk.send(SCRAMBLES[plugin](password, nonce[:-1] if nonce.endswith(b"\0") else nonce))
        elif head == b"\x01" and plugin == SHA2:
            if packet[1:] == b"\x03":  # fast authentication succeeded: an OK follows
                continue
            if packet[1:] != b"\x04":
                raise NotReady("the server sent an unknown caching_sha2_password step")
            if not tls:
                raise NotReady(
                    "the server asks for caching_sha2_password's full authentication, which needs TLS "
                    "(portpatrol does not do the RSA key exchange): use a server with TLS and ssl-mode "
                    "PREFERRED or stricter, or log in once with the mysql client to fill its cache"
                )
            talk.send(password + b"\0")
        else:
            raise NotReady(
                f"the server sent an unexpected packet (0x{packet[:1].hex() or 'empty'}) during the login"
            )
    raise NotReady(f"the login did not end within {MAX_AUTH_STEPS} steps")


def _is_eof(packet: bytes) -> bool:
    return packet[:1] == b"\xfe" and len(packet) < 9


def _query(talk: Conversation, query: str) -> None:
    talk.send(b"\x03" + query.encode(), new_command=True)
    first = talk.read("the query")
    if first[:1] == b"\xff":
        raise NotReady(error_reason(first, "the query failed: "))
    if first[:1] == b"\x00":
        raise NotReady("the query returned no result set (use a SELECT)")
    if first[:1] == b"\xfb":
        raise NotReady("the server asked for a local file, which portpatrol never sends")
    columns = Reader(first, "the column count").lenenc()
    if not 0 < columns <= MAX_COLUMNS:
        raise NotReady(f"the server announced {columns} columns")
    for _ in range(columns):
        talk.read("the query's columns")
    if not _is_eof(talk.read("the query's columns")):
        raise NotReady("the server did not end the query's columns")
    row = talk.read("the query's rows")
    if _is_eof(row):
        raise NotReady("the query returned no rows")
    if row[:1] == b"\xff":
        raise NotReady(error_reason(row, "the query failed: "))
    value = None
    if row[:1] != b"\xfb":  # 0xFB is NULL
        reader = Reader(row, "a row")
        value = reader.take(reader.lenenc())
    # Read the other rows so that COM_QUIT finds a quiet connection, but for a second at most: the
    # answer is in, and a server that stops after the first row must not hold it to the deadline.
    talk.wire.deadline = min(talk.wire.deadline, time.monotonic() + 1.0)
    try:
        for _ in range(DRAIN_PACKETS):
            rest = talk.read("the query's rows")
            if _is_eof(rest) or rest[:1] == b"\xff":
                break
    except NotReady:
        pass  # the answer is in; a server slow with the rest does not change it
    if not truthy(value):
        shown = "NULL" if value is None else (peer_text(value, 40) or "an empty value")
        raise NotReady(f"the query returned {shown}")


def truthy(value: bytes | None) -> bool:
    """A first value that means yes: not NULL, empty, a number equal to 0, `false`, or a zero BIT."""
    if value is None:
        return False
    text = value.strip().lower()
    if text in (b"", b"false", b"\0"):
        return False
    try:
        return float(text) != 0
    except ValueError:
        return True


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    import socket

    from portpatrol.checks.net import connect

    wire = Wire(connect(settings.host, settings.port, deadline, bound, socket.socket), deadline, bound)
    try:
        converse(wire, settings)
    finally:
        wire.close()
