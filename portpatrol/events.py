"""What the runner reports while it waits; logs and reports turn these into lines.
Events are matched by position (`case Failed(target, error)`)."""

from __future__ import annotations

from dataclasses import dataclass

from portpatrol.model import Target


@dataclass(frozen=True, slots=True)
class Waiting:
    target: Target


@dataclass(frozen=True, slots=True)
class Failed:
    target: Target
    error: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Ready:
    target: Target
    attempts: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class AllReady:
    count: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The deadline passed before this target was ready."""

    target: Target
    error: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Tick:
    """About once a second while nothing else happens, for outputs that show elapsed time."""


Event = Waiting | Failed | Ready | AllReady | GaveUp | Tick
