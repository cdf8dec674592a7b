"""The typed values every source compiles into. No I/O here, and nothing about any one kind."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self


def set_fields(record: object, **values: object) -> None:
    """Assigns the fields of an immutable record, in its __init__."""
    for name, value in values.items():
        object.__setattr__(record, name, value)


class Record:
    """An immutable value: equality, hash and repr from its fields (its __slots__, in order), as
    @dataclass(frozen=True, slots=True) gives, for the records on every pod's start-up path (a TCP
    target from the environment: this module, errors, address, events, kinds/tcp). There,
    `import dataclasses` (it brings inspect, ast, dis, enum, re, typing) measured 34 ms of
    importtime on the benchmark machine against a 19 ms budget for the whole start-up (issue 10:
    2.0x `python -c pass`; docs/performance.md). Records off that path are dataclasses.
    A subclass lists its fields in __slots__, in the order of its __init__ arguments, and assigns
    them in __init__ with set_fields()."""

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


class _KindNames(type):
    def __getattr__(cls, name: str) -> Kind:
        """`Kind.TCP`, `Kind.POSTGRES`: the kind of that name, the same object every time."""
        if name.isupper() and not name.startswith("_"):
            kind = Kind(name)
            setattr(cls, name, kind)  # found directly from now on: sources ask per target
            return kind
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


class Timing(Record):
    """Seconds. `interval` is the pause after a failed attempt; `dial_timeout` bounds one attempt;
    a target is ready after `success_threshold` consecutive successful attempts. After the n-th
    consecutive failure the pause is min(interval * backoff_factor^(n-1), max_interval) (None: no
    cap but a day). `invert`: the target is ready once its check fails (something went away)."""

    __slots__ = (  # noqa: RUF023
        "interval", "dial_timeout", "success_threshold", "backoff_factor", "max_interval", "invert",
    )  # fmt: skip
    interval: float
    dial_timeout: float
    success_threshold: int
    backoff_factor: float
    max_interval: float | None
    invert: bool

    def __init__(  # noqa: PLR0917 (the fields, in order)
        self,
        interval: float = 2.0,
        dial_timeout: float = 1.0,
        success_threshold: int = 1,
        backoff_factor: float = 1.0,
        max_interval: float | None = None,
        invert: bool = False,
    ) -> None:
        set_fields(
            self,
            interval=interval,
            dial_timeout=dial_timeout,
            success_threshold=success_threshold,
            backoff_factor=backoff_factor,
            max_interval=max_interval,
            invert=invert,
        )


class Target(Record):
    """One thing to wait for. `address` is the display form, with secrets already masked;
    `spec` is its kind's Settings; `secrets` are strings that must never reach a log line
    (nor a repr)."""

    __slots__ = ("name", "address", "spec", "timing", "secrets")  # noqa: RUF023
    _unshown = ("secrets",)
    name: str
    address: str
    spec: Any  # the Settings of a kind module: portpatrol.kinds.<name>.Settings
    timing: Timing
    secrets: frozenset[str]

    def __init__(
        self,
        name: str,
        address: str,
        spec: Any,
        timing: Timing = Timing(),  # noqa: B008 (immutable, shared on purpose)
        secrets: frozenset[str] = frozenset(),
    ) -> None:
        set_fields(self, name=name, address=address, spec=spec, timing=timing, secrets=secrets)

    @property
    def kind(self) -> Kind:
        """The kind whose module defines the settings (portpatrol.kinds.<name>)."""
        return Kind(type(self.spec).__module__.rpartition(".")[2].upper())

    @property
    def bound(self) -> float:
        """The longest one attempt may take: dial_timeout, and the settings' own `extra_time`
        (a kind's extra_time, such as a reply's read timeout) where the kind has one."""
        extra: float = getattr(self.spec, "extra_time", 0.0)
        return self.timing.dial_timeout + extra


class Plan(Record):
    """Everything to wait for, compiled from every source."""

    __slots__ = ("targets", "timeout")
    targets: tuple[Target, ...]
    timeout: float | None  # the overall deadline in seconds; None waits forever

    def __init__(self, targets: tuple[Target, ...], timeout: float | None = None) -> None:
        set_fields(self, targets=targets, timeout=timeout)
