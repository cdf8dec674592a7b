"""redis: ready when Redis answers PING with PONG, as `redis-cli ping` does.

`-LOADING` (a dataset still loading), `-MASTERDOWN` (a replica cut from its master) and `-BUSY` (a script
running) are not ready, in the server's words; `-NOAUTH` is not ready with a reason saying a password is
needed. With credentials, AUTH ([user] password) comes first; with a /db, SELECT. Only RESP2 replies to
those commands are read: every line is bounded, every bulk length checked before it is trusted.

Addresses follow redis-cli's `-u`: `redis[s]://[[user]:password@]host[:port][/db]`; userinfo without a
colon is the password (`redis://secret@host`). Environment: REDIS_USER, REDIS_PASSWORD, REDIS_CA_FILE,
REDIS_SKIP_TLS_VERIFY, and REDISCLI_AUTH (redis-cli's own password variable, often already set where
redis-cli is used); REDIS_PASSWORD comes later in ENV, so it wins when both are set."""

from __future__ import annotations

from portpatrol.errors import BadValue, NotReady
from portpatrol.model import Record, set_fields

TYPE_CHECKING = False  # typing and collections.abc are for mypy only: a kind loads at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.wire import Wire

_VAR = " `${VAR}` and `${VAR:-default}` are replaced from the environment when the file is loaded."
NAME = "redis"
SCHEMES = ("redis", "rediss")
DEFAULT_PORT = 6379
SCHEMA: dict[str, Any] = {
    "description": "Settings of a Redis target; an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"password": "${REDIS_PASSWORD}"}, {"user": "app", "password": "${REDIS_PASSWORD}"}],
    "properties": {
        "user": {
            "description": "ACL user for AUTH (like REDIS_USER); replaces the address's." + _VAR,
            "type": "string",
            "examples": ["app"],
        },
        "password": {
            "description": (
                "Password for AUTH (like REDIS_PASSWORD); replaces the address's; never shown." + _VAR
            ),
            "type": "string",
            "examples": ["${REDIS_PASSWORD}"],
        },
        "ca_file": {
            "description": "PEM bundle to trust instead of the system's (rediss://)." + _VAR,
            "type": "string",
            "default": "",
            "examples": ["/etc/ssl/redis-ca.pem"],
        },
        "skip_tls_verify": {
            "description": "Do not verify the server's certificate (rediss://).",
            "type": "boolean",
            "default": False,
            "examples": [True],
        },
    },
}
ENV = {
    "REDIS_USER": "user",
    "REDISCLI_AUTH": "password",
    "REDIS_PASSWORD": "password",  # after REDISCLI_AUTH: the more specific name wins
    "REDIS_CA_FILE": "ca_file",
    "REDIS_SKIP_TLS_VERIFY": "skip_tls_verify",
}
SECRET_KEYS = frozenset({"password"})

EXAMPLE = "(e.g. redis://:secret@cache:6379/0)"
LINE_LIMIT = 64 * 1024  # a status or error line; Redis's own are well under 1 KiB
BULK_LIMIT = 64 * 1024  # a bulk reply to AUTH, SELECT or PING never needs more
NOT_READY_ERRORS = {
    "LOADING": "the server is loading its dataset",
    "MASTERDOWN": "the replica has lost its master",
    "BUSY": "the server is busy running a script",
}


class Settings(Record):
    """A record, not a dataclass: `import dataclasses` was most of a Redis wait's start-up
    (docs/performance.md; model.Record says why)."""

    __slots__ = ("host", "port", "db", "tls", "user", "password", "ca_file", "verify")  # noqa: RUF023
    _unshown = ("password",)
    host: str
    port: int
    db: int | None
    tls: bool
    user: str | None
    password: str | None  # None: no AUTH
    ca_file: str | None
    verify: bool

    def __init__(  # noqa: PLR0917 (one argument per field, as a dataclass has)
        self,
        host: str,
        port: int,
        db: int | None = None,
        tls: bool = False,
        user: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        verify: bool = True,
    ) -> None:
        set_fields(
            self,
            host=host,
            port=port,
            db=db,
            tls=tls,
            user=user,
            password=password,
            ca_file=ca_file,
            verify=verify,
        )


# --------------------------------------------------------------------------- address and block


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    from urllib.parse import urlsplit

    from portpatrol.address import percent_decoded, split_netloc
    from portpatrol.values import parse_bool

    try:
        parts = urlsplit(address)
    except ValueError as error:
        raise ValueError(f"not a Redis address: {error} {EXAMPLE}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"a Redis address starts with redis:// or rediss:// {EXAMPLE}")
    if parts.query or parts.fragment:
        raise ValueError(f"a Redis address has no ?query or #fragment {EXAMPLE}")
    userinfo, host, port = split_netloc(parts.netloc, EXAMPLE)
    user: str | None = None
    password: str | None = None
    if userinfo:
        raw_user, _, raw_password = userinfo.partition(":") if ":" in userinfo else ("", "", userinfo)
        user = percent_decoded(raw_user, "user or password", EXAMPLE) or None
        password = percent_decoded(raw_password, "user or password", EXAMPLE)
    user = block.get("user", user) or None
    password = block.get("password", password)
    if user is not None and not password:
        raise ValueError(f"a Redis user needs a password (AUTH user password) {EXAMPLE}")
    db = _db(parts.path)
    skip = block.get("skip_tls_verify", False)
    if isinstance(skip, str):
        try:
            skip = parse_bool(skip.strip().lower())
        except ValueError:
            raise BadValue(("skip_tls_verify",), "not true or false (e.g. true)") from None
    ca_file = block.get("ca_file") or None
    tls = scheme == "rediss"
    if not tls and (skip or ca_file):
        key = "ca_file" if ca_file else "skip_tls_verify"
        raise BadValue((key,), "applies to rediss:// only (e.g. rediss://cache:6380)")
    if ca_file is not None:
        from portpatrol.tls import shared

        shared(not skip, ca_file, checking=True)
    return Settings(host, port or DEFAULT_PORT, db, tls, user, password or None, ca_file, not skip)


def _db(path: str) -> int | None:
    if path in ("", "/"):
        return None
    number = path[1:]
    if not (number.isascii() and number.isdigit() and len(number) <= 9):
        raise ValueError(f"the path is a database number, as in redis://cache/2 {EXAMPLE}")
    return int(number)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset({settings.password} - {None, ""})  # type: ignore[arg-type]


def describe(settings: Settings) -> str:
    from portpatrol.address import authority
    from portpatrol.text import printable

    tls = "off"
    if settings.tls:
        tls = "verify" if settings.verify else "skip-verify"
        tls += f" ca_file={printable(settings.ca_file)}" if settings.ca_file else ""
    login = "no"
    if settings.password is not None:
        login = f"yes user={printable(settings.user)}" if settings.user else "yes"
    db = "default" if settings.db is None else str(settings.db)
    return f"{authority(settings.host, settings.port)} db={db} login={login} tls={tls}"


# --------------------------------------------------------------------------- one attempt


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    from portpatrol.wire import Wire

    with Wire.opened(settings.host, settings.port, deadline, bound) as wire:
        if settings.tls:
            from portpatrol.tls import shared  # (ssl: only for TLS)

            wire.start_tls(shared(settings.verify, settings.ca_file), settings.host)
        converse(wire, settings)


def converse(wire: Wire, settings: Settings) -> None:
    """The whole conversation over a connected (and, for rediss, TLS) wire: returns when ready."""
    if settings.password is not None:
        words = (
            ["AUTH", settings.password]
            if settings.user is None
            else ["AUTH", settings.user, settings.password]
        )
        wire.send(command(*words))
        kind, text = reply(wire, "AUTH")
        if kind == "-":  # WRONGPASS, or ERR when the server has no password: never echoes ours
            raise NotReady(f"the server refused the login: {_words(text, settings.password)}")
    if settings.db is not None:
        wire.send(command("SELECT", str(settings.db)))
        kind, text = reply(wire, "SELECT")
        if kind == "-":
            raise _error(text, f"SELECT {settings.db}", settings.password)
    wire.send(command("PING"))
    kind, text = reply(wire, "PING")
    if kind == "-":
        raise _error(text, "PING", settings.password)
    if text != b"PONG":
        raise NotReady(f"the server answered PING with '{_words(text, settings.password)}', not PONG")


def command(*words: str) -> bytes:
    """A command as a RESP array of bulk strings: any byte in a password is safe in it."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode("utf-8", "surrogateescape")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def reply(wire: Wire, what: str) -> tuple[str, bytes]:
    """One RESP2 reply that is not an array: its type byte (+ - : $) and its text; a null bulk is empty."""
    line = wire.line(f"the reply to {what}", LINE_LIMIT)
    kind, text = line[:1].decode("latin-1"), line[1:]
    if kind in ("+", "-", ":"):
        return kind, text
    if kind == "$":
        if not (text.isdigit() or text == b"-1"):
            raise NotReady(f"the server sent a bulk length that is not a number in the reply to {what}")
        if text == b"-1":
            return "$", b""
        if len(text) > 6 or int(text) > BULK_LIMIT:
            raise NotReady(
                f"the server announced {_cut(text)} bytes in the reply to {what} (limit {BULK_LIMIT})"
            )
        data = wire.exact(int(text) + 2, f"the reply to {what}")
        if data[-2:] != b"\r\n":
            raise NotReady(f"the server's bulk reply to {what} does not end in CRLF: not Redis")
        return "$", data[:-2]
    from portpatrol.wire import peer_text

    raise NotReady(f"the server's reply to {what} is not Redis (RESP): '{peer_text(line, 60)}'")


def _error(text: bytes, what: str, password: str | None) -> NotReady:
    """The reason for an error reply, in the server's words: `LOADING Redis is loading the dataset`."""
    words = _words(text, password)
    code = text.split(b" ", 1)[0].decode("latin-1")
    if code == "NOAUTH":
        return NotReady(f"the server needs a password ({words})")
    if code in NOT_READY_ERRORS:
        return NotReady(f"{NOT_READY_ERRORS[code]} ({words})")
    return NotReady(f"the server answered {what} with an error: {words}")


def _words(text: bytes, password: str | None) -> str:
    """A server's words for a reason, with our password masked should a server ever echo it."""
    from portpatrol.wire import peer_text

    said = text.decode("utf-8", "replace")
    return peer_text(said.replace(password, "***") if password else said)


def _cut(text: bytes) -> str:
    from portpatrol.wire import peer_text

    return peer_text(text, 20)
