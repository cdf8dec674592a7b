"""The parsers on every pod's start-up path work without `re` (docs/performance.md): each is proven
equal to the regular expression it replaced, over every code point or many generated texts."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portpatrol import address
from portpatrol import values as values_module
from portpatrol.kinds import http, parse_address
from portpatrol.text import json_string
from portpatrol.values import parse_duration

# The names these tests knew, where they live now (address syntax, durations, HTTP's header rules).
values = SimpleNamespace(
    _NS=values_module._NS,
    _BAD_HOST=address.BAD_HOST,
    _CONTROLS=address.CONTROLS,
    _HEADER_CONTROLS=http._HEADER_CONTROLS,
    _has_any=address.has_any,
    _is_token=address.is_token,
    _scheme=address.scheme,
)

EVERY_CHAR = "".join(map(chr, range(0x110000)))

# The expressions values.py used before; the replacements must agree with them exactly.
OLD_PIECE = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
OLD_DURATION = re.compile(f"(?:{OLD_PIECE})+")
OLD_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
OLD_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
OLD_BAD_HOST = re.compile(r"[\s\x00-\x1f\x7f/\\?#@\[\]<>\"'{}|^`%,;]")
OLD_BAD_URL = re.compile(r"[\s\x00-\x1f\x7f]")
OLD_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# With the bidi and zero-width characters that are line-unsafe since issue 11.8.
OLD_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")


def old_json_string(text: str) -> str:
    return OLD_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(text, ensure_ascii=False))


def old_duration(text: str) -> float | str:
    """parse_duration as it was, with ASCII digits (`\\d` took any Unicode digit: see below)."""
    if (
        len(text) > 64
        or not OLD_DURATION.fullmatch(text)
        or any(c.isdigit() and not c.isascii() for c in text)
    ):
        return "not a duration"
    ns = sum(float(number) * values._NS[unit] for number, unit in re.findall(OLD_PIECE, text))
    return "greater than 0" if ns < 1 else "at most 8760h" if ns / 1e9 > 8760 * 3600 else ns / 1e9


def new_duration(text: str) -> float | str:
    try:
        return parse_duration(text)
    except ValueError as error:
        return next(m for m in ("not a duration", "greater than 0", "at most 8760h") if m in str(error))


@pytest.mark.parametrize(
    ("pattern", "chars", "spaces"),
    [
        (OLD_BAD_HOST, values._BAD_HOST, True),
        (OLD_BAD_URL, values._CONTROLS, True),
        (OLD_BAD_HEADER_VALUE, values._HEADER_CONTROLS, False),
    ],
)
def test_character_classes_match_their_old_expressions_on_every_code_point(
    pattern: re.Pattern[str], chars: str, spaces: bool
) -> None:
    expected = pattern.findall(EVERY_CHAR)
    assert [c for c in EVERY_CHAR if values._has_any(c, chars, spaces)] == expected


def test_json_string_matches_json_dumps_and_its_extra_escapes_on_every_code_point() -> None:
    assert json_string(EVERY_CHAR) == old_json_string(EVERY_CHAR)


@given(st.text())
def test_json_string_matches_json_dumps_and_its_extra_escapes(text: str) -> None:
    assert json_string(text) == old_json_string(text)
    assert json.loads(json_string(text)) == text


def test_tokens_and_schemes_match_their_old_expressions_one_character_at_a_time() -> None:
    for c in EVERY_CHAR:
        assert values._is_token(c) == bool(OLD_TOKEN.fullmatch(c)), repr(c)
        assert values._scheme(c + "://x") == (m[1] if (m := OLD_SCHEME.match(c + "://x")) else None)
        assert values._scheme("a" + c + "://x") == (
            m[1] if (m := OLD_SCHEME.match("a" + c + "://x")) else None
        )


@given(st.text(alphabet="aZ9+.-:/@ é", max_size=20))
def test_schemes_match_the_old_expression(text: str) -> None:
    match = OLD_SCHEME.match(text)
    assert values._scheme(text) == (match[1] if match else None)


@given(st.text(alphabet="!#aZ9-_ ~é(\t", max_size=12))
def test_tokens_match_the_old_expression(text: str) -> None:
    assert values._is_token(text) == bool(OLD_TOKEN.fullmatch(text))


DURATION_PIECES = st.sampled_from(["0", "1", "5", "90", ".", "5.", ".5", "1.25", "ns", "us", "µs", "μs"])
UNITS_AND_NOISE = st.sampled_from(["ms", "s", "m", "h", "mss", "d", "S", " ", "-", "+", "e", "٣", "\n"])


@given(st.lists(st.one_of(DURATION_PIECES, UNITS_AND_NOISE), max_size=12).map("".join))
def test_durations_match_the_old_expression(text: str) -> None:
    assert new_duration(text) == old_duration(text)


@given(st.text(alphabet="0123456789.nsuµμmh", max_size=70))
def test_durations_match_the_old_expression_on_any_mix_of_their_characters(text: str) -> None:
    assert new_duration(text) == old_duration(text)


@pytest.mark.parametrize("text", ["٣s", "１s", "1٣s", "1.٣s"])
def test_durations_take_ascii_digits_only_as_go_and_the_schema(text: str) -> None:
    """`\\d` took any Unicode digit (`٣s` was 3 seconds) while Go and portpatrol.schema.json
    take 0-9 only; a file and a variable now agree."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_tcp_address_path_and_durations_need_no_regular_expressions() -> None:
    """What every pod's start-up runs, in a fresh interpreter: re, enum, typing and
    collections.abc stay unimported (each costs milliseconds)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from portpatrol.sources import env\n"
        "env.targets({'TARGET_ADDRESS': 'db:5432', 'CHECK_INTERVAL': '1m30s', 'DIAL_TIMEOUT': '500ms',"
        " 'SUCCESS_THRESHOLD': '2'})\n"
        "env.targets({'TARGET_ADDRESS': 'tcp://127.0.0.1:5432'})\n"
        "env.log_settings({'LOG_FORMAT': 'json', 'LOG_EXTRA_FIELDS': 'true'})\n"
        "heavy = {'re', 'enum', 'typing', 'collections', 'collections.abc', 'functools', 'json',"
        " 'ipaddress', 'urllib.parse', 'dataclasses', 'contextlib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_addresses_still_parse_as_before() -> None:
    assert parse_address("TCP://db:5432", None, "T").host == "db"
    with pytest.raises(ValueError, match="unknown scheme"):
        parse_address("ftp://db:21", None, "T")
