"""The one exception tree. The cli maps each to an exit status."""

from __future__ import annotations

from portpatrol.model import Record, set_fields

TYPE_CHECKING = False  # collections.abc costs ~1.5 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from collections.abc import Iterable


class Problem(Record):
    """One thing wrong with the input: where it is, and what to write instead."""

    __slots__ = ("where", "message")  # noqa: RUF023
    where: str
    message: str

    def __init__(self, where: str, message: str) -> None:
        set_fields(self, where=where, message=message)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class PortpatrolError(Exception):
    """Base of everything portpatrol raises on purpose."""


class ConfigError(PortpatrolError):
    """The input is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(map(str, self.problems)))


class BadValue(ValueError):
    """What a kind's parse() raises about one key of its block, so a source can say where:
    `key` is the path inside the block (("method",) or ("headers", "X-Tag")); `quoted`, whether
    the source may show the value as written next to the message (never for a secret)."""

    def __init__(self, key: tuple[str | int, ...], message: str, *, quoted: bool = True) -> None:
        super().__init__(message)
        self.key = key
        self.quoted = quoted


class NotReady(PortpatrolError):
    """One attempt failed; the message says why, in a few words (the server's own, where it gave some)."""


class SetupError(PortpatrolError):
    """The checks cannot run at all here (for example a kind needs a socket this machine does not permit)."""
