"""amqp: ready when a RabbitMQ (or any AMQP 0-9-1 broker) answers.

Without credentials the protocol header must get Connection.Start; with them the connection must open
(PLAIN, Tune, Open of the vhost) and is then closed cleanly. Only the connection class of AMQP 0-9-1 is
spoken, over channel 0; every frame is checked against a size limit and its end octet, every length in a
method against what is left of it, so whatever a peer sends ends in NotReady, never another exception.
The frames and methods are portpatrol.amqpwire's; this module holds the settings and the conversation."""

from __future__ import annotations

import struct
import time
from contextlib import suppress
from dataclasses import dataclass, field

from portpatrol.amqpwire import (
    CHANNEL_MAX,
    CLIENT_PROPERTIES,
    CLOSE,
    CLOSE_OK,
    FRAME_MAX,
    FRAME_MIN,
    OPEN,
    OPEN_OK,
    PROTOCOL_HEADER,
    START,
    START_OK,
    TUNE,
    TUNE_OK,
    expect,
    longstr,
    method_frame,
    next_method,
    peer,
    shortstr,
)
from portpatrol.errors import BadValue, NotReady

TYPE_CHECKING = False  # typing and collections.abc are for mypy only: a kind loads at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.wire import Wire

_VAR = " `${VAR}` and `${VAR:-default}` are replaced from the environment when the file is loaded."
NAME = "amqp"
SCHEMES = ("amqp", "amqps")
DEFAULT_PORT = 5672
TLS_PORT = 5671
SCHEMA: dict[str, Any] = {
    "description": "Settings of an AMQP 0-9-1 target (RabbitMQ); an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"user": "app", "password": "${RABBITMQ_PASSWORD}", "vhost": "orders"}],
    "properties": {
        "user": {
            "description": "User to log in as, PLAIN (like AMQP_USER); replaces the address's." + _VAR,
            "type": "string",
            "examples": ["app"],
        },
        "password": {
            "description": (
                "Password of that user (like AMQP_PASSWORD); replaces the address's; never shown." + _VAR
            ),
            "type": "string",
            "examples": ["${RABBITMQ_PASSWORD}"],
        },
        "vhost": {
            "description": (
                "Virtual host to open, as is, not percent-encoded (like AMQP_VHOST); replaces the "
                "address's path." + _VAR
            ),
            "type": "string",
            "examples": ["/", "orders"],
        },
        "ca_file": {
            "description": "PEM bundle to trust instead of the system's (amqps://)." + _VAR,
            "type": "string",
            "default": "",
            "examples": ["/etc/ssl/rabbitmq-ca.pem"],
        },
        "skip_tls_verify": {
            "description": "Do not verify the server's certificate (amqps://).",
            "type": "boolean",
            "default": False,
            "examples": [True],
        },
    },
}
ENV = {
    "AMQP_USER": "user",
    "AMQP_PASSWORD": "password",
    "AMQP_VHOST": "vhost",
    "AMQP_CA_FILE": "ca_file",
    "AMQP_SKIP_TLS_VERIFY": "skip_tls_verify",
}
SECRET_KEYS = frozenset({"password"})

EXAMPLE = "(e.g. amqp://guest:guest@localhost:5672/%2F)"
CLOSE_WAIT = 1.0  # seconds to wait for Close-Ok once ready: readiness is known, only politeness is left


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    vhost: str
    tls: bool = False
    user: str | None = None  # None: no login, only the protocol header
    password: str = field(default="", repr=False)
    ca_file: str | None = None
    verify: bool = True


# --------------------------------------------------------------------------- address and block


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    from urllib.parse import urlsplit

    from portpatrol.address import split_netloc
    from portpatrol.values import parse_bool

    try:
        parts = urlsplit(address)
    except ValueError as error:
        raise ValueError(f"not an AMQP address: {error} {EXAMPLE}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"an AMQP address starts with amqp:// or amqps:// {EXAMPLE}")
    if parts.fragment:
        raise ValueError(f"an AMQP address has no #fragment {EXAMPLE}")
    userinfo, host, port = split_netloc(parts.netloc, EXAMPLE)
    tls = scheme == "amqps"
    user: str | None = None
    password = ""
    if userinfo:
        raw_user, _, raw_password = userinfo.partition(":")
        user, password = _decoded(raw_user, "user"), _decoded(raw_password, "password")
    user = block.get("user", user)
    password = block.get("password", password)
    if not user and password:
        raise ValueError(f"a password needs a user {EXAMPLE}")
    if "\0" in f"{user}{password}":
        raise ValueError("user and password cannot hold a NUL character (PLAIN separates them with it)")
    vhost = block["vhost"] if "vhost" in block else _vhost(parts.path)
    if len(vhost.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError(f"a vhost name is at most 255 bytes {EXAMPLE}")
    skip = block.get("skip_tls_verify", False)
    if isinstance(skip, str):
        try:
            skip = parse_bool(skip.strip().lower())
        except ValueError:
            raise BadValue(("skip_tls_verify",), "not true or false (e.g. true)") from None
    ca_file = block.get("ca_file") or None
    if not tls and (skip or ca_file):
        key = "ca_file" if ca_file else "skip_tls_verify"
        raise BadValue((key,), "applies to amqps:// only (e.g. amqps://broker/)")
    if ca_file is not None:
        from portpatrol.tls import shared

        shared(not skip, ca_file, checking=True)
    default = TLS_PORT if tls else DEFAULT_PORT
    return Settings(host, port or default, vhost, tls, user or None, password, ca_file, not skip)


def _vhost(path: str) -> str:
    """The vhost of the RabbitMQ URI spec: no path is the default vhost `/`, a bare `/` is the empty
    vhost, and the rest is one percent-decoded segment (`/%2F` is `/`; an unencoded `/` is an error)."""
    if not path:
        return "/"
    segment = path[1:]
    if "/" in segment:
        raise ValueError(f"a / inside a vhost name is written %2F {EXAMPLE}")
    return _decoded(segment, "vhost")


def _decoded(text: str, what: str) -> str:
    """Percent-decoded as the RabbitMQ URI spec says, the result UTF-8 like every AMQP string."""
    from portpatrol.address import percent_decoded

    return percent_decoded(text, what, EXAMPLE)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset({settings.password} - {""})


def describe(settings: Settings) -> str:
    from portpatrol.address import authority
    from portpatrol.text import printable

    vhost = printable(settings.vhost) if settings.vhost else '""'
    tls = "off"
    if settings.tls:
        tls = "verify" if settings.verify else "skip-verify"
        tls += f" ca_file={printable(settings.ca_file)}" if settings.ca_file else ""
    login = "no" if settings.user is None else f"yes user={printable(settings.user)}"
    return f"{authority(settings.host, settings.port)} vhost={vhost} login={login} tls={tls}"


# --------------------------------------------------------------------------- one attempt


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    from portpatrol.wire import Wire

    with Wire.opened(settings.host, settings.port, deadline, bound) as wire:
        if settings.tls:
            from portpatrol.tls import shared  # (ssl: only for TLS)

            wire.start_tls(shared(settings.verify, settings.ca_file), settings.host)
        converse(wire, settings)


def converse(wire: Wire, settings: Settings) -> None:
    """The whole conversation over a connected (and, for amqps, TLS) wire: returns when ready."""
    wire.send(PROTOCOL_HEADER)
    start = expect(wire, START, FRAME_MAX, settings.password)
    major, minor = start.octet(), start.octet()
    start.table()  # server-properties: checked, not needed
    mechanisms = start.longstr().split()
    start.longstr()  # locales
    if (major, minor) != (0, 9):
        raise NotReady(f"the server speaks AMQP {major}-{minor}, not 0-9-1 (version mismatch)")
    if settings.user is None:
        return
    if b"PLAIN" not in mechanisms:
        offered = b" ".join(mechanisms).decode("ascii", "replace")
        raise NotReady(f"the server does not offer PLAIN login (it offers: {peer(offered)})")
    response = b"\0" + settings.user.encode() + b"\0" + settings.password.encode()
    wire.send(
        method_frame(START_OK, CLIENT_PROPERTIES + shortstr("PLAIN") + longstr(response) + shortstr("en_US"))
    )
    tune = expect(wire, TUNE, FRAME_MAX, settings.password)
    channel_max, frame_max = tune.short(), tune.long()
    tune.short()  # the server's heartbeat: we ask for none, the connection lives for a moment
    if 0 < frame_max < FRAME_MIN:
        raise NotReady(f"the server asked for frames of at most {frame_max} bytes, below AMQP's {FRAME_MIN}")
    frame_max = min(frame_max or FRAME_MAX, FRAME_MAX)
    wire.send(
        method_frame(TUNE_OK, struct.pack(">HIH", min(channel_max or CHANNEL_MAX, CHANNEL_MAX), frame_max, 0))
    )
    wire.send(method_frame(OPEN, shortstr(settings.vhost) + shortstr("") + b"\0"))
    expect(wire, OPEN_OK, frame_max, settings.password)
    _close(wire, frame_max)


def _close(wire: Wire, frame_max: int) -> None:
    """Closes the open connection as AMQP asks, briefly: the target is ready whatever happens here."""
    wire.deadline = min(wire.deadline, time.monotonic() + CLOSE_WAIT)
    with suppress(NotReady):
        wire.send(method_frame(CLOSE, struct.pack(">H", 200) + shortstr("ready") + struct.pack(">HH", 0, 0)))
        while (answer := next_method(wire, frame_max, "Connection.Close-Ok")[0]) != CLOSE_OK:
            if answer == CLOSE:  # both closed at once: answer theirs and be done
                wire.send(method_frame(CLOSE_OK, b""))
                return
