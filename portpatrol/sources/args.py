"""Targets given as command-line arguments: `portpatrol db:5432 http://api:8080/healthz icmp://gw`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from portpatrol.errors import ConfigError
from portpatrol.model import IcmpSpec, Kind, Spec, StatusCodes, Target, Timing
from portpatrol.sources import Collector, http_spec, target
from portpatrol.sources.values import mask_secrets, parse_address, quote


def targets(texts: Sequence[str], timing: Timing, environ: Mapping[str, str]) -> list[Target]:
    """One target per argument, with the timing of --interval and --dial-timeout and the
    defaults of the env variables otherwise (GET, status 200, ICMP read timeout 1s)."""
    collector = Collector()
    found: list[Target] = []
    for text in texts:
        where = f"argument {quote(mask_secrets(text))}"
        address = collector.parse(where, text, lambda t: parse_address(t, None, "the check type"))
        if address is None:
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
