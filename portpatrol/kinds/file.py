"""The file kind: `file:///path` is ready when the path exists (after symbolic links); with
`file.non_empty: true` when it is a regular file with data; with `file.contains: REGEX` when the
regular expression is found (re.search, MULTILINE) in its first MiB, decoded as UTF-8 leniently.

A FIFO or device is opened without blocking and is not read: only a regular file has content
here. The stat and the read are not bounded by the deadline (a hung network file system can
stall them): the reads are of a local file, at most 1 MiB."""

from __future__ import annotations

import os
import stat

from portpatrol.checks import describe as errno_words
from portpatrol.errors import NotReady
from portpatrol.kinds._paths import path_address, path_of
from portpatrol.model import Record, set_fields
from portpatrol.text import printable
from portpatrol.values import parse_bool

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Mapping
    from typing import Any

    from portpatrol.address import Address

NAME = "file"
SCHEMES = ("file",)
DEFAULT_PORT = None
SCHEMA: dict[str, Any] = {
    "description": "Settings of a file target (file:///path); an error on any other type.",
    "type": "object",
    "additionalProperties": False,
    "default": {},
    "examples": [{"non_empty": True}, {"contains": "^ready$"}],
    "properties": {
        "non_empty": {
            "description": "Ready only when it is a regular file with data (like FILE_NON_EMPTY).",
            "type": "boolean",
            "default": False,
            "examples": [True],
        },
        "contains": {
            "description": (
                "A regular expression that must be found in the file's first MiB (like FILE_CONTAINS; "
                "re.search, ^ and $ match at each line). Empty: any content."
            ),
            "type": "string",
            "default": "",
            "examples": ["^ready$", "status: (ok|up)"],
        },
    },
}
ENV = {"FILE_NON_EMPTY": "non_empty", "FILE_CONTAINS": "contains"}
STILL = "still exists"  # the reason an inverted target is not ready yet
SECRET_KEYS: frozenset[str] = frozenset()
EXAMPLE = "e.g. file:///run/secrets/token"
READ_LIMIT = 1 << 20  # bytes of a file searched by `contains`


class Settings(Record):
    """A record, not a dataclass: `import dataclasses` is ~15 ms of a file wait's start-up
    (model.Record says why)."""

    __slots__ = ("path", "non_empty", "contains")  # noqa: RUF023 (the order of __init__)
    path: str
    non_empty: bool
    contains: re.Pattern[str] | None

    def __init__(self, path: str, non_empty: bool = False, contains: re.Pattern[str] | None = None) -> None:
        set_fields(self, path=path, non_empty=non_empty, contains=contains)


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    path = path_of(address, "file", EXAMPLE)
    non_empty = block.get("non_empty", False)
    if isinstance(non_empty, str):  # from FILE_NON_EMPTY
        try:
            non_empty = parse_bool(non_empty)
        except ValueError as error:
            raise ValueError(f"file non_empty is {error}") from None
    contains = None
    if block.get("contains"):  # "" (the schema's default) asks for nothing
        import re

        try:
            contains = re.compile(block["contains"], re.MULTILINE)
        except re.error as error:
            raise ValueError(f"file contains is not a regular expression: {error} (e.g. ^ready$)") from None
    return Settings(path, bool(non_empty), contains)


def address(scheme: str, rest: str) -> Address:
    return path_address(scheme, rest, EXAMPLE)


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    line = f"{printable(settings.path)} exists"
    if settings.non_empty:
        line += " non_empty=yes"
    if settings.contains is not None:
        line += f" contains={printable(settings.contains.pattern)}"
    return line


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    if not settings.non_empty and settings.contains is None:
        try:
            os.stat(settings.path)
        except OSError as error:
            raise NotReady(_words(error)) from None
        return
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(settings.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise NotReady(_words(error)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotReady("exists but is not a regular file")
        if info.st_size == 0:
            raise NotReady("the file is empty")
        if settings.contains is None:
            return
        data = bytearray()
        while len(data) < READ_LIMIT and (chunk := os.read(fd, READ_LIMIT - len(data))):
            data += chunk
    except OSError as error:
        raise NotReady(_words(error)) from None
    finally:
        os.close(fd)
    if not settings.contains.search(data.decode("utf-8", "replace")):
        limit = " in its first MiB" if len(data) >= READ_LIMIT else ""
        raise NotReady(f"the file does not contain {printable(settings.contains.pattern)}{limit}")


def _words(error: OSError) -> str:
    return errno_words(error.errno, 0.0) if error.errno is not None else str(error)
