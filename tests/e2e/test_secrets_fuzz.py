"""Issue 11.2's generated check, made a test: a secret planted in every position that can hold a
credential (user info in every address form and kind, a curl-style header, token-like query values,
a proxy, an address an unquoted empty variable shifted into an option's place, `${VAR}` values in a
config file) never reaches a line of the real main(), and nothing ends in a traceback.

main() runs in this process (thousands of cases in seconds) and always as `validate` or with a
configuration error, so no case touches the network. The kinds not yet in the registry (postgres,
redis, amqp, nats, mysql, memcached, grpc) are checked through their own parse(), describe() and
repr, which is what the registry will call."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from portpatrol import kinds
from portpatrol.cli import main

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# What passwords and tokens hold besides letters and digits, each of which changes how an address
# splits (`/`, `#`, `?`, a space, percent-encoding) or is base64's (`+`, `/`, `=`).
SEPARATORS = ["", "-", "/", " ", "#", "?", "%2F", "=", "+", "!", "$", "~", ".", "_", ";", ","]


Secret = tuple[str, tuple[str, ...]]


@st.composite
def secrets(draw: st.DrawFn) -> Secret:
    """A secret, and the pieces of it that must not appear either (a password cut at its `/` must
    not show its first half). The fixed ends keep shrunk examples from matching ordinary text."""
    head = "Sk" + draw(st.text(ALNUM, min_size=5, max_size=12))
    tail = draw(st.text(ALNUM, min_size=5, max_size=12)) + "9Q"
    secret = head + draw(st.sampled_from(SEPARATORS)) + tail
    return secret, (secret, head, tail)


USERINFO = ["{s}@", "user:{s}@", "{s}:@", "{s}:x-oauth-basic@", ":{s}@", "user:a {s}@", "user:{s}x@"]
SCHEMES = ["http://", "https://", "tcp://", "", "http:/", "http:", "htp://", "HTTP://"]
SCHEMES += ["postgres://", "redis://", "rediss://", "amqp://", "nats://", "mysql://", "memcached://"]
# Schemes whose user info names a user (postgres://app@db is the user app), as libpq and the others read
# it; for http, redis and nats a lone `S@` is a token or a password.
USER_NAMED = ("postgres://", "mysql://", "amqp://")
HOSTS = ["127.0.0.1:8080", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x", "exam ple:80", "[::1", "[::1]:5432"]
TAILS = ["", "/", "/health", "/?token={s}", "/x?page=1&password={s}", "/a b", "#frag"]


@st.composite
def addresses(draw: st.DrawFn, secret: str) -> str:
    """An address with the secret as user info or a token-like query value, right or wrong."""
    userinfo = draw(st.sampled_from(["", *USERINFO]))
    tail = draw(st.sampled_from(TAILS))
    if not userinfo and "{s}" not in tail:
        userinfo = USERINFO[1]
    scheme = draw(st.sampled_from(SCHEMES))
    if scheme in USER_NAMED and userinfo.startswith("{s}"):
        userinfo = "user:{s}@"  # before the colon stands a user name there, which plans show by design
    text = scheme + userinfo + draw(st.sampled_from(HOSTS)) + tail
    return text.format(s=secret)


HEADERS = [
    "Authorization=Bearer {s}",
    "Authorization: Basic {s}",
    "Authorization: Basic {s}==",
    "X-Api-Key={s},x-api-key={s}",
    "{s}",
    "A=1,={s}",
    "Authorization=Bearer {s}\x01",
    "Cookie=session={s}",
]
OPTIONS = ["--timeout", "--interval", "--dial-timeout", "--report", "--config", "--workers", "--jitter"]


def run(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:  # any other exception is a traceback: it fails the test
            status = main(list(argv), dict(environ))
        except SystemExit as done:  # --version prints it and exits 0, as argparse does
            status = int(done.code or 0)
    return status, out.getvalue() + err.getvalue()


def assert_hidden(pieces: tuple[str, ...], status: int, seen: str) -> None:
    assert status in (0, 2), seen
    assert seen.strip(), "the run said nothing"
    for piece in pieces:
        assert piece not in seen, (piece, seen)
        assert piece.lower() not in seen.lower(), (piece, seen)


FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.data(), secret=secrets())
def test_addresses_as_arguments_and_variables(
    data: st.DataObject, secret: tuple[str, tuple[str, ...]]
) -> None:
    address = data.draw(addresses(secret[0]))
    where = data.draw(st.sampled_from(["argument", "TARGET_ADDRESS", "HTTP_PROXY", "HTTPS_PROXY"]))
    environ: dict[str, str] = {}
    argv = ["validate"]
    if where == "argument":
        argv.append(address)
    elif where == "TARGET_ADDRESS":
        environ["TARGET_ADDRESS"] = address
    else:
        environ |= {where: address, "TARGET_ADDRESS": "http://127.0.0.1:8080/"}
        argv.append("https://127.0.0.1:8443/")
    if data.draw(st.booleans()):
        header = data.draw(st.sampled_from(HEADERS))
        # `HTTP_HEADERS=$TOKEN` with a `=` inside the token is `Name=value`: a name the user wrote.
        assume(header != "{s}" or "=" not in secret[0].strip("="))
        environ["HTTP_HEADERS"] = header.format(s=secret[0])
        environ.setdefault("TARGET_ADDRESS", "http://127.0.0.1:8080/")
    assert_hidden(secret[1], *run(argv, environ))


@FUZZ
@given(data=st.data(), secret=secrets())
def test_addresses_shifted_into_options(data: st.DataObject, secret: Secret) -> None:
    """`--timeout "$EMPTY" URL`: the URL becomes the option's value; `--bogus=URL`, `--ti=URL`."""
    address = data.draw(addresses(secret[0]))
    option = data.draw(st.sampled_from([*OPTIONS, "--bogus", "--ti", "--version", "-x"]))
    joined = data.draw(st.booleans())
    argv = ["validate", *([f"{option}={address}"] if joined else [option, address]), "127.0.0.1:1"]
    environ = {}
    if data.draw(st.booleans()):
        variable = data.draw(st.sampled_from(["PORTPATROL_TIMEOUT", "CHECK_INTERVAL", "DIAL_TIMEOUT"]))
        environ = {variable: address, "TARGET_ADDRESS": "127.0.0.1:1", "SUCCESS_THRESHOLD": address}
    assert_hidden(secret[1], *run(argv, environ))


@FUZZ
@given(data=st.data(), secret=secrets())
def test_config_files(
    tmp_path_factory: object, data: st.DataObject, secret: tuple[str, tuple[str, ...]]
) -> None:
    """The same positions in a config file, written there or through `${VAR}`, and header names."""
    assert hasattr(tmp_path_factory, "mktemp")
    folder: Path = tmp_path_factory.mktemp("fuzz")
    address = data.draw(addresses(secret[0]))
    through_variable = data.draw(st.booleans())
    environ = {"SECRET_VALUE": address} if through_variable else {}
    written = "${SECRET_VALUE}" if through_variable else address
    # Not a bare `{s}`: in a file that is a header whose name the user chose to be the secret.
    header = data.draw(st.sampled_from([h for h in HEADERS if h != "{s}"])).format(s=secret[0])
    name, _, value = header.partition("=")
    line = data.draw(
        st.sampled_from(
            [
                f"  - address: {quoted(written)}",
                f"  - address: http://127.0.0.1:8080/\n    interval: {quoted(written)}",
                f"  - address: http://127.0.0.1:8080/\n    http: {{method: {quoted(written)}}}",
                f"{HTTP_TARGET}\n    http: {{headers: {{{quoted(name)}: {quoted(value)}}}}}",
                f"{HTTP_TARGET}\n    http: {{headers: [{{name: {quoted(name)}, value: x}}]}}",
                f"  - address: {quoted(written)}\n    type: tcp",
            ]
        )
    )
    config = folder / "pp.yaml"
    config.write_text(f"targets:\n{line}\n", encoding="utf-8")
    assert_hidden(secret[1], *run(["validate", "--config", str(config)], environ))


HTTP_TARGET = "  - address: http://127.0.0.1:8080/"


def quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    import json

    return json.dumps(text)


NEW_KINDS = ["postgres", "mysql", "redis", "nats", "amqp", "memcached", "grpc"]


@FUZZ
@given(data=st.data(), secret=secrets())
def test_new_kinds_parse_describe_and_repr(data: st.DataObject, secret: Secret) -> None:
    """The kinds the registry will list: what their parse() says about an address, or the plan
    line and repr of the settings it gives, holds none of the secret."""
    name = data.draw(st.sampled_from(NEW_KINDS))
    kind = kinds.module(name)
    # The password's positions (`user:S@`, `:S@`); a user name is shown by their describe() by design.
    userinfo = data.draw(st.sampled_from(["user:{s}@", ":{s}@", "user:a {s}@"])).format(s=secret[0])
    host = data.draw(st.sampled_from(HOSTS))
    tail = data.draw(st.sampled_from(["", "/", "/db", "/?password={s}", "/a b"])).format(s=secret[0])
    try:
        found = kind.parse(f"{kind.SCHEMES[0]}://{userinfo}{host}{tail}", {})
    except ValueError as error:
        seen = str(error)
    else:
        seen = f"{kind.describe(found)}\n{found!r}"
        assert kind.secrets(found), seen
    for piece in secret[1]:
        assert piece not in seen, (piece, seen)
