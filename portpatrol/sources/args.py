"""Targets given as command-line arguments: `portpatrol db:5432 http://api:8080/healthz icmp://gw`."""

from __future__ import annotations

from portpatrol.errors import ConfigError
from portpatrol.model import IcmpSpec, Kind, Spec, StatusCodes, Target, Timing
from portpatrol.sources import Collector, http_spec, target
from portpatrol.sources.values import mask_secrets, parse_address, quote

TYPE_CHECKING = False  # collections.abc costs ~1.5 ms to import; its names are only needed by mypy
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def targets(texts: Sequence[str], timing: Timing, environ: Mapping[str, str]) -> list[Target]:
    """One target per argument, with the timing of --interval and --dial-timeout and the
    defaults of the env variables otherwise (GET, status 200, ICMP read timeout 1s)."""
    collector = Collector()
    found: list[Target] = []
    for text in texts:
        try:
            address = parse_address(text, None, "the check type")
        except ValueError as error:  # masking imports re: only for a message, not on every start
            collector.add(f"argument {quote(mask_secrets(text))}", str(error))
            continue
        spec: Spec | None = None
        secrets: frozenset[str] = frozenset()
        if address.kind is Kind.HTTP:
            spec, secrets = http_spec(
                address,
                method="GET",
                headers=(),
                expected=StatusCodes(),
                skip_tls_verify=False,
                environ=environ,
                collector=collector,
            )
        elif address.kind is Kind.ICMP:
            spec = IcmpSpec(address.host)
        found.append(target(address, None, timing, spec, secrets))
    if collector.problems:
        raise ConfigError(collector.problems)
    return found
