"""The original PortPatrol's single target, from environment variables."""

from __future__ import annotations

from portpatrol import kinds
from portpatrol.errors import BadValue, ConfigError
from portpatrol.model import Record, Target, Timing, set_fields
from portpatrol.sources import Collector, settings, target
from portpatrol.text import mask_secrets, quote, utf8_text
from portpatrol.values import parse_backoff_factor, parse_bool, parse_duration, parse_threshold

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms to import; only mypy needs their names
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeVar

    T = TypeVar("T")


class LogSettings(Record):
    __slots__ = ("format", "extra_fields")  # noqa: RUF023
    format: str | None  # text or json; None when not asked for
    extra_fields: bool

    def __init__(self, format: str | None = None, extra_fields: bool = False) -> None:
        set_fields(self, format=format, extra_fields=extra_fields)


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

    def where(self, key: str, secret: bool = False) -> str:
        value = self.environ[key]
        return key if secret else f"{key}={quote(mask_secrets(value))}"

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


def timing(env: _Env) -> Timing:
    """The timing variables: CHECK_INTERVAL, DIAL_TIMEOUT, SUCCESS_THRESHOLD, CHECK_BACKOFF_FACTOR,
    CHECK_MAX_INTERVAL and TARGET_INVERT."""
    threshold = env.parse("SUCCESS_THRESHOLD", parse_threshold)
    factor = env.parse("CHECK_BACKOFF_FACTOR", parse_backoff_factor) or 1.0
    ceiling = env.parse("CHECK_MAX_INTERVAL", parse_duration)
    invert = env.boolean("TARGET_INVERT")
    interval, dial_timeout = env.duration("CHECK_INTERVAL", 2.0), env.duration("DIAL_TIMEOUT", 1.0)
    return Timing(interval, dial_timeout, threshold or 1, factor, ceiling, invert)


def targets(environ: Mapping[str, str]) -> list[Target]:
    """The target the variables describe: none without TARGET_ADDRESS (or TARGET_COMMAND), else
    exactly one."""
    collector = Collector()
    env = _Env(environ, collector)
    text = env.get("TARGET_ADDRESS")
    if text is None:
        return _command(env) if env.get("TARGET_COMMAND") else []
    if env.get("TARGET_COMMAND"):
        collector.add("TARGET_COMMAND", "a target has TARGET_ADDRESS or TARGET_COMMAND, not both (unset one)")
    check_type = env.parse("TARGET_CHECK_TYPE", kinds.parse_type)
    address = env.parse("TARGET_ADDRESS", lambda t: kinds.parse_address(t, check_type, "TARGET_CHECK_TYPE"))
    found_timing = timing(env)
    intended = address.kind if address else kinds.intended_kind(text, check_type)

    spec = None
    if intended is not None:  # the kind's variables are checked even when the address is wrong
        kind = kinds.module(intended.value.lower())
        variables = {key: variable for variable, key in kind.ENV.items()}
        block = {key: env.get(variable) for variable, key in kind.ENV.items() if env.get(variable)}

        def where(error: BadValue) -> str:
            return env.where(variables[str(error.key[0])], secret=not error.quoted)

        written = text if address is None else address.url or text

        def shown() -> str:
            return env.where("TARGET_ADDRESS")

        spec = settings(kind, written, block, environ, collector, where, shown if address else None)

    name = env.parse("TARGET_NAME", lambda t: utf8_text(t, "(e.g. orders-db)"))
    if address is None or spec is None or collector.problems:
        raise ConfigError(collector.problems)
    return [target(address, name, found_timing, spec)]


def _command(env: _Env) -> list[Target]:
    """TARGET_COMMAND's target: a JSON array of words, or words split as a POSIX shell would
    (never run by one); kinds/command.py."""
    from portpatrol.kinds import command

    check_type = env.parse("TARGET_CHECK_TYPE", kinds.parse_type)
    if check_type not in (None, "command"):
        env.collector.add(env.where("TARGET_CHECK_TYPE"), "TARGET_COMMAND makes it a command target")
    found_timing = timing(env)
    spec = env.parse("TARGET_COMMAND", lambda t: command.parse("", {"argv": t}))
    name = env.parse("TARGET_NAME", lambda t: utf8_text(t, "(e.g. migrations)"))
    if spec is None or env.collector.problems:
        raise ConfigError(env.collector.problems)
    return [target(command.target_address(spec.argv, spec.argv, frozenset()), name, found_timing, spec)]
