"""What the runner reports while it waits; logs and reports turn these into lines.
Events are matched by position (`case Failed(target, error)`), in __slots__ order. Records, not
dataclasses: every run imports this module (model.Record says why)."""

from __future__ import annotations

from portpatrol.model import Record, Target, set_fields


class Waiting(Record):
    __slots__ = __match_args__ = ("target",)
    target: Target

    def __init__(self, target: Target) -> None:
        set_fields(self, target=target)


class Failed(Record):
    __slots__ = __match_args__ = ("target", "error", "attempt")
    target: Target
    error: str
    attempt: int

    def __init__(self, target: Target, error: str, attempt: int) -> None:
        set_fields(self, target=target, error=error, attempt=attempt)


class Ready(Record):
    __slots__ = __match_args__ = ("target", "attempts", "elapsed")
    target: Target
    attempts: int
    elapsed: float

    def __init__(self, target: Target, attempts: int, elapsed: float) -> None:
        set_fields(self, target=target, attempts=attempts, elapsed=elapsed)


class AllReady(Record):
    __slots__ = __match_args__ = ("count", "elapsed")
    count: int
    elapsed: float

    def __init__(self, count: int, elapsed: float) -> None:
        set_fields(self, count=count, elapsed=elapsed)


class GaveUp(Record):
    """The deadline passed before this target was ready."""

    __slots__ = __match_args__ = ("target", "error", "attempts")
    target: Target
    error: str | None
    attempts: int

    def __init__(self, target: Target, error: str | None, attempts: int) -> None:
        set_fields(self, target=target, error=error, attempts=attempts)


class Tick(Record):
    """About once a second while nothing else happens, for outputs that show elapsed time."""

    __slots__ = __match_args__ = ()


Event = Waiting | Failed | Ready | AllReady | GaveUp | Tick
