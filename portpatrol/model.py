"""The typed values every source compiles into. No I/O here, and nothing about any one kind."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar


class _KindNames(type):
    def __getattr__(cls, name: str) -> Kind:
        """`Kind.TCP`, `Kind.POSTGRES`: the kind of that name, the same object every time."""
        if name.isupper() and not name.startswith("_"):
            return Kind(name)
        raise AttributeError(name)


class Kind(metaclass=_KindNames):
    """What a target checks, by name: `Kind.TCP`, compared with `is`; `value` is the name.
    Which kinds exist is the registry's (portpatrol.kinds); this only interns their names."""

    __slots__ = ("value",)
    value: str
    _interned: ClassVar[dict[str, Kind]] = {}

    def __new__(cls, value: str) -> Kind:
        found = cls._interned.get(value)
        if found is None:
            found = cls._interned[value] = super().__new__(cls)
            object.__setattr__(found, "value", value)
        return found

    def __repr__(self) -> str:
        return f"Kind.{self.value}"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to {name!r}: Kind is immutable")

    def __reduce__(self) -> tuple[type[Kind], tuple[str]]:
        return Kind, (self.value,)  # copy and pickle give the same object


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds. `interval` is the pause after a failed attempt; `dial_timeout` bounds one attempt;
    a target is ready after `success_threshold` consecutive successful attempts."""

    interval: float = 2.0
    dial_timeout: float = 1.0
    success_threshold: int = 1


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to wait for. `address` is the display form, with secrets already masked;
    `spec` is its kind's Settings; `secrets` are strings that must never reach a log line
    (nor a repr)."""

    name: str
    address: str
    spec: Any  # the Settings of a kind module: portpatrol.kinds.<name>.Settings
    timing: Timing = Timing()
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    def replace(self, **changes: Any) -> Target:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def kind(self) -> Kind:
        """The kind whose module defines the settings (portpatrol.kinds.<name>)."""
        return Kind(type(self.spec).__module__.rpartition(".")[2].upper())

    @property
    def bound(self) -> float:
        """The longest one attempt may take: dial_timeout, and the settings' own `extra_time`
        (e.g. ICMP's read timeout) where the kind has one."""
        extra: float = getattr(self.spec, "extra_time", 0.0)
        return self.timing.dial_timeout + extra


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything to wait for, compiled from every source."""

    targets: tuple[Target, ...]
    timeout: float | None = None  # the overall deadline in seconds; None waits forever
