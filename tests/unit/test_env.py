"""The environment-variable source (behaviour.md 1, 2, 7): the original's variables, every problem at once."""

from __future__ import annotations

import pytest

from portpatrol import kinds
from portpatrol.errors import ConfigError
from portpatrol.kinds.http import HttpSpec
from portpatrol.kinds.icmp import IcmpSpec
from portpatrol.kinds.tcp import TcpSpec
from portpatrol.model import Kind, Target
from portpatrol.sources import env
from portpatrol.sources.env import LogSettings, log_settings, targets


def one(environ: dict[str, str]) -> Target:
    found = targets(environ)
    assert len(found) == 1
    return found[0]


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        targets(environ)
    return [str(problem) for problem in caught.value.problems]


def test_no_address_no_target() -> None:
    assert targets({}) == []
    assert targets({"TARGET_ADDRESS": ""}) == []


def test_defaults() -> None:
    target = one({"TARGET_ADDRESS": "db:5432"})
    assert target.name == "db"
    assert target.spec == TcpSpec("db", 5432)
    assert (target.timing.interval, target.timing.dial_timeout, target.timing.success_threshold) == (
        2.0,
        1.0,
        1,
    )
    assert target.kind is Kind.TCP


def test_every_timing_variable() -> None:
    target = one(
        {
            "TARGET_ADDRESS": "db:5432",
            "CHECK_INTERVAL": "1m30s",
            "DIAL_TIMEOUT": "1.5s",
            "SUCCESS_THRESHOLD": "3",
            "TARGET_NAME": "PostgreSQL primary",
        }
    )
    assert target.name == "PostgreSQL primary"
    assert (target.timing.interval, target.timing.dial_timeout, target.timing.success_threshold) == (
        90.0,
        1.5,
        3,
    )


def test_empty_variables_count_as_unset() -> None:
    environ = {
        "TARGET_ADDRESS": "db:5432",
        "TARGET_NAME": "",
        "TARGET_CHECK_TYPE": "",
        "CHECK_INTERVAL": "",
        "DIAL_TIMEOUT": "",
        "SUCCESS_THRESHOLD": "",
    }
    assert one(environ) == one({"TARGET_ADDRESS": "db:5432"})


def test_http_defaults_and_variables() -> None:
    target = one(
        {
            "TARGET_ADDRESS": "http://api:8080/healthz",
            "HTTP_METHOD": "HEAD",
            "HTTP_HEADERS": "Authorization=Bearer s3cret,X-A=1,x-a=2",
            "HTTP_ALLOW_DUPLICATE_HEADERS": "true",
            "HTTP_EXPECTED_STATUS_CODES": "200-204,301",
            "HTTP_SKIP_TLS_VERIFY": "T",
        }
    )
    spec = target.spec
    assert isinstance(spec, HttpSpec)
    assert spec.url == "http://api:8080/healthz"
    assert spec.method == "HEAD"
    assert spec.headers[0] == ("User-Agent", "portpatrol/0.1.0")
    assert spec.headers[1:] == (("Authorization", "Bearer s3cret"), ("X-A", "1"), ("x-a", "2"))
    assert str(spec.expected) == "200-204,301"
    assert spec.skip_tls_verify
    assert not spec.follow_redirects  # 301 is expected, so it must be seen
    assert "Bearer s3cret" in target.secrets
    assert spec.proxy is None


def test_http_defaults() -> None:
    spec = one({"TARGET_ADDRESS": "http://api/"}).spec
    assert isinstance(spec, HttpSpec)
    assert (spec.method, str(spec.expected), spec.skip_tls_verify, spec.follow_redirects) == (
        "GET",
        "200",
        False,
        True,
    )


def test_user_agent_header_replaces_the_default() -> None:
    spec = one({"TARGET_ADDRESS": "http://api/", "HTTP_HEADERS": "user-agent=kube-probe/1.30"}).spec
    assert isinstance(spec, HttpSpec)
    assert spec.headers == (("user-agent", "kube-probe/1.30"),)


def test_readme_scheme_less_address_with_http_type() -> None:
    target = one({"TARGET_ADDRESS": "webapp.default.svc.cluster.local:8080", "TARGET_CHECK_TYPE": "http"})
    assert target.name == "webapp.default.svc.cluster.local"
    assert isinstance(target.spec, HttpSpec)
    assert target.spec.url == "http://webapp.default.svc.cluster.local:8080"


def test_icmp_with_read_timeout() -> None:
    target = one({"TARGET_ADDRESS": "icmp://127.0.0.1", "ICMP_READ_TIMEOUT": "250ms", "DIAL_TIMEOUT": "2s"})
    assert target.spec == IcmpSpec("127.0.0.1", 0.25)
    assert target.bound == pytest.approx(2.25)
    assert one({"TARGET_ADDRESS": "::1", "TARGET_CHECK_TYPE": "ICMP"}).spec == IcmpSpec("::1", 1.0)


def test_variables_of_other_types_are_ignored() -> None:
    junk = {
        "HTTP_METHOD": "G T",
        "HTTP_HEADERS": "no-equals",
        "HTTP_EXPECTED_STATUS_CODES": "999",
        "HTTP_SKIP_TLS_VERIFY": "maybe",
        "HTTP_ALLOW_DUPLICATE_HEADERS": "maybe",
        "ICMP_READ_TIMEOUT": "5",
    }
    assert one({"TARGET_ADDRESS": "db:5432", **junk}).spec == TcpSpec("db", 5432)
    icmp_junk = {key: value for key, value in junk.items() if key != "ICMP_READ_TIMEOUT"}
    assert isinstance(one({"TARGET_ADDRESS": "icmp://h", **icmp_junk}).spec, IcmpSpec)
    spec = one({"TARGET_ADDRESS": "http://h/", "ICMP_READ_TIMEOUT": "5"}).spec
    assert isinstance(spec, HttpSpec)


def test_exact_duration_message() -> None:
    assert problems({"TARGET_ADDRESS": "db:5432", "CHECK_INTERVAL": "5"}) == [
        'CHECK_INTERVAL="5": not a duration (use a unit, e.g. 5s, 500ms, 1m30s)'
    ]


def test_all_problems_at_once_tcp() -> None:
    assert problems(
        {
            "TARGET_ADDRESS": "db:5432",
            "TARGET_CHECK_TYPE": "udp",
            "CHECK_INTERVAL": "5",
            "DIAL_TIMEOUT": "-1s",
            "SUCCESS_THRESHOLD": "0",
        }
    ) == [
        f'TARGET_CHECK_TYPE="udp": {kinds.TYPE_HINT}',
        'SUCCESS_THRESHOLD="0": not a whole number from 1 to 1000 (e.g. 3)',
        'CHECK_INTERVAL="5": not a duration (use a unit, e.g. 5s, 500ms, 1m30s)',
        'DIAL_TIMEOUT="-1s": not a duration (use a unit, e.g. 5s, 500ms, 1m30s)',
    ]


def test_all_problems_at_once_http() -> None:
    found = problems(
        {
            "TARGET_ADDRESS": "http://u:hunter2@api/",
            "CHECK_INTERVAL": "1",
            "DIAL_TIMEOUT": "0s",
            "HTTP_METHOD": "G T",
            "HTTP_HEADERS": "A=v4lue,a=v4lue2",
            "HTTP_ALLOW_DUPLICATE_HEADERS": "nope",
            "HTTP_EXPECTED_STATUS_CODES": "200,600",
            "HTTP_SKIP_TLS_VERIFY": "yes",
        }
    )
    assert sorted(found) == sorted(
        [
            'CHECK_INTERVAL="1": not a duration (use a unit, e.g. 5s, 500ms, 1m30s)',
            'DIAL_TIMEOUT="0s": must be greater than 0 (use a unit, e.g. 5s, 500ms, 1m30s)',
            'HTTP_METHOD="G T": not an HTTP method (e.g. GET, HEAD, POST)',
            'HTTP_ALLOW_DUPLICATE_HEADERS="nope": not a boolean (use true or false)',
            'HTTP_HEADERS: header "a" is given twice (set HTTP_ALLOW_DUPLICATE_HEADERS=true to send both)',
            'HTTP_EXPECTED_STATUS_CODES="200,600": "600" is outside 100-599 (e.g. 200,301-302,500-502)',
            'HTTP_SKIP_TLS_VERIFY="yes": not a boolean (use true or false)',
        ]
    )
    assert not any("v4lue" in line or "hunter2" in line for line in found)


def test_icmp_read_timeout_problem() -> None:
    assert problems({"TARGET_ADDRESS": "icmp://h", "ICMP_READ_TIMEOUT": "x"}) == [
        'ICMP_READ_TIMEOUT="x": not a duration (use a unit, e.g. 5s, 500ms, 1m30s)'
    ]


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        (
            {"TARGET_ADDRESS": "http://:8080"},
            'TARGET_ADDRESS="http://:8080": the address has no host (e.g. http://api:8080/healthz)',
        ),
        (
            {"TARGET_ADDRESS": "tcp://"},
            'TARGET_ADDRESS="tcp://": the address has no host (e.g. db:5432, tcp://db:5432 or [::1]:5432)',
        ),
        (
            {"TARGET_ADDRESS": "http://exam ple.com"},
            'TARGET_ADDRESS="http://exam ple.com": a URL has no spaces or control characters'
            " (e.g. http://api:8080/healthz)",
        ),
        (
            {"TARGET_ADDRESS": "htp://x"},
            f'TARGET_ADDRESS="htp://x": unknown scheme "htp" {kinds.SCHEME_HINT}',
        ),
        (
            {"TARGET_ADDRESS": "db"},
            'TARGET_ADDRESS="db": a TCP address needs a port (e.g. db:5432, tcp://db:5432 or [::1]:5432)',
        ),
        (
            {"TARGET_ADDRESS": "http://db:80", "TARGET_CHECK_TYPE": "tcp"},
            'TARGET_ADDRESS="http://db:80": the scheme "http" contradicts TARGET_CHECK_TYPE "tcp"'
            " (drop one, or make them agree, e.g. http://host:port)",
        ),
    ],
)
def test_address_problems_quote_the_address(environ: dict[str, str], line: str) -> None:
    assert problems(environ) == [line]


def test_contradiction_still_reports_the_other_problems() -> None:
    found = problems({"TARGET_ADDRESS": "http://x", "TARGET_CHECK_TYPE": "tcp", "CHECK_INTERVAL": "5"})
    assert len(found) == 2
    assert found[0].startswith('TARGET_ADDRESS="http://x": the scheme "http" contradicts')
    assert found[1].startswith('CHECK_INTERVAL="5"')


@pytest.mark.parametrize("address", ["htp://user:hunter2@x", "http://user:hunter2@exam ple.com"])
def test_password_not_echoed_in_address_problems(address: str) -> None:
    [line] = problems({"TARGET_ADDRESS": address})
    assert "hunter2" not in line
    assert "***@" in line


def test_header_problems_never_quote_the_value() -> None:
    [line] = problems({"TARGET_ADDRESS": "http://h/", "HTTP_HEADERS": "Authorization=Bearer abc,def"})
    assert line.startswith("HTTP_HEADERS: header 2 has no '='")
    assert "abc" not in line
    assert "def" not in line


def test_proxy_from_the_environment() -> None:
    spec = one({"TARGET_ADDRESS": "http://h/", "HTTP_PROXY": "http://proxy:3128"}).spec
    assert isinstance(spec, HttpSpec)
    assert spec.proxy == "http://proxy:3128"
    spec = one({"TARGET_ADDRESS": "http://h/", "HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "h"}).spec
    assert isinstance(spec, HttpSpec)
    assert spec.proxy is None
    spec = one({"TARGET_ADDRESS": "https://h/", "https_proxy": "proxy:3128"}).spec
    assert isinstance(spec, HttpSpec)
    assert spec.proxy == "http://proxy:3128"


def test_proxy_password_is_a_secret() -> None:
    target = one({"TARGET_ADDRESS": "http://h/", "HTTP_PROXY": "http://u:pr0xypw@proxy:3128"})
    assert "pr0xypw" in target.secrets


def test_unsupported_proxy_is_a_problem_naming_the_variable() -> None:
    [line] = problems({"TARGET_ADDRESS": "http://h/", "HTTP_PROXY": "socks5://proxy:1080"})
    assert "HTTP_PROXY" in line
    assert "only http:// and https:// proxies" in line


def test_log_settings() -> None:
    assert log_settings({}) == LogSettings(None, False)
    assert log_settings({"LOG_FORMAT": "", "LOG_EXTRA_FIELDS": ""}) == LogSettings(None, False)
    assert log_settings({"LOG_FORMAT": "JSON", "LOG_EXTRA_FIELDS": "1"}) == LogSettings("json", True)
    assert log_settings({"LOG_FORMAT": "text", "LOG_EXTRA_FIELDS": "False"}) == LogSettings("text", False)


def test_log_settings_all_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        log_settings({"LOG_FORMAT": "xml", "LOG_EXTRA_FIELDS": "maybe"})
    assert [str(p) for p in caught.value.problems] == [
        'LOG_FORMAT="xml": not a log format (use text or json)',
        'LOG_EXTRA_FIELDS="maybe": not a boolean (use true or false)',
    ]


def test_module_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGET_ADDRESS", "elsewhere:1")
    assert env.targets({}) == []


def test_bad_address_still_reports_the_http_variables() -> None:
    found = problems(
        {
            "TARGET_ADDRESS": "http://:8080",
            "HTTP_METHOD": "G T",
            "HTTP_EXPECTED_STATUS_CODES": "99",
            "HTTP_SKIP_TLS_VERIFY": "yes",
        }
    )
    assert [line.split(":")[0].split("=")[0] for line in found] == [
        "TARGET_ADDRESS",
        "HTTP_METHOD",
        "HTTP_EXPECTED_STATUS_CODES",
        "HTTP_SKIP_TLS_VERIFY",
    ]


def test_bad_address_still_reports_icmp_read_timeout() -> None:
    found = problems({"TARGET_ADDRESS": "icmp://host:80", "ICMP_READ_TIMEOUT": "1"})
    assert len(found) == 2
    assert found[1].startswith('ICMP_READ_TIMEOUT="1": not a duration')


def test_unknown_scheme_checks_no_type_specific_variables() -> None:
    # Which variables apply is unclear, so none is judged: no noise about the wrong kind.
    assert len(problems({"TARGET_ADDRESS": "htp://x", "HTTP_METHOD": "G T", "ICMP_READ_TIMEOUT": "1"})) == 1
