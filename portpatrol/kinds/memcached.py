"""memcached: ready when the text protocol's `version` gets `VERSION ...`.

Anything else (`SERVER_ERROR out of memory`, `ERROR`, a closed connection) is not ready, in the server's
words. The one line read is bounded; memcached has no login on its text protocol (SASL needs the binary
one), so an address is only `memcached://host[:port]`, and the kind has no block keys."""

from __future__ import annotations

from dataclasses import dataclass

from portpatrol.errors import NotReady

TYPE_CHECKING = False  # typing and collections.abc are for mypy only: a kind loads at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.wire import Wire

NAME = "memcached"
SCHEMES = ("memcached",)
DEFAULT_PORT = 11211
SCHEMA: dict[str, Any] = {
    "description": "Settings of a memcached target (none yet); an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{}],
    "properties": {},
}
ENV: dict[str, str] = {}
SECRET_KEYS: frozenset[str] = frozenset()

EXAMPLE = "(e.g. memcached://cache:11211)"
LINE_LIMIT = 1024  # `VERSION 1.6.18` and every error line are far shorter


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    from urllib.parse import urlsplit

    from portpatrol.address import split_netloc

    try:
        parts = urlsplit(address)
    except ValueError as error:
        raise ValueError(f"not a memcached address: {error} {EXAMPLE}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"a memcached address starts with memcached:// {EXAMPLE}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a memcached address has no /path, ?query or #fragment {EXAMPLE}")
    userinfo, host, port = split_netloc(parts.netloc, EXAMPLE)
    if userinfo:  # said without the userinfo itself: it may be a password
        raise ValueError(f"memcached's text protocol has no login: remove user@ from the address {EXAMPLE}")
    return Settings(host, port or DEFAULT_PORT)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    from portpatrol.address import authority

    return f"{authority(settings.host, settings.port)} login=no tls=off"


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    from portpatrol.wire import Wire

    with Wire.opened(settings.host, settings.port, deadline, bound) as wire:
        converse(wire)


def converse(wire: Wire) -> None:
    """`version`, and its answer: returns when it is `VERSION ...`."""
    from portpatrol.wire import peer_text

    wire.send(b"version\r\n")
    line = wire.line("the answer to version", LINE_LIMIT)
    if not line.startswith(b"VERSION "):
        raise NotReady(f"the server answered version with '{peer_text(line)}', not VERSION")
