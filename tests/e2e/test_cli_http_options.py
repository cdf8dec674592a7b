"""Issue 11 item 9: the HTTP settings of argument targets. The HTTP_ variables and CHECK_INTERVAL,
DIAL_TIMEOUT, SUCCESS_THRESHOLD apply to TARGET arguments; the options (--method, --header,
--expect-json...) win over them; nonsense is exit 2 even where nothing reads it."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

import pytest

from portpatrol.kinds import grpc, http
from tests.e2e.test_http_expect import Server, reply
from tests.peers import run_portpatrol


def test_env_http_settings_apply_to_argument_targets() -> None:
    with Server(reply(200, b'{"status": "UP"}')) as server:
        env = {
            "HTTP_METHOD": "POST",
            "HTTP_HEADERS": "X-Probe=env",
            "HTTP_EXPECT_JSON": '{"$.status": "UP"}',
            "CHECK_INTERVAL": "7s",
        }
        plan = run_portpatrol(env, ["validate", server.url()])
        result = run_portpatrol(env, [server.url(), "--timeout", "10s"])
    assert plan.code == 0, plan.stderr
    assert "7s" in plan.stdout
    assert "POST" in plan.stdout
    assert "1 JSON condition" in plan.stdout
    assert result.code == 0, result.stderr
    assert server.seen[0][0] == "POST"
    assert server.headers_of(0)["x-probe"] == "env"


def test_options_win_over_the_variables() -> None:
    state = {"status": "DOWN"}

    def answer(handler: BaseHTTPRequestHandler) -> None:
        reply(200, json.dumps(state).encode())(handler)

    with Server(answer) as server:
        env = {"HTTP_METHOD": "POST", "HTTP_EXPECT_JSON": '{"$.status": "DOWN"}', "LOG_FORMAT": "json"}
        args = ["--method", "PUT", "--header", "X-Probe: option", "--body", "hello"]
        args += ["--expect-json", '{"$.status": "UP"}', "--expect-status", "200-299", "--timeout", "1s"]
        result = run_portpatrol(env, [*args, server.url()])
    assert result.code == 124, result.stderr
    assert result.records[-1]["error"] == '$.status is "DOWN", expected "UP"'
    assert server.seen[0][0] == "PUT"
    assert server.seen[0][3] == b"hello"
    assert server.headers_of(0)["x-probe"] == "option"


@pytest.mark.parametrize(
    ("env", "args", "said"),
    [
        ({"TARGET_ADDRESS": "db:5432", "HTTP_METHOD": "G T"}, [], 'HTTP_METHOD="G T": not an HTTP method'),
        ({"HTTP_EXPECTED_STATUS_CODES": "2xx"}, ["db:5432"], "HTTP_EXPECTED_STATUS_CODES"),
        ({"HTTP_EXPECT_JSON": "[1"}, ["db:5432"], "HTTP_EXPECT_JSON"),
        ({"CHECK_INTERVAL": "soon"}, ["db:5432"], 'CHECK_INTERVAL="soon"'),
        ({}, ["--method", "PUT", "db:5432"], "--method: only for http:// and https://"),
        ({}, ["--expect-json", "[{path: x}]", "http://a/"], "--expect-json"),
        ({}, ["--ca-file", "/nonexistent.pem", "https://a/"], "--ca-file"),
        ({}, ["--header", "Bad Name: s3cret-value", "http://a/"], "--header: header 1"),
    ],
)
def test_values_that_cannot_apply_are_rejected(env: dict[str, str], args: list[str], said: str) -> None:
    result = run_portpatrol(env, ["validate", *args])
    assert result.code == 2, (result.stdout, result.stderr)
    assert said in result.stderr
    assert "s3cret-value" not in result.stderr
    assert len(result.lines) == len(set(result.lines))  # a problem is said once


def test_help_documents_the_options_and_the_rule() -> None:
    text = run_portpatrol({}, ["--help"]).stdout
    for option in ("--method", "--header", "--expect-status", "--expect-body", "--expect-json", "--body"):
        assert option in text
    for option in ("--ca-file", "--cert-file", "--key-file", "--max-body"):
        assert option in text
    assert "apply to TARGET arguments too" in text
    for variable in [*http.ENV, *grpc.ENV]:  # every variable of the kinds is documented
        assert variable in text, variable
