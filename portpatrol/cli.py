"""The command line: the only place that picks an exit status or execs."""

from __future__ import annotations

import os
import sys

from portpatrol import __version__
from portpatrol.errors import ConfigError, Problem, SetupError
from portpatrol.sources.plan import compile_plan

TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    import argparse
    import signal as _signal  # the same names as below, with types
    from collections.abc import Mapping, Sequence
    from types import FrameType
    from typing import NoReturn

    from portpatrol.model import Plan
    from portpatrol.sources.env import LogSettings
else:  # the C module under signal, which imports enum: ~4 ms of every pod's start-up
    import _signal

# With the main thread and at most 15 name lookups, a default run stays within 64 OS threads.
DEFAULT_WORKERS = 48

EXIT_READY = 0
EXIT_ERROR = 1  # the wait ended, but what it had to leave behind (the report) could not be
EXIT_CONFIG = 2
EXIT_TIMEOUT = 124
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

USAGE = """\
portpatrol [options] [TARGET ...] [-- COMMAND [ARG ...]]
       portpatrol validate [options] [TARGET ...]
       portpatrol schema"""

DESCRIPTION = """\
Wait until TCP ports, HTTP endpoints and ICMP hosts are ready, then exit 0, or, with
-- COMMAND, become COMMAND (same PID; its exit status is yours).

Targets come from three sources, combined: TARGET arguments (db:5432, tcp://db:5432,
http://api:8080/healthz, icmp://gateway), a YAML file (--config), and the original
PortPatrol's environment variables (TARGET_ADDRESS and friends, below).

commands:
  validate   compile every source, print the resolved plan on standard output, touch no network
  schema     print the JSON Schema of the config file"""

ENVIRONMENT_HELP = """\
environment variables (the original PortPatrol's; an empty variable counts as unset):
  TARGET_ADDRESS        what to wait for: host:port, tcp://host:port, http(s)://host[:port][/path],
                        icmp://host, postgres://, mysql://, redis(s)://, amqp(s)://, nats://,
                        memcached://, grpc(s)://, dns:NAME, dns://SERVER/NAME?type=A, file:///path,
                        unix:///path
  TARGET_NAME           name in the logs (default: the host of TARGET_ADDRESS)
  TARGET_CHECK_TYPE     tcp, http, https, icmp, grpc... (default: from the scheme, else tcp)
  CHECK_INTERVAL        pause after a failed attempt (default: 2s; durations like 500ms, 5s, 1m30s)
                        (it, DIAL_TIMEOUT, SUCCESS_THRESHOLD and the HTTP_ variables apply to
                        TARGET arguments too; options win)
  DIAL_TIMEOUT          bound on one whole attempt (default: 1s)
  SUCCESS_THRESHOLD     consecutive successful attempts that make a target ready (default: 1)
  CHECK_BACKOFF_FACTOR  stretch the pause by this after each failure in a row (default: 1, no backoff)
  CHECK_MAX_INTERVAL    the longest pause backoff reaches (default: 1 day)
  TARGET_INVERT         true: wait for the target to go away, ready once its check fails
  TARGET_COMMAND        a command target instead of TARGET_ADDRESS: ready when it exits 0, e.g.
                        '["pg_isready", "-h", "db"]' (a JSON array) or pg_isready -h db (split, no shell)
  LOG_EXTRA_FIELDS      add target_address, interval, dial_timeout, checker_type, version (default: false)
  LOG_FORMAT            text or json (default: text; a live status line on a terminal)
  HTTP_METHOD           HTTP method (default: GET)
  HTTP_HEADERS          comma-separated Name=value pairs, e.g. Authorization=Bearer token,Accept=text/plain
  HTTP_ALLOW_DUPLICATE_HEADERS  send every value of a header given twice (default: false)
  HTTP_EXPECTED_STATUS_CODES    codes and ranges that mean ready (default: 200), e.g. 200,301-302,500-502
  HTTP_SKIP_TLS_VERIFY  do not verify the server's TLS certificate (default: false)
  HTTP_BODY             request body
  HTTP_EXPECT_BODY      a regular expression the body must match
  HTTP_EXPECT_JSON      JSON conditions, e.g. {"$.status": "UP"} (docs/http.md)
  HTTP_MAX_BODY         read at most this much of the body (default: 1MiB)
  HTTP_CA_FILE, HTTP_CERT_FILE, HTTP_KEY_FILE  CA bundle to trust, client certificate and key
  HTTP_FOLLOW_REDIRECTS, HTTP_MAX_REDIRECTS    follow redirects (default: true, at most 10)
  GRPC_SERVICE, GRPC_CA_FILE, GRPC_CERT_FILE, GRPC_KEY_FILE, GRPC_SKIP_TLS_VERIFY  (docs/grpc.md)
  HTTP_PROXY, HTTPS_PROXY, NO_PROXY  proxies, as usual (lower-case forms too)
  ICMP_READ_TIMEOUT     how long to wait for the echo reply (default: 1s)
  DNS_EXPECT, DNS_MATCH  dns targets: comma-separated values that must all be answered; a regex one must match
  FILE_NON_EMPTY, FILE_CONTAINS  file targets: ready when non-empty; when a regex is found in the first MiB
  PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT, POSTGRES_QUERY  (docs/databases.md)
  MYSQL_PWD, MYSQL_QUERY, MYSQL_SSL_MODE, MYSQL_SSL_CA  (docs/databases.md)
  REDIS_USER, REDIS_PASSWORD (or REDISCLI_AUTH), REDIS_CA_FILE, REDIS_SKIP_TLS_VERIFY
  NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CA_FILE, NATS_SKIP_TLS_VERIFY
  AMQP_USER, AMQP_PASSWORD, AMQP_VHOST, AMQP_CA_FILE, AMQP_SKIP_TLS_VERIFY  (docs/queues-and-caches.md)
  PORTPATROL_CONFIG     the config file, as --config
  PORTPATROL_TIMEOUT    the overall deadline, as --timeout

exit status: 0 ready (or COMMAND's status), 1 the report cannot be written or the machine
refuses the threads or files the wait needs, 2 invalid configuration or checks cannot run,
124 deadline passed, 126 COMMAND not executable, 127 COMMAND not found,
130 interrupted (SIGINT), 143 terminated (SIGTERM)."""


SIGNAL_NAMES: dict[int, str] = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM"}


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM; ends the wait at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        argv: Sequence[str] = ()  # what is parsed: its values are taken out of argparse's messages

        def error(self, message: str) -> NoReturn:
            from portpatrol.text import cut, printable

            # argparse echoes an unknown option raw and an invalid value whole: neither is shown (an
            # unquoted empty variable makes a URL with its password an option's value), and what
            # is left is escaped and cut, so it can neither break the line nor flood it.
            message = printable(cut(_without_values(message, self.argv), 200))
            raise ConfigError([Problem("arguments", f"{message} (see portpatrol --help)")])

    parser = Parser(
        prog="portpatrol",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("targets", nargs="*", metavar="TARGET", help="an address to wait for, in any TARGET_ADDRESS form")
    add("--config", metavar="FILE", help="a YAML file of targets (env: PORTPATROL_CONFIG)")
    add("--timeout", metavar="DURATION", help="give up after this long, exit 124 (env: PORTPATROL_TIMEOUT)")
    add(
        "--interval",
        metavar="DURATION",
        help="pause after a failed attempt, for TARGET arguments (default: 2s)",
    )
    add("--dial-timeout", metavar="DURATION", help="bound on one attempt, for TARGET arguments (default: 1s)")
    add("--invert", action="store_true", help="wait for TARGET arguments to go away (their check to fail)")
    add(
        "--backoff-factor",
        metavar="N",
        help="stretch the pause by N per failure in a row (default: 1)",
    )
    add("--max-interval", metavar="DURATION", help="the longest pause backoff reaches (default: 1 day)")
    add("--report", metavar="FILE", help="write a JSON summary per target to FILE when done (- for stdout)")
    add(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help="attempts made at the same time (default: 48)",
    )
    add(
        "--jitter",
        type=float,
        default=0.1,
        metavar="FRACTION",
        help="stretch pauses by up to this (default: 0.1)",
    )
    add(
        "--no-env",
        action="store_true",
        help="validate only: check a config file without the environment (an unset ${VAR} is allowed)",
    )
    add("--version", action="version", version=f"portpatrol {__version__}")
    _http_options(parser)
    return parser


HTTP_OPTIONS_HELP = """\
For every http:// and https:// TARGET argument (a config file sets these per target). They win over
the HTTP_ variables, which apply to TARGET arguments too (as CHECK_INTERVAL, DIAL_TIMEOUT and
SUCCESS_THRESHOLD do, below --interval and --dial-timeout). A value that is not valid is an
error (exit 2) even when no target of its kind is given; an option without an HTTP target too."""


def _http_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP options", HTTP_OPTIONS_HELP)
    add = group.add_argument
    add("--method", metavar="METHOD", help="request method (default: GET; env HTTP_METHOD)")
    add(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="a request header, repeatable (env HTTP_HEADERS); values never shown",
    )
    add("--body", metavar="TEXT", help="request body (env HTTP_BODY)")
    add("--expect-status", metavar="CODES", help="codes that mean ready, e.g. 200-299 (default: 200)")
    add("--expect-body", metavar="REGEX", help="the body must match (env HTTP_EXPECT_BODY)")
    add(
        "--expect-json",
        metavar="CONDITIONS",
        help="""JSON conditions, e.g. '{"$.status": "UP"}' (env HTTP_EXPECT_JSON; docs/http.md)""",
    )
    add("--max-body", metavar="SIZE", help="read at most this much body (default: 1MiB; env HTTP_MAX_BODY)")
    add("--ca-file", metavar="FILE", help="trust this CA bundle instead of the system's (env HTTP_CA_FILE)")
    add("--cert-file", metavar="FILE", help="client certificate, PEM (env HTTP_CERT_FILE)")
    add("--key-file", metavar="FILE", help="key of --cert-file, PEM (env HTTP_KEY_FILE)")


class _Defaults:
    """The parsed arguments when there are none: what argparse would give."""

    targets: list[str] = []  # noqa: RUF012 (never changed)
    config = timeout = interval = dial_timeout = report = backoff_factor = max_interval = None
    invert = False
    workers = DEFAULT_WORKERS
    jitter = 0.1
    no_env = False
    method = header = body = expect_status = expect_body = expect_json = max_body = None
    ca_file = cert_file = key_file = None


def _arguments(argv: list[str]) -> argparse.Namespace:
    """The parsed arguments. Without any (the initContainer case) argparse is not even imported:
    start-up time is what every pod pays."""
    if argv:
        parser = _parser()
        parser.argv = argv  # type: ignore[attr-defined]
        return parser.parse_intermixed_args(argv)
    return _Defaults()  # type: ignore[return-value]


def _without_values(message: str, argv: Sequence[str]) -> str:
    """argparse's message with no argument's value in it: `--bogus=VALUE` -> `--bogus=…`, a
    rejected value (`invalid int value: 'VALUE'`) dropped, any other argument quoted -> `…`."""
    import re

    message = re.sub(r"(invalid [\w ]+ value|ignored explicit argument):? .*", r"\1", message, flags=re.S)
    for arg in sorted(set(argv), key=len, reverse=True):
        name, eq, _ = arg.partition("=")
        option = re.fullmatch(r"--?[A-Za-z0-9][A-Za-z0-9-]*", name) is not None
        shown = arg if option and not eq else f"{name}=…" if option else "…"
        message = re.sub(rf"(?<!\S){re.escape(arg)}(?!\S)", shown.replace("\\", "\\\\"), message)
    if "@" in message or "://" in message:  # a value argparse quoted in a way not foreseen here
        return "an argument is not valid"
    return message


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    try:
        if argv[:1] == ["schema"]:
            return _schema(argv[1:])
        validate = argv[:1] == ["validate"]
        args = _arguments(argv[1:] if validate else argv)
        if command is not None and (validate or not command):
            raise ConfigError(
                [Problem("arguments", "-- must be followed by a COMMAND, e.g. -- python app.py")]
            )
        if command is not None and not command[0]:  # execve refuses it, after the whole wait
            raise ConfigError([Problem("arguments", "the COMMAND after -- is empty (e.g. -- python app.py)")])
        plan, settings = compile_plan(args, environ, validate=validate)
        if validate:
            return _validate(plan)
        status = _wait(plan, settings, args)
    except ConfigError as error:
        for problem in error.problems:
            _say(f"portpatrol: {problem}")  # exit 2 even when nobody reads it
        return EXIT_CONFIG
    except SetupError as error:
        _say(f"portpatrol: {error}")
        return EXIT_CONFIG
    if status != EXIT_READY or not command:
        return status
    return _exec(command, environ)


def _schema(rest: list[str]) -> int:
    if rest:
        raise ConfigError([Problem("arguments", "schema takes no arguments (usage: portpatrol schema)")])
    from portpatrol.schema import schema_text

    _print_out(schema_text())
    return EXIT_READY


def _print_out(text: str) -> None:
    """Writes validate's and schema's output. A full disk or a failing device is one line and
    exit 2, not a traceback; a reader that left (`| head`) is run()'s business."""
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:  # a locale that cannot show every character (PYTHONIOENCODING=ascii)
            encoding = sys.stdout.encoding or "ascii"
            sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding))
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else exit flushes it again
        raise SetupError(f"standard output: cannot write: {error.strerror or error}") from None


def _say(line: str) -> None:
    """A line on standard error. A reader that has gone must not change the exit status (a
    BrokenPipeError would end it as 141): the line is lost, and later writes go nowhere."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        try:  # noqa: SIM105 (contextlib costs start-up); else the last flush of stderr exits 120
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
        except (OSError, ValueError):
            pass


def _validate(plan: Plan) -> int:
    """The resolved plan as a table on standard output; nothing touches the network."""
    from portpatrol import kinds
    from portpatrol.text import printable, scrub
    from portpatrol.values import format_duration

    rows: list[list[str]] = [["NAME", "TYPE", "ADDRESS", "INTERVAL", "DIAL_TIMEOUT", "DETAILS"]]
    for target in plan.targets:
        spec, timing = target.spec, target.timing
        described = kinds.of(target).describe(spec)
        details = [described] if described else []
        if timing.success_threshold > 1:
            details.append(f"{timing.success_threshold} {'failures' if timing.invert else 'successes'}")
        if timing.invert:
            details.insert(0, "invert: ready once gone")
        if timing.backoff_factor > 1 or timing.max_interval is not None:
            ceiling = "1 day" if timing.max_interval is None else format_duration(timing.max_interval)
            details.append(f"backoff x{timing.backoff_factor:g} up to {ceiling}")
        row = [target.name, target.kind.value, target.address, format_duration(timing.interval)]
        row += [format_duration(timing.dial_timeout), ", ".join(details)]
        # The address is masked by position already, and the type and durations are ours: scrubbing
        # them of a short secret turned `1s` into `***s`. A name may hold \n or ESC.
        row[0], row[5] = scrub(row[0], target.secrets), scrub(row[5], target.secrets)
        rows.append([printable(cell) for cell in row])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    deadline = "no deadline" if plan.timeout is None else f"deadline {format_duration(plan.timeout)}"
    count = len(plan.targets)
    lines = [f"{count} target{'s' if count != 1 else ''}, {deadline}"]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    _print_out("\n".join(lines) + "\n")
    return EXIT_READY


def _wait(plan: Plan, settings: LogSettings, args: argparse.Namespace) -> int:
    from portpatrol import kinds
    from portpatrol.logs import LogWriter, StatusLine
    from portpatrol.runner import Runner

    output: LogWriter | StatusLine
    if settings.format is None and sys.stderr.isatty():
        output = StatusLine(sys.stderr)
    else:
        output = LogWriter(
            sys.stderr, json_lines=settings.format == "json", extra_fields=settings.extra_fields
        )
    runner = Runner(
        [(target, kinds.build(target)) for target in plan.targets],
        output,
        workers=args.workers,
        jitter=args.jitter,
        idle=output.flush,
    )
    try:
        status = EXIT_READY if runner.run(plan.timeout) else EXIT_TIMEOUT
        output.flush()
    except Interrupted as stop:
        names = [item.target.name for item in runner.progress if item.ready_after is None]
        waiting = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        output.write("WARN", f"Interrupted by {SIGNAL_NAMES[stop.signum]} while waiting for {waiting}")
        status = 128 + stop.signum
    except (OSError, RuntimeError, MemoryError) as error:
        output.write("ERROR", f"cannot go on waiting: {_refused(error)}")
        status = EXIT_ERROR
    if args.report:
        from portpatrol import report

        written = report.write(args.report, runner.progress, status, print_out=_print_out, say=_say)
        if not written and status == EXIT_READY:
            return EXIT_ERROR  # a wait that cannot say how it went is no success (nor a COMMAND run)
    return status


def _refused(error: OSError | RuntimeError | MemoryError) -> str:
    """What the machine refused the wait (a thread, a file, memory), and the limit to raise; any
    other error is a bug and keeps its traceback."""
    if isinstance(error, RuntimeError) and "thread" not in str(error):
        raise error
    if isinstance(error, RuntimeError):  # `can't start new thread`: no memory for a stack, or no process
        return "cannot start a thread (raise ulimit -v or ulimit -u, or give fewer --workers)"
    if not isinstance(error, OSError):
        return "out of memory (raise ulimit -v)"
    import errno

    why = error.strerror or str(error)
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return f"{why} (raise ulimit -n, or give fewer targets or --workers)"
    return why


def _exec(command: list[str], environ: Mapping[str, str]) -> int:
    """Become COMMAND: same PID, its exit status is ours. Returns only when that fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    for ignored in (_signal.SIGPIPE, _signal.SIGXFSZ):  # Python ignores both; ignoring survives exec
        _signal.signal(ignored, _signal.SIG_DFL)
    try:
        os.execvpe(command[0], command, dict(environ))  # noqa: S606 (the user's own command, as given)
    except OSError as error:
        from portpatrol.text import cut, printable

        shown = printable(cut(command[0], 200))
        if isinstance(error, FileNotFoundError):
            print(f"portpatrol: {shown}: command not found", file=sys.stderr)
            return EXIT_NOT_FOUND
        print(f"portpatrol: {shown}: cannot execute: {error.strerror}", file=sys.stderr)
        return EXIT_CANNOT_EXECUTE


def run() -> NoReturn:
    """The console script. SIGINT and SIGTERM end it at once, whatever it is doing."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    for name in ("stdout", "stderr"):  # started with >&- or 2>&-: write nowhere rather than crash
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (for the process)
    try:
        for signum in SIGNAL_NAMES:
            _signal.signal(signum, interrupt)
        status = main()
    except Interrupted as stop:
        status = 128 + stop.signum
    except BrokenPipeError:  # `portpatrol validate | head`: the reader left; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 128 + _signal.SIGPIPE
    sys.exit(status)
