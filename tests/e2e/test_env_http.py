"""HTTP(S) targets from the environment (behaviour.md 4.2) against real servers, a recording proxy, and
peers that stall, drip or never stop talking."""

from __future__ import annotations

import itertools
import json
import ssl
from pathlib import Path

import pytest

from tests.peers import (
    HttpPeer,
    RecordingProxy,
    TcpListener,
    free_port,
    line_time,
    lines_until,
    parse_line,
    run_portpatrol,
)

FAST = {"CHECK_INTERVAL": "100ms", "DIAL_TIMEOUT": "2s"}


def failures(lines: list[str]) -> list[dict[str, str]]:
    return [parse_line(line) for line in lines if "is not ready ✗" in line]


# --------------------------------------------------------------------------- statuses


def test_not_ready_until_200(http_peer: HttpPeer) -> None:
    result = run_portpatrol({"TARGET_ADDRESS": http_peer.url("/flaky/2/200"), **FAST})
    assert result.code == 0, result.stderr
    failed = failures(result.lines)
    assert [f["error"] for f in failed] == ["status 503, expected 200"] * 2
    assert all(f["level"] == "WARN" for f in failed)
    assert "127.0.0.1 is ready ✓" in result.stderr
    assert len(http_peer.requests) == 3


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/status/204", "204"),
        ("/status/418", "200-204,418"),
        ("/status/502", " 200 , 500 - 502 "),
    ],
)
def test_expected_codes_and_ranges(http_peer: HttpPeer, path: str, expected: str) -> None:
    result = run_portpatrol(
        {"TARGET_ADDRESS": http_peer.url(path), "HTTP_EXPECTED_STATUS_CODES": expected, **FAST}
    )
    assert result.code == 0, result.stderr
    assert not failures(result.lines)


@pytest.mark.parametrize(("path", "expected"), [("/status/204", "200"), ("/status/503", "500-502,200")])
def test_status_outside_the_set_is_not_ready(http_peer: HttpPeer, path: str, expected: str) -> None:
    lines = lines_until(
        {"TARGET_ADDRESS": http_peer.url(path), "HTTP_EXPECTED_STATUS_CODES": expected, **FAST}
    )
    status = path.rsplit("/", 1)[1]
    assert failures(lines)[0]["error"] == f"status {status}, expected {expected}"
    assert not any("is ready ✓" in line for line in lines)


# --------------------------------------------------------------------------- redirects


def test_redirects_followed_and_final_status_counts(http_peer: HttpPeer) -> None:
    result = run_portpatrol({"TARGET_ADDRESS": http_peer.url("/redirect/3/200"), **FAST})
    assert result.code == 0, result.stderr
    assert [r.path for r in http_peer.requests] == [f"/redirect/{n}/200" for n in (3, 2, 1, 0)]


def test_final_status_after_redirects_is_what_counts(http_peer: HttpPeer) -> None:
    lines = lines_until({"TARGET_ADDRESS": http_peer.url("/redirect/2/404"), **FAST})
    assert failures(lines)[0]["error"] == "status 404, expected 200"


def test_ten_redirects_are_followed(http_peer: HttpPeer) -> None:
    result = run_portpatrol({"TARGET_ADDRESS": http_peer.url("/redirect/10/200"), **FAST})
    assert result.code == 0, result.stderr


@pytest.mark.parametrize("path", ["/redirect/11/200", "/loop"])
def test_more_than_ten_redirects_fail(http_peer: HttpPeer, path: str) -> None:
    lines = lines_until({"TARGET_ADDRESS": http_peer.url(path), **FAST})
    assert failures(lines)[0]["error"] == "more than 10 redirects"


def test_redirect_not_followed_when_a_3xx_is_expected(http_peer: HttpPeer) -> None:
    result = run_portpatrol(
        {"TARGET_ADDRESS": http_peer.url("/redirect/3/200"), "HTTP_EXPECTED_STATUS_CODES": "302", **FAST}
    )
    assert result.code == 0, result.stderr
    assert [r.path for r in http_peer.requests] == ["/redirect/3/200"]


def test_redirect_seen_as_not_ready_when_only_its_code_range_overlaps(http_peer: HttpPeer) -> None:
    # 301 is expected, so redirects are not followed; the 302 the peer answers is not in the set.
    lines = lines_until(
        {"TARGET_ADDRESS": http_peer.url("/redirect/1/200"), "HTTP_EXPECTED_STATUS_CODES": "200,301", **FAST}
    )
    assert failures(lines)[0]["error"] == "status 302, expected 200,301"
    assert {r.path for r in http_peer.requests} == {"/redirect/1/200"}


# --------------------------------------------------------------------------- method and headers


@pytest.mark.parametrize("method", ["HEAD", "POST", "OPTIONS"])
def test_method_reaches_the_server(http_peer: HttpPeer, method: str) -> None:
    result = run_portpatrol({"TARGET_ADDRESS": http_peer.url("/status/200"), "HTTP_METHOD": method, **FAST})
    assert result.code == 0, result.stderr
    assert [r.method for r in http_peer.requests] == [method]


def test_default_method_and_user_agent(http_peer: HttpPeer) -> None:
    result = run_portpatrol({"TARGET_ADDRESS": http_peer.url("/status/200?x=1"), **FAST})
    assert result.code == 0, result.stderr
    [request] = http_peer.requests
    assert (request.method, request.path) == ("GET", "/status/200?x=1")
    assert request.header_values("User-Agent") == ["portpatrol/0.1.0"]


def test_headers_sent_in_the_order_written(http_peer: HttpPeer) -> None:
    result = run_portpatrol(
        {
            "TARGET_ADDRESS": http_peer.url("/status/200"),
            "HTTP_HEADERS": "X-Zeta=1, X-Alpha = a=b ,,X-Empty=,X-Mid=m",
            **FAST,
        }
    )
    assert result.code == 0, result.stderr
    [request] = http_peer.requests
    sent = [(k, v) for k, v in request.headers if k.lower().startswith("x-")]
    assert sent == [("X-Zeta", "1"), ("X-Alpha", "a=b"), ("X-Empty", ""), ("X-Mid", "m")]


def test_duplicate_headers_every_value_sent_when_allowed(http_peer: HttpPeer) -> None:
    result = run_portpatrol(
        {
            "TARGET_ADDRESS": http_peer.url("/status/200"),
            "HTTP_HEADERS": "X-Tag=one,x-tag=two,X-Other=o,X-TAG=three",
            "HTTP_ALLOW_DUPLICATE_HEADERS": "true",
            **FAST,
        }
    )
    assert result.code == 0, result.stderr
    [request] = http_peer.requests
    assert request.header_values("X-Tag") == ["one", "two", "three"]


def test_duplicate_headers_refused_without_allow(http_peer: HttpPeer) -> None:
    result = run_portpatrol(
        {"TARGET_ADDRESS": http_peer.url("/status/200"), "HTTP_HEADERS": "X-Tag=one,x-tag=two", **FAST}
    )
    assert result.code == 2
    assert result.lines == [
        'portpatrol: HTTP_HEADERS: header "x-tag" is given twice'
        " (set HTTP_ALLOW_DUPLICATE_HEADERS=true to send both)"
    ]
    assert http_peer.requests == []


def test_url_credentials_sent_as_basic_auth(http_peer: HttpPeer) -> None:
    result = run_portpatrol({"TARGET_ADDRESS": f"http://admin:hunter2@127.0.0.1:{http_peer.port}/", **FAST})
    assert result.code == 0, result.stderr
    assert http_peer.requests[0].header_values("Authorization") == ["Basic YWRtaW46aHVudGVyMg=="]
    assert "hunter2" not in result.stderr


def test_authorization_header_wins_over_url_credentials(http_peer: HttpPeer) -> None:
    # As in Go's client, which the original used: the header the user wrote is what is sent.
    env = {
        "TARGET_ADDRESS": f"http://admin:hunter2@127.0.0.1:{http_peer.port}/",
        "HTTP_HEADERS": "authorization=Bearer x",
    }
    result = run_portpatrol({**env, **FAST})
    assert result.code == 0, result.stderr
    assert http_peer.requests[0].header_values("Authorization") == ["Bearer x"]


def test_user_agent_header_replaces_the_default(http_peer: HttpPeer) -> None:
    result = run_portpatrol(
        {"TARGET_ADDRESS": http_peer.url("/status/200"), "HTTP_HEADERS": "User-Agent=kube-probe/1.30", **FAST}
    )
    assert result.code == 0, result.stderr
    assert http_peer.requests[0].header_values("user-agent") == ["kube-probe/1.30"]


@pytest.mark.parametrize("check_type", ["http", "HTTP"])
def test_readme_scheme_less_address_with_http_type(http_peer: HttpPeer, check_type: str) -> None:
    result = run_portpatrol(
        {"TARGET_ADDRESS": f"localhost:{http_peer.port}", "TARGET_CHECK_TYPE": check_type, **FAST}
    )
    assert result.code == 0, result.stderr
    assert "localhost is ready ✓" in result.stderr
    assert [(r.method, r.path) for r in http_peer.requests] == [("GET", "/")]


def test_ipv6_url() -> None:
    with HttpPeer("::1") as peer:
        result = run_portpatrol({"TARGET_ADDRESS": peer.url("/status/200"), **FAST})
    assert result.code == 0, result.stderr
    assert "::1 is ready ✓" in result.stderr
    assert len(peer.requests) == 1


def test_server_that_starts_late() -> None:
    with HttpPeer(start_after=0.6) as peer:
        result = run_portpatrol({"TARGET_ADDRESS": peer.url("/"), **FAST})
    assert result.code == 0, result.stderr
    assert failures(result.lines)[0]["error"] == "connection refused"


# --------------------------------------------------------------------------- HTTPS


def test_self_signed_certificate_refused(https_peer: HttpPeer) -> None:
    lines = lines_until({"TARGET_ADDRESS": https_peer.url("/status/200"), **FAST})
    error = failures(lines)[0]["error"]
    assert "certificate" in error.lower()
    assert https_peer.requests == []


def test_skip_tls_verify(https_peer: HttpPeer) -> None:
    result = run_portpatrol(
        {"TARGET_ADDRESS": https_peer.url("/status/200"), "HTTP_SKIP_TLS_VERIFY": "1", **FAST}
    )
    assert result.code == 0, result.stderr
    assert len(https_peer.requests) == 1


def test_certificate_trusted_through_ssl_cert_file(
    https_peer: HttpPeer, tls_server: tuple[ssl.SSLContext, Path]
) -> None:
    result = run_portpatrol(
        {"TARGET_ADDRESS": https_peer.url("/status/200"), "SSL_CERT_FILE": str(tls_server[1]), **FAST}
    )
    assert result.code == 0, result.stderr


def test_https_with_type_https_and_scheme_less_address(https_peer: HttpPeer) -> None:
    result = run_portpatrol(
        {
            "TARGET_ADDRESS": f"localhost:{https_peer.port}",
            "TARGET_CHECK_TYPE": "https",
            "HTTP_SKIP_TLS_VERIFY": "true",
            **FAST,
        }
    )
    assert result.code == 0, result.stderr
    assert len(https_peer.requests) == 1


# --------------------------------------------------------------------------- proxies


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_http_proxy_sees_the_request(http_peer: HttpPeer, proxy: RecordingProxy, variable: str) -> None:
    url = http_peer.url("/status/200")
    result = run_portpatrol({"TARGET_ADDRESS": url, variable: proxy.url, **FAST})
    assert result.code == 0, result.stderr
    assert proxy.seen == [("GET", url)]
    assert len(http_peer.requests) == 1


@pytest.mark.parametrize("no_proxy", ["127.0.0.0/8", "example.invalid, 127.0.0.1"])
def test_no_proxy_bypasses_the_proxy(http_peer: HttpPeer, proxy: RecordingProxy, no_proxy: str) -> None:
    result = run_portpatrol(
        {
            "TARGET_ADDRESS": http_peer.url("/status/200"),
            "HTTP_PROXY": proxy.url,
            "NO_PROXY": no_proxy,
            **FAST,
        }
    )
    assert result.code == 0, result.stderr
    assert proxy.seen == []
    assert len(http_peer.requests) == 1


def test_https_proxy_tunnels_with_connect(https_peer: HttpPeer, proxy: RecordingProxy) -> None:
    result = run_portpatrol(
        {
            "TARGET_ADDRESS": https_peer.url("/status/200"),
            "HTTPS_PROXY": proxy.url,
            "HTTP_PROXY": "http://127.0.0.1:9",  # the wrong variable for https: must not be used
            "HTTP_SKIP_TLS_VERIFY": "true",
            **FAST,
        }
    )
    assert result.code == 0, result.stderr
    assert proxy.seen == [("CONNECT", f"127.0.0.1:{https_peer.port}")]


def test_proxy_down_is_a_failed_attempt(http_peer: HttpPeer) -> None:
    lines = lines_until(
        {"TARGET_ADDRESS": http_peer.url("/"), "HTTP_PROXY": f"http://127.0.0.1:{free_port()}", **FAST}
    )
    assert "refused" in failures(lines)[0]["error"]
    assert http_peer.requests == []


# --------------------------------------------------------------------------- every attempt ends in its bound


def assert_bounded(lines: list[str], bound: float, interval: float, error: str) -> None:
    failed = [line for line in lines if "is not ready ✗" in line]
    assert all(parse_line(line)["error"] == error for line in failed), failed
    stamps = [line_time(line) for line in lines[:1] + failed]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # Each attempt takes about its bound; allow a generous margin on a busy machine, none below.
    assert all(bound * 0.8 <= gap < bound + interval + 1.5 for gap in gaps), gaps


# /drip/0.1 sends a byte every 100 ms: a timeout per read would never fire; only a bound on the
# whole attempt ends it.
@pytest.mark.parametrize("path", ["/silent", "/drip/0.1", "/sleep/30/200"])
def test_stalling_peers_bounded_by_dial_timeout(http_peer: HttpPeer, path: str) -> None:
    lines = lines_until(
        {"TARGET_ADDRESS": http_peer.url(path), "DIAL_TIMEOUT": "300ms", "CHECK_INTERVAL": "100ms"}, count=3
    )
    assert_bounded(lines, 0.3, 0.1, "no answer within 300ms")


def test_tls_handshake_stall_bounded() -> None:
    with TcpListener(silent=True) as silent:
        lines = lines_until(
            {
                "TARGET_ADDRESS": f"https://127.0.0.1:{silent.port}/",
                "DIAL_TIMEOUT": "400ms",
                "CHECK_INTERVAL": "100ms",
            },
            count=3,
        )
    failed = failures(lines)
    assert "no answer within 400ms" in failed[0]["error"]
    stamps = [line_time(line) for line in lines if "is not ready ✗" in line]
    assert all(0.3 <= b - a < 2.0 for a, b in itertools.pairwise(stamps))


def test_endless_body_changes_nothing(http_peer: HttpPeer) -> None:
    result = run_portpatrol({"TARGET_ADDRESS": http_peer.url("/endless"), "DIAL_TIMEOUT": "1s"}, timeout=15)
    assert result.code == 0, result.stderr
    assert result.elapsed < 5


def test_endless_body_with_unexpected_status_fails_fast(http_peer: HttpPeer) -> None:
    lines = lines_until(
        {"TARGET_ADDRESS": http_peer.url("/endless"), "HTTP_EXPECTED_STATUS_CODES": "204", **FAST}, count=3
    )
    assert failures(lines)[0]["error"] == "status 200, expected 204"
    stamps = [line_time(line) for line in lines if "is not ready ✗" in line]
    assert all(b - a < 1.5 for a, b in itertools.pairwise(stamps))


# --------------------------------------------------------------------------- secrets and JSON


SECRETS = ("hunter2", "t0k3n", "s3cr3t-bearer", "k3y-value", "pr0xypw")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_never_logged(http_peer: HttpPeer, proxy: RecordingProxy, log_format: str) -> None:
    address = f"http://admin:hunter2@127.0.0.1:{http_peer.port}/flaky/2/200?access_token=t0k3n&page=1"
    env = {
        "TARGET_ADDRESS": address,
        "HTTP_HEADERS": "Authorization=Bearer s3cr3t-bearer,X-Api-Key=k3y-value",
        "HTTP_PROXY": f"http://user:pr0xypw@127.0.0.1:{proxy.port}",
        "LOG_EXTRA_FIELDS": "true",
        "LOG_FORMAT": log_format,
        **FAST,
    }
    result = run_portpatrol(env)
    assert result.code == 0, result.stderr
    assert len(failures(result.lines)) == 2
    for secret in SECRETS:
        assert secret not in result.stderr
        assert secret not in result.stdout
    # ... yet they were sent: the check used them.
    assert http_peer.requests[0].header_values("Authorization") == ["Bearer s3cr3t-bearer"]
    assert "access_token=t0k3n" in http_peer.requests[0].path
    record = parse_line(result.lines[1])
    assert record["target_address"] == (
        f"http://***@127.0.0.1:{http_peer.port}/flaky/2/200?access_token=***&page=1"
    )


def test_secrets_not_logged_when_attempts_fail_on_them(http_peer: HttpPeer) -> None:
    # The proxy is down: the error comes from the connection to it, with its password in the URL.
    env = {
        "TARGET_ADDRESS": f"http://admin:hunter2@127.0.0.1:{http_peer.port}/",
        "HTTP_PROXY": f"http://user:pr0xypw@127.0.0.1:{free_port()}",
        "HTTP_HEADERS": "Authorization=Bearer s3cr3t-bearer",
        "LOG_EXTRA_FIELDS": "true",
        **FAST,
    }
    lines = lines_until(env)
    for secret in SECRETS:
        assert not any(secret in line for line in lines)


def test_json_lines_have_the_text_keys(http_peer: HttpPeer) -> None:
    env = {"TARGET_ADDRESS": http_peer.url("/flaky/1/200"), "LOG_EXTRA_FIELDS": "true", **FAST}
    text = run_portpatrol(env)
    http_peer.counts.clear()
    as_json = run_portpatrol({**env, "LOG_FORMAT": "json"})
    assert text.code == as_json.code == 0
    assert len(text.lines) == len(as_json.lines)
    for text_line, json_line in zip(text.lines, as_json.lines, strict=True):
        record = json.loads(json_line)
        assert list(record) == list(parse_line(text_line))
        varying = {"time", "elapsed"}
        assert {k: v for k, v in record.items() if k not in varying} == {
            k: v for k, v in parse_line(text_line).items() if k not in varying
        }
    failure = json.loads(as_json.lines[1])
    assert failure["level"] == "WARN"
    assert failure["checker_type"] == "HTTP"
    assert failure["error"] == "status 503, expected 200"
