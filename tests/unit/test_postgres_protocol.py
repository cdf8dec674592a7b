"""The postgres kind's pure parts: addresses, the plan line, SCRAM and SASLprep against published
vectors, and the protocol conversation driven over a socketpair by scripted and arbitrary server bytes."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol import scram, tls
from portpatrol.errors import BadValue, NotReady
from portpatrol.kinds import postgres
from portpatrol.wire import Wire

SECRET = "s3cr3t-pw"

# --------------------------------------------------------------------------- addresses


def test_a_full_address_is_percent_decoded_as_libpq_does() -> None:
    got = postgres.parse(
        "postgresql://app%40corp:p%40ss%3Aw%2Fo+rd@db.example.test:6543/my%20db"
        "?sslmode=verify-full&sslrootcert=%2Fdev%2Fnull",  # a file that exists: it is opened at start
        {},
    )
    assert got == postgres.Settings(
        host="db.example.test",
        port=6543,
        user="app@corp",
        password="p@ss:w/o+rd",  # '+' is not a space to libpq
        database="my db",
        sslmode="verify-full",
        sslrootcert="/dev/null",
    )


def test_defaults_are_pg_isready_s_no_login_on_5432_with_tls_preferred() -> None:
    got = postgres.parse("postgres://db", {})
    assert (got.host, got.port, got.user, got.login, got.sslmode) == ("db", 5432, None, False, "prefer")


def test_ipv6_a_raw_at_in_the_password_and_ignored_libpq_parameters() -> None:
    got = postgres.parse("postgres://u:a@b@[::1]:5433/?application_name=x&connect_timeout=3", {})
    assert (got.host, got.port, got.user, got.password, got.database) == ("::1", 5433, "u", "a@b", None)


def test_the_block_wins_over_the_address_and_empty_values_are_unset() -> None:
    """One rule for every kind: a key of the block (YAML or env) overrides that part of the URL."""
    block = {"user": "env_user", "password": "env_pw", "database": "env_db", "sslmode": "require"}
    got = postgres.parse("postgres://url_user:url_pw@db/url_db?sslmode=disable", block)
    assert (got.user, got.password, got.database, got.sslmode) == ("env_user", "env_pw", "env_db", "require")
    got = postgres.parse("postgres://url_user:url_pw@db/url_db?sslmode=disable", {"password": "env_pw"})
    assert (got.user, got.password, got.database, got.sslmode) == ("url_user", "env_pw", "url_db", "disable")
    got = postgres.parse("postgres://db", {"user": "", "password": "", "query": ""})
    assert (got.user, got.password, got.query) == (None, None, None)


def test_a_password_alone_logs_in_as_postgres() -> None:
    got = postgres.parse("postgres://db", {"password": SECRET})
    assert (got.user, got.login) == ("postgres", True)


@pytest.mark.parametrize(
    ("address", "block", "words"),
    [
        ("mysql://db", {}, "starts with postgres://"),
        ("postgres://", {}, "needs a host"),
        ("postgres://u:s3cr3t-pw@db:99999", {}, "port must be a number"),
        ("postgres://u:s3cr3t-pw@db:5x", {}, "port must be a number"),
        ("postgres://a,b/db", {}, "one host"),
        ("postgres://[::1/db", {}, "brackets"),
        ("postgres://u:s3cr3t-pw%zz@db", {}, "% not followed by two hex digits"),
        ("postgres://u:s3cr3t-pw%00@db", {}, "%00"),
        ("postgres://u:%ff@db", {}, "not UTF-8"),
        ("postgres://u:s3cr3t-pw@db?sslmode=allow", {}, "sslmode is one of"),
        ("postgres://u:s3cr3t-pw@db?options=-c", {}, "unknown query parameter"),
        ("postgres://db", {"query": "select 1"}, "give a user"),
    ],
)
def test_bad_addresses_are_refused_with_an_example_and_never_the_password(
    address: str, block: dict[str, str], words: str
) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        postgres.parse(address, block)
    assert SECRET not in str(caught.value)
    assert "postgres://" in str(caught.value)


def test_the_plan_line_and_repr_never_show_the_password() -> None:
    got = postgres.parse(f"postgres://app:{SECRET}@[::1]/app?sslmode=verify-full", {"query": "select 1"})
    assert postgres.describe(got) == "[::1]:5432 database=app login=yes user=app tls=verify-full query=yes"
    assert SECRET not in repr(got)
    assert postgres.secrets(got) == {SECRET}
    assert postgres.describe(postgres.parse("postgres://db", {})) == "db:5432 login=no tls=prefer query=no"


# --------------------------------------------------------------------------- SCRAM and SASLprep


def test_scram_sha_256_matches_rfc_7677() -> None:
    client = scram.Client("pencil", "rOprNGfwEbeRWgbNEkqO", user="user")
    assert client.first == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    final, expected = client.final(server_first)
    assert final == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    scram.verify_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", expected)
    with pytest.raises(scram.ScramError, match="does not know the password"):
        scram.verify_final(b"v=" + base64.b64encode(b"x" * 32), expected)
    with pytest.raises(scram.ScramError, match="error: invalid-proof"):
        scram.verify_final(b"e=invalid-proof", expected)


@pytest.mark.parametrize(
    ("server_first", "words"),
    [
        (b"r=other,s=QUJD,i=4096", "does not extend ours"),
        (b"r=nonce,s=QUJD,i=4096", "does not extend ours"),  # the server added nothing
        (b"r=nonceX,s=!!,i=4096", "not base64"),
        (b"r=nonceX,s=QUJD,i=0", "iteration count"),
        (
            b"r=nonceX,s=QUJD,i=99999999999",
            "99,999,999,999 SCRAM iterations, over portpatrol's limit of 100,000",
        ),
        (b"r=nonceX,s=QUJD,i=100001", "over portpatrol's limit"),
        (b"r=nonceX,s=QUJD,i=" + b"9" * 5000, "not a positive number"),  # int() would refuse 4300+ digits
        (b"r=nonceX,s=QUJD,i=-5", "not a positive number"),
        (b"r=nonceX,s=QUJD,i=\xff", "not ASCII"),
        (b"garbage", "does not extend ours"),
    ],
)
def test_bad_server_first_messages_are_named(server_first: bytes, words: str) -> None:
    with pytest.raises(scram.ScramError, match=words):
        scram.Client("pw", "nonce").final(server_first)


@pytest.mark.parametrize(
    ("text", "prepared"),
    [  # RFC 4013 section 3
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("\u0007", None),
        ("\u0627\u0031", None),
    ],
)
def test_saslprep_matches_rfc_4013(text: str, prepared: str | None) -> None:
    assert scram.saslprep(text) == prepared


def test_passwords_are_hashed_as_postgresql_prepares_them() -> None:
    assert scram.password_bytes("a\u0007b") == b"a\x07b"  # ASCII is taken as it is
    assert scram.password_bytes("\u2168") == b"IX"
    assert scram.password_bytes("\u0627\u0031") == "\u0627\u0031".encode()  # unpreparable: raw


# --------------------------------------------------------------------------- the conversation


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def error(code: str, text: str) -> bytes:
    return message(b"E", f"SFATAL\0VFATAL\0C{code}\0M{text}\0\0".encode())


def auth(code: int, data: bytes = b"") -> bytes:
    return message(b"R", struct.pack("!i", code) + data)


READY_FOR_QUERY = message(b"Z", b"I")
NO_LOGIN = postgres.Settings("127.0.0.1", 5432, sslmode="disable")
LOGIN = postgres.Settings("127.0.0.1", 5432, user="app", password=SECRET, sslmode="disable")
QUERY = postgres.Settings("127.0.0.1", 5432, user="app", password=SECRET, query="select 1", sslmode="disable")


def converse(
    server: bytes, settings: postgres.Settings = NO_LOGIN, bound: float = 2.0
) -> tuple[str | None, bytes]:
    """Runs the conversation against `server`'s bytes (then end of stream): the reason (None when
    ready) and what the client sent."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(server)
        theirs.shutdown(socket.SHUT_WR)
        context = None if settings.sslmode == "disable" else tls.context(verify=False)
        try:
            postgres.converse(Wire(ours, time.monotonic() + bound, bound), settings, context)
            reason = None
        except NotReady as caught:
            reason = str(caught)
        ours.shutdown(socket.SHUT_WR)
        sent = b""
        while chunk := theirs.recv(65536):
            sent += chunk
    return reason, sent


def test_without_login_an_authentication_request_or_any_other_error_is_ready() -> None:
    reason, sent = converse(auth(10, b"SCRAM-SHA-256\0\0"))
    assert reason is None
    assert b"user\0postgres\0" in sent
    assert converse(error("53300", "sorry, too many clients already"))[0] is None
    assert converse(error("28000", "no pg_hba.conf entry"))[0] is None


def test_without_login_cannot_connect_now_is_not_ready_in_the_server_s_words() -> None:
    reason, _ = converse(error("57P03", "the database system is starting up"))
    assert reason == "the database system is starting up [SQLSTATE 57P03]"


def test_md5_answers_as_postgresql_computes_it() -> None:
    settings = postgres.Settings("h", 1, user="postgres", password="postgres", sslmode="disable")
    reason, sent = converse(auth(5, b"salt") + auth(0) + READY_FOR_QUERY, settings)
    assert reason is None
    # md5("postgres" + "postgres") is the well-known 3175bce1d3201d16594cebf9d7eb3f9d
    answer = "md5" + hashlib.md5(b"3175bce1d3201d16594cebf9d7eb3f9d" + b"salt").hexdigest()
    assert message(b"p", answer.encode() + b"\0") in sent
    assert sent.endswith(message(b"X", b""))  # Terminate


def test_a_wrong_password_is_the_server_s_words_without_the_password() -> None:
    text = f'password authentication failed for user "app" ({SECRET})'
    reason, _ = converse(auth(3) + error("28P01", text), LOGIN)
    assert reason == 'password authentication failed for user "app" (***) [SQLSTATE 28P01]'


def test_a_server_that_skips_the_end_of_scram_is_refused() -> None:
    reason, _ = converse(auth(10, b"SCRAM-SHA-256\0\0") + auth(0) + READY_FOR_QUERY, LOGIN)
    assert reason == "the server ended SCRAM before proving that it knows the password"


def test_ready_for_query_without_authentication_is_refused() -> None:
    reason, _ = converse(READY_FOR_QUERY, LOGIN)
    assert reason == "the server said ready for queries before authentication ended"


def test_unknown_methods_and_a_missing_password_are_named() -> None:
    assert (
        converse(auth(7), LOGIN)[0]
        == "the server asks for an authentication method portpatrol does not speak (7)"
    )
    no_password = postgres.Settings("h", 1, user="app", sslmode="disable")
    assert converse(auth(10, b"SCRAM-SHA-256\0\0"), no_password)[0] == (
        "the server asks for a password for user app and none was given"
    )
    assert converse(auth(10, b"OAUTHBEARER\0\0"), LOGIN)[0] == (
        "the server offers only SASL mechanisms portpatrol does not speak: OAUTHBEARER"
    )


def row(*values: bytes | None) -> bytes:
    body = struct.pack("!h", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return message(b"D", body)


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([row(b"t")], None),
        ([row(b"1", None)], None),
        ([row(b"yes")], None),
        ([row(b"f")], "the query returned false"),
        ([row(None)], "the query returned NULL"),
        ([row(b"")], "the query returned an empty value"),
        ([row(b"0.00")], "the query returned 0.00 (zero)"),
        ([], "the query returned no rows"),
        ([row(b"f"), row(b"t")], "the query returned false"),  # the first row decides
    ],
)
def test_the_query_s_first_value_decides(rows: list[bytes], reason: str | None) -> None:
    login = auth(0) + message(b"S", b"server_version\x0015\0") + message(b"K", b"12345678") + READY_FOR_QUERY
    answer = message(b"T", b"\0\1...") + b"".join(rows) + message(b"C", b"SELECT 1\0") + READY_FOR_QUERY
    got, sent = converse(login + answer, QUERY)
    assert got == reason
    assert message(b"Q", b"select 1\0") in sent


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        (b"", "the server closed the connection during startup"),
        (b"R\0\0", "the server closed the connection during startup"),  # half a header
        (auth(10)[:-1], "the server closed the connection during startup"),  # half a body
        (b"R\x7f\xff\xff\xff", "over the 1 MiB limit"),
        (b"R\0\0\0\1", "invalid length (1)"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "over the 1 MiB limit"),
        (message(b"Q", b""), "unexpected message 'Q' during startup"),
    ],
)
def test_misbehaving_servers_are_named(server: bytes, reason: str) -> None:
    got, _ = converse(server)
    assert got is not None
    assert reason in got


def test_tls_negotiation_answers_are_named() -> None:
    require = postgres.Settings("h", 1, sslmode="require")
    assert converse(b"N", require)[0] == "the server does not accept TLS (sslmode=require)"
    prefer = postgres.Settings("h", 1, sslmode="prefer")
    assert converse(b"N" + auth(3), prefer)[0] is None  # prefer goes on in plain text
    assert converse(b"X", prefer)[0] == "the server answered the TLS request with 'X', not S or N"
    assert converse(b"Ecould not fork new process\n", prefer)[0] == (
        "the server refused the connection: could not fork new process"
    )
    assert converse(b"S" + auth(3), prefer)[0] == "the server sent data before the TLS handshake"


def test_a_silent_server_ends_in_the_bound() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        began = time.monotonic()
        with pytest.raises(NotReady, match=r"no answer within .*\(startup\)"):
            postgres.converse(Wire(ours, began + 0.5, 0.5), NO_LOGIN, None)
        assert time.monotonic() - began < 3


SETTINGS = st.sampled_from([NO_LOGIN, LOGIN, QUERY, postgres.Settings("h", 1, user="u", password="p")])
KINDS = st.sampled_from([b"R", b"E", b"S", b"K", b"N", b"Z", b"D", b"T", b"C", b"I", b"v", b"G"])
AUTH = st.builds(
    lambda code, data: struct.pack("!i", code) + data,
    st.sampled_from([0, 3, 5, 10, 11, 12, 7]) | st.integers(-(2**31), 2**31 - 1),
    st.binary(max_size=40)
    | st.just(b"SCRAM-SHA-256\0\0")
    | st.builds(lambda s: b"r=" + s + b",s=QUJD,i=4096", st.binary(max_size=30)),
)
MESSAGES = st.lists(st.builds(message, KINDS, AUTH | st.binary(max_size=40)), max_size=8).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(server=st.binary(max_size=200) | MESSAGES, chosen=SETTINGS)
def test_any_server_bytes_give_ready_or_a_named_not_ready(server: bytes, chosen: postgres.Settings) -> None:
    began = time.monotonic()
    reason, _ = converse(server, chosen, bound=2.0)
    assert reason is None or reason  # NotReady with words, or ready; any other exception fails here
    if reason is not None:
        assert SECRET not in reason
    assert time.monotonic() - began < 5


def test_the_plan_line_escapes_what_the_address_holds() -> None:
    settings = postgres.parse("postgres://ev%1b[31mil%0Afake:pw@h/d%0Ab", {})
    line = postgres.describe(settings)
    assert "\x1b" not in line
    assert "\n" not in line
    assert "pw" not in line


def test_a_ca_file_that_cannot_be_read_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(BadValue, match="cannot be read") as caught:
        postgres.parse(f"postgres://u:pw@h/d?sslmode=verify-full&sslrootcert={tmp_path}/missing.pem", {})
    assert caught.value.key == ("sslrootcert",)
