"""Expectations on an HTTP answer: compiled from the block, judged on bodies, bounded decoding."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol.errors import BadValue, NotReady
from portpatrol.kinds.httpanswer import Expectations, conditions_from_text, parse, parse_size, read_body

JSON_TYPE = "application/json"


def judge(block: dict[str, Any], body: Any, headers: tuple[tuple[str, str], ...] = ()) -> str | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        parse(block).judge(headers, raw, JSON_TYPE)
    except NotReady as failure:
        return str(failure)
    return None


def test_status_down_is_named_with_what_was_expected() -> None:
    block = {"expect": {"json": [{"path": "$.status", "equals": "UP"}]}}
    assert judge(block, {"status": "DOWN"}) == '$.status is "DOWN", expected "UP"'
    assert judge(block, {"status": "UP"}) is None
    assert judge(block, {"other": 1}) == '$.status selects nothing, expected "UP"'


def test_every_selected_node_must_match() -> None:
    block = {"expect": {"json": [{"path": "$.checks[*].state", "matches": "^(pass|warn)$"}]}}
    assert judge(block, {"checks": [{"state": "pass"}, {"state": "warn"}]}) is None
    reason = judge(block, {"checks": [{"state": "pass"}, {"state": "fail"}]})
    assert reason == '$.checks[*].state is "fail", expected to match /^(pass|warn)$/'


def test_exists_false_holds_when_nothing_is_selected() -> None:
    block = {"expect": {"json": [{"path": "$.maintenance", "exists": False}]}}
    assert judge(block, {"status": "UP"}) is None
    assert judge(block, {"maintenance": True}) == "$.maintenance is true, expected absent"


def test_matches_sees_non_strings_as_json_text() -> None:
    block = {"expect": {"json": [{"path": "$.count", "matches": "^[1-9]"}]}}
    assert judge(block, {"count": 3}) is None
    assert judge(block, {"count": 0}) == "$.count is 0, expected to match /^[1-9]/"


def test_body_regex_shows_the_start_of_the_body_escaped() -> None:
    reason = judge({"expect": {"body": "ok|healthy"}}, b"starting\x1b[2J" + b"x" * 500)
    assert reason is not None
    assert reason.startswith("body does not match /ok|healthy/ (first 200 characters: starting\\u001b[2J")
    assert "\x1b" not in reason
    assert len(reason) < 300


def test_not_json_is_said() -> None:
    reason = judge({"expect": {"json": [{"path": "$.a", "equals": 1}]}}, b"<html>")
    assert reason == "body is not JSON (first 200 characters: <html>)"


def test_headers_are_matched_by_name_in_any_case() -> None:
    block = {"expect": {"headers": {"Content-Type": "json"}}}
    assert judge(block, b"", (("content-type", "application/json"),)) is None
    assert judge(block, b"", (("content-type", "text/html"),)) == (
        'header Content-Type is "text/html", expected to match /json/'
    )
    assert judge(block, b"") == "no Content-Type header, expected to match /json/"


def test_charset_of_the_answer_decodes_the_body() -> None:
    expectations = parse({"expect": {"body": "café"}})
    expectations.judge((), "café".encode("latin-1"), "text/plain; charset=ISO-8859-1")
    with pytest.raises(NotReady):
        expectations.judge((), "café".encode("latin-1"), "text/plain")


@pytest.mark.parametrize(
    ("block", "key", "message"),
    [
        ({"expect": {"body": "("}}, ("expect", "body"), "not a regular expression"),
        (
            {"expect": {"json": [{"path": "status", "equals": 1}]}},
            ("expect", "json", 0, "path"),
            "a JSONPath starts with $",
        ),
        ({"expect": {"json": [{"path": "$.a", "matches": "["}]}}, ("expect", "json", 0, "matches"), "not a"),
        (
            {"expect": {"json": [{"path": "$.a", "equals": 1, "exists": True}]}},
            ("expect", "json", 0),
            "one of",
        ),
        ({"expect": {"headers": {"X": "*"}}}, ("expect", "headers", "X"), "not a regular expression"),
        ({"max_body": "lots"}, ("max_body",), "max_body: not a size"),
        ({"max_body": "2GiB"}, ("max_body",), "max_body: from 1 byte to 1GiB"),
        # The env forms (HTTP_EXPECT_BODY, HTTP_EXPECT_JSON): one key, the message says which condition.
        ({"expect.body": "("}, ("expect.body",), "not a regular expression"),
        (
            {"expect.json": '[{"path": "$.a"}, {"path": "x"}]'},
            ("expect.json",),
            "condition 2 path: a JSONPath",
        ),
        ({"expect.json": "[1"}, ("expect.json",), "not JSON or YAML"),
    ],
)
def test_bad_expectations_are_configuration_errors(
    block: dict[str, Any], key: tuple[str | int, ...], message: str
) -> None:
    with pytest.raises(BadValue, match=r"e\.g\.") as caught:
        parse(block)
    assert caught.value.key == key
    assert message in str(caught.value)


def test_sizes() -> None:
    assert parse_size("1MiB") == 1024**2
    assert parse_size("64 KiB") == 65536
    assert parse_size("2MB") == 2_000_000
    assert parse_size(500) == 500
    assert parse_size("500") == 500


def test_env_conditions_accept_json_yaml_flow_and_the_shorthand() -> None:
    assert conditions_from_text('[{"path": "$.status", "equals": "UP"}]') == [
        {"path": "$.status", "equals": "UP"}
    ]
    assert conditions_from_text("[{path: $.status, equals: UP}]") == [{"path": "$.status", "equals": "UP"}]
    assert conditions_from_text('{"$.status": "UP"}') == [{"path": "$.status", "equals": "UP"}]
    with pytest.raises(ValueError, match="not a list of conditions"):
        conditions_from_text('"UP"')
    expectations = parse({"expect": {"json": '{"$.status": "UP"}'}})
    assert expectations.json[0].test == "equals"


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_gzip_and_deflate_bodies_are_decoded() -> None:
    body = b'{"status": "UP"}'
    assert read_body(chunks(gzip.compress(body)), "gzip", 1024) == body
    assert read_body(chunks(zlib.compress(body)), "deflate", 1024) == body
    raw = zlib.compressobj(wbits=-15)
    assert read_body([raw.compress(body) + raw.flush()], "deflate", 1024) == body
    assert read_body(chunks(body), None, 1024) == body


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros in about 64 KiB
    with pytest.raises(NotReady, match="body larger than 1 MiB"):
        read_body(chunks(bomb), "gzip", 1024 * 1024)


def test_a_plain_body_over_the_limit_is_refused() -> None:
    with pytest.raises(NotReady, match="body larger than 10 bytes"):
        read_body([b"x" * 11], None, 10)


def test_unknown_and_broken_encodings_are_named() -> None:
    with pytest.raises(NotReady, match="content-encoding br"):
        read_body([b"x"], "br", 10)
    with pytest.raises(NotReady, match="not valid gzip"):
        read_body([b"not gzip at all"], "gzip", 100)
    with pytest.raises(NotReady, match="ends before its gzip data"):
        read_body([gzip.compress(b"abc" * 100)[:20]], "gzip", 1000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)
conditions = (
    st.fixed_dictionaries(
        {"path": st.sampled_from(["$", "$.a", "$..*", "$[*]", "$.a[0]", "$[?@.b > 1]", "$..b", "$[-1:]"])}
    )
    | st.fixed_dictionaries({"path": st.sampled_from(["$.a", "$..*", "$[?@ == 1]"]), "equals": json_values})
    | st.fixed_dictionaries({"path": st.just("$..b"), "matches": st.sampled_from(["^1", ".", "x|y"])})
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.lists(conditions, max_size=4))
def test_any_json_against_any_conditions_gives_a_verdict(document: Any, items: list[dict[str, Any]]) -> None:
    expectations: Expectations = parse({"expect": {"json": items}})
    try:
        expectations.judge((), json.dumps(document).encode(), JSON_TYPE)
    except NotReady as failure:
        reason = str(failure)
    else:
        return
    assert "\n" not in reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([None, "gzip", "deflate", "gzip, deflate", "identity"]))
def test_arbitrary_bytes_decode_or_fail_by_name(data: bytes, coding: str | None) -> None:
    try:
        body = read_body(chunks(data, 100), coding, 4096)
    except NotReady:
        return
    assert len(body) <= 4096


@pytest.mark.parametrize(
    "charset", ["hex", "rot13", "base64", "zlib", "idna", "punycode", "no-such-codec", "utf-8"]
)
def test_any_charset_a_peer_names_decodes_the_body_or_falls_back_to_utf8(charset: str) -> None:
    expectations = parse({"expect": {"body": "ok"}})
    expectations.judge((), b"ok \xff\x00", f"text/plain; charset={charset}")


def test_json_nested_too_deep_is_a_reason_not_a_crash() -> None:
    block = {"expect": {"json": [{"path": "$..x", "exists": False}]}}
    for depth in (200, 100_000):  # judged level by level; past the interpreter's limit for json.loads
        assert judge(block, b"[" * depth + b"]" * depth) == "body is JSON nested deeper than 64 levels"
    assert judge(block, json.loads(b"[" * 60 + b"]" * 60)) is None
