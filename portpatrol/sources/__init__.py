"""Sources turn what a user wrote into typed targets, collecting every problem at once."""

from __future__ import annotations

from portpatrol import __version__
from portpatrol.errors import Problem
from portpatrol.model import HttpSpec, IcmpSpec, Kind, Spec, StatusCodes, Target, TcpSpec, Timing
from portpatrol.sources.values import Address, mask_secrets, parse_address, quote, select_proxy

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms to import; only mypy needs their names
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeVar

    T = TypeVar("T")

USER_AGENT = f"portpatrol/{__version__}"


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


def http_spec(
    address: Address,
    *,
    method: str,
    headers: tuple[tuple[str, str], ...],
    expected: StatusCodes,
    skip_tls_verify: bool,
    environ: Mapping[str, str],
    collector: Collector,
) -> tuple[HttpSpec, frozenset[str]]:
    """The HTTP spec for an address, with the proxy the environment selects for it.
    Returns the secrets it holds (header values, proxy passwords) beside it."""
    assert address.url is not None
    if not any(name.lower() == "user-agent" for name, _ in headers):
        headers = (("User-Agent", USER_AGENT), *headers)
    secrets = frozenset(value for _, value in headers if value and value != USER_AGENT)
    proxy = select_proxy(address.url, environ)
    proxy_url = None
    if proxy is not None:
        key, proxy_url = proxy
        where = f"{key}={quote(mask_secrets(environ[key]))}"
        if proxy_url.partition("://")[0].lower() not in ("http", "https"):
            collector.add(where, "only http:// and https:// proxies are supported (e.g. http://proxy:3128)")
        else:
            try:
                secrets |= parse_address(proxy_url, None, "").secrets
            except ValueError as error:
                collector.add(where, f"not a proxy URL: {error}")
    spec = HttpSpec(address.url, method, headers, expected, skip_tls_verify, proxy_url)
    return spec, secrets


def target(
    address: Address,
    name: str | None,
    timing: Timing,
    spec: Spec | None,
    secrets: frozenset[str] = frozenset(),
) -> Target:
    """A target from its parsed parts; `spec` is needed for HTTP and ICMP, TCP derives it."""
    if spec is None:
        assert address.kind is Kind.TCP
        assert address.port is not None
        spec = TcpSpec(address.host, address.port)
    elif address.kind is Kind.ICMP:
        assert isinstance(spec, IcmpSpec)
    return Target(name or address.host, address.display, spec, timing, secrets | address.secrets)


def distinct_names(targets: list[Target]) -> list[Target]:
    """Names let a reader tell targets apart in the logs: where several share one, each gets
    its port (and an HTTP path) added (`db:5432`, `db:6379`, `api:80/health`), and any still
    shared a number (`api:80 #2`)."""
    if len({item.name for item in targets}) == len(targets):
        return list(targets)  # the usual case, without importing collections (start-up time)
    from collections import Counter

    def with_port(name: str, spec: Spec) -> str:
        if isinstance(spec, TcpSpec):
            return f"{name}:{spec.port}"
        if isinstance(spec, HttpSpec):
            from urllib.parse import urlsplit

            parts = urlsplit(spec.url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            return f"{name}:{port}{parts.path.rstrip('/')}"
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
                names[index] = f"{name} #{seen[name]}" if numbered else with_port(name, item.spec)
                taken.add(names[index])
    return [
        item if name == item.name else Target(name, item.address, item.spec, item.timing, item.secrets)
        for name, item in zip(names, targets, strict=True)
    ]
