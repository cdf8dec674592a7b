"""The typed values every source compiles into. No I/O here."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from typing import ClassVar, Self

_set = object.__setattr__


class Record:
    """An immutable value: equality, hash and repr from its fields (its __slots__, in order).
    What @dataclass(frozen=True, slots=True) gave, without its start-up cost: a dataclass
    compiles its methods with exec() when its module is imported (~0.4 ms a class here), and
    `import dataclasses` brings inspect, ast, dis and tokenize (docs/performance.md).
    A subclass lists its fields in __slots__, in the order of its __init__ arguments (so not
    sorted), and assigns them in __init__ with _set()."""

    __slots__: tuple[str, ...] = ()
    _unshown: tuple[str, ...] = ()  # fields kept out of repr (secrets)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = (f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name not in self._unshown)
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def replace(self, **changes: object) -> Self:
        """A copy with some fields changed, as dataclasses.replace()."""
        return type(self)(**{name: changes.get(name, getattr(self, name)) for name in self.__slots__})


class Kind:
    """What a target checks: Kind.TCP, Kind.HTTP or Kind.ICMP, compared with `is`; `value` is the
    name. Three constants rather than an Enum: `import enum` costs ~4 ms, and this module is on
    every pod's start-up path (docs/performance.md)."""

    __slots__ = ("value",)
    value: str
    if TYPE_CHECKING:
        TCP: ClassVar[Kind]
        HTTP: ClassVar[Kind]
        ICMP: ClassVar[Kind]

    def __init__(self, value: str) -> None:
        _set(self, "value", value)

    def __repr__(self) -> str:
        return f"Kind.{self.value}"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to {name!r}: Kind is immutable")

    def __reduce__(self) -> str:
        return f"Kind.{self.value}"  # by name, as an Enum member: copy and pickle give the constant


Kind.TCP, Kind.HTTP, Kind.ICMP = Kind("TCP"), Kind("HTTP"), Kind("ICMP")


class Timing(Record):
    """Seconds. `interval` is the pause after a failed attempt; `dial_timeout` bounds one attempt;
    a target is ready after `success_threshold` consecutive successful attempts."""

    __slots__ = ("interval", "dial_timeout", "success_threshold")  # noqa: RUF023
    interval: float
    dial_timeout: float
    success_threshold: int

    def __init__(self, interval: float = 2.0, dial_timeout: float = 1.0, success_threshold: int = 1) -> None:
        _set(self, "interval", interval)
        _set(self, "dial_timeout", dial_timeout)
        _set(self, "success_threshold", success_threshold)


class TcpSpec(Record):
    __slots__ = ("host", "port")
    host: str
    port: int

    def __init__(self, host: str, port: int) -> None:
        _set(self, "host", host)
        _set(self, "port", port)


class StatusCodes(Record):
    """Inclusive ranges of HTTP status codes, as written (`200,300-302`)."""

    __slots__ = ("ranges",)
    ranges: tuple[tuple[int, int], ...]

    def __init__(self, ranges: tuple[tuple[int, int], ...] = ((200, 200),)) -> None:
        _set(self, "ranges", ranges)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(lo <= code <= hi for lo, hi in self.ranges)

    @property
    def has_redirect(self) -> bool:
        return any(lo <= 399 and hi >= 300 for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


class HttpSpec(Record):
    __slots__ = ("url", "method", "headers", "expected", "skip_tls_verify", "proxy")  # noqa: RUF023
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    expected: StatusCodes
    skip_tls_verify: bool
    proxy: str | None

    def __init__(  # noqa: PLR0917 (built positionally, as the dataclass it was)
        self,
        url: str,
        method: str = "GET",
        headers: tuple[tuple[str, str], ...] = (),
        expected: StatusCodes = StatusCodes(),  # noqa: B008 (immutable, shared on purpose)
        skip_tls_verify: bool = False,
        proxy: str | None = None,
    ) -> None:
        _set(self, "url", url)
        _set(self, "method", method)
        _set(self, "headers", headers)
        _set(self, "expected", expected)
        _set(self, "skip_tls_verify", skip_tls_verify)
        _set(self, "proxy", proxy)

    @property
    def follow_redirects(self) -> bool:
        # A 3xx in the expected set must be seen, so redirects are then not followed.
        return not self.expected.has_redirect


class IcmpSpec(Record):
    __slots__ = ("host", "read_timeout")
    host: str
    read_timeout: float

    def __init__(self, host: str, read_timeout: float = 1.0) -> None:
        _set(self, "host", host)
        _set(self, "read_timeout", read_timeout)


Spec = TcpSpec | HttpSpec | IcmpSpec

_KINDS: dict[type, Kind] = {TcpSpec: Kind.TCP, HttpSpec: Kind.HTTP, IcmpSpec: Kind.ICMP}


class Target(Record):
    """One thing to wait for. `address` is the display form, with secrets already masked;
    `secrets` are strings that must never reach a log line (nor a repr)."""

    __slots__ = ("name", "address", "spec", "timing", "secrets")  # noqa: RUF023
    _unshown = ("secrets",)
    name: str
    address: str
    spec: Spec
    timing: Timing
    secrets: frozenset[str]

    def __init__(
        self,
        name: str,
        address: str,
        spec: Spec,
        timing: Timing = Timing(),  # noqa: B008 (immutable, shared on purpose)
        secrets: frozenset[str] = frozenset(),
    ) -> None:
        _set(self, "name", name)
        _set(self, "address", address)
        _set(self, "spec", spec)
        _set(self, "timing", timing)
        _set(self, "secrets", secrets)

    @property
    def kind(self) -> Kind:
        return _KINDS[type(self.spec)]

    @property
    def bound(self) -> float:
        """The longest one attempt may take."""
        extra = self.spec.read_timeout if isinstance(self.spec, IcmpSpec) else 0.0
        return self.timing.dial_timeout + extra


class Plan(Record):
    """Everything to wait for, compiled from every source."""

    __slots__ = ("targets", "timeout")
    targets: tuple[Target, ...]
    timeout: float | None  # the overall deadline in seconds; None waits forever

    def __init__(self, targets: tuple[Target, ...], timeout: float | None = None) -> None:
        _set(self, "targets", targets)
        _set(self, "timeout", timeout)
