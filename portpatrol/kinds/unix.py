"""The unix kind: `unix:///path/to.sock` is ready when a stream connect to the socket succeeds
within the attempt's bound (the connection is closed at once, nothing is sent)."""

from __future__ import annotations

import errno
import os
import socket
import time

from portpatrol.checks import reason, timed_out
from portpatrol.errors import NotReady
from portpatrol.kinds._paths import path_address, path_of
from portpatrol.model import Record, set_fields
from portpatrol.text import printable, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.address import Address

NAME = "unix"
SCHEMES = ("unix",)
DEFAULT_PORT = None
SCHEMA = None  # no settings beyond the path
ENV: dict[str, str] = {}
STILL = "still accepting connections"  # the reason an inverted target is not ready yet
SECRET_KEYS: frozenset[str] = frozenset()
EXAMPLE = "e.g. unix:///run/docker.sock"
PATH_LIMIT = 107  # bytes of sun_path on Linux, without its final NUL


class Settings(Record):
    """A record, not a dataclass: on a unix wait's start-up path (model.Record says why)."""

    __slots__ = ("path",)
    path: str

    def __init__(self, path: str) -> None:
        set_fields(self, path=path)


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    path = path_of(address, "unix", EXAMPLE)
    if len(os.fsencode(path)) > PATH_LIMIT:
        raise ValueError(f"a unix socket path is at most {PATH_LIMIT} bytes: {quote(path)} ({EXAMPLE})")
    return Settings(path)


def address(scheme: str, rest: str) -> Address:
    return path_address(scheme, rest, EXAMPLE)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    return f"{printable(settings.path)} accepts a stream connection"


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise NotReady(timed_out(bound))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(left)
            sock.connect(settings.path)
        except OSError as error:
            if error.errno == errno.EAGAIN:  # a non-blocking connect to a full backlog fails at once
                raise NotReady("the socket's backlog is full") from None
            raise NotReady(reason(error, bound)) from None
