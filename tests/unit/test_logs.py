"""Log lines (behaviour.md 6): the original's text format, quoting, extra fields, JSON with the same keys,
secrets scrubbed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portpatrol import __version__, logs
from portpatrol.events import AllReady, Failed, Ready, Waiting
from portpatrol.kinds.http import HttpSpec
from portpatrol.kinds.icmp import IcmpSpec
from portpatrol.kinds.tcp import TcpSpec
from portpatrol.logs import LogWriter
from portpatrol.model import Target, Timing
from portpatrol.sources.env import targets
from portpatrol.text import scrub
from tests.peers import parse_line

NOW = 1720788281.494  # 2024-07-12T12:44:41.494Z, the README's example time
TCP = Target("PostgreSQL", "postgres:5432", TcpSpec("postgres", 5432), Timing(2.0, 1.0))


def lines(events: list[object], *, json_lines: bool = False, extra: bool = False) -> list[str]:
    stream = io.StringIO()
    writer = LogWriter(stream, json_lines=json_lines, extra_fields=extra, now=lambda: NOW)
    for event in events:
        writer(event)  # type: ignore[arg-type]
    writer.flush()
    return stream.getvalue().splitlines()


def test_the_originals_three_lines() -> None:
    assert lines([Waiting(TCP), Failed(TCP, "connection refused", 1), Ready(TCP, 2, 4.0)]) == [
        'time=2024-07-12T12:44:41.494Z level=INFO msg="Waiting for PostgreSQL to become ready..."',
        'time=2024-07-12T12:44:41.494Z level=WARN msg="PostgreSQL is not ready ✗" error="connection refused"',
        'time=2024-07-12T12:44:41.494Z level=INFO msg="PostgreSQL is ready ✓"',
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("refused", "refused"),
        ("connection refused", '"connection refused"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("tab\there", '"tab\\there"'),
        ("new\nline", '"new\\nline"'),
        ("", '""'),
        ("ünïcode✓", "ünïcode✓"),
    ],
)
def test_text_values_quoted_only_when_needed(value: str, shown: str) -> None:
    [line] = lines([Failed(TCP, value, 1)])
    assert line.endswith(f" error={shown}")
    assert parse_line(line)["error"] == value


@given(name=st.text(min_size=1), error=st.text())
def test_the_failure_lines_shortcut_writes_what_the_general_path_writes(name: str, error: str) -> None:
    target = TCP.replace(name=name)
    stream = io.StringIO()
    writer = LogWriter(stream, now=lambda: NOW)
    writer(Failed(target, error, 1))
    writer.write("WARN", f"{name} is not ready ✗", target, error=error)
    shortcut, general = stream.getvalue().splitlines()
    assert shortcut == general


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "a b"]), st.sampled_from(["refused", "no answer", ""]))))
def test_failure_lines_follow_each_targets_reason(failures: list[tuple[str, str]]) -> None:
    """Failure lines are kept per target name and reason: one writer over many failures writes
    what a new writer writes for each one alone."""
    seen = lines([Failed(TCP.replace(name=name), error, 1) for name, error in failures])
    alone = [lines([Failed(TCP.replace(name=name), error, 1)])[0] for name, error in failures]
    assert seen == alone


def test_error_on_every_failure_line_without_extra_fields() -> None:
    [line] = lines([Failed(TCP, "no answer within 1s", 3)])
    assert parse_line(line)["error"] == "no answer within 1s"


def test_extra_fields_in_order() -> None:
    [line] = lines([Failed(TCP, "connection refused", 1)], extra=True)
    keys = list(parse_line(line))
    assert keys == [
        "time",
        "level",
        "msg",
        "target_address",
        "interval",
        "dial_timeout",
        "checker_type",
        "version",
        "error",
    ]
    record = parse_line(line)
    assert (record["target_address"], record["interval"], record["dial_timeout"]) == (
        "postgres:5432",
        "2s",
        "1s",
    )
    assert (record["checker_type"], record["version"]) == ("TCP", "0.1.0")


@pytest.mark.parametrize(
    ("target", "checker_type"),
    [
        (Target("api", "http://api/", HttpSpec("http://api/"), Timing(0.5, 1.5)), "HTTP"),
        (Target("gw", "gw", IcmpSpec("gw"), Timing(90.0, 3600.0)), "ICMP"),
    ],
)
def test_extra_fields_durations_and_types(target: Target, checker_type: str) -> None:
    record = parse_line(lines([Waiting(target)], extra=True)[0])
    assert record["checker_type"] == checker_type
    assert record["interval"] == {"api": "500ms", "gw": "1m30s"}[target.name]
    assert record["dial_timeout"] == {"api": "1.5s", "gw": "1h0m0s"}[target.name]


def test_no_extra_fields_by_default() -> None:
    assert list(parse_line(lines([Ready(TCP, 1, 0.1)])[0])) == ["time", "level", "msg"]


@pytest.mark.parametrize("extra", [False, True])
def test_json_lines_have_the_same_keys_and_values(extra: bool) -> None:
    events: list[object] = [Waiting(TCP), Failed(TCP, 'refused "x"', 1), Ready(TCP, 2, 1.0), AllReady(2, 1.0)]
    text = lines(events, extra=extra)
    as_json = lines(events, json_lines=True, extra=extra)
    assert len(text) == len(as_json) == 4
    for text_line, json_line in zip(text, as_json, strict=True):
        record = json.loads(json_line)
        assert list(record) == list(parse_line(text_line))
        assert record == parse_line(text_line)


def test_json_keeps_unicode_readable() -> None:
    [line] = lines([Ready(TCP, 1, 0.1)], json_lines=True)
    assert "✓" in line
    assert json.loads(line)["msg"] == "PostgreSQL is ready ✓"


def test_all_ready_line_is_for_two_or_more() -> None:
    [line] = lines([AllReady(2, 1.5)])
    assert parse_line(line)["msg"] == "All 2 targets are ready"
    assert parse_line(line)["elapsed"] == "1.5s"
    assert parse_line(lines([AllReady(3, 0.25)])[0])["msg"] == "All 3 targets are ready"
    # One target: its own ready line ends the output, in text and JSON (issue 11.12).
    assert lines([AllReady(1, 1.5)]) == lines([AllReady(1, 1.5)], json_lines=True) == []


def test_secrets_scrubbed_everywhere_in_text_and_json() -> None:
    # Issue 11.4: only long secrets (6+ characters) are looked for in a peer's text, as whole
    # tokens; the short ones this test used to plant (t0k3n, k3y) garbled ordinary text instead.
    [target] = targets(
        {
            "TARGET_ADDRESS": "https://admin:hunter2@api:8443/health?token=t0k3n-value&page=1",
            "TARGET_NAME": "api",
            "HTTP_HEADERS": "Authorization=Bearer abc.def,X-Api-Key=k3y-value",
        }
    )
    error = "server said hunter2 t0k3n-value Bearer abc.def k3y-value"  # a peer echoing secrets back
    events: list[object] = [Waiting(target), Failed(target, error, 1), Ready(target, 2, 1.0)]
    for json_lines in (False, True):
        written = lines(events, json_lines=json_lines, extra=True)
        assert len(written) == 3
        for line in written:
            for secret in ("hunter2", "t0k3n-value", "abc.def", "k3y-value"):
                assert secret not in line
        record = parse_line(written[1])
        assert record["target_address"] == "https://***@api:8443/health?token=***&page=1"
        assert record["error"] == "server said *** *** *** ***"


def test_scrub_longest_secret_first() -> None:
    assert scrub("abcdef abc", frozenset({"abc", "abcdef"})) == "*** ***"


def test_closed_stream_does_not_raise() -> None:
    stream = io.StringIO()
    writer = LogWriter(stream)
    stream.close()
    writer(Waiting(TCP))
    writer.flush()


def test_event_lines_wait_for_flush_and_a_direct_line_flushes_them_first() -> None:
    stream = io.StringIO()
    writer = LogWriter(stream, now=lambda: NOW)
    writer(Waiting(TCP))
    assert stream.getvalue() == ""
    writer.write("WARN", "Interrupted")
    assert [parse_line(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "Waiting for PostgreSQL to become ready...",
        "Interrupted",
    ]


def test_characters_that_could_forge_a_line_are_escaped() -> None:
    target = Target("db", "db:5432", TcpSpec("db", 5432))
    (line,) = lines([Failed(target, "bad\x85peer\u2028said\x1b[2Jhi", 1)])
    assert "\x85" not in line
    assert "\u2028" not in line
    assert "\x1b" not in line
    assert parse_line(line)["error"] == "bad\x85peer\u2028said\x1b[2Jhi"


@pytest.mark.parametrize("json_lines", [False, True])
def test_characters_that_could_forge_a_line_are_escaped_in_both_formats(json_lines: bool) -> None:
    target = Target("db", "db:5432", TcpSpec("db", 5432))
    error = "bad\x85peer\u2028said\u2029\x7f\x1b[2Jhi\nnext"
    (line,) = lines([Failed(target, error, 1)], json_lines=json_lines)
    assert not any(c in line for c in "\x85\u2028\u2029\x7f\x1b\n")
    assert (json.loads(line) if json_lines else parse_line(line))["error"] == error


@given(st.dictionaries(st.text(), st.text(), max_size=4))
def test_json_lines_read_as_json_dumps_writes_them(fields: dict[str, str]) -> None:
    stream = io.StringIO()
    writer = LogWriter(stream, json_lines=True, now=lambda: NOW)
    writer.write("INFO", "msg", None, **{f"f_{key}": value for key, value in fields.items()})
    (line,) = stream.getvalue().splitlines()
    record = {"time": "2024-07-12T12:44:41.494Z", "level": "INFO", "msg": "msg"}
    record |= {f"f_{key}": value for key, value in fields.items()}
    assert json.loads(line) == record
    # json.dumps leaves these raw; the line escapes them (with bidi and zero-width ones, issue 11.8)
    unsafe = re.compile("[\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
    assert line == unsafe.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(record, ensure_ascii=False))


# The expression logs.py used before re left the start-up path, with the bidi and zero-width
# characters that are line-unsafe since issue 11.8; the predicate must agree with it.
OLD_NEEDS_QUOTES = re.compile(
    r'[\s="\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]'
)


def test_quoting_matches_the_old_expression_on_every_code_point() -> None:
    """str.isprintable() is False for more than the expression matched (private use, unassigned,
    other format characters): those stay unquoted, as before; Unicode spaces are quoted."""
    every = [chr(code) for code in range(0x110000)]
    assert [c for c in every if logs._needs_quotes(c)] == OLD_NEEDS_QUOTES.findall("".join(every))
    assert [c for c in every if logs._needs_quotes(f"a{c}b")] == OLD_NEEDS_QUOTES.findall("".join(every))


@given(st.text())
def test_quoting_matches_the_old_expression(value: str) -> None:
    assert logs._needs_quotes(value) == (not value or bool(OLD_NEEDS_QUOTES.search(value)))


def test_the_status_line_cannot_be_driven_by_a_name_or_a_reason() -> None:
    stream = io.StringIO()
    line = logs.StatusLine(stream)
    target = TCP.replace(name="db\x1b[2J\nfake ✓")
    line(Waiting(target))
    line(Failed(target, "refused\r\x1b[31m", 1))
    line(Ready(target, 2, 1.0))
    text = stream.getvalue()
    # The status line's own control sequences only: erase-line after a carriage return.
    assert text.replace("\r\x1b[2K", "").count("\x1b") == 0, text
    assert "\x1b[2J" not in text
    assert text.count("\n") == 1, text  # only the "is ready" line ends a line
    assert "db\\u001b[2J\\nfake ✓" in text


def test_a_short_secret_leaves_the_fields_we_write_intact() -> None:
    """Issue 11.4: HTTP_HEADERS=X-Debug=1 turned the time into 2026-***2-02...: a secret is masked
    only where one can be (the peer's text in error=, the address as written), never in the time,
    level, msg or the other fields we write, and a short one not even in the peer's text."""
    [target] = targets({"TARGET_ADDRESS": "http://10.1.1.1:8081/v1", "HTTP_HEADERS": "X-Debug=1"})
    assert "1" in target.secrets
    events: list[object] = [Waiting(target), Failed(target, "HTTP 401 (1 of 1)", 1), Ready(target, 2, 1.0)]
    for json_lines in (False, True):
        written = [parse_line(line) for line in lines(events, json_lines=json_lines, extra=True)]
        assert [record["time"] for record in written] == ["2024-07-12T12:44:41.494Z"] * 3
        assert written[0]["msg"] == "Waiting for 10.1.1.1 to become ready..."
        assert written[1]["error"] == "HTTP 401 (1 of 1)"
        assert written[1]["target_address"] == "http://10.1.1.1:8081/v1"
        assert (written[1]["interval"], written[1]["dial_timeout"]) == ("2s", "1s")
        assert written[2]["version"] == __version__


def test_a_secret_the_peer_echoes_in_another_case_is_masked() -> None:
    [target] = targets({"TARGET_ADDRESS": "http://api:8080/", "HTTP_HEADERS": "X-Api-Key=Sk3cret-Api-Key"})
    said = "unknown key sk3cret-api-key (expected SK3CRET-API-KEY's owner)"
    for json_lines in (False, True):
        [line] = lines([Failed(target, said, 1)], json_lines=json_lines)
        assert parse_line(line)["error"] == "unknown key *** (expected ***'s owner)"


def test_a_full_log_pipe_drops_lines_and_counts_them_once_it_drains() -> None:
    """Issue 11.5: a log stream whose reader stopped (a full pipe) costs each write at most a few
    milliseconds, never the deadline; the lines that found no room are counted in the next line."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write, b"x" * 4096)
    os.set_blocking(write, True)  # as a log stream normally is: a plain write would block forever
    with open(write, "w", encoding="utf-8") as stream, open(read, "rb", buffering=0) as reader:
        writer = LogWriter(stream, now=lambda: NOW)
        started = time.monotonic()
        for attempt in range(50):
            writer(Failed(TCP, "connection refused", attempt))
            writer.flush()
        assert time.monotonic() - started < 5  # ~20 ms for the first line, nothing for the others
        os.set_blocking(read, False)
        while reader.read(65536):
            pass  # drained
        writer(Ready(TCP, 51, 1.0))
        writer.flush()
        shown = reader.read(65536).decode().splitlines()
    assert shown == [
        'time=2024-07-12T12:44:41.494Z level=WARN msg="50 log lines dropped '
        '(the log stream was full: its reader had stopped)"',
        'time=2024-07-12T12:44:41.494Z level=INFO msg="PostgreSQL is ready ✓"',
    ]
