"""Targets given as command-line arguments: `portpatrol db:5432 http://api:8080/healthz icmp://gw`."""

from __future__ import annotations

from portpatrol import kinds
from portpatrol.errors import BadValue, ConfigError
from portpatrol.model import Target, Timing
from portpatrol.sources import Collector, settings, target
from portpatrol.text import mask_secrets, quote

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
            address = kinds.parse_address(text, None, "the check type")
        except ValueError as error:  # masking imports re: only for a message, not on every start
            collector.add(f"argument {quote(mask_secrets(text))}", str(error))
            continue

        def where(error: BadValue, text: str = text) -> str:
            return f"argument {quote(mask_secrets(text))}"  # no block: never reached

        kind = kinds.module(address.kind.value.lower())
        spec = settings(
            kind, address.url or text, {}, environ, collector, where, lambda: where(BadValue((), ""))
        )
        if spec is not None:
            found.append(target(address, None, timing, spec))
    if collector.problems:
        raise ConfigError(collector.problems)
    return found
