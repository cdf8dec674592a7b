"""The command as a user first meets it: --help, --version, python -m portpatrol, and configuration
errors (behaviour.md 7): exit 2, one line per problem, every problem at once, no traceback."""

from __future__ import annotations

import re
import sys

import pytest

from portpatrol import kinds
from tests.peers import TcpListener, run_portpatrol

# Every variable the original PortPatrol README documents.
ORIGINAL_VARIABLES = [
    "TARGET_ADDRESS",
    "TARGET_NAME",
    "TARGET_CHECK_TYPE",
    "CHECK_INTERVAL",
    "DIAL_TIMEOUT",
    "LOG_EXTRA_FIELDS",
    "HTTP_METHOD",
    "HTTP_HEADERS",
    "HTTP_ALLOW_DUPLICATE_HEADERS",
    "HTTP_EXPECTED_STATUS_CODES",
    "HTTP_SKIP_TLS_VERIFY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ICMP_READ_TIMEOUT",
]


def test_help_explains_every_original_variable() -> None:
    result = run_portpatrol(args=["--help"])
    assert result.code == 0
    for variable in ORIGINAL_VARIABLES:
        assert re.search(rf"\b{variable}\b", result.stdout), variable
    assert "LOG_FORMAT" in result.stdout
    assert "143" in result.stdout
    assert "130" in result.stdout


def test_version() -> None:
    result = run_portpatrol(args=["--version"])
    assert (result.code, result.stdout.strip()) == (0, "portpatrol 0.1.0")


def test_python_dash_m() -> None:
    result = run_portpatrol(args=["--version"], command=[sys.executable, "-m", "portpatrol"])
    assert (result.code, result.stdout.strip()) == (0, "portpatrol 0.1.0")


def test_python_dash_m_waits_like_the_command() -> None:
    with TcpListener() as listener:
        result = run_portpatrol(
            {"TARGET_ADDRESS": listener.address}, command=[sys.executable, "-m", "portpatrol"]
        )
    assert result.code == 0, result.stderr
    assert "127.0.0.1 is ready ✓" in result.stderr


def test_nothing_to_wait_for() -> None:
    result = run_portpatrol({})
    assert result.code == 2
    assert len(result.lines) == 1
    assert result.lines[0].startswith("portpatrol: ")
    assert "TARGET_ADDRESS" in result.lines[0]


def test_every_problem_at_once() -> None:
    result = run_portpatrol(
        {
            "TARGET_ADDRESS": "http://api:8080/healthz",
            "CHECK_INTERVAL": "5",
            "DIAL_TIMEOUT": "0s",
            "HTTP_METHOD": "GE T",
            "HTTP_EXPECTED_STATUS_CODES": "200,600",
            "HTTP_SKIP_TLS_VERIFY": "yes",
            "LOG_EXTRA_FIELDS": "maybe",
            "LOG_FORMAT": "xml",
        }
    )
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert sorted(result.lines) == sorted(
        [
            'portpatrol: CHECK_INTERVAL="5": not a duration (use a unit, e.g. 5s, 500ms, 1m30s)',
            'portpatrol: DIAL_TIMEOUT="0s": must be greater than 0 (use a unit, e.g. 5s, 500ms, 1m30s)',
            'portpatrol: HTTP_METHOD="GE T": not an HTTP method (e.g. GET, HEAD, POST)',
            'portpatrol: HTTP_EXPECTED_STATUS_CODES="200,600": "600" is outside 100-599'
            " (e.g. 200,301-302,500-502)",
            'portpatrol: HTTP_SKIP_TLS_VERIFY="yes": not a boolean (use true or false)',
            'portpatrol: LOG_EXTRA_FIELDS="maybe": not a boolean (use true or false)',
            'portpatrol: LOG_FORMAT="xml": not a log format (use text or json)',
        ]
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"TARGET_ADDRESS": "http://db:80", "TARGET_CHECK_TYPE": "tcp"},
            'portpatrol: TARGET_ADDRESS="http://db:80": the scheme "http" contradicts TARGET_CHECK_TYPE "tcp"'
            " (drop one, or make them agree, e.g. http://host:port)",
        ),
        (
            {"TARGET_ADDRESS": "db"},
            'portpatrol: TARGET_ADDRESS="db": a TCP address needs a port'
            " (e.g. db:5432, tcp://db:5432 or [::1]:5432)",
        ),
        (
            {"TARGET_ADDRESS": "htp://x"},
            f'portpatrol: TARGET_ADDRESS="htp://x": unknown scheme "htp" {kinds.SCHEME_HINT}',
        ),
        (
            {"TARGET_ADDRESS": "http://:8080"},
            'portpatrol: TARGET_ADDRESS="http://:8080": the address has no host (e.g. http://api:8080/healthz)',
        ),
        (
            {"TARGET_ADDRESS": "db:5432", "CHECK_INTERVAL": "5"},
            'portpatrol: CHECK_INTERVAL="5": not a duration (use a unit, e.g. 5s, 500ms, 1m30s)',
        ),
        (
            {"TARGET_ADDRESS": "db:5432", "TARGET_CHECK_TYPE": "udp"},
            f'portpatrol: TARGET_CHECK_TYPE="udp": {kinds.TYPE_HINT}',
        ),
    ],
)
def test_one_clear_line_per_problem(env: dict[str, str], line: str) -> None:
    result = run_portpatrol(env)
    assert result.code == 2
    assert result.lines == [line]


def test_header_and_password_never_echoed_in_errors() -> None:
    result = run_portpatrol(
        {
            "TARGET_ADDRESS": "htp://admin:hunter2@api/",
            "HTTP_HEADERS": "Authorization=Bearer s3cr3t,more",
        }
    )
    assert result.code == 2
    assert "hunter2" not in result.stderr
    assert "s3cr3t" not in result.stderr


def test_empty_variables_count_as_unset() -> None:
    with TcpListener() as listener:
        env = {"TARGET_ADDRESS": listener.address, "CHECK_INTERVAL": "", "DIAL_TIMEOUT": "", "LOG_FORMAT": ""}
        result = run_portpatrol({**env, "LOG_EXTRA_FIELDS": "", "TARGET_CHECK_TYPE": "", "TARGET_NAME": ""})
    assert result.code == 0, result.stderr
    assert "127.0.0.1 is ready ✓" in result.stderr


def test_unknown_option() -> None:
    result = run_portpatrol({"TARGET_ADDRESS": "db:5432"}, args=["--no-such-option"])
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert result.lines[0].startswith("portpatrol: ")
