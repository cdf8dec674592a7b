"""The YAML config file source (issue 3, points 2 and 4): what a file means, and every way it can be wrong,
reported all at once with file, line and JSON path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portpatrol import kinds
from portpatrol.errors import ConfigError
from portpatrol.kinds import TYPES, _either, every
from portpatrol.kinds.http import HttpSpec, StatusCodes
from portpatrol.kinds.icmp import IcmpSpec
from portpatrol.kinds.tcp import TcpSpec
from portpatrol.model import Kind, Plan, Target, Timing
from portpatrol.schema import SCHEMA_FILE, schema_text
from portpatrol.sources import env
from portpatrol.sources.file import load, loads

TARGET_KEYS = list(json.loads(schema_text())["$defs"]["target"]["properties"])
# The block keys of a target: one per registered kind that has settings.
BLOCKS = ", ".join(kind.NAME for kind in every() if kind.SCHEMA is not None)

# Every scheme of the registry, as an unknown scheme's message lists them.
SCHEME_LIST = _either(tuple(s + "://" for s in TYPES))

ISSUE_EXAMPLE = """\
# yaml-language-server: $schema=../schemas/portpatrol.schema.json
timeout: 5m                  # optional overall deadline
defaults:                    # optional, any per-target timing key
  interval: 2s
  dial_timeout: 1s
targets:
  - name: postgres           # optional, inferred like TARGET_NAME
    address: postgres.default.svc.cluster.local:5432   # same forms as TARGET_ADDRESS
    type: tcp                # optional, like TARGET_CHECK_TYPE
    interval: 5s
    dial_timeout: 2s
  - address: http://api:8080/healthz
    http:
      method: GET
      headers: {Authorization: "Bearer ${API_TOKEN}"}
      expected_status_codes: "200,300-302"
      skip_tls_verify: false
  - address: icmp://gateway
    icmp: {read_timeout: 1s}
"""


def plan(text: str, environ: dict[str, str] | None = None) -> Plan:
    return loads(text, "pp.yaml", environ or {})


def one(text: str, environ: dict[str, str] | None = None) -> Target:
    found = plan(text, environ).targets
    assert len(found) == 1
    return found[0]


def problems(text: str | bytes, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loads(text, "pp.yaml", environ or {})
    return [str(problem) for problem in caught.value.problems]


def problem(text: str | bytes, environ: dict[str, str] | None = None) -> str:
    found = problems(text, environ)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- what a file means


def test_the_issue_example() -> None:
    loaded = plan(ISSUE_EXAMPLE, {"API_TOKEN": "tok-123456"})
    assert loaded.timeout == 300.0
    postgres, api, gateway = loaded.targets
    assert postgres == Target(
        "postgres",
        "postgres.default.svc.cluster.local:5432",
        TcpSpec("postgres.default.svc.cluster.local", 5432),
        Timing(5.0, 2.0, 1),
    )
    assert (api.name, api.address, api.kind, api.timing) == (
        "api",
        "http://api:8080/healthz",
        Kind.HTTP,
        Timing(),
    )
    assert isinstance(api.spec, HttpSpec)
    assert api.spec.headers[1:] == (("Authorization", "Bearer tok-123456"),)
    assert api.spec.expected == StatusCodes(((200, 200), (300, 302)))
    assert "tok-123456" in api.secrets
    assert gateway.spec == IcmpSpec("gateway", 1.0)
    assert gateway.name == "gateway"


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pp.yaml"
    path.write_text("targets: [{address: db:5432}]\n")
    assert load(str(path), {}) == Plan((Target("db", "db:5432", TcpSpec("db", 5432)),), None)


def test_schema_text_is_the_shipped_schema() -> None:
    assert schema_text() == SCHEMA_FILE.read_text()


# The same settings through the env source and the file source make the same target.
SAME_MEANING = [
    ({"TARGET_ADDRESS": "db:5432"}, "address: db:5432"),
    ({"TARGET_ADDRESS": "[::1]:5432", "TARGET_NAME": "local db"}, "{address: '[::1]:5432', name: local db}"),
    ({"TARGET_ADDRESS": "webapp:8080", "TARGET_CHECK_TYPE": "http"}, "{address: 'webapp:8080', type: http}"),
    (
        {"TARGET_ADDRESS": "webapp:8443", "TARGET_CHECK_TYPE": "https"},
        "{address: 'webapp:8443', type: https}",
    ),
    ({"TARGET_ADDRESS": "gw", "TARGET_CHECK_TYPE": "icmp"}, "{address: gw, type: icmp}"),
    (
        {"TARGET_ADDRESS": "icmp://[::1]", "ICMP_READ_TIMEOUT": "250ms", "CHECK_INTERVAL": "1m30s"},
        "{address: 'icmp://[::1]', icmp: {read_timeout: 250ms}, interval: 1m30s}",
    ),
    (
        {"TARGET_ADDRESS": "https://user:pw@db.example.com:8443/x?token=abc&y=1", "DIAL_TIMEOUT": "1.5s"},
        "{address: 'https://user:pw@db.example.com:8443/x?token=abc&y=1', dial_timeout: 1.5s}",
    ),
    (
        {
            "TARGET_ADDRESS": "http://api/healthz",
            "HTTP_METHOD": "HEAD",
            "HTTP_HEADERS": "Accept=text/plain,X-A=1=2,Authorization=Bearer x",
            "HTTP_EXPECTED_STATUS_CODES": "200, 301-302",
            "HTTP_SKIP_TLS_VERIFY": "true",
            "SUCCESS_THRESHOLD": "3",
        },
        """
    address: http://api/healthz
    success_threshold: 3
    http:
      method: HEAD
      headers: {Accept: text/plain, X-A: "1=2", Authorization: Bearer x}
      expected_status_codes: 200, 301-302
      skip_tls_verify: true
""",
    ),
    (
        {
            "TARGET_ADDRESS": "http://api/",
            "HTTP_HEADERS": "X-Tag=a,x-tag=b",
            "HTTP_ALLOW_DUPLICATE_HEADERS": "true",
        },
        """
    address: http://api/
    http:
      allow_duplicate_headers: true
      headers: [{name: X-Tag, value: a}, {name: x-tag, value: b}]
""",
    ),
    ({"TARGET_ADDRESS": "http://api/", "HTTP_PROXY": "http://u:pp@proxy:3128"}, "address: http://api/"),
]


@pytest.mark.parametrize(("environ", "entry"), SAME_MEANING)
def test_a_key_means_what_its_variable_means(environ: dict[str, str], entry: str) -> None:
    proxies = {key: value for key, value in environ.items() if key.endswith("PROXY")}
    from_env = env.targets(environ)
    indented = entry if "\n" in entry else f" {entry}"
    from_file = plan(f"targets:\n  -{indented}\n", proxies).targets
    assert list(from_file) == from_env
    assert from_file[0].secrets == from_env[0].secrets


def test_defaults_apply_where_a_target_sets_nothing() -> None:
    first, second = plan(
        "defaults: {interval: 100ms, dial_timeout: 3s, success_threshold: 2}\n"
        "targets:\n  - {address: 'a:1'}\n  - {address: 'b:2', interval: 1s, success_threshold: 1}\n"
    ).targets
    assert first.timing == Timing(0.1, 3.0, 2)
    assert second.timing == Timing(1.0, 3.0, 1)


def test_no_timeout_means_none_and_null_too() -> None:
    assert plan("targets: [{address: 'a:1'}]").timeout is None
    assert plan("timeout: null\ntargets: [{address: 'a:1'}]").timeout is None
    assert plan("timeout: 1h30m\ntargets: [{address: 'a:1'}]").timeout == 5400.0


def test_status_codes_as_a_number() -> None:
    target = one("targets: [{address: 'http://a/', http: {expected_status_codes: 204}}]")
    assert isinstance(target.spec, HttpSpec)
    assert target.spec.expected == StatusCodes(((204, 204),))


def test_headers_keep_their_order_and_user_agent_can_be_set() -> None:
    target = one("targets: [{address: 'http://a/', http: {headers: {User-Agent: me, B: '2', A: '1'}}}]")
    assert isinstance(target.spec, HttpSpec)
    assert target.spec.headers == (("User-Agent", "me"), ("B", "2"), ("A", "1"))


def test_anchors_and_aliases_share_settings() -> None:
    text = """
common: &common {interval: 100ms}
targets:
  - {address: 'a:1', interval: 100ms}
  - address: http://b/
    http: &auth {headers: {Authorization: Bearer x}}
  - address: http://c/
    http: *auth
"""
    assert "$.common: unknown key" in problem(text)
    _, second, third = plan(text.replace("common: &common {interval: 100ms}\n", "")).targets
    assert isinstance(second.spec, HttpSpec)
    assert isinstance(third.spec, HttpSpec)
    assert second.spec.headers == third.spec.headers
    assert third.spec.headers[1] == ("Authorization", "Bearer x")


def test_yaml_scalars_that_are_json_values() -> None:
    target = one("targets: [{address: 'http://a/', success_threshold: 0x3, http: {skip_tls_verify: yes}}]")
    assert target.timing.success_threshold == 3
    assert isinstance(target.spec, HttpSpec)
    assert target.spec.skip_tls_verify is True
    assert one("targets: [{address: 'a:1', success_threshold: 2.0}]").timing.success_threshold == 2


# --------------------------------------------------------------------------- ${VAR} interpolation


def test_variables_and_defaults() -> None:
    text = """
defaults: {interval: "${INTERVAL:-250ms}"}
targets:
  - address: "http://${HOST}:${PORT:-8080}/x"
    http: {headers: {Authorization: "Bearer ${TOKEN}"}, method: "${METHOD:-HEAD}"}
"""
    target = one(text, {"HOST": "api.internal", "TOKEN": "tok-abcdef", "METHOD": ""})
    assert isinstance(target.spec, HttpSpec)
    assert target.spec.url == "http://api.internal:8080/x"
    assert target.spec.method == "HEAD"  # an empty variable counts as unset
    assert target.timing.interval == 0.25
    assert target.spec.headers[1] == ("Authorization", "Bearer tok-abcdef")
    # The display address and the inferred name come from the file as written.
    assert target.address == "http://${HOST}:${PORT:-8080}/x"
    assert target.name == "${HOST}"
    # Values from the environment are secrets; defaults written in the file are not.
    assert {"api.internal", "tok-abcdef"} <= target.secrets
    assert "8080" not in target.secrets


def test_every_value_from_the_environment_is_a_secret() -> None:
    target = one(
        "targets: [{address: 'db:${PORT}', interval: '${INTERVAL}', success_threshold: 2}]",
        {"PORT": "5432", "INTERVAL": "3s"},
    )
    assert target.spec == TcpSpec("db", 5432)
    assert target.secrets == {"5432", "3s"}
    assert target.address == "db:${PORT}"
    assert target.name == "db"


def test_a_password_written_in_the_file_is_masked_beside_a_variable() -> None:
    target = one("targets: [{address: 'http://u:hunter2@${HOST}/?token=abc'}]", {"HOST": "api.internal"})
    assert target.address == "http://***@${HOST}/?token=***"
    assert {"hunter2", "abc", "api.internal"} <= target.secrets


def test_a_password_in_an_address_that_does_not_parse_is_not_quoted() -> None:
    assert problem("targets: [{address: 'http://u:hunter2@exam ple/'}]") == (
        'pp.yaml:1: $.targets[0].address="http://***@exam ple/": a URL has no spaces or control characters '
        "(e.g. http://api:8080/healthz)"
    )


def test_a_literal_dollar_brace() -> None:
    target = one("targets: [{address: 'http://a/', http: {headers: {X: 'a $${B} c'}}}]")
    assert isinstance(target.spec, HttpSpec)
    assert target.spec.headers[1] == ("X", "a ${B} c")


def test_a_missing_variable_is_named_never_valued() -> None:
    assert problems(
        "targets:\n  - address: 'http://${HOST}/'\n    http: {headers: {A: '${TOKEN}'}}\n", {"OTHER": "x"}
    ) == [
        "pp.yaml:2: $.targets[0].address: ${HOST} is not set (set HOST, or give a default: ${HOST:-value})",
        "pp.yaml:3: $.targets[0].http.headers.A: ${TOKEN} is not set "
        "(set TOKEN, or give a default: ${TOKEN:-value})",
    ]


def test_a_malformed_reference() -> None:
    assert problem("targets: [{address: 'db:${1}'}]") == (
        'pp.yaml:1: $.targets[0].address="db:${1}": a ${ that is not a variable reference '
        "(use ${NAME} or ${NAME:-default}, or $${ for a literal ${)"
    )


@pytest.mark.parametrize(
    "entry",
    [
        "{address: '${V}'}",
        "{address: 'http://${V}/'}",
        "{address: 'tcp://a:${V}'}",
        "{address: 'a:1', interval: '${V}'}",
        "{address: 'http://a/', http: {method: '${V}'}}",
        "{address: 'http://a/', http: {expected_status_codes: '${V}'}}",
        "{address: 'http://a/', http: {headers: {A: '${V}'}}}",
        "{address: 'icmp://a', icmp: {read_timeout: '${V}'}}",
    ],
)
def test_a_bad_value_from_the_environment_is_not_quoted(entry: str) -> None:
    secret = "S3CRET not:a/port\x01 with a long tail that quote() would cut at eighty characters ......"
    found = problem(f"targets: [{entry}]", {"V": secret})
    assert "S3CRET" not in found
    assert "${V}" in found or "$.targets[0].http.headers.A" in found


# --------------------------------------------------------------------------- every problem, located


def test_unknown_key_with_did_you_mean_as_the_issue_shows() -> None:
    text = "targets:\n  - address: 'a:1'\n  - address: 'b:2'\n\n\n\n    dial_timout: 1s\n"
    assert problems(text) == ["pp.yaml:7: $.targets[1].dial_timout: unknown key (did you mean dial_timeout?)"]


def test_an_unknown_default_with_a_valid_value_is_one_problem() -> None:
    # A duration under a misspelt key once reached the target's Timing and crashed the loader.
    assert problems("defaults: {intervl: 2s}\ntargets: [{address: 'a:1'}]\n") == [
        "pp.yaml:1: $.defaults.intervl: unknown key (did you mean interval?)"
    ]


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    assert problem("targets: [{address: 'a:1'}]\nzzz: 1\n") == (
        "pp.yaml:2: $.zzz: unknown key (expected one of timeout, defaults, targets)"
    )


def test_every_problem_at_once_in_file_order() -> None:
    text = """\
timeout: 5
defaults:
  intervall: 2s
  success_threshold: 0
targets:
  - address: db:5432
    dial_timout: 1s
    http: {method: GET}
  - address: http://api:8080/x
    type: tcp
  - address: http://api:8080/x
    http:
      method: "G T"
      headers: {"bad name": x, accept: a, Accept: b, X: 1}
      expected_status_codes: "200,700"
      skip_tls_verify: "yes"
  - {address: "icmp://gw", icmp: {read_timeout: 0s}, http: {}}
  - name: ""
    address: htp://x
  - address: x:1
    interval: 1:30
    when: 2024-01-01
  - 12
  - {}
  - {address: 'a:1', type: TCP, success_threshold: true}
"""
    assert problems(text) == [
        "pp.yaml:1: $.timeout: 5 is a number, not a duration (use a unit, e.g. 5s, 500ms, 1m30s)",
        "pp.yaml:3: $.defaults.intervall: unknown key (did you mean interval?)",
        "pp.yaml:4: $.defaults.success_threshold: not a whole number from 1 to 1000 (e.g. 3), got 0",
        "pp.yaml:7: $.targets[0].dial_timout: unknown key (did you mean dial_timeout?)",
        "pp.yaml:8: $.targets[0].http: only for HTTP targets, and this one is TCP (from its address)",
        'pp.yaml:9: $.targets[1].address="http://api:8080/x": the scheme "http" contradicts type "tcp" '
        "(drop one, or make them agree, e.g. http://host:port)",
        'pp.yaml:13: $.targets[2].http.method="G T": not an HTTP method (e.g. GET, HEAD, POST)',
        'pp.yaml:14: $.targets[2].http.headers: the header has a name holding " ", which a header name '
        "cannot hold (e.g. Authorization, X-Request-Id)",
        'pp.yaml:14: $.targets[2].http.headers.Accept: header "Accept" is given twice '
        "(set allow_duplicate_headers: true to send both)",
        "pp.yaml:14: $.targets[2].http.headers.X: a header value must be a string, got a number (quote it)",
        'pp.yaml:15: $.targets[2].http.expected_status_codes="200,700": "700" is outside 100-599 '
        "(e.g. 200,301-302,500-502)",
        'pp.yaml:16: $.targets[2].http.skip_tls_verify: expected true or false, got a string ("yes")',
        'pp.yaml:17: $.targets[3].icmp.read_timeout="0s": must be greater than 0 '
        "(use a unit, e.g. 5s, 500ms, 1m30s)",
        "pp.yaml:17: $.targets[3].http: only for HTTP targets, and this one is ICMP (from its address)",
        "pp.yaml:18: $.targets[4].name: must not be empty (leave it out to use the host of the address)",
        f'pp.yaml:19: $.targets[4].address="htp://x": unknown scheme "htp" ({kinds.SCHEME_HINT})',
        # YAML 1.1 reads 1:30 as 90; the message shows what it read.
        "pp.yaml:21: $.targets[5].interval: 90 is a number, not a duration "
        "(use a unit, e.g. 90s, 500ms, 1m30s)",
        'pp.yaml:22:11: $.targets[5].when: "2024-01-01" is read as a date; quote it to mean text',
        f"pp.yaml:22: $.targets[5].when: unknown key (expected one of {', '.join(TARGET_KEYS)})",
        "pp.yaml:23: $.targets[6]: expected a mapping, got a number",
        "pp.yaml:24: $.targets[7]: address is required (or command: [program, args...])",
        f'pp.yaml:25: $.targets[8].type="TCP": {kinds.TYPE_HINT}',
        "pp.yaml:25: $.targets[8].success_threshold: not a whole number from 1 to 1000 (e.g. 3), "
        "got a boolean",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "key", "entry"),
    [
        ("CHECK_INTERVAL", "5", "interval", "{address: 'a:1', interval: '5'}"),
        ("CHECK_INTERVAL", "-1s", "interval", "{address: 'a:1', interval: '-1s'}"),
        ("DIAL_TIMEOUT", "1 s", "dial_timeout", "{address: 'a:1', dial_timeout: '1 s'}"),
        ("TARGET_ADDRESS", "db", "address", "{address: 'db'}"),
        ("TARGET_ADDRESS", "http://exam ple.com", "address", "{address: 'http://exam ple.com'}"),
        ("TARGET_ADDRESS", "tcp://", "address", "{address: 'tcp://'}"),
        ("TARGET_ADDRESS", "[::1]:99999", "address", "{address: '[::1]:99999'}"),
        ("TARGET_ADDRESS", "icmp://gw:80", "address", "{address: 'icmp://gw:80'}"),
        ("HTTP_METHOD", "GE T", "http.method", "{address: 'http://a/', http: {method: 'GE T'}}"),
        (
            "HTTP_EXPECTED_STATUS_CODES",
            "302-301",
            "http.expected_status_codes",
            "{address: 'http://a/', http: {expected_status_codes: '302-301'}}",
        ),
        (
            "HTTP_EXPECTED_STATUS_CODES",
            "2xx",
            "http.expected_status_codes",
            "{address: 'http://a/', http: {expected_status_codes: '2xx'}}",
        ),
        ("ICMP_READ_TIMEOUT", "0s", "icmp.read_timeout", "{address: 'icmp://a', icmp: {read_timeout: 0s}}"),
    ],
)
def test_semantic_messages_are_the_env_sources(variable: str, value: str, key: str, entry: str) -> None:
    environ = {"TARGET_ADDRESS": "http://a/" if variable.startswith("HTTP") else "icmp://a"}
    environ[variable] = value
    with pytest.raises(ConfigError) as caught:
        env.targets(environ)
    env_message = str(caught.value.problems[0]).split(": ", 1)[1]
    assert problem(f"targets: [{entry}]") == f'pp.yaml:1: $.targets[0].{key}="{value}": {env_message}'


def test_a_type_mismatch_says_what_it_got() -> None:
    assert problems("targets: {address: 'a:1'}") == [
        "pp.yaml:1: $.targets: expected a list of targets, got a mapping"
    ]
    assert problems("targets: []") == [
        "pp.yaml:1: $.targets: needs at least one target, e.g. targets: [{address: db:5432}]"
    ]
    assert problems("- a:1") == ["pp.yaml:1: $: expected a mapping, got a list"]
    assert problems("timeout: 5m") == ["pp.yaml:1: $: targets is required"]
    assert problems("targets: [{address: 'http://a/', http: {headers: 'A=b'}}]") == [
        "pp.yaml:1: $.targets[0].http.headers: expected a mapping of name to value (or a list of name "
        "and value), got a string"
    ]
    assert problems(
        "targets: [{address: 'http://a/', http: {headers: [{name: A}, {name: B, value: b, x: 1}]}}]"
    ) == [
        "pp.yaml:1: $.targets[0].http.headers[0]: value is required",
        "pp.yaml:1: $.targets[0].http.headers[1].x: unknown key (expected one of name, value)",
    ]
    assert problems("defaults:\ntargets: [{address: 'a:1'}]") == [
        "pp.yaml:1: $.defaults: expected a mapping, got null"
    ]


def test_an_empty_file() -> None:
    message = "pp.yaml: $: the file is empty: it needs a targets list, e.g. targets: [{address: db:5432}]"
    assert problems("") == [message]
    assert problems("# only a comment\n") == [message]


def test_control_characters_in_a_header_value_are_refused_unquoted() -> None:
    assert problem('targets: [{address: "http://a/", http: {headers: {A: "x\\x01y"}}}]') == (
        'pp.yaml:1: $.targets[0].http.headers.A: header "A" has a control character in its value'
    )
    assert problem('targets: [{address: "http://a/", http: {headers: {A: "${V}"}}}]', {"V": "a\nb"}) == (
        'pp.yaml:1: $.targets[0].http.headers.A: header "A" has a control character in its value'
    )


# --------------------------------------------------------------------------- YAML itself


def test_a_syntax_error_has_line_and_column() -> None:
    assert problems("targets:\n  - address: {a: b\n") == [
        "pp.yaml:3:1: YAML syntax: did not find expected ',' or '}' (while parsing a flow mapping on line 2)"
    ]
    assert problems("targets:\n  - address: a:1\n bad: [\n") == [
        "pp.yaml:3:2: YAML syntax: did not find expected key (while parsing a block mapping on line 1)"
    ]


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"targets: [{{address: 'a:1'}}]\nx: !!python/object/apply:os.system ['touch {marker}']\n"
    assert problems(text) == [
        "pp.yaml:2:4: $.x: the tag !!python/object/apply:os.system is not allowed: a config file holds only "
        "strings, numbers, booleans, null, lists and mappings",
        "pp.yaml:2: $.x: unknown key (expected one of timeout, defaults, targets)",
    ]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!!binary aGk=", "pp.yaml:1:1: $: the tag !!binary is not allowed"),
        ("!!set {a, b}", "pp.yaml:1:1: $: the tag !!set is not allowed"),
        ("!!omap [a: 1]", "pp.yaml:1:1: $: the tag !!omap is not allowed"),
        ("!custom x", "pp.yaml:1:1: $: the tag !custom is not allowed"),
        ("!!python/name:os.system", "pp.yaml:1:1: $: the tag !!python/name:os.system is not allowed"),
        ("2024-07-12", 'pp.yaml:1:1: $: "2024-07-12" is read as a date; quote it to mean text'),
        (".nan", "pp.yaml:1:1: $: .nan is not a finite number, which JSON cannot hold"),
        ("!!int 12x", "pp.yaml:1:1: $: not a valid int: invalid literal for int() with base 10: '12x'"),
    ],
)
def test_non_json_values_are_refused_with_their_position(text: str, expected: str) -> None:
    assert problems(text)[0].startswith(expected)


def test_keys_must_be_unique_strings() -> None:
    text = "targets:\n  - address: db:5432\n    address: db:5433\n    yes: 1\n    ? [a]\n    : b\n    1: x\n"
    assert problems(text) == [
        'pp.yaml:3:5: $.targets[0]: duplicate key "address" (first on line 2)',
        'pp.yaml:4:5: $.targets[0]: keys must be strings: quote "yes"',
        "pp.yaml:5:7: $.targets[0]: a key must be a string, not a list or mapping",
        'pp.yaml:7:5: $.targets[0]: keys must be strings: quote "1"',
    ]


def test_merge_keys_and_several_documents_are_refused() -> None:
    assert problems("base: &b {interval: 1s}\ntargets:\n  - <<: *b\n    address: 'a:1'\n")[1] == (
        "pp.yaml:3:5: $.targets[0]: merge keys (<<) are not supported: use defaults, or write keys out"
    )
    assert problems("targets: [{address: 'a:1'}]\n---\ntargets: []\n") == [
        "pp.yaml:2:1: $: a config file holds one YAML document, not several"
    ]


def test_a_recursive_alias_is_refused() -> None:
    assert problems("targets: &t [*t]\n") == [
        "pp.yaml:1:14: $.targets[0]: the alias *t refers to a value that contains it"
    ]


BOMB = "\n".join(
    [f"l0: &l0 [{', '.join(['lol'] * 10)}]"]
    + [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 10)]
    + ["targets: *l9", ""]
)


def test_an_alias_bomb_fails_fast() -> None:
    started = time.monotonic()
    found = problems(BOMB)
    assert time.monotonic() - started < 2
    assert found == [
        "pp.yaml:5:45: $.l4[7]: aliases expand to too many values (a YAML alias bomb?); write the values out"
    ]


def test_an_alias_bomb_in_the_real_command_uses_little_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    code = (
        "import sys\n"
        "from portpatrol.sources.file import load\n"
        "from portpatrol.errors import ConfigError\n"
        f"try:\n    load({str(path)!r}, {{}})\nexcept ConfigError as error:\n    print(error)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a large pytest
        # process would report the parent's peak.
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    message, peak_kib = result.stdout.splitlines()
    assert "alias bomb" in message
    assert int(peak_kib) < 200_000


def test_an_undefined_alias() -> None:
    assert problems("targets: [*nowhere]\n")[0] == (
        "pp.yaml:1:11: $.targets[0]: the alias *nowhere refers to no anchor written before it"
    )


def test_bytes_that_are_not_text() -> None:
    assert problems(b"targets: [{address: 'a:1\x01'}]\n") == [
        "pp.yaml: not a YAML file: control characters are not allowed (at byte 24)"
    ]
    assert problems(b"targets: [{address: '\xff'}]\n")[0].startswith("pp.yaml: not a YAML file: invalid")


def test_an_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for path, reason in (("pp.yaml", "No such file or directory"), (".", "Is a directory")):
        with pytest.raises(ConfigError) as caught:
            load(path, {})
        assert [str(p) for p in caught.value.problems] == [f"{path}: cannot read: {reason}"]


def test_a_relative_path_names_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("pp.yaml").write_text("targets:\n  - {address: 'a:1', intervl: 1s}\n")
    with pytest.raises(ConfigError) as caught:
        load("pp.yaml", {})
    assert str(caught.value) == "pp.yaml:2: $.targets[0].intervl: unknown key (did you mean interval?)"


# --------------------------------------------------------------------------- speed and imports


def test_yaml_and_jsonschema_are_not_imported_until_a_file_is_loaded() -> None:
    code = (
        "import sys, portpatrol.sources.file as f\n"
        "print('yaml' in sys.modules, 'jsonschema' in sys.modules)\n"
        "f.loads('targets: [{address: \"a:1\"}]', 'x', {})\n"
        "print('yaml' in sys.modules, 'jsonschema' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.split() == ["False", "False", "True", "False"]


def test_ten_thousand_targets_load_without_quadratic_work() -> None:
    """The speed target (well under 1 s) is measured in the report; this bound only catches a blow-up."""
    entries = []
    for n in range(10_000):
        entries.append(
            f"  - {{name: db{n}, address: 'db{n}.svc:5432', interval: 500ms}}"
            if n % 2
            else f"  - address: http://api{n}:8080/healthz\n"
            f"    http: {{headers: {{Authorization: 'Bearer ${{TOKEN}}'}}, expected_status_codes: '200-299'}}"
        )
    text = "defaults: {dial_timeout: 1s}\ntargets:\n" + "\n".join(entries) + "\n"
    started = time.monotonic()
    loaded = plan(text, {"TOKEN": "tok"})
    assert time.monotonic() - started < 10
    assert len(loaded.targets) == 10_000


def test_variables_are_replaced_in_every_string_of_a_block_and_kept_secret() -> None:
    text = (
        "targets: [{address: 'http://a/', http: {expect: {body: '${WORD}', "
        "json: [{path: '$.v', equals: '${WORD}'}]}, headers: [{name: X, value: '${WORD}'}]}}]"
    )
    target = one(text, {"WORD": "s3cret"})
    expect = target.spec.expect
    assert expect is not None
    assert expect.body is not None
    assert expect.body.pattern == "s3cret"
    assert ("X", "s3cret") in target.spec.headers
    assert "s3cret" in target.secrets
    assert one(text.replace("'${WORD}'", "'$${WORD}'"), {}).spec.expect.body.pattern == "${WORD}"
