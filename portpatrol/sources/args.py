"""Targets given as command-line arguments: `portpatrol db:5432 http://api:8080/healthz redis://cache`.

An argument target takes its settings, lowest first, from: the defaults; the environment
variables of its kind (HTTP_METHOD, HTTP_EXPECT_JSON, POSTGRES_QUERY, GRPC_SERVICE...) and the
timing variables (CHECK_INTERVAL, DIAL_TIMEOUT, SUCCESS_THRESHOLD), the same as TARGET_ADDRESS's
target; the options (--method, --header, --expect-json, --interval...). A variable or option
that is not valid is an error (exit 2) even when no target of its kind is given."""

from __future__ import annotations

from portpatrol import kinds
from portpatrol.errors import BadValue, ConfigError, Problem
from portpatrol.model import Target, Timing
from portpatrol.sources import Collector, settings, target
from portpatrol.text import mask_secrets, quote

TYPE_CHECKING = False  # collections.abc costs ~1.5 ms to import; its names are only needed by mypy
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# Options of HTTP(S) argument targets -> key of the http block (cli.py adds them; --help lists them).
HTTP_OPTIONS = {
    "--method": "method",
    "--header": "headers",
    "--expect-status": "expected_status_codes",
    "--body": "body",
    "--expect-body": "expect.body",
    "--expect-json": "expect.json",
    "--max-body": "max_body",
    "--ca-file": "ca_file",
    "--cert-file": "cert_file",
    "--key-file": "key_file",
}
_SECRET_OPTIONS = frozenset({"--header", "--body"})  # never quoted back


def targets(
    texts: Sequence[str],
    timing: Timing,
    environ: Mapping[str, str],
    options: Mapping[str, str | list[str]] | None = None,
) -> list[Target]:
    """One target per argument. `options`: the HTTP options given (option -> value; --header a
    list), which win over the HTTP_ variables."""
    collector = Collector()
    found: list[Target] = []
    for text in texts:
        try:
            address = kinds.parse_address(text, None, "the check type")
        except ValueError as error:  # masking imports re: only for a message, not on every start
            collector.add(f"argument {quote(mask_secrets(text))}", str(error))
            continue
        kind = kinds.module(address.kind.value.lower())
        block, origins = kind_block(kind, environ, options or {})

        def where(error: BadValue, origins: dict[str, str] = origins) -> str:
            return origins.get(str(error.key[0]), "arguments") if error.key else "arguments"

        def address_where(text: str = text) -> str:
            return f"argument {quote(mask_secrets(text))}"

        spec = settings(kind, address.url or text, block, environ, collector, where, address_where)
        if spec is not None:
            found.append(target(address, None, timing, spec))
    problems = list(dict.fromkeys(collector.problems))  # one bad option, many targets: said once
    if options and not any(target.kind.value == "HTTP" for target in found) and not problems:
        given = ", ".join(sorted(options))
        problems.append(Problem(given, "only for http:// and https:// TARGET arguments, and none is given"))
    if problems:
        raise ConfigError(problems)
    return found


def kind_block(
    kind: object, environ: Mapping[str, str], options: Mapping[str, str | list[str]]
) -> tuple[dict[str, object], dict[str, str]]:
    """A kind's block from its variables and (for HTTP) the options, and where each key came from,
    as a problem shows it (`HTTP_METHOD="G T"`, `--method="G T"`; never a header's or body's value)."""
    block: dict[str, object] = {}
    origins: dict[str, str] = {}
    env_keys: dict[str, str] = getattr(kind, "ENV", {})
    secret_keys: frozenset[str] = getattr(kind, "SECRET_KEYS", frozenset())
    for variable, key in env_keys.items():
        text = environ.get(variable)
        if text:
            block[key] = text
            secret = key in secret_keys
            origins[key] = variable if secret else f"{variable}={quote(mask_secrets(text))}"
    if getattr(kind, "NAME", "") == "http":
        for option, key in HTTP_OPTIONS.items():
            value = options.get(option)
            if value is None or value == []:
                continue
            if option == "--header":
                assert isinstance(value, list)
                block[key] = header_text(value)
                origins[key] = option
            else:
                block[key] = value
                origins[key] = option if option in _SECRET_OPTIONS else f"{option}={quote(str(value))}"
    return block, origins


def header_text(values: list[str]) -> str:
    """--header values (`Name: value`, as curl, or `Name=value`) as HTTP_HEADERS writes them.
    A value that holds a comma cannot be written that way: such a header goes in a config file."""
    pieces = []
    for value in values:
        colon, equals = value.find(":"), value.find("=")
        cut = colon if colon >= 0 and (equals < 0 or colon < equals) else equals
        if cut < 0 or "," in value:
            pieces.append(value)  # parse_headers names it: no '=' (or a piece without a name)
        else:
            pieces.append(f"{value[:cut].strip()}={value[cut + 1 :].strip()}")
    return ",".join(pieces)


def environment_timing(environ: Mapping[str, str], collector: Collector) -> Timing:
    """CHECK_INTERVAL, DIAL_TIMEOUT, SUCCESS_THRESHOLD, CHECK_BACKOFF_FACTOR and CHECK_MAX_INTERVAL
    as argument targets take them (the defaults; the options win); each checked, so a wrong one is
    an error even without TARGET_ADDRESS."""
    from portpatrol.values import parse_backoff_factor, parse_duration, parse_threshold

    def where(key: str) -> str:
        return f"{key}={quote(mask_secrets(environ[key]))}"

    interval = dial = threshold = None
    if environ.get("CHECK_INTERVAL"):
        interval = collector.parse(where("CHECK_INTERVAL"), environ["CHECK_INTERVAL"], parse_duration)
    if environ.get("DIAL_TIMEOUT"):
        dial = collector.parse(where("DIAL_TIMEOUT"), environ["DIAL_TIMEOUT"], parse_duration)
    if environ.get("SUCCESS_THRESHOLD"):
        threshold = collector.parse(where("SUCCESS_THRESHOLD"), environ["SUCCESS_THRESHOLD"], parse_threshold)
    factor = ceiling = None
    if environ.get("CHECK_BACKOFF_FACTOR"):
        text = environ["CHECK_BACKOFF_FACTOR"]
        factor = collector.parse(where("CHECK_BACKOFF_FACTOR"), text, parse_backoff_factor)
    if environ.get("CHECK_MAX_INTERVAL"):
        ceiling = collector.parse(where("CHECK_MAX_INTERVAL"), environ["CHECK_MAX_INTERVAL"], parse_duration)
    return Timing(interval or 2.0, dial or 1.0, threshold or 1, factor or 1.0, ceiling)


def check_http_environment(environ: Mapping[str, str]) -> None:
    """The HTTP_ variables checked on their own, for a run whose HTTP targets (if any) did not
    check them: nonsense is an error wherever it is set (exit 2), as the original's was."""
    from portpatrol.kinds import http

    block, origins = kind_block(http, environ, {})
    if not block:
        return
    collector = Collector()

    def where(error: BadValue) -> str:
        return origins.get(str(error.key[0]), "environment")

    settings(http, "http://localhost/", block, {}, collector, where)
    if collector.problems:
        raise ConfigError(collector.problems)
