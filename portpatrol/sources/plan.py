"""The plan: the environment, a config file and the command line's TARGET arguments and options
compiled into one Plan and the log settings, with every problem of every source reported at once."""

from __future__ import annotations

import os

from portpatrol.errors import ConfigError, Problem
from portpatrol.model import Plan, Timing
from portpatrol.sources.env import LogSettings

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms to import; only mypy needs their names
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Protocol

    class Options(Protocol):
        """What the command line gives (its parsed arguments); each HTTP option is read by its
        name in HTTP_OPTION_NAMES (`--expect-status` as `expect_status`), None when not given."""

        targets: list[str]
        config: str | None
        timeout: str | None
        interval: str | None
        dial_timeout: str | None
        backoff_factor: str | None
        max_interval: str | None
        invert: bool
        report: str | None
        workers: int
        jitter: float
        no_env: bool


# The options of HTTP(S) TARGET arguments: the keys of sources.args.HTTP_OPTIONS, which is imported
# only when there are TARGET arguments or such options.
HTTP_OPTION_NAMES: tuple[str, ...] = ("--method", "--header", "--body", "--expect-status", "--expect-body")
HTTP_OPTION_NAMES += ("--expect-json", "--max-body", "--ca-file", "--cert-file", "--key-file")


def compile_plan(
    args: Options, environ: Mapping[str, str], *, validate: bool = False
) -> tuple[Plan, LogSettings]:
    """The plan from every source, and the log settings. Every problem of every source is
    reported at once. `validate` also checks a config file by the published schema itself."""
    from portpatrol import sources
    from portpatrol.sources import env
    from portpatrol.text import cut, mask_secrets, quote, shown_value
    from portpatrol.values import parse_duration

    collector = sources.Collector()
    if args.no_env and not validate:
        collector.add("--no-env", "is for validate only (e.g. portpatrol validate --no-env --config FILE)")
    elif args.no_env:  # the file's shape and values without the environment: no variable is set
        environ = {}
        from portpatrol import tls

        tls.READ_FILES = False  # nor are the CA and certificate files it names mounted here

    def duration(where: str, text: str | None) -> float | None:
        # Shown only when it looks like a mistyped duration: `--timeout "$T" URL` with T empty
        # makes the URL, password and all, the value.
        shown = text and shown_value(text, "0123456789.nsuµμmh +-")
        return (
            None
            if not text
            else collector.parse(f"{where}={shown}" if shown else where, text, parse_duration)
        )

    for option, value, example in (
        ("--timeout", args.timeout, "30s"),
        ("--interval", args.interval, "30s"),
        ("--dial-timeout", args.dial_timeout, "30s"),
        ("--max-interval", args.max_interval, "30s"),
        ("--config", args.config, "/etc/portpatrol/targets.yaml"),
    ):
        # An option given empty is a mistake (`--timeout "$T"` with T unset must not quietly wait
        # forever); an empty variable counts as unset, as every variable of the original.
        if value == "":
            collector.add(f'{option}=""', f"is empty (e.g. {option} {example})")
    option_timeout = duration("--timeout", args.timeout)
    env_timeout = duration("PORTPATROL_TIMEOUT", environ.get("PORTPATROL_TIMEOUT"))
    timeout = option_timeout or env_timeout  # both are checked, though the option wins
    timing = Timing(
        duration("--interval", args.interval) or 2.0,
        duration("--dial-timeout", args.dial_timeout) or 1.0,
        1,
        _backoff_factor(collector, args.backoff_factor),
        duration("--max-interval", args.max_interval),
        args.invert,
    )
    http_options: dict[str, str | list[str]] = {
        option: value
        for option in HTTP_OPTION_NAMES
        if (value := getattr(args, option[2:].replace("-", "_"))) is not None
    }
    if not 1 <= args.workers <= 1024:
        collector.add(f"--workers={cut(str(args.workers), 20)}", "must be from 1 to 1024 (e.g. 48)")
    if not 0 <= args.jitter <= 1:
        collector.add(f"--jitter={args.jitter}", "must be from 0 (off) to 1 (e.g. 0.1)")
    if args.report is not None and args.report != "-":
        from portpatrol.report import writable

        if not writable(args.report):
            # Found now, not after a wait of minutes that then cannot say how it went.
            collector.add(
                f"--report={quote(mask_secrets(args.report))}",
                "cannot be written: its folder must exist and be writable (e.g. --report /tmp/report.json)",
            )
        elif os.path.exists(args.report) and not os.path.isfile(args.report):
            # The report replaces FILE by renaming a new file onto it; a FIFO would also hang the writer.
            why = "is not a regular file (e.g. --report /tmp/report.json)"
            collector.add(f"--report={quote(mask_secrets(args.report))}", why)
    problems = collector.problems
    settings = LogSettings()
    try:
        settings = env.log_settings(environ)
    except ConfigError as error:
        problems += error.problems
    targets = []
    config = args.config or environ.get("PORTPATROL_CONFIG") or None
    try:
        targets += env.targets(environ)
    except ConfigError as error:
        problems += error.problems
    if config:
        from portpatrol.sources import file

        try:
            loaded = file.load(config, environ, check_schema=validate, no_env=args.no_env)
            targets += loaded.targets
            timeout = timeout or loaded.timeout
        except ConfigError as error:
            problems += error.problems
    if args.targets or http_options:
        from portpatrol.sources import args as arguments

        own = arguments.environment_timing(environ, collector)  # the variables, below the options
        timing = Timing(
            timing.interval if args.interval else own.interval,
            timing.dial_timeout if args.dial_timeout else own.dial_timeout,
            own.success_threshold,
            timing.backoff_factor if args.backoff_factor else own.backoff_factor,
            timing.max_interval if args.max_interval else own.max_interval,
            args.invert,
        )
        try:
            targets += arguments.targets(args.targets, timing, environ, http_options)
        except ConfigError as error:
            problems += error.problems
    read = any(target.kind.value == "HTTP" for target in targets)  # its source checked them
    if not read and any(key.startswith("HTTP_") and value for key, value in environ.items()):
        from portpatrol.sources import args as arguments

        try:  # HTTP_ nonsense is an error even when no HTTP target reads it (said once, below)
            arguments.check_http_environment(environ)
        except ConfigError as error:
            problems += error.problems
    problems = list(dict.fromkeys(problems))
    if not targets and not problems:
        problems.append(
            Problem(
                "nothing to wait for",
                "give a TARGET (e.g. portpatrol db:5432), --config FILE, or TARGET_ADDRESS=db:5432",
            )
        )
    if problems:
        raise ConfigError(problems)
    return Plan(tuple(sources.distinct_names(targets)), timeout), settings


def _backoff_factor(collector: Any, text: str | None) -> float:
    from portpatrol.text import quote
    from portpatrol.values import parse_backoff_factor

    if text is None:
        return 1.0
    return collector.parse(f"--backoff-factor={quote(text)}", text, parse_backoff_factor) or 1.0
