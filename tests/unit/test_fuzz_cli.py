"""Near-miss input through `portpatrol validate`, in-process: arguments, environment variables and config
files built from the real keys and values with one thing wrong (a misspelt key, a wrong type, a huge or
non-finite number, a stray control character or undecodable byte, a `${VAR}` that is unset or holds
bad bytes). validate compiles every source and touches no network, so each example is a few ms.

The contract, for every example: main() returns 0 or 2 and raises nothing. On 2, every line on
stderr is `portpatrol: ` and one problem, with no character that could break or drive the line, and
bounded in length however big the input. On 0, the plan on stdout is UTF-8 a strict stream can write,
with nothing that breaks a line.

Pure random bytes rarely get past the first check; these strategies are close to valid on purpose.
The bugs they found are regression-tested by name in test_hostile_input.py."""

from __future__ import annotations

import contextlib
import copy
import io
import re
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from portpatrol import cli, kinds
from portpatrol.cli import main
from portpatrol.errors import SetupError
from portpatrol.model import Plan

# Characters that end a line or drive a terminal: C0, DEL, C1 (NEL among them), U+2028/9.
BREAKERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
LONGEST_LINE = 1_500  # a line names where (a path, a JSON path of cut keys) and cuts values at 80

# --------------------------------------------------------------------------- values

odd = st.sampled_from(
    [
        *("", " ", "\t", "\n", "\x01", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u200b", "\ufeff"),
        *("\udcff", "\udc80x", "é", "١", "１", "𝟏", "İ", "\U0001f600", "ﬀ"),
        *("${X}", "${X:-1s}", "${UNSET}", "${UNSET:-}", "$${", "${", "${1}", "${X:-${X}}", "}", "${BAD}"),
        *("nan", ".nan", "inf", "1e309", "0", "-0", "0x1F", "1_000", "true", "yes", "on", "~", "null"),
        *("a" * 5_000, "9" * 5_000 + "s"),
    ]
)
durations = st.sampled_from(
    [
        *("2s", "500ms", "1m30s", ".5s", "1.s", "1.5h", "8760h", "8761h", "9" * 30 + "h", "0s", "1ns"),
        *("0.0000000001s", "1µs", "1μs", "1 s", " 1s", "1s ", "1S", "1sec", "1", "1e3s", "-1s", "１s"),
        *("1s1s", "1m30", "${X}", "${X}s", "1${X}", "${UNSET:-2s}", "${UNSET:-}", "$${X}", "${X", ".s"),
    ]
)
numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, 1, 3, 1000, 1001, -1, 3.0, 3.5, 1e308, 2**63, 200, 99, 600, True, False]),
    st.floats(allow_nan=False, allow_infinity=False),
)
words = st.text(st.characters(codec="utf-8") | st.sampled_from("\udcff\udc80"), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), numbers, durations, odd, words)
leaves = st.one_of(
    scalars,
    st.just([]),
    st.just({}),
    st.lists(scalars, max_size=2),
    st.dictionaries(words, scalars, max_size=2),
)
addresses = st.one_of(
    st.sampled_from(
        [
            *("127.0.0.1:1", "tcp://127.0.0.1:1", "http://127.0.0.1:1/x", "https://[::1]:1/", "[::1]:1"),
            *("icmp://127.0.0.1", "icmp://[::1]", "127.0.0.1", "localhost:0", "localhost:65536", "1:1"),
            *("http://127.0.0.1:1/\udcff", "http://\udcff/", "\udcff:1", "http://u:p@127.0.0.1:1/?token=a"),
            *("http://127.0.0.1:${PORT}/", "${X}:1", "http://${UNSET:-127.0.0.1}:1/", "http://[::1"),
            *("tcp://[::1]:1/x", "HTTP://127.0.0.1", "ftp://127.0.0.1:1", "icmp://127.0.0.1:1", "http://:1/"),
            *("[fe80::1%eth0]:1", "127.0.0.1:١", "http://127.0.0.1:0/", "http://127.0.0.1:1 /", "::1:1"),
            *(
                "http://éxample.invalid/",
                "a" * 300 + ".invalid:1",
                "icmp://",
                "tcp://",
                "http://",
                "icmp://[]",
            ),
            *("tcp://@127.0.0.1:1", "http://@/", "http://127.0.0.1:1/" + "x" * 9_000),
        ]
    ),
    odd,
    words,
)


def misspelt(key: str) -> st.SearchStrategy[str]:
    """The key, mostly, or a near miss of it."""
    misses = [key.upper(), key + "s", key[:-1], key.replace("_", "-"), " " + key, key + "\u200b", "${X}", ""]
    return st.one_of(st.just(key), st.just(key), st.sampled_from(misses))


# --------------------------------------------------------------------------- config documents

http_blocks = st.fixed_dictionaries(
    {},
    optional={
        "method": st.one_of(st.sampled_from(["GET", "HEAD", "get", "G ET", "", "${X}", "GÉT"]), leaves),
        "headers": st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from(["Authorization", "A", "a b", "", "${X}", "É", "Host"]), words),
                st.one_of(st.sampled_from(["v", "${X}", "${TOKEN}", "café", "a\nb", "", " "]), scalars),
                max_size=3,
            ),
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"name": st.one_of(st.just("A"), scalars), "value": scalars}
                ),
                max_size=3,
            ),
            leaves,
        ),
        "allow_duplicate_headers": st.one_of(st.booleans(), leaves),
        "expected_status_codes": st.one_of(
            st.sampled_from(
                ["200", "200,301-302", "600", "99", "302-301", "200-", ",", " 200 ", "２００", "${X}"]
            ),
            numbers,
            leaves,
        ),
        "skip_tls_verify": st.one_of(st.booleans(), leaves),
        "bogus": leaves,
    },
)
icmp_blocks = st.fixed_dictionaries({}, optional={"read_timeout": st.one_of(durations, leaves), "x": leaves})
TARGET_KEYS = {
    "name": st.one_of(words, odd, leaves),
    "type": st.one_of(st.sampled_from(["tcp", "http", "https", "icmp", "TCP", "udp", ""]), leaves),
    "interval": st.one_of(durations, leaves),
    "dial_timeout": st.one_of(durations, leaves),
    "success_threshold": st.one_of(numbers, st.sampled_from(["3", "1000", "0", "${X}"]), leaves),
    "http": st.one_of(http_blocks, leaves),
    "icmp": st.one_of(icmp_blocks, leaves),
}


@st.composite
def targets(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 12)) == 0:
        return draw(leaves)
    entry: dict[object, object] = {}
    if draw(st.integers(0, 8)):
        entry[draw(misspelt("address"))] = draw(addresses)
    for key, values in TARGET_KEYS.items():
        if draw(st.integers(0, 3)) == 0:
            entry[draw(misspelt(key))] = draw(values)
    return entry


defaults = st.fixed_dictionaries(
    {},
    optional={
        "interval": st.one_of(durations, leaves),
        "dial_timeout": st.one_of(durations, leaves),
        "success_threshold": st.one_of(numbers, leaves),
        "intervall": durations,  # the misspelling that crashed (3da972f)
        "dial-timeout": durations,
        "read_timeout": durations,
        "http": http_blocks,
    },
)
documents = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "targets": st.one_of(st.lists(targets(), max_size=4), leaves),
            "target": st.lists(targets(), max_size=1),
            "timeout": st.one_of(durations, leaves),
            "defaults": st.one_of(defaults, leaves),
            "defualts": leaves,
        },
    ),
    leaves,
)

# --------------------------------------------------------------------------- environment and arguments

VARIABLES = [
    *("TARGET_ADDRESS", "TARGET_NAME", "TARGET_CHECK_TYPE", "CHECK_INTERVAL", "DIAL_TIMEOUT"),
    *("SUCCESS_THRESHOLD", "LOG_EXTRA_FIELDS", "LOG_FORMAT", "HTTP_METHOD", "HTTP_HEADERS"),
    *("HTTP_ALLOW_DUPLICATE_HEADERS", "HTTP_EXPECTED_STATUS_CODES", "HTTP_SKIP_TLS_VERIFY"),
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY"),
    *("ICMP_READ_TIMEOUT", "PORTPATROL_TIMEOUT"),
]
variable_values = st.one_of(
    addresses,
    durations,
    odd,
    words,
    st.sampled_from(
        [
            *("tcp", "http", "icmp", "HTTPS", "text", "json", "JSON", "true", "1", "T", "yes", "3", "1001"),
            *("200,301-302", "A=b,c=d", "A=b,A=c", "=x", "A", "A=\udcff", "A=café", "A=" + "b" * 9_000),
            *("*", "http://127.0.0.1:3128", "socks5://127.0.0.1:1", "127.0.0.1:3128", "http://[::1"),
            *(
                "http://u:\udcff@127.0.0.1:1",
                "http://\udcff:1",
                ".invalid",
                "[::1]:1,127.0.0.0/8",
                "G\udcffT",
            ),
        ]
    ),
)
environments = st.dictionaries(st.sampled_from(VARIABLES), variable_values, max_size=6).flatmap(
    lambda chosen: st.fixed_dictionaries(
        {},
        optional={
            "X": variable_values,
            "TOKEN": variable_values,
            "PORT": st.sampled_from(["1", "0", "x", "\udcff", ""]),
            "BAD": st.sampled_from(["\udcff", "a\udc80b"]),
        },
    ).map(lambda interpolated: {**chosen, **interpolated})
)
option_values = st.sampled_from(
    [
        *("1", "0", "1024", "1025", "1e9", "nan", "inf", "-0.0", "1.0", "0x10", "１", "٣", "1_0", " 5"),
        *("+5", "-5", "9" * 5_000, "9" * 4_000, "1e-400", "infinity", "NaN", "-inf"),
    ]
)
options = st.one_of(
    st.tuples(st.sampled_from(["--interval", "--dial-timeout", "--timeout"]), st.one_of(durations, odd)),
    st.tuples(st.sampled_from(["--workers", "--jitter"]), st.one_of(option_values, odd)).map(
        lambda pair: (f"{pair[0]}={pair[1]}",) if pair[1].startswith("-") else pair
    ),
    st.tuples(st.sampled_from(["--confi", "--w", "--j=0", "--in=1s", "--d=1s", "--ti=1s", "--version"])),
    # Unknown options, which argparse echoed raw.
    st.tuples(
        st.sampled_from(["--bogus", "--bo\ngus", "--x\x1b[2J", "--y\u2028", "--z\x85", "--" + "q" * 5_000])
    ),
)


@st.composite
def argument_lists(draw: st.DrawFn) -> list[str]:
    words_: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            word = draw(st.one_of(addresses, odd))
            words_.append("x" + word if word.startswith("-") else word)
        else:
            words_.extend(draw(options))
    return words_


# --------------------------------------------------------------------------- the contract

_FOLDER: list[Path] = []


def config_file(text: str) -> str:
    """One scratch file for every example (function-scoped fixtures do not mix with @given)."""
    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="pp-fuzz-")))
    path = _FOLDER[0] / "pp.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    return str(path)


_print_plan = cli._validate


def _build_then_print(plan: Plan) -> int:
    """What validate accepts, the wait can start: every check builds (an HTTP_PROXY httpx.URL could
    not parse crashed here, after validate had said yes). Building touches no network."""
    for target in plan.targets:
        try:
            check = kinds.build(target)
        except SetupError:  # ICMP not permitted here: a clean exit 2 in a real run
            continue
        close = getattr(check, "close", None)
        if close is not None:
            close()
    return _print_plan(plan)


def validate(argv: list[str], environ: dict[str, str]) -> int:
    out, err = io.StringIO(), io.StringIO()
    patch = mock.patch.object(cli, "_validate", _build_then_print)
    with patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["validate", *argv], environ)
        except SystemExit as stop:  # --version: argparse's own exit
            if stop.code not in (0, None):
                raise
            return 0
    stdout, stderr = out.getvalue(), err.getvalue()
    if currently_in_test_context():  # --hypothesis-show-statistics: how many get through
        event(f"exit {code}")
    assert code in (0, 2), (code, stderr)
    if code == 2:
        assert stderr.endswith("\n"), stderr
        for line in stderr[:-1].split("\n"):
            assert line.startswith("portpatrol: "), stderr
            assert not BREAKERS.search(line), line
            assert len(line) < LONGEST_LINE, line[:200]
    else:
        assert stderr == ""
        stdout.encode("utf-8")  # strictly: a surrogate would crash a real UTF-8 stdout
        assert re.match(r"\d+ targets?, ", stdout), stdout
        assert not BREAKERS.search(stdout.replace("\n", "")), stdout
    return code


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(argument_lists(), environments)
def test_validate_any_arguments_and_environment(argv: list[str], environ: dict[str, str]) -> None:
    validate(argv, environ)


@FUZZ
@given(documents, environments, argument_lists())
def test_validate_any_config_document(document: object, environ: dict[str, str], argv: list[str]) -> None:
    validate(["--config", config_file(yaml.safe_dump(document, allow_unicode=True)), *argv], environ)
    # The same document in flow style with every non-ASCII character escaped: other scalar styles.
    flow = yaml.safe_dump(document, default_flow_style=True, allow_unicode=False)
    validate(["--config", config_file(flow)], environ)


@FUZZ
@given(st.dictionaries(st.sampled_from(VARIABLES), variable_values, min_size=1, max_size=4))
def test_a_valid_target_with_any_variables_beside_it(environ: dict[str, str]) -> None:
    validate(["127.0.0.1:1"], {"TARGET_ADDRESS": "http://127.0.0.1:1/", **environ})


# --------------------------------------------------------------------------- one thing wrong

# A valid document, from which each example changes exactly one thing: most near misses get past every
# check but one, which is where a check that assumes the others passed would fail.
VALID_ENV = {"PORT": "1", "TOKEN": "s3cret", "X": "x", "DUR": "1s", "HOST": "127.0.0.1"}
valid_durations = st.sampled_from(["2s", "500ms", "1m30s", "${DUR}", "${UNSET:-1s}", "1.5s"])
valid_http = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(["GET", "HEAD", "POST", "${UNSET:-GET}"]),
        "headers": st.sampled_from(
            [
                {"Authorization": "Bearer ${TOKEN}"},
                [{"name": "A", "value": "b"}, {"name": "B", "value": "c"}],
                {},
            ]
        ),
        "allow_duplicate_headers": st.just(True),
        "expected_status_codes": st.sampled_from([200, "200,301-302", "${UNSET:-204}", "100-599"]),
        "skip_tls_verify": st.booleans(),
    },
)


@st.composite
def valid_targets(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["tcp", "http", "icmp"]))
    address = {
        "tcp": st.sampled_from(["127.0.0.1:1", "tcp://[::1]:1", "${HOST}:${PORT}", "${UNSET:-127.0.0.1}:1"]),
        "http": st.sampled_from(
            ["http://127.0.0.1:1/x", "https://[::1]:1/", "http://u:${TOKEN}@127.0.0.1:1/?a=b"]
        ),
        "icmp": st.sampled_from(["icmp://127.0.0.1", "icmp://[::1]", "icmp://${HOST}"]),
    }[kind]
    target: dict[str, object] = {"address": draw(address)}
    optional: dict[str, st.SearchStrategy[object]] = {
        "name": st.sampled_from(["db", "orders API", "é", "${X}"]),
        "interval": valid_durations,
        "dial_timeout": valid_durations,
        "success_threshold": st.sampled_from([1, 3, 1000, 3.0]),
    }
    if kind == "http":
        optional["http"] = valid_http
    if kind == "icmp":
        optional["icmp"] = st.fixed_dictionaries({}, optional={"read_timeout": valid_durations})
    for key, values in optional.items():
        if draw(st.booleans()):
            target[key] = draw(values)
    return target


valid_documents = st.fixed_dictionaries(
    {"targets": st.lists(valid_targets(), min_size=1, max_size=3)},
    optional={
        "timeout": valid_durations,
        "defaults": st.fixed_dictionaries(
            {},
            optional={
                "interval": valid_durations,
                "dial_timeout": valid_durations,
                "success_threshold": st.sampled_from([1, 5]),
            },
        ),
    },
)


def _places(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every path to a value inside `value`, itself included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _places(item, (*path, index))
    return found


@st.composite
def one_thing_wrong(draw: st.DrawFn) -> object:
    document = copy.deepcopy(draw(valid_documents))  # sampled values are shared objects
    path = draw(st.sampled_from(_places(document)[1:]))
    *parents, last = path
    container: Any = document
    for step in parents:
        container = container[step]
    how = draw(st.sampled_from(["value", "value", "key", "drop", "wrap"]))
    if how == "key" and isinstance(container, dict):
        container[draw(misspelt(str(last)))] = container.pop(last)
    elif how == "drop":
        del container[last]
    elif how == "wrap":
        container[last] = draw(st.sampled_from([[container[last]], {"value": container[last]}]))
    else:
        container[last] = draw(st.one_of(scalars, leaves, st.sampled_from(["${BAD}", "${UNSET}"])))
    return document


@FUZZ
@given(valid_documents, st.sampled_from([True, False]))
def test_valid_documents_validate(document: object, flow: bool) -> None:
    """The generator's baseline: every unchanged document is valid."""
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=not flow)
    assert validate(["--config", config_file(text)], VALID_ENV) == 0


@FUZZ
@given(one_thing_wrong(), st.sampled_from([True, False]))
def test_documents_with_one_thing_wrong(document: object, flow: bool) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=not flow)
    validate(["--config", config_file(text)], {**VALID_ENV, "BAD": "\udcff"})


VALID_VARIABLES = {
    "TARGET_ADDRESS": "http://u:p@127.0.0.1:1/?token=t",
    "TARGET_NAME": "api",
    "TARGET_CHECK_TYPE": "http",
    "CHECK_INTERVAL": "500ms",
    "DIAL_TIMEOUT": "1s",
    "SUCCESS_THRESHOLD": "2",
    "LOG_EXTRA_FIELDS": "true",
    "LOG_FORMAT": "json",
    "HTTP_METHOD": "HEAD",
    "HTTP_HEADERS": "Authorization=Bearer t,Accept=text/plain",
    "HTTP_ALLOW_DUPLICATE_HEADERS": "false",
    "HTTP_EXPECTED_STATUS_CODES": "200,301-302",
    "HTTP_SKIP_TLS_VERIFY": "false",
    "HTTP_PROXY": "http://proxy:p@127.0.0.1:3128",
    "NO_PROXY": "localhost,.invalid",
    "ICMP_READ_TIMEOUT": "1s",
    "PORTPATROL_TIMEOUT": "1m",
}


def test_valid_variables_validate() -> None:
    assert validate([], VALID_VARIABLES) == 0


@FUZZ
@given(st.sampled_from(sorted(VALID_VARIABLES)), variable_values)
def test_variables_with_one_thing_wrong(name: str, value: str) -> None:
    validate([], {**VALID_VARIABLES, name: value})


# YAML's own forms for a value, written as text: tags, anchors, timestamps, YAML 1.1 booleans and
# numbers (0b, 0x, base 60), escapes that make control characters or lone surrogates.
RAW_VALUES = [
    *("0b101", "0x1F", "017", "09", "1:30", "190:20:30", "1_000", ".inf", "-.inf", ".NaN", "~", "Null"),
    *("yes", "No", "on", "OFF", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "!!str 1", "!!int x"),
    *("!!float 1", "!!bool yes", "!!null ''", "!!binary aGk=", "!!timestamp 2001-12-14", "!!map {}"),
    *("!!seq []", "!!omap []", "!!set {}", "!custom x", "!<tag:yaml.org,2002:str> x", "!!python/none ''"),
    *("&a 1", "*a", "*b", "<<", "=", "'quoted'", '"\\u0001"', '"\\x85"', '"\\N"', '"\\L"', '"\\e"', '"\\0"'),
    *('"\\ud800"', "0b" + "1" * 300, "0x" + "f" * 99, "1" * 99, "1e308", "1.7976931348623157e309", "-0"),
    *("{}", "[]", "[1, 2]", "{a: 1}", "'${X}'", '"${X:-1s}"', "2s", "500ms", "GET", "200,301-302", "3"),
    *("127.0.0.1:1", "http://127.0.0.1:1/", "icmp://127.0.0.1", "${X}", "'127.0.0.1:${PORT}'", "é"),
]
RAW_KEYS = [
    *("address", "name", "type", "interval", "dial_timeout", "success_threshold", "method", "headers"),
    *("expected_status_codes", "allow_duplicate_headers", "skip_tls_verify", "read_timeout", "A", "<<"),
    *("1", "'${X}'", "null", "true", "[a]", "? x"),
]
raw_values = st.sampled_from(RAW_VALUES)
raw_keys = st.sampled_from(RAW_KEYS)
raw_addresses = st.one_of(
    raw_values, st.sampled_from(["127.0.0.1:1", "http://127.0.0.1:1/", "icmp://127.0.0.1"])
)


@st.composite
def raw_documents(draw: st.DrawFn) -> str:
    lines = [f"timeout: {draw(raw_values)}"] if draw(st.booleans()) else []
    if draw(st.booleans()):
        lines.append("defaults:")
        keys = st.one_of(
            st.sampled_from(["interval", "dial_timeout", "success_threshold", "intervall"]), raw_keys
        )
        lines += [f"  {key}: {draw(raw_values)}" for key in draw(st.lists(keys, max_size=3))]
    lines.append("targets:")
    for _ in range(draw(st.integers(0, 3))):
        lines.append(f"  - address: {draw(raw_addresses)}")
        for key in draw(st.lists(st.one_of(raw_keys, st.sampled_from(["http", "icmp"])), max_size=4)):
            if key in ("http", "icmp"):
                lines.append(f"    {key}:")
                lines += [
                    f"      {inner}: {draw(raw_values)}" for inner in draw(st.lists(raw_keys, max_size=3))
                ]
            else:
                lines.append(f"    {key}: {draw(raw_values)}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(raw_documents(), st.sampled_from([VALID_ENV, {}, {"X": "\udcff", "PORT": "x"}]))
def test_yaml_forms_of_values(text: str, environ: dict[str, str]) -> None:
    validate(["--config", config_file(text)], environ)


# --------------------------------------------------------------------------- named cases the fuzzing found


@pytest.mark.parametrize(
    "argv",
    [["--bo\ngus"], ["--x\x1b[2J\x7f"], ["--y\u2028z"], ["--z\x85"], ["--" + "q" * 5_000]],
    ids=["newline", "escape", "line-separator", "nel", "huge"],
)
def test_an_unknown_option_is_escaped_and_cut(argv: list[str]) -> None:
    """argparse echoed an unknown option raw: a newline split the line, ESC drove the terminal."""
    assert validate(argv, {}) == 2


def test_a_huge_number_of_workers_is_cut() -> None:
    assert validate(["127.0.0.1:1", "--workers", "9" * 4_000], {}) == 2
