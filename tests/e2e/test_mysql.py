"""The mysql kind against a real MariaDB (Debian's, run as nobody by tests/mysqlserver.py) and against
misbehaving TCP peers on loopback. `mariadb-admin ping` and the server's own tables are the oracles, so
a check cannot pass for the wrong reason."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme

from portpatrol import mysqlwire
from portpatrol.errors import NotReady
from portpatrol.kinds import mysql
from tests.mysqlserver import APP_PASSWORD, APP_USER, MariaDB, install_template, make_dir

APP = f"{APP_USER}:{quote(APP_PASSWORD, safe='')}"


def check(address: str, block: dict[str, str] | None = None, bound: float = 5.0) -> str | None:
    """One attempt: None when ready, else the reason. Asserts it ended within its bound (generously)."""
    settings = mysql.parse(address, block or {})
    started = time.monotonic()
    try:
        mysql.attempt(settings, started + bound, bound)
        reason = None
    except NotReady as error:
        reason = str(error)
    assert time.monotonic() - started < bound + 3
    if reason is not None:
        assert APP_PASSWORD not in reason
        assert quote(APP_PASSWORD, safe="") not in reason
    return reason


def wait_ready(address: str, within: float = 60, block: dict[str, str] | None = None) -> list[str]:
    """Attempts until ready; the reasons seen before. Fails the test after `within` seconds."""
    reasons: list[str] = []
    end = time.monotonic() + within
    while time.monotonic() < end:
        reason = check(address, block, bound=2)
        if reason is None:
            return reasons
        reasons.append(reason)
        time.sleep(0.2)
    pytest.fail(f"not ready in {within}s: {reasons[-3:]}")


@pytest.fixture(scope="session")
def template() -> Iterator[Path]:
    path = install_template()
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def server(template: Path) -> Iterator[MariaDB]:
    with MariaDB(template) as running:
        running.start()
        yield running


@pytest.fixture(scope="session")
def certificates() -> Iterator[tuple[Path, Path, Path]]:
    """(CA, server certificate, key) for localhost and 127.0.0.1, readable by nobody; and another CA."""
    folder = make_dir("ppmaria-tls-")
    authority = trustme.CA()
    issued = authority.issue_cert("localhost", "127.0.0.1")
    ca, cert, key = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    for path in folder.iterdir():
        path.chmod(0o644)
    yield ca, cert, key
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_server(template: Path, certificates: tuple[Path, Path, Path]) -> Iterator[MariaDB]:
    ca, cert, key = certificates
    with MariaDB(template, (f"--ssl-ca={ca}", f"--ssl-cert={cert}", f"--ssl-key={key}")) as running:
        running.start()
        yield running


# --------------------------------------------------------------------------- a real MariaDB


def test_not_started_then_started(template: Path) -> None:
    with MariaDB(template) as late:
        address = f"mysql://{APP}@127.0.0.1:{late.port}/appdb"
        assert late.admin_ping().returncode != 0
        assert check(address, bound=1) == "connection refused"
        late.start(wait=False)
        reasons = wait_ready(address)
        assert late.admin_ping().stdout.strip() == "mysqld is alive"
        # while it started: refused, or its own words; never a traceback or another kind of reason
        assert all(r == "connection refused" or "the server" in r for r in reasons), reasons


def test_the_greeting_alone_is_ready_without_a_user(server: MariaDB) -> None:
    assert server.admin_ping().stdout.strip() == "mysqld is alive"
    assert check(f"mysql://127.0.0.1:{server.port}") is None
    assert check(f"mariadb://localhost:{server.port}") is None


def test_right_and_wrong_passwords_with_mysql_native_password(server: MariaDB) -> None:
    plugin = server.sql(f"SELECT JSON_VALUE(Priv, '$.plugin') FROM mysql.global_priv WHERE User='{APP_USER}'")
    assert plugin.strip() == "mysql_native_password"
    assert check(f"mysql://{APP}@127.0.0.1:{server.port}/appdb") is None
    assert check(f"mysql://{APP_USER}@127.0.0.1:{server.port}", {"password": APP_PASSWORD}) is None
    wrong = check(f"mysql://{APP_USER}:wrong-one@127.0.0.1:{server.port}")
    assert (
        wrong
        == f"login failed: Access denied for user '{APP_USER}'@'localhost' (using password: YES) (error 1045)"
    )
    nobody = check(f"mysql://{APP_USER}@127.0.0.1:{server.port}")
    assert nobody is not None
    assert "(using password: NO) (error 1045)" in nobody
    unknown_db = check(f"mysql://{APP}@127.0.0.1:{server.port}/nope")
    assert unknown_db == "login failed: Unknown database 'nope' (error 1049)"


def test_a_query_decides_and_the_login_ends_with_com_quit(server: MariaDB) -> None:
    address = f"mysql://{APP}@127.0.0.1:{server.port}/appdb"
    aborted_before = server.log().count(f"user: '{APP_USER}'")
    assert check(address, {"query": "SELECT 1"}) is None
    assert check(address, {"query": "SELECT 0"}) == "the query returned 0"
    assert check(address, {"query": "SELECT NULL"}) == "the query returned NULL"
    assert check(address, {"query": "SELECT ''"}) == "the query returned an empty value"
    assert check(address, {"query": "SELECT seq FROM seq_1_to_100"}) is None  # the other rows drained
    ready_table = (
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='appdb' AND table_name='ready'"
    )
    assert check(address, {"query": ready_table}) == "the query returned 0"
    server.sql("CREATE TABLE appdb.ready (i INT)")
    assert check(address, {"query": ready_table}) is None
    failed = check(address, {"query": "SELECT * FROM appdb.missing"})
    assert failed == "the query failed: Table 'appdb.missing' doesn't exist (error 1146)"
    # COM_QUIT after every login: the server logged no aborted connection of the user
    assert server.log().count(f"user: '{APP_USER}'") == aborted_before


def test_an_err_packet_instead_of_the_greeting(template: Path) -> None:
    """With --skip-name-resolve and no account for 127.0.0.1 the server answers a connect with ERR 1130."""
    with MariaDB(template, ("--skip-name-resolve",)) as strict:
        strict.start()
        strict.sql(
            "DROP USER 'root'@'127.0.0.1'; DROP USER 'root'@'::1'; "
            f"DROP USER '{APP_USER}'@'%'; FLUSH PRIVILEGES;"
        )
        oracle = strict.admin_ping()
        assert oracle.returncode == 1
        assert "1130" in oracle.stderr
        reason = check(f"mysql://127.0.0.1:{strict.port}")
        assert reason == "Host '127.0.0.1' is not allowed to connect to this MariaDB server (error 1130)"
        strict.sql("CREATE USER 'late'@'127.0.0.1'")
        assert check(f"mysql://127.0.0.1:{strict.port}") is None


# --------------------------------------------------------------------------- TLS

TLS_IN_USE = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME='Ssl_version'"


def test_tls_modes_against_a_server_with_tls(
    tls_server: MariaDB, certificates: tuple[Path, Path, Path]
) -> None:
    ca = certificates[0]
    port = tls_server.port
    # the server itself says the session is encrypted: its Ssl_version is not empty
    assert check(f"mysql://{APP}@127.0.0.1:{port}?ssl-mode=REQUIRED", {"query": TLS_IN_USE}) is None
    assert check(f"mysql://{APP}@127.0.0.1:{port}", {"query": TLS_IN_USE}) is None  # PREFERRED uses it
    plain = check(f"mysql://{APP}@127.0.0.1:{port}?ssl-mode=DISABLED", {"query": TLS_IN_USE})
    assert plain == "the query returned an empty value"
    assert check(f"mysql://{APP}@localhost:{port}?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}") is None
    assert check(f"mysql://127.0.0.1:{port}?ssl-mode=VERIFY_CA&ssl-ca={ca}") is None
    untrusted = check(
        f"mysql://{APP}@127.0.0.1:{port}?ssl-mode=VERIFY_CA&ssl-ca={ca.parent / 'other-ca.pem'}"
    )
    assert untrusted is not None
    assert untrusted.startswith("TLS failed: CERTIFICATE_VERIFY_FAILED")
    system_store = check(f"mysql://127.0.0.1:{port}?ssl-mode=VERIFY_IDENTITY")
    assert system_store is not None
    assert system_store.startswith("TLS failed")


def test_required_tls_against_a_server_without_it(server: MariaDB) -> None:
    assert check(f"mysql://127.0.0.1:{server.port}?ssl-mode=REQUIRED") == (
        "the server does not offer TLS (ssl-mode REQUIRED)"
    )
    assert check(f"mysql://{APP}@127.0.0.1:{server.port}", {"query": TLS_IN_USE}) == (
        "the query returned an empty value"
    )


# --------------------------------------------------------------------------- misbehaving peers


@contextlib.contextmanager
def peer(behave: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback listener whose every connection gets `behave`; the port. Closed at the end."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)
            with contextlib.suppress(OSError):
                behave(conn)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


def _silent(conn: socket.socket) -> None:
    pass  # accepted, never a byte


def _half(conn: socket.socket) -> None:
    conn.sendall(b"\x50\x00\x00\x00\x0a5.5.5-10")  # promises 80 bytes, sends 10, stays open


def _garbage(conn: socket.socket) -> None:
    conn.sendall(b"\x05\x00\x00\x00hello")


def _http(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # 'HTT' read as a length: 5.5 MB


def _absurd(conn: socket.socket) -> None:
    conn.sendall(b"\xff\xff\xff\x00")


def _closes(conn: socket.socket) -> None:
    conn.sendall(b"\x50\x00\x00\x00\x0a5.5.5-10")
    conn.close()


@pytest.mark.parametrize(
    ("behave", "reason"),
    [
        (_silent, "no answer within 1s (the greeting)"),
        (_half, "no answer within 1s (the greeting)"),
        (_garbage, "not a MySQL greeting: protocol 104, expected 10"),
        (_http, "the server sent a packet of 5526600 bytes during the greeting (limit 1048576)"),
        (_absurd, "the server sent a packet of 16777215 bytes during the greeting (limit 1048576)"),
        (_closes, "the server closed the connection during the greeting"),
    ],
)
def test_misbehaving_peers_end_in_the_bound_with_a_named_reason(
    behave: Callable[[socket.socket], None], reason: str
) -> None:
    with peer(behave) as port:
        for address in (f"mysql://127.0.0.1:{port}", f"mysql://{APP}@127.0.0.1:{port}?ssl-mode=REQUIRED"):
            started = time.monotonic()
            assert check(address, bound=1) == reason
            assert time.monotonic() - started < 4


def test_a_tls_peer_that_stalls_the_handshake_is_bounded(server: MariaDB) -> None:
    """A greeting offering TLS, then silence during the TLS handshake."""
    with socket.create_connection(("127.0.0.1", server.port)) as real:
        offer = bytearray(real.recv(4096))
    payload = bytearray(offer[4:])
    version_end = payload.index(b"\0")
    caps_at = version_end + 1 + 4 + 8 + 1
    caps = int.from_bytes(payload[caps_at : caps_at + 2], "little") | mysqlwire.SSL
    payload[caps_at : caps_at + 2] = caps.to_bytes(2, "little")

    def stall(conn: socket.socket) -> None:
        conn.sendall(offer[:4] + payload)

    with peer(stall) as port:
        assert (
            check(f"mysql://127.0.0.1:{port}?ssl-mode=REQUIRED", bound=1)
            == "no answer within 1s (TLS handshake)"
        )


def test_ssl_context_is_cached_per_mode() -> None:
    first = mysql.tls_context("REQUIRED", None)
    assert mysql.tls_context("REQUIRED", None) is first
    assert first.verify_mode == ssl.CERT_NONE
    assert mysql.tls_context("VERIFY_CA", None).check_hostname is False
    assert mysql.tls_context("VERIFY_IDENTITY", None).check_hostname is True
