"""The command line: the only place that picks an exit status."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from portpatrol import __version__
from portpatrol.errors import ConfigError, Problem, SetupError

EXIT_READY = 0
EXIT_CONFIG = 2
EXIT_TIMEOUT = 124

ENVIRONMENT_HELP = """\
environment variables (the original PortPatrol's; an empty variable counts as unset):
  TARGET_ADDRESS        what to wait for: host:port, tcp://host:port, http(s)://host[:port][/path],
                        icmp://host
  TARGET_NAME           name in the logs (default: the host of TARGET_ADDRESS)
  TARGET_CHECK_TYPE     tcp, http, https or icmp (default: from the scheme, else tcp)
  CHECK_INTERVAL        pause after a failed attempt (default: 2s; durations like 500ms, 5s, 1m30s)
  DIAL_TIMEOUT          bound on one whole attempt (default: 1s)
  SUCCESS_THRESHOLD     consecutive successful attempts that make a target ready (default: 1)
  LOG_EXTRA_FIELDS      add target_address, interval, dial_timeout, checker_type, version (default: false)
  LOG_FORMAT            text (default) or json
  HTTP_METHOD           HTTP method (default: GET)
  HTTP_HEADERS          comma-separated Name=value pairs, e.g. Authorization=Bearer token,Accept=text/plain
  HTTP_ALLOW_DUPLICATE_HEADERS  send every value of a header given twice (default: false)
  HTTP_EXPECTED_STATUS_CODES    codes and ranges that mean ready (default: 200), e.g. 200,301-302,500-502
  HTTP_SKIP_TLS_VERIFY  do not verify the server's TLS certificate (default: false)
  HTTP_PROXY, HTTPS_PROXY, NO_PROXY  proxies, as usual (lower-case forms too)
  ICMP_READ_TIMEOUT     how long to wait for the echo reply (default: 1s)

exit status: 0 ready, 2 invalid configuration or checks cannot run, 124 deadline passed,
130 interrupted (SIGINT), 143 terminated (SIGTERM)."""


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM; ends the wait at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError([Problem("arguments", f"{message} (see portpatrol --help)")])


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="portpatrol",
        description="Wait until TCP ports, HTTP endpoints and ICMP hosts are ready.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"portpatrol {__version__}")
    return parser


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        _parser().parse_args(sys.argv[1:] if argv is None else argv)
        return _wait(environ)
    except ConfigError as error:
        for problem in error.problems:
            print(f"portpatrol: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except SetupError as error:
        print(f"portpatrol: {error}", file=sys.stderr)
        return EXIT_CONFIG


def _wait(environ: Mapping[str, str]) -> int:
    from portpatrol import checks
    from portpatrol.logs import LogWriter
    from portpatrol.runner import Runner
    from portpatrol.sources import env

    problems: list[Problem] = []
    settings = env.LogSettings()
    try:
        settings = env.log_settings(environ)
    except ConfigError as error:
        problems += error.problems
    try:
        targets = env.targets(environ)
    except ConfigError as error:
        problems += error.problems
        targets = []
    if not targets and not problems:
        problems.append(
            Problem("TARGET_ADDRESS", "nothing to wait for (set it, e.g. TARGET_ADDRESS=db:5432)")
        )
    if problems:
        raise ConfigError(problems)

    log = LogWriter(sys.stderr, json_lines=settings.format == "json", extra_fields=settings.extra_fields)
    runner = Runner([(target, checks.build(target)) for target in targets], log)
    with _signals_interrupt():
        try:
            runner.run()
        except Interrupted as stop:
            name = signal.Signals(stop.signum).name
            waiting = [item.target.name for item in runner.progress if item.ready_after is None]
            log.write("WARN", f"Interrupted by {name} while waiting for {', '.join(waiting)}")
            return 128 + stop.signum
    return EXIT_READY


def run() -> NoReturn:
    """The console script."""
    sys.exit(main())
