"""The original PortPatrol's single target, from environment variables."""

from __future__ import annotations

from collections.abc import Mapping

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
)

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

    def where(self, key: str) -> str:
        value = self.environ[key]
        return key if key in _SECRET else f"{key}={quote(mask_secrets(value))}"

    def duration(self, key: str, default: float) -> float:
        text = self.get(key)
        return (
            default
            if text is None
            else (self.collector.parse(self.where(key), text, parse_duration) or default)
        )

    def boolean(self, key: str) -> bool:
        text = self.get(key)
        return text is not None and bool(self.collector.parse(self.where(key), text, parse_bool))


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
    type_text = env.get("TARGET_CHECK_TYPE")
    check_type = (
        None
        if type_text is None
        else collector.parse(env.where("TARGET_CHECK_TYPE"), type_text, parse_check_type)
    )
    address = collector.parse(
        env.where("TARGET_ADDRESS"), text, lambda t: parse_address(t, check_type, "TARGET_CHECK_TYPE")
    )
    threshold_text = env.get("SUCCESS_THRESHOLD")
    threshold = (
        None
        if threshold_text is None
        else collector.parse(env.where("SUCCESS_THRESHOLD"), threshold_text, parse_threshold)
    )
    timing = Timing(env.duration("CHECK_INTERVAL", 2.0), env.duration("DIAL_TIMEOUT", 1.0), threshold or 1)
    kind = address.kind if address else intended_kind(text, check_type)

    spec: Spec | None = None
    secrets: frozenset[str] = frozenset()
    if kind is Kind.HTTP:
        method_text = env.get("HTTP_METHOD")
        method = (
            "GET"
            if method_text is None
            else collector.parse(env.where("HTTP_METHOD"), method_text, parse_method)
        )
        headers_text = env.get("HTTP_HEADERS")
        allow = env.boolean("HTTP_ALLOW_DUPLICATE_HEADERS")
        headers = (
            ()
            if headers_text is None
            else collector.parse("HTTP_HEADERS", headers_text, lambda t: parse_headers(t, allow))
        )
        codes_text = env.get("HTTP_EXPECTED_STATUS_CODES")
        expected = (
            StatusCodes()
            if codes_text is None
            else collector.parse(env.where("HTTP_EXPECTED_STATUS_CODES"), codes_text, parse_status_codes)
        )
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

    if address is None or collector.problems:
        raise ConfigError(collector.problems)
    return [target(address, env.get("TARGET_NAME"), timing, spec, secrets)]
