"""Sources turn what a user wrote into typed targets, collecting every problem at once."""

from __future__ import annotations

from portpatrol import kinds
from portpatrol.errors import BadValue, ConfigError, Problem
from portpatrol.model import Target, Timing

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms to import; only mypy needs their names
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import ModuleType
    from typing import Any, TypeVar

    from portpatrol.address import Address

    T = TypeVar("T")


class Collector:
    """Runs parsers and keeps every failure as a Problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def parse(self, where: str, text: str, parser: Callable[[str], T]) -> T | None:
        try:
            return parser(text)
        except ValueError as error:
            self.problems.append(Problem(where, str(error)))
            return None

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))


def settings(  # noqa: PLR0917 (each source calls it with its own six things)
    kind: ModuleType,
    text: str,
    block: Mapping[str, Any],
    environ: Mapping[str, str],
    collector: Collector,
    where: Callable[[BadValue], str],
    address_where: Callable[[], str] | None = None,
) -> Any:
    """The kind's settings for an address and its block, completed from the environment, or None
    when something is wrong (each problem added, `where` naming the key's place in the source).
    A problem of the address itself is added at `address_where()` (the address as the source
    shows it; a function, as masking imports re, which only a problem may cost): a kind's parse()
    checks more than parse_address() (a Redis /db, a vhost). None means parse_address() failed
    and has reported the address already."""
    try:
        found = kind.parse(text, block)
    except BadValue as error:
        collector.add(where(error), str(error))
        return None
    except ExceptionGroup as group:
        for problem in group.exceptions:
            if isinstance(problem, BadValue):
                collector.add(where(problem), str(problem))
        return None
    except ValueError as error:
        if address_where is not None:
            collector.add(address_where(), str(error))
        return None
    if hasattr(kind, "environment"):
        try:
            found = kind.environment(found, environ)
        except ConfigError as error:
            collector.problems += error.problems
            return None
    return found


def target(
    address: Address, name: str | None, timing: Timing, spec: Any, secrets: frozenset[str] = frozenset()
) -> Target:
    """A target from its parsed parts, with every secret of its address and its settings."""
    secrets |= address.secrets | kinds.module(address.kind.value.lower()).secrets(spec)
    return Target(name or address.host, address.display, spec, timing, secrets)


def distinct_names(targets: list[Target]) -> list[Target]:
    """Names let a reader tell targets apart in the logs: where several share one, each gets
    its port (and an HTTP path) added (`db:5432`, `db:6379`, `api:80/health`), and any still
    shared a number (`api:80 #2`)."""
    if len({item.name for item in targets}) == len(targets):
        return list(targets)  # the usual case, without importing collections (start-up time)
    from collections import Counter

    def with_port(name: str, item: Target) -> str:
        spec = item.spec
        if isinstance(getattr(spec, "port", None), int):
            return f"{name}:{spec.port}"
        if isinstance(getattr(spec, "url", None), str):
            from urllib.parse import urlsplit

            parts = urlsplit(spec.url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            # The path as written (the address shown): `/${SECRET_PATH}`, never its value.
            try:
                path = urlsplit(item.address).path
            except ValueError:
                path = ""
            return f"{name}:{port}{path.rstrip('/')}"
        return name

    names = [item.name for item in targets]
    for numbered in (False, True):
        counts = Counter(names)
        if len(counts) == len(names):
            break
        seen: Counter[str] = Counter()
        taken = set(names)
        for index, (name, item) in enumerate(zip(names, targets, strict=True)):
            if counts[name] > 1:
                seen[name] += 1
                # A number another target already has as its name (`db:5432 #2` written by the
                # user) is skipped: two targets of one name broke the status line and the report.
                while numbered and f"{name} #{seen[name]}" in taken:
                    seen[name] += 1
                names[index] = f"{name} #{seen[name]}" if numbered else with_port(name, item)
                taken.add(names[index])
    return [
        item if name == item.name else item.replace(name=name)
        for name, item in zip(names, targets, strict=True)
    ]
