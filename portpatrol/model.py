"""The typed values every source compiles into. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    TCP = "TCP"
    HTTP = "HTTP"
    ICMP = "ICMP"


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds. `interval` is the pause after a failed attempt; `dial_timeout` bounds one attempt;
    a target is ready after `success_threshold` consecutive successful attempts."""

    interval: float = 2.0
    dial_timeout: float = 1.0
    success_threshold: int = 1


@dataclass(frozen=True, slots=True)
class TcpSpec:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class StatusCodes:
    """Inclusive ranges of HTTP status codes, as written (`200,300-302`)."""

    ranges: tuple[tuple[int, int], ...] = ((200, 200),)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(lo <= code <= hi for lo, hi in self.ranges)

    @property
    def has_redirect(self) -> bool:
        return any(lo <= 399 and hi >= 300 for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    expected: StatusCodes = StatusCodes()
    skip_tls_verify: bool = False
    proxy: str | None = None

    @property
    def follow_redirects(self) -> bool:
        # A 3xx in the expected set must be seen, so redirects are then not followed.
        return not self.expected.has_redirect


@dataclass(frozen=True, slots=True)
class IcmpSpec:
    host: str
    read_timeout: float = 1.0


Spec = TcpSpec | HttpSpec | IcmpSpec

_KINDS: dict[type, Kind] = {TcpSpec: Kind.TCP, HttpSpec: Kind.HTTP, IcmpSpec: Kind.ICMP}


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to wait for. `address` is the display form, with secrets already masked;
    `secrets` are strings that must never reach a log line."""

    name: str
    address: str
    spec: Spec
    timing: Timing = Timing()
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def kind(self) -> Kind:
        return _KINDS[type(self.spec)]

    @property
    def bound(self) -> float:
        """The longest one attempt may take."""
        extra = self.spec.read_timeout if isinstance(self.spec, IcmpSpec) else 0.0
        return self.timing.dial_timeout + extra


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything to wait for, compiled from every source."""

    targets: tuple[Target, ...]
    timeout: float | None = None  # the overall deadline in seconds; None waits forever
