"""The postgres kind against real PostgreSQL 15 servers (tests/pgserver.py) and misbehaving peers,
with pg_isready as the oracle of the server's state. The kind is called as the runner calls it
(`attempt(settings, deadline, bound)`): the command line does not route kinds yet (issue 10)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from portpatrol.errors import NotReady
from portpatrol.kinds import postgres
from tests.faultpeers import _Acceptor
from tests.pgserver import HBA, USERS_SQL, PgServer

SCRAM_PASSWORD = "scr@m:pa ss/é"
SCRAM_IN_URL = "scr%40m%3Apa%20ss%2F%C3%A9"


def check(address: str, block: dict[str, str] | None = None, bound: float = 5.0) -> str | None:
    """One attempt: None when ready, else the reason."""
    settings = postgres.parse(address, block or {})
    try:
        postgres.attempt(settings, time.monotonic() + bound, bound)
    except NotReady as caught:
        return str(caught)
    return None


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A server with users for every login method (tests/pgserver.py HBA); ssl off."""
    with PgServer() as server:
        server.initdb(HBA).start()
        server.psql(USERS_SQL)
        yield server


@pytest.fixture(scope="session")
def pg_tls() -> Iterator[tuple[PgServer, Path]]:
    """A server with ssl=on and a certificate for localhost and 127.0.0.1, and its CA file."""
    ca = trustme.CA()
    with PgServer() as server:
        cert = ca.issue_cert("localhost", "127.0.0.1")
        crt = server.write("server.crt", cert.cert_chain_pems[0].bytes().decode())
        key = server.write("server.key", cert.private_key_pem.bytes().decode())
        ca_file = server.write("ca.pem", ca.cert_pem.bytes().decode(), mode=0o644)
        server.settings |= {"ssl": "on", "ssl_cert_file": str(crt), "ssl_key_file": str(key)}
        server.initdb(HBA).start()
        server.psql(USERS_SQL)
        yield server, ca_file


def test_a_server_not_started_is_refused_then_ready_once_started() -> None:
    with PgServer() as server:
        server.initdb()
        address = f"postgres://127.0.0.1:{server.port}"
        assert server.isready() == 2  # no response
        assert check(address) == "connection refused"
        server.start()
        assert server.isready() == 0
        assert check(address) is None


def test_without_credentials_ready_as_pg_isready(pg: PgServer) -> None:
    assert pg.isready() == 0
    assert check(f"postgres://127.0.0.1:{pg.port}") is None
    assert check(f"postgresql://127.0.0.1:{pg.port}/nodb?sslmode=disable") is None  # any error but 57P03


def test_trust_login_and_a_missing_database(pg: PgServer) -> None:
    assert check(f"postgres://trusted@127.0.0.1:{pg.port}/postgres") is None
    assert check(f"postgres://trusted@127.0.0.1:{pg.port}/nodb") == (
        'database "nodb" does not exist [SQLSTATE 3D000]'
    )


@pytest.mark.parametrize(
    ("user", "right"),
    [("scram_user", SCRAM_PASSWORD), ("md5_user", "md5-secret"), ("clear_user", "clear-secret")],
)
def test_password_logins_right_and_wrong(pg: PgServer, user: str, right: str) -> None:
    method = pg.psql(f"SELECT left(rolpassword, 5) FROM pg_authid WHERE rolname = '{user}'")
    assert method == ("SCRAM" if user == "scram_user" else "md5" + method[3:])  # how it is stored
    address = f"postgres://{user}@127.0.0.1:{pg.port}/postgres"
    assert check(address, {"password": right}) is None
    wrong = check(address, {"password": "Wrong-Pw-42"})
    assert wrong == f'password authentication failed for user "{user}" [SQLSTATE 28P01]'
    assert check(address) == f"the server asks for a password for user {user} and none was given"


def test_the_password_in_the_url_is_percent_decoded(pg: PgServer) -> None:
    assert check(f"postgres://scram_user:{SCRAM_IN_URL}@127.0.0.1:{pg.port}/postgres") is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT pg_is_in_recovery() = false", None),
        ("SELECT count(*) FROM pg_roles WHERE rolname = 'md5_user'", None),
        ("SELECT pg_is_in_recovery()", "the query returned false"),
        ("SELECT count(*) FROM pg_roles WHERE rolname = 'nobody_here'", "the query returned 0 (zero)"),
        ("SELECT NULL", "the query returned NULL"),
        ("SELECT 1 WHERE false", "the query returned no rows"),
        ("SELECT 1/0", "the query failed: division by zero [SQLSTATE 22012]"),
    ],
)
def test_the_query_decides(pg: PgServer, query: str, reason: str | None) -> None:
    assert check(f"postgres://trusted@127.0.0.1:{pg.port}/postgres", {"query": query}) == reason


def test_a_standby_with_hot_standby_off_is_not_ready_until_promoted() -> None:
    with PgServer() as primary, PgServer({"hot_standby": "off"}) as standby:
        primary.initdb().start()
        standby.basebackup_of(primary).start(wait=False)
        standby.wait_for(1)  # pg_isready: rejecting connections
        address = f"postgres://127.0.0.1:{standby.port}"
        # PostgreSQL 15's words for a standby that admits no client (16 says "not accepting connections").
        assert check(address) == "the database system is starting up [SQLSTATE 57P03]"
        # ... while the port itself accepts TCP, which is all a TCP check sees
        socket.create_connection(("127.0.0.1", standby.port), timeout=5).close()
        standby.promote()
        standby.wait_for(0)
        assert check(address) is None
        primary_now = {"query": "SELECT NOT pg_is_in_recovery()"}
        assert check(f"postgres://postgres@127.0.0.1:{standby.port}", primary_now) is None


def test_sslmode_require_against_a_server_without_tls(pg: PgServer) -> None:
    assert check(f"postgres://127.0.0.1:{pg.port}?sslmode=require") == (
        "the server does not accept TLS (sslmode=require)"
    )


def test_tls_modes_against_a_server_with_tls(pg_tls: tuple[PgServer, Path]) -> None:
    server, ca_file = pg_tls
    assert server.psql("SHOW ssl") == "on"
    base = f"postgres://scram_user:{SCRAM_IN_URL}@{{host}}:{server.port}/postgres"
    ip, name = base.format(host="127.0.0.1"), base.format(host="localhost")
    assert check(f"{ip}?sslmode=require") is None
    assert check(f"{ip}?sslmode=verify-full&sslrootcert={ca_file}") is None
    assert check(f"{name}?sslmode=verify-full", {"sslrootcert": str(ca_file)}) is None
    # Without the CA the system store does not know the server's certificate.
    reason = check(f"{ip}?sslmode=verify-ca")
    assert reason is not None
    assert reason.startswith("TLS failed: CERTIFICATE_VERIFY_FAILED")
    # The login really ran over TLS: the server's own view of this session says so.
    query = {"query": "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"}
    assert check(f"{ip}?sslmode=verify-ca&sslrootcert={ca_file}", query) is None
    assert check(f"{ip}?sslmode=disable", query) == "the query returned false"


# --------------------------------------------------------------------------- misbehaving peers


class ScriptedPeer(_Acceptor):
    """Reads the client's first bytes, sends `answer`, then stays silent (`hold`) or closes."""

    def __init__(self, answer: bytes, hold: bool = False) -> None:
        super().__init__()
        self.answer = answer
        self.hold = hold

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        conn.recv(65536)
        conn.sendall(self.answer)
        if self.hold:
            self.stop.wait(10)


@pytest.mark.parametrize(
    ("answer", "hold", "reason"),
    [
        (b"", True, r"^no answer within 1s \(startup\)$"),
        (b"R\0\0\0\x0c\0\0", True, r"^no answer within 1s \(startup\)$"),  # half a message
        (b"\x16\x03\x01\x02\x00garbage" * 3, False, "over the 1 MiB limit"),
        (b"E\x7f\xff\xff\xff", True, "message of 2147483647 bytes, over the 1 MiB limit"),
        (b"", False, "^the server closed the connection during startup$"),
        (b"R\0\0", False, "^the server closed the connection during startup$"),
    ],
)
def test_misbehaving_peers_end_bounded_and_named(answer: bytes, hold: bool, reason: str) -> None:
    with ScriptedPeer(answer, hold) as peer:
        began = time.monotonic()
        got = check(f"postgres://127.0.0.1:{peer.port}?sslmode=disable", bound=1.0)
        assert time.monotonic() - began < 3
        assert got is not None
        assert peer.accepted == 1
        assert re.search(reason, got), got


def test_a_peer_silent_after_the_tls_request_ends_in_the_bound() -> None:
    with ScriptedPeer(b"S", hold=True) as peer:
        began = time.monotonic()
        got = check(f"postgres://127.0.0.1:{peer.port}?sslmode=require", bound=1.0)
        assert time.monotonic() - began < 3
        assert got == "no answer within 1s (TLS handshake)"


class ScramPeer(_Acceptor):
    """Asks for SCRAM-SHA-256 and answers the client's first message with `iterations`, then stays
    silent: a hostile server making the client spend its attempt in PBKDF2."""

    def __init__(self, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        conn.recv(65536)  # the startup message
        mechanisms = b"\0\0\0\x0aSCRAM-SHA-256\0\0"
        conn.sendall(b"R" + (len(mechanisms) + 4).to_bytes(4, "big") + mechanisms)
        first = conn.recv(65536)
        nonce = first.split(b"r=", 1)[1].split(b",")[0]
        server_first = b"r=" + nonce + b"srv,s=QUJDREVGR0g=,i=" + str(self.iterations).encode()
        body = b"\0\0\0\x0b" + server_first
        conn.sendall(b"R" + (len(body) + 4).to_bytes(4, "big") + body)
        self.stop.wait(10)


def test_a_hostile_scram_iteration_count_is_refused_before_any_work() -> None:
    with ScramPeer(1_000_000) as peer:
        began = time.monotonic()
        got = check(f"postgres://app:pw@127.0.0.1:{peer.port}?sslmode=disable", bound=5.0)
        took = time.monotonic() - began
    assert got == (
        "the server asks for 1,000,000 SCRAM iterations, over portpatrol's limit of 100,000 "
        "(PostgreSQL's default is 4096)"
    )
    assert took < 0.5  # no PBKDF2 ran: 1,000,000 iterations take ~0.8 s here


def test_the_largest_scram_iteration_count_ends_at_the_deadline() -> None:
    """100,000 iterations (the limit, ~80 ms of PBKDF2 here) with a deadline that passes during
    them: the attempt stops waiting at its deadline (the bound below is generous for a loaded machine)."""
    with ScramPeer(100_000) as peer:
        overruns, reasons = [], set()
        for _ in range(3):
            began = time.monotonic()
            reasons.add(check(f"postgres://app:pw@127.0.0.1:{peer.port}?sslmode=disable", bound=0.03))
            overruns.append(time.monotonic() - began - 0.03)
    assert reasons == {"the attempt's time ran out during the server's 100,000 SCRAM iterations"}
    assert min(overruns) < 0.1, overruns
    assert max(overruns) < 0.5, overruns
