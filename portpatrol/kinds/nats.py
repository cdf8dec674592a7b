"""nats: ready when a NATS server lets a client in: INFO (not in lame duck mode), CONNECT, then PING
gets PONG.

The server speaks first with `INFO {json}`; when it says `tls_required` the connection turns to TLS right
after that line, as NATS clients do. CONNECT carries the credentials (user and password, or a token) or
none; the PING after it gets PONG once the server has accepted them, or `-ERR '...'` in the server's words
(`Authorization Violation`). Every line is bounded (INFO to 64 KiB), the JSON in it parsed with its depth
limited by Python's own recursion guard, which is caught.

Addresses: `nats://[user:password@ | token@]host[:port]`. Environment: NATS_USER, NATS_PASSWORD,
NATS_TOKEN, NATS_CA_FILE, NATS_SKIP_TLS_VERIFY."""

from __future__ import annotations

from dataclasses import dataclass, field

from portpatrol.errors import BadValue, NotReady

TYPE_CHECKING = False  # typing and collections.abc are for mypy only: a kind loads at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.wire import Wire

_VAR = " `${VAR}` and `${VAR:-default}` are replaced from the environment when the file is loaded."
NAME = "nats"
SCHEMES = ("nats",)
DEFAULT_PORT = 4222
SCHEMA: dict[str, Any] = {
    "description": "Settings of a NATS target; an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"user": "app", "password": "${NATS_PASSWORD}"}, {"token": "${NATS_TOKEN}"}],
    "properties": {
        "user": {
            "description": (
                "User to connect as (like NATS_USER); replaces the address's credentials." + _VAR
            ),
            "type": "string",
            "examples": ["app"],
        },
        "password": {
            "description": (
                "Password of that user (like NATS_PASSWORD); replaces the address's credentials; "
                "never shown." + _VAR
            ),
            "type": "string",
            "examples": ["${NATS_PASSWORD}"],
        },
        "token": {
            "description": (
                "Token instead of a user (like NATS_TOKEN); replaces the address's credentials; "
                "never shown." + _VAR
            ),
            "type": "string",
            "examples": ["${NATS_TOKEN}"],
        },
        "ca_file": {
            "description": (
                "PEM bundle to trust instead of the system's, when the server requires TLS." + _VAR
            ),
            "type": "string",
            "default": "",
            "examples": ["/etc/ssl/nats-ca.pem"],
        },
        "skip_tls_verify": {
            "description": "Do not verify the server's certificate, when the server requires TLS.",
            "type": "boolean",
            "default": False,
            "examples": [True],
        },
    },
}
ENV = {
    "NATS_USER": "user",
    "NATS_PASSWORD": "password",
    "NATS_TOKEN": "token",
    "NATS_CA_FILE": "ca_file",
    "NATS_SKIP_TLS_VERIFY": "skip_tls_verify",
}
SECRET_KEYS = frozenset({"password", "token"})

EXAMPLE = "(e.g. nats://app:secret@queue:4222 or nats://s3cr3t-token@queue)"
INFO_LIMIT = 64 * 1024  # the INFO line; a server with a large cluster's connect_urls stays far below
LINE_LIMIT = 4096  # every other line: PONG, +OK, PING, -ERR '...'
LINES_BEFORE_PONG = 16  # PINGs, +OKs and INFO updates tolerated before PONG: a peer cannot keep us talking


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify: bool = True
    # ca_file or skip_tls_verify given: TLS is required of the server, so an INFO stripped of
    # tls_required on the way cannot make us send the credentials in clear text.
    require_tls: bool = False


# --------------------------------------------------------------------------- address and block


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    from urllib.parse import unquote, urlsplit

    from portpatrol.address import split_netloc
    from portpatrol.values import parse_bool

    try:
        parts = urlsplit(address)
    except ValueError as error:
        raise ValueError(f"not a NATS address: {error} {EXAMPLE}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"a NATS address starts with nats:// {EXAMPLE}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a NATS address has no /path, ?query or #fragment {EXAMPLE}")
    userinfo, host, port = split_netloc(parts.netloc, EXAMPLE)
    user = password = token = None
    if userinfo:
        try:
            if ":" in userinfo:
                raw_user, _, raw_password = userinfo.partition(":")
                user, password = unquote(raw_user, errors="strict"), unquote(raw_password, errors="strict")
            else:  # as NATS clients read nats://TOKEN@host
                token = unquote(userinfo, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"the credentials are not UTF-8 once percent-decoded {EXAMPLE}") from None
    # The block's keys replace the address's credentials (docs/queues-and-caches.md): a token in the
    # block replaces a user:password@ of the address, a user or password in it replaces a token@.
    if "token" in block:
        user = password = None
    elif "user" in block or "password" in block:
        token = None
    user = block.get("user", user) or None
    password = block.get("password", password) or None
    token = block.get("token", token) or None
    if token is not None and (user or password):
        raise ValueError(f"give a user and password or a token, not both {EXAMPLE}")
    if (user is None) != (password is None):
        raise ValueError(f"a NATS user needs a password, and a password a user {EXAMPLE}")
    skip = block.get("skip_tls_verify", False)
    if isinstance(skip, str):
        try:
            skip = parse_bool(skip.strip().lower())
        except ValueError:
            raise BadValue(("skip_tls_verify",), "not true or false (e.g. true)") from None
    ca_file = block.get("ca_file") or None
    if ca_file is not None:
        from portpatrol.tls import shared

        shared(not skip, ca_file, checking=True)
    require_tls = ca_file is not None or bool(skip)
    return Settings(host, port or DEFAULT_PORT, user, password, token, ca_file, not skip, require_tls)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset(s for s in (settings.password, settings.token) if s)


def describe(settings: Settings) -> str:
    from portpatrol.address import authority
    from portpatrol.text import printable

    login = "no"
    if settings.user is not None:
        login = f"yes user={printable(settings.user)}"
    elif settings.token is not None:
        login = "yes token"
    tls = ("required " if settings.require_tls else "when-required ") + (
        "verify" if settings.verify else "skip-verify"
    )
    tls += f" ca_file={printable(settings.ca_file)}" if settings.ca_file else ""
    return f"{authority(settings.host, settings.port)} login={login} tls={tls}"


# --------------------------------------------------------------------------- one attempt


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    from portpatrol.wire import Wire

    with Wire.opened(settings.host, settings.port, deadline, bound) as wire:
        converse(wire, settings)


def converse(wire: Wire, settings: Settings) -> None:
    """The whole conversation over a connected wire (TLS is started here if INFO asks): returns when
    ready."""
    import json

    info = read_info(wire.line("the server's INFO", INFO_LIMIT))
    if info.get("ldm") is True:
        raise NotReady("the server is in lame duck mode (shutting down)")
    tls_on = info.get("tls_required") is True or (settings.require_tls and info.get("tls_available") is True)
    if settings.require_tls and not tls_on:
        raise NotReady("the server does not offer TLS (ca_file or skip_tls_verify asks for it)")
    if tls_on:
        from portpatrol.tls import shared  # (ssl: only for TLS)

        wire.start_tls(shared(settings.verify, settings.ca_file), settings.host)
    options: dict[str, object] = {
        "verbose": False,
        "pedantic": False,
        "tls_required": tls_on,
        "name": "portpatrol",
        "lang": "python",
        "version": "portpatrol",
        "protocol": 0,  # no async INFO with cluster updates: only this one PING matters
    }
    if settings.user is not None:
        options |= {"user": settings.user, "pass": settings.password}
    elif settings.token is not None:
        options["auth_token"] = settings.token
    wire.send(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
    for _ in range(LINES_BEFORE_PONG):
        line = wire.line("the answer to CONNECT and PING", LINE_LIMIT)
        operation = line.split(b" ", 1)[0].upper()
        if operation == b"PONG":
            return
        if operation == b"-ERR":
            raise _refused(line[4:].strip(), settings, info)
        if operation == b"PING":  # the server checking on us: answer, as a client must
            wire.send(b"PONG\r\n")
        elif operation not in (b"+OK", b"INFO"):
            raise NotReady(f"the server's answer to PING is not NATS: '{_words(line, settings)}'")
    raise NotReady(f"the server sent {LINES_BEFORE_PONG} lines without PONG")


def read_info(line: bytes) -> dict[str, object]:
    """The JSON object of `INFO {...}`: anything else is not NATS."""
    import json

    from portpatrol.wire import peer_text

    operation, _, body = line.partition(b" ")
    if operation.upper() != b"INFO":
        raise NotReady(f"the server did not start with INFO, so it is not NATS: '{peer_text(line, 60)}'")
    try:
        info = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; nesting hits the guard
        raise NotReady("the server's INFO is not valid JSON") from None
    if not isinstance(info, dict):
        raise NotReady("the server's INFO is not a JSON object")
    return info


def _refused(text: bytes, settings: Settings, info: Mapping[str, object]) -> NotReady:
    """`-ERR 'Authorization Violation'` and its kin, in the server's words."""
    words = _words(text.strip(b"'"), settings)
    if settings.user is None and settings.token is None and info.get("auth_required") is True:
        return NotReady(f"the server needs credentials: user:password@ or token@ in the address ({words})")
    return NotReady(f"the server refused the connection: {words}")


def _words(text: bytes, settings: Settings) -> str:
    """A server's words for a reason, with our secrets masked should a server ever echo them."""
    from portpatrol.wire import peer_text

    said = text.decode("utf-8", "replace")
    for secret in secrets(settings):
        said = said.replace(secret, "***")
    return peer_text(said)
