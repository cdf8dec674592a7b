"""The original PortPatrol's single target, from environment variables."""

from __future__ import annotations

from portpatrol.errors import ConfigError
from portpatrol.model import IcmpSpec, Kind, Record, Spec, StatusCodes, Target, Timing, _set
from portpatrol.sources import Collector, http_spec, target
from portpatrol.sources.values import (
    intended_kind,
    mask_secrets,
    parse_address,
    parse_bool,
    parse_check_type,
    parse_duration,
    parse_headers,
    parse_method,
    parse_status_codes,
    parse_threshold,
    quote,
    utf8_text,
)

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms to import; only mypy needs their names
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeVar

    T = TypeVar("T")

_SECRET = frozenset({"HTTP_HEADERS"})


class LogSettings(Record):
    __slots__ = ("format", "extra_fields")  # noqa: RUF023
    format: str | None  # text or json; None when not asked for
    extra_fields: bool

    def __init__(self, format: str | None = None, extra_fields: bool = False) -> None:
        _set(self, "format", format)
        _set(self, "extra_fields", extra_fields)


class _Env:
    """Reads variables; an empty variable counts as unset."""

    def __init__(self, environ: Mapping[str, str], collector: Collector) -> None:
        self.environ = environ
        self.collector = collector

    def get(self, key: str) -> str | None:
        return self.environ.get(key) or None

    def parse(self, key: str, parser: Callable[[str], T]) -> T | None:
        """The variable's value parsed, or None when it is unset or does not parse (a problem)."""
        text = self.get(key)
        if text is None:
            return None
        try:
            return parser(text)
        except ValueError as error:  # only now the value is masked and quoted: masking imports re
            self.collector.add(self.where(key), str(error))
            return None

    def where(self, key: str) -> str:
        value = self.environ[key]
        return key if key in _SECRET else f"{key}={quote(mask_secrets(value))}"

    def duration(self, key: str, default: float) -> float:
        return self.parse(key, parse_duration) or default

    def boolean(self, key: str) -> bool:
        return bool(self.parse(key, parse_bool))


def log_settings(environ: Mapping[str, str]) -> LogSettings:
    collector = Collector()
    env = _Env(environ, collector)
    log_format = env.get("LOG_FORMAT")
    if log_format is not None and log_format.lower() not in ("text", "json"):
        collector.add(env.where("LOG_FORMAT"), "not a log format (use text or json)")
    log_format = log_format and log_format.lower()
    extra = env.boolean("LOG_EXTRA_FIELDS")
    if collector.problems:
        raise ConfigError(collector.problems)
    return LogSettings(log_format, extra)


def targets(environ: Mapping[str, str]) -> list[Target]:
    """The target the variables describe: none without TARGET_ADDRESS, else exactly one."""
    collector = Collector()
    env = _Env(environ, collector)
    text = env.get("TARGET_ADDRESS")
    if text is None:
        return []
    check_type = env.parse("TARGET_CHECK_TYPE", parse_check_type)
    address = env.parse("TARGET_ADDRESS", lambda t: parse_address(t, check_type, "TARGET_CHECK_TYPE"))
    threshold = env.parse("SUCCESS_THRESHOLD", parse_threshold)
    timing = Timing(env.duration("CHECK_INTERVAL", 2.0), env.duration("DIAL_TIMEOUT", 1.0), threshold or 1)
    kind = address.kind if address else intended_kind(text, check_type)

    spec: Spec | None = None
    secrets: frozenset[str] = frozenset()
    if kind is Kind.HTTP:
        method = env.parse("HTTP_METHOD", parse_method)
        allow = env.boolean("HTTP_ALLOW_DUPLICATE_HEADERS")
        headers = env.parse("HTTP_HEADERS", lambda t: parse_headers(t, allow))
        expected = env.parse("HTTP_EXPECTED_STATUS_CODES", parse_status_codes)
        skip_tls_verify = env.boolean("HTTP_SKIP_TLS_VERIFY")
        if address is None:  # the address has its own problem; the variables above are checked
            raise ConfigError(collector.problems)
        spec, secrets = http_spec(
            address,
            method=method or "GET",
            headers=headers or (),
            expected=expected or StatusCodes(),
            skip_tls_verify=skip_tls_verify,
            environ=environ,
            collector=collector,
        )
    elif kind is Kind.ICMP:
        read_timeout = env.duration("ICMP_READ_TIMEOUT", 1.0)
        spec = IcmpSpec(address.host, read_timeout) if address else None

    name = env.parse("TARGET_NAME", lambda t: utf8_text(t, "(e.g. orders-db)"))
    if address is None or collector.problems:
        raise ConfigError(collector.problems)
    return [target(address, name, timing, spec, secrets)]
