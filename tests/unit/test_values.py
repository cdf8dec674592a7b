"""Every parser of portpatrol/sources/values.py against the edge cases of behaviour.md (sections 2-4)."""

from __future__ import annotations

import re

import pytest

from portpatrol import kinds
from portpatrol.checks.httppolicy import select_proxy
from portpatrol.kinds import intended_kind, parse_address
from portpatrol.kinds import parse_type as parse_check_type
from portpatrol.kinds.http import StatusCodes, parse_headers, parse_method, parse_status_codes
from portpatrol.model import Kind
from portpatrol.text import mask_secrets, quote
from portpatrol.values import format_duration, parse_bool, parse_duration, parse_threshold

# --------------------------------------------------------------------------- durations (3)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        ("100ms", 0.1),
        (".5s", 0.5),
        ("1ns", 1e-9),
        ("1us", 1e-6),
        ("1µs", 1e-6),  # MICRO SIGN, as Go accepts
        ("1μs", 1e-6),  # GREEK SMALL LETTER MU, as Go accepts
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_durations_in_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "5",
        "0",
        "0s",
        "0ms",
        "-1s",
        "-5",
        "1 s",
        "1s ",
        " 1s",
        "1S",
        "1sec",
        "1m30",
        "s",
        "",
        "1e3s",
        "+1s",
        "1d",
    ],
)
def test_bad_durations_show_a_valid_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"\(use a unit, e\.g\. 5s, 500ms, 1m30s\)$"):
        parse_duration(text)


def test_bare_number_says_not_a_duration() -> None:
    with pytest.raises(ValueError, match=r"^not a duration \(use a unit"):
        parse_duration("5")


def test_zero_says_it_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        parse_duration("0s")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (2.0, "2s"),
        (0.5, "500ms"),
        (0.1, "100ms"),
        (1.5, "1.5s"),
        (90.0, "1m30s"),
        (3600.0, "1h0m0s"),
        (60.0, "1m0s"),
        (3723.5, "1h2m3.5s"),
        (0.0015, "1.5ms"),
        (1e-6, "1µs"),
        (1e-9, "1ns"),
        (0.0, "0s"),
    ],
)
def test_format_duration_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "text", ["2s", "500ms", "1m30s", "1h0m0s", "1.5s", "100ms", "1h2m3.5s", "1µs", "30s"]
)
def test_format_duration_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


# --------------------------------------------------------------------------- booleans, type, method


@pytest.mark.parametrize("text", ["1", "t", "T", "true", "TRUE", "True"])
def test_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "false", "FALSE", "False"])
def test_false(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["yes", "no", "on", "tRue", "2", "", " true"])
def test_not_booleans(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a boolean \(use true or false\)"):
        parse_bool(text)


@pytest.mark.parametrize(
    ("text", "kind"), [("tcp", "tcp"), ("HTTP", "http"), ("Https", "https"), ("ICMP", "icmp")]
)
def test_check_types_any_case(text: str, kind: str) -> None:
    assert parse_check_type(text) == kind


@pytest.mark.parametrize("text", ["udp", "quic", "", "http2"])
def test_unknown_check_type(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(kinds.TYPE_HINT)):
        parse_check_type(text)


@pytest.mark.parametrize("text", ["GET", "HEAD", "POST", "PROPFIND", "get", "M-SEARCH"])
def test_methods_are_http_tokens(text: str) -> None:
    assert parse_method(text) == text


@pytest.mark.parametrize("text", ["G ET", "", "GET/", "GÉT", "GET\r\n", "(GET)"])
def test_invalid_methods(text: str) -> None:
    with pytest.raises(ValueError, match=r"not an HTTP method \(e\.g\. GET, HEAD, POST\)"):
        parse_method(text)


@pytest.mark.parametrize(("text", "count"), [("1", 1), ("3", 3), ("1000", 1000)])
def test_thresholds(text: str, count: int) -> None:
    assert parse_threshold(text) == count


@pytest.mark.parametrize("text", ["0", "-1", "1001", "two", "", "1.5"])
def test_bad_thresholds(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 3"):
        parse_threshold(text)


# --------------------------------------------------------------------------- status codes (4.2)


def test_status_codes_and_ranges() -> None:
    codes = parse_status_codes("200,301-302,404,500-502")
    assert codes.ranges == ((200, 200), (301, 302), (404, 404), (500, 502))
    assert str(codes) == "200,301-302,404,500-502"
    for inside in (200, 301, 302, 404, 500, 501, 502):
        assert inside in codes
    for outside in (201, 300, 303, 403, 405, 499, 503):
        assert outside not in codes


def test_status_codes_spaces_around_pieces_ignored() -> None:
    assert parse_status_codes(" 200 , 301 - 302 ").ranges == ((200, 200), (301, 302))


def test_status_code_bounds_inclusive() -> None:
    assert parse_status_codes("100-599").ranges == ((100, 599),)
    assert parse_status_codes("204").ranges == ((204, 204),)


def test_default_expected_is_200() -> None:
    assert StatusCodes().ranges == ((200, 200),)
    assert not StatusCodes().has_redirect
    assert parse_status_codes("200,301").has_redirect
    assert parse_status_codes("250-350").has_redirect


@pytest.mark.parametrize(
    ("text", "piece", "why"),
    [
        ("600", "600", "outside 100-599"),
        ("99", "99", "outside 100-599"),
        ("200,1000", "1000", "outside 100-599"),
        ("500-600", "500-600", "outside 100-599"),
        ("302-301", "302-301", "ends before it starts"),
        ("abc", "abc", "not a status code"),
        ("2xx", "2xx", "not a status code"),
        ("200,", "", "not a status code"),
        ("200-", "200-", "not a status code"),
        ("-200", "-200", "not a status code"),
        ("1e2", "1e2", "not a status code"),
        ("200;201", "200;201", "not a status code"),
        ("٢٠٠", "٢٠٠", "not a status code"),
    ],
)
def test_bad_status_codes_quote_the_piece(text: str, piece: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"\(e\.g\. 200,301-302,500-502\)") as caught:
        parse_status_codes(text)
    assert str(caught.value).startswith(f"{quote(piece)} ")
    assert why in str(caught.value)


# --------------------------------------------------------------------------- headers (4.2)


def test_headers_split_on_first_equals() -> None:
    assert parse_headers("Authorization=Bearer a=b==", False) == (("Authorization", "Bearer a=b=="),)


def test_header_empty_value_allowed() -> None:
    assert parse_headers("X-Empty=", False) == (("X-Empty", ""),)


def test_header_empty_pieces_skipped_and_trimmed() -> None:
    assert parse_headers(" A = 1 ,, ,B= 2,", False) == (("A", "1"), ("B", "2"))
    assert parse_headers(",", False) == ()


def test_headers_keep_their_order() -> None:
    assert [n for n, _ in parse_headers("Z=1,A=2,M=3", False)] == ["Z", "A", "M"]


def test_header_without_equals_is_an_error_naming_the_piece_not_its_value() -> None:
    # "Bearer a,b" splits into a second piece "b": the message must point at it without echoing
    # anything that may be part of a credential.
    with pytest.raises(ValueError, match=r"^header 2 has no '=' between name and value") as caught:
        parse_headers("Authorization=Bearer s3cret,tail-of-s3cret", False)
    assert "s3cret" not in str(caught.value)


def test_header_with_empty_key_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^header 2 has an empty name") as caught:
        parse_headers("A=1, =hidden-value", False)
    assert "hidden-value" not in str(caught.value)


def test_header_with_invalid_name() -> None:
    with pytest.raises(ValueError, match="cannot hold") as caught:
        parse_headers("Bad Name=1", False)
    assert "Bad" not in str(caught.value)  # a curl-style `Authorization: Basic <credentials>` is no name


@pytest.mark.parametrize("text", ["X-A=1,X-A=2", "X-A=1,x-a=2", "Accept=a,ACCEPT=b"])
def test_duplicate_headers_rejected_case_insensitively(text: str) -> None:
    with pytest.raises(ValueError, match=r"given twice .*HTTP_ALLOW_DUPLICATE_HEADERS=true") as caught:
        parse_headers(text, False)
    assert "=1" not in str(caught.value)


def test_duplicate_headers_allowed_send_every_value_in_order() -> None:
    assert parse_headers("X-A=1,x-a=2,B=3,X-A=4", True) == (
        ("X-A", "1"),
        ("x-a", "2"),
        ("B", "3"),
        ("X-A", "4"),
    )


def test_header_value_with_control_character_rejected_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="control character") as caught:
        parse_headers("X-A=se\ncret", False)
    assert "cret" not in str(caught.value)


# --------------------------------------------------------------------------- addresses (2, 2.1, 2.2)


@pytest.mark.parametrize(
    ("text", "name", "kind", "port"),
    [
        ("example.com:80", "example.com", Kind.TCP, 80),
        ("tcp://example.com:80", "example.com", Kind.TCP, 80),
        (
            "http://postgres.default.svc.cluster.local:9000/healthz",
            "postgres.default.svc.cluster.local",
            Kind.HTTP,
            9000,
        ),
        ("https://user:pass@db.example.com:8443/x?y=1", "db.example.com", Kind.HTTP, 8443),
        ("HTTP://Example.COM:80", "Example.COM", Kind.HTTP, 80),
        ("[::1]:8080", "::1", Kind.TCP, 8080),
        ("icmp://127.0.0.1", "127.0.0.1", Kind.ICMP, None),
        ("localhost:8082", "localhost", Kind.TCP, 8082),
        ("tcp://[::1]:5432", "::1", Kind.TCP, 5432),
        ("[::1]:5432", "::1", Kind.TCP, 5432),
        ("icmp://[::1]", "::1", Kind.ICMP, None),
        ("icmp://::1", "::1", Kind.ICMP, None),
        ("ICMP://Gateway", "Gateway", Kind.ICMP, None),
        ("TCP://db:1", "db", Kind.TCP, 1),
        ("db:65535", "db", Kind.TCP, 65535),
        ("http://[::1]:8080/x", "::1", Kind.HTTP, 8080),
        ("https://api", "api", Kind.HTTP, None),
    ],
)
def test_names_and_types_inferred(text: str, name: str, kind: Kind, port: int | None) -> None:
    address = parse_address(text, None, "TARGET_CHECK_TYPE")
    assert (address.host, address.kind, address.port) == (name, kind, port)


def test_http_url_kept_as_written() -> None:
    url = "http://postgres.default.svc.cluster.local:9000/healthz?verbose=1"
    assert parse_address(url, None, "T").url == url
    assert parse_address("HTTPS://Example.COM/x", None, "T").url == "https://Example.COM/x"


@pytest.mark.parametrize(
    ("text", "check_type", "url"),
    [
        ("webapp.default.svc.cluster.local:8080", "http", "http://webapp.default.svc.cluster.local:8080"),
        ("webapp:8443/healthz", "https", "https://webapp:8443/healthz"),
        ("[::1]:8080", "http", "http://[::1]:8080"),
    ],
)
def test_scheme_less_with_http_type_becomes_a_url(text: str, check_type: str, url: str) -> None:
    address = parse_address(text, check_type, "TARGET_CHECK_TYPE")
    assert address.kind is Kind.HTTP
    assert address.url == url


def test_type_decides_without_scheme() -> None:
    assert parse_address("db:5432", "tcp", "T").kind is Kind.TCP
    assert parse_address("127.0.0.1", "icmp", "T").kind is Kind.ICMP
    assert parse_address("::1", "icmp", "T").host == "::1"
    assert parse_address("[::1]", "icmp", "T").host == "::1"


@pytest.mark.parametrize(("scheme", "check_type"), [("http", "https"), ("https", "http"), ("tcp", "tcp")])
def test_agreeing_scheme_and_type(scheme: str, check_type: str) -> None:
    address = parse_address(f"{scheme}://db:8080", check_type, "TARGET_CHECK_TYPE")
    assert address.host == "db"


@pytest.mark.parametrize(
    ("text", "check_type"),
    [("http://db:80", "tcp"), ("tcp://db:80", "http"), ("icmp://db", "tcp"), ("https://db", "icmp")],
)
def test_contradiction_names_both(text: str, check_type: str) -> None:
    scheme = text.split(":", maxsplit=1)[0]
    with pytest.raises(ValueError, match="contradicts") as caught:
        parse_address(text, check_type, "TARGET_CHECK_TYPE")
    message = str(caught.value)
    assert f'scheme "{scheme}"' in message
    assert f'TARGET_CHECK_TYPE "{check_type}"' in message


@pytest.mark.parametrize(("text", "scheme"), [("htp://x", "htp"), ("udp://x:53", "udp"), ("ftp://x", "ftp")])
def test_unknown_scheme_is_named(text: str, scheme: str) -> None:
    with pytest.raises(ValueError, match=f'unknown scheme "{scheme}"'):
        parse_address(text, None, "TARGET_CHECK_TYPE")


@pytest.mark.parametrize(
    ("text", "check_type", "why"),
    [
        ("http://:8080", None, "no host"),
        ("tcp://", None, "no host"),
        ("", None, "no host"),
        (":5432", None, "no host"),
        ("http://exam ple.com", None, "no spaces"),
        ("exam ple.com:80", None, "not a host name"),
        ("db", None, "needs a port"),
        ("tcp://db", None, "needs a port"),
        ("db:0", None, "1 to 65535"),
        ("db:65536", None, "1 to 65535"),
        ("db:http", None, "1 to 65535"),
        ("db:5432/x", None, "no path"),
        ("::1:5432", None, "in brackets"),
        ("[::1", None, "bracketed IPv6"),
        ("[zz]:80", None, "not an IPv6 address"),
        ("icmp://host:80", None, "no port"),
        ("icmp://", None, "not a host name"),
        ("http://[::1/", None, "not a URL"),
        ("db:5432", "icmp", "no port"),
    ],
)
def test_bad_addresses(text: str, check_type: str | None, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_address(text, check_type, "TARGET_CHECK_TYPE")
    assert "(e.g. " in str(caught.value)


def test_password_masked_and_kept_secret() -> None:
    address = parse_address("https://user:pa%40ss@db.example.com:8443/x?y=1", None, "T")
    assert address.display == "https://***@db.example.com:8443/x?y=1"
    assert {"pa%40ss", "pa@ss"} <= address.secrets
    assert address.url is not None
    assert "pa%40ss" in address.url  # the request still carries it


def test_user_only_userinfo_is_a_secret() -> None:
    address = parse_address("http://tok3n@h/", None, "T")
    assert address.display == "http://***@h/"
    assert "tok3n" in address.secrets


def test_token_query_values_masked() -> None:
    address = parse_address("http://h/x?access_token=s3cr%2Bt&page=2", None, "T")
    assert address.display == "http://h/x?access_token=***&page=2"
    assert {"s3cr%2Bt", "s3cr+t"} <= address.secrets


def test_tcp_display_drops_only_the_scheme() -> None:
    assert parse_address("tcp://db:5432", None, "T").display == "db:5432"


# --------------------------------------------------------------------------- proxies (4.2)


PROXY = {"HTTP_PROXY": "http://proxy:3128", "HTTPS_PROXY": "http://sproxy:3128"}


def test_proxy_by_scheme() -> None:
    assert select_proxy("http://a/", PROXY) == ("HTTP_PROXY", "http://proxy:3128")
    assert select_proxy("https://a/", PROXY) == ("HTTPS_PROXY", "http://sproxy:3128")
    assert select_proxy("https://a/", {"HTTP_PROXY": "http://p:1"}) is None
    assert select_proxy("http://a/", {}) is None


def test_lower_case_wins_and_scheme_less_proxy() -> None:
    env = {"http_proxy": "low:1", "HTTP_PROXY": "http://up:1"}
    assert select_proxy("http://a/", env) == ("http_proxy", "http://low:1")


def test_empty_proxy_counts_as_unset() -> None:
    assert select_proxy("http://a/", {"http_proxy": "", "HTTP_PROXY": "http://up:1"}) == (
        "HTTP_PROXY",
        "http://up:1",
    )


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        ("http://a/", "a", True),
        ("http://A:80/", " b , a ", True),
        ("http://x.a/", ".a", True),
        ("http://x.a/", "a", True),
        ("http://xa/", "a", False),
        ("http://10.1.2.3/", "10.0.0.0/8", True),
        ("http://11.1.2.3/", "10.0.0.0/8", False),
        ("http://[::1]:8/", "::1", True),
        ("http://a:8080/", "a:9090", False),
        ("http://a:8080/", "a:8080", True),
        ("http://anything/", "*", True),
        ("http://a/", "", False),
    ],
)
def test_no_proxy(url: str, no_proxy: str, bypassed: bool) -> None:
    selected = select_proxy(url, {"HTTP_PROXY": "http://p:3128", "NO_PROXY": no_proxy})
    assert (selected is None) is bypassed


def test_lower_case_no_proxy() -> None:
    assert select_proxy("http://a/", {"HTTP_PROXY": "http://p:3128", "no_proxy": "a"}) is None


def test_proxy_scheme_is_kept_for_the_source_to_judge() -> None:
    assert select_proxy("http://a/", {"HTTP_PROXY": "socks5://p:1080"}) == ("HTTP_PROXY", "socks5://p:1080")
    assert select_proxy("http://a/", {"http_proxy": "p:3128"}) == ("http_proxy", "http://p:3128")


def test_mask_secrets_hides_user_info_and_token_values_of_unparsable_addresses() -> None:
    assert (
        mask_secrets("http://u:pw@exam ple.com/x?a=1&api_key=k3y&b=2")
        == "http://***@exam ple.com/x?a=1&api_key=***&b=2"
    )


def test_quote_cuts_huge_values() -> None:
    assert quote("a b") == '"a b"'
    assert quote("x" * 200).endswith('…"')
    assert len(quote("x" * 200)) < 100


@pytest.mark.parametrize(
    ("text", "check_type", "kind"),
    [
        ("http://:8080", None, Kind.HTTP),
        ("HTTPS://exam ple.com", None, Kind.HTTP),
        ("icmp://h:1", None, Kind.ICMP),
        ("db", None, None),  # no scheme, no type: TCP has no type-specific variables anyway
        ("db", "https", Kind.HTTP),
        ("http://x", "https", Kind.HTTP),
        ("http://x", "tcp", None),  # a contradiction: unclear
        ("htp://x", None, None),
        ("htp://x", "http", None),
    ],
)
def test_intended_kind_of_a_bad_address(text: str, check_type: str | None, kind: Kind | None) -> None:
    assert intended_kind(text, check_type) is kind
