"""postgres and mysql through the INSTALLED command, from every source (env, config file, arguments),
against real servers (tests/pgserver.py, tests/mysqlserver.py) and silent peers. The servers' own
clients (pg_isready, mariadb-admin ping) say what state the server is in, so a test cannot pass for the
wrong reason."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.mysqlserver import APP_PASSWORD, APP_USER, MariaDB, install_template
from tests.peers import Running, TcpListener, run_portpatrol
from tests.pgserver import HBA, USERS_SQL, PgServer

PG_PASSWORD = "scr@m:pa ss/é"  # scram_user's (tests/pgserver.py USERS_SQL)
WRONG = "Wr0ng-Pa55word-x9"


def no_secret_in(*texts: str, secrets: tuple[str, ...]) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text
            assert quote(secret, safe="") not in text


def ready_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "is ready ✓" in line]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with PgServer() as server:
        server.initdb(HBA).start()
        server.psql(USERS_SQL)
        yield server


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    path = install_template()
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def maria(template: Path) -> Iterator[MariaDB]:
    with MariaDB(template) as server:
        server.start()
        yield server


# --------------------------------------------------------------------------- started late


def test_postgres_from_env_started_late_is_ready_soon_after_pg_isready() -> None:
    with PgServer() as server:
        server.initdb()
        env = {"TARGET_ADDRESS": f"postgres://127.0.0.1:{server.port}", "CHECK_INTERVAL": "200ms"}
        with Running(env) as running:
            running.wait_for_line("is not ready ✗", timeout=20)  # nothing listens yet
            assert server.isready() == 2
            server.start(wait=False)
            server.wait_for(0)  # pg_isready: accepting connections
            seen_ready = time.monotonic()
            assert running.wait(timeout=20) == 0, running.lines
            assert time.monotonic() - seen_ready < 5  # a few 200 ms intervals, generously
        assert ready_lines(running.lines)


def test_mysql_from_arguments_started_late_is_ready_soon_after_mariadb_admin_ping(template: Path) -> None:
    with MariaDB(template) as server:
        with Running(None, [f"mysql://127.0.0.1:{server.port}", "--interval", "200ms"]) as running:
            running.wait_for_line("is not ready ✗", timeout=20)
            assert server.admin_ping().returncode != 0
            server.start(wait=False)
            until = time.monotonic() + 60
            while server.admin_ping().returncode != 0:
                assert time.monotonic() < until, server.log()[-2000:]
                time.sleep(0.1)
            seen_ready = time.monotonic()
            assert running.wait(timeout=20) == 0, running.lines
            assert time.monotonic() - seen_ready < 5
        assert ready_lines(running.lines)


# --------------------------------------------------------------------------- wrong passwords


def test_postgres_wrong_password_is_retried_until_the_deadline(pg: PgServer, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = {
        "TARGET_ADDRESS": f"postgres://scram_user@127.0.0.1:{pg.port}/postgres",
        "PGPASSWORD": WRONG,
        "CHECK_INTERVAL": "200ms",
        "DIAL_TIMEOUT": "3s",
    }
    result = run_portpatrol(env, ["--timeout", "3s", "--report", str(report)])
    assert result.code == 124, result.stderr
    failures = [line for line in result.lines if "is not ready ✗" in line]
    assert len(failures) >= 2, result.lines  # retried
    assert 'password authentication failed for user \\"scram_user\\" [SQLSTATE 28P01]' in failures[0]
    no_secret_in(result.stdout, result.stderr, report.read_text(), secrets=(WRONG,))


def test_mysql_wrong_password_is_retried_until_the_deadline(maria: MariaDB, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    address = f"mysql://{APP_USER}:{quote(WRONG, safe='')}@127.0.0.1:{maria.port}/appdb"
    result = run_portpatrol(
        None, [address, "--interval", "200ms", "--timeout", "3s", "--report", str(report)]
    )
    assert result.code == 124, result.stderr
    failures = [line for line in result.lines if "is not ready ✗" in line]
    assert len(failures) >= 2, result.lines
    assert "login failed: Access denied for user 'app'@'localhost'" in failures[0]
    assert "(error 1045)" in failures[0]
    no_secret_in(result.stdout, result.stderr, report.read_text(), secrets=(WRONG,))


# --------------------------------------------------------------------------- config file, ${VAR}


def test_right_credentials_from_a_config_file_with_a_var_password(
    pg: PgServer, maria: MariaDB, tmp_path: Path
) -> None:
    config = tmp_path / "databases.yaml"
    config.write_text(
        "defaults: {interval: 200ms, dial_timeout: 5s}\n"
        "targets:\n"
        "  - name: pg\n"
        f"    address: postgres://scram_user:url-password-overridden@127.0.0.1:{pg.port}/postgres\n"
        "    postgres:\n"
        "      password: ${PG_PW}\n"
        "      query: SELECT NOT pg_is_in_recovery()\n"
        "  - name: maria\n"
        f"    type: mysql\n"
        f"    address: mariadb://127.0.0.1:{maria.port}\n"
        "    mysql:\n"
        f"      user: {APP_USER}\n"
        "      password: ${MARIA_PW}\n"
        "      database: appdb\n"
        "      query: SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'appdb'\n",
        encoding="utf-8",
    )
    env = {"PG_PW": PG_PASSWORD, "MARIA_PW": APP_PASSWORD}
    plan = run_portpatrol(env, ["validate", "--config", str(config)])
    assert plan.code == 0, plan.stderr
    assert (
        f"127.0.0.1:{pg.port} database=postgres login=yes user=scram_user tls=prefer query=yes" in plan.stdout
    )
    assert f"127.0.0.1:{maria.port} database=appdb login=yes user=app tls=PREFERRED query=yes" in plan.stdout
    result = run_portpatrol(env, ["--config", str(config), "--timeout", "20s", "--report", "-"])
    assert result.code == 0, result.stderr
    assert len(ready_lines(result.lines)) == 2, result.lines
    no_secret_in(plan.stdout, result.stdout, result.stderr, secrets=(PG_PASSWORD, APP_PASSWORD))
    assert "url-password-overridden" not in result.stdout + result.stderr + plan.stdout
    # ... and the same file with a wrong value in the variable is not ready: the block's password is used
    wrong = run_portpatrol({**env, "PG_PW": WRONG}, ["--config", str(config), "--timeout", "2s"])
    assert wrong.code == 124
    assert "password authentication failed" in wrong.stderr
    no_secret_in(wrong.stdout, wrong.stderr, secrets=(WRONG, PG_PASSWORD))


# --------------------------------------------------------------------------- SIGTERM mid-handshake


@pytest.mark.parametrize("scheme", ["postgres", "mysql"])
def test_sigterm_while_a_silent_peer_holds_the_handshake_exits_143_at_once(scheme: str) -> None:
    with TcpListener(silent=True) as peer:
        args = [f"{scheme}://app:{quote(WRONG)}@{peer.address}/db", "--dial-timeout", "60s"]
        with Running(None, args) as running:
            running.wait_for_line("Waiting for", timeout=10)
            until = time.monotonic() + 10
            while peer.accepted == 0:  # the attempt is in the handshake, waiting for the server
                assert time.monotonic() < until
                time.sleep(0.05)
            time.sleep(0.3)
            sent = time.monotonic()
            running.signal(signal.SIGTERM)
            assert running.wait(timeout=5) == 143
            assert time.monotonic() - sent < 2
        no_secret_in("\n".join(running.lines), secrets=(WRONG,))


# --------------------------------------------------------------------------- validate


def test_validate_shows_the_plan_of_each_source() -> None:
    env = {
        "TARGET_ADDRESS": "postgres://app@db.internal:6432/orders?sslmode=verify-full",
        "PGPASSWORD": "env-Secret-77",
        "POSTGRES_QUERY": "SELECT 1",
    }
    args = ["validate", "mysql://root:pw-Secret-88@127.0.0.1/shop?ssl-mode=REQUIRED", "mariadb://db2"]
    result = run_portpatrol(env, args)
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "db.internal:6432 database=orders login=yes user=app tls=verify-full query=yes" in out
    assert "127.0.0.1:3306 database=shop login=yes user=root tls=REQUIRED query=no" in out
    assert "db2:3306 login=no tls=PREFERRED query=no" in out
    assert "mysql://***@127.0.0.1/shop" in out
    no_secret_in(out, result.stderr, secrets=("env-Secret-77", "pw-Secret-88"))


@pytest.mark.parametrize(
    ("env", "args", "where", "words"),
    [
        (
            {},
            ["postgres://u:pw-S3cret@db?sslmode=allow"],
            'argument "postgres://***@db',
            "sslmode is one of",
        ),
        ({}, ["postgres://db:99999"], "argument", "port must be a number from 1 to 65535"),
        ({}, ["postgres://db?timeout=3"], "argument", "unknown query parameter 'timeout'"),
        ({}, ["postgres://u:pw-S3cret%zz@db"], "argument", "not followed by two hex digits"),
        ({}, ["mysql://db?ssl-mode=sometimes"], "argument", "ssl-mode must be one of"),
        ({}, ["mysql://:pw-S3cret@db"], "argument", "a password needs a user"),
        ({}, ["mariadb://db?ssl-ca=/etc/ca.pem"], "argument", "VERIFY_CA or VERIFY_IDENTITY"),
        (
            {"TARGET_ADDRESS": "postgres://db", "PGSSLMODE": "allow"},
            [],
            'PGSSLMODE="allow"',
            "not an sslmode",
        ),
        (
            {"TARGET_ADDRESS": "postgres://db", "POSTGRES_QUERY": "SELECT 1"},
            [],
            "POSTGRES_QUERY",
            "give a user",
        ),
        (
            {"TARGET_ADDRESS": "mysql://db", "MYSQL_SSL_MODE": "x"},
            [],
            'MYSQL_SSL_MODE="x"',
            "not an ssl-mode",
        ),
        (
            {"TARGET_ADDRESS": "mysql://db", "MYSQL_PWD": "pw-S3cret"},
            [],
            "MYSQL_PWD",
            "a password needs a user",
        ),
    ],
)
def test_bad_addresses_and_options_exit_2_with_one_line_and_an_example(
    env: dict[str, str], args: list[str], where: str, words: str
) -> None:
    result = run_portpatrol(env, ["validate", *args])
    assert result.code == 2, result.stdout + result.stderr
    assert len(result.lines) == 1, result.lines
    (line,) = result.lines
    assert line.startswith(f"portpatrol: {where}"), line
    assert words in line, line
    assert "e.g." in line, line
    assert "S3cret" not in line


def test_bad_blocks_in_a_config_file_are_each_one_line_at_their_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "targets:\n"
        "  - address: postgres://db\n"
        "    postgres: {query: SELECT 1}\n"
        "  - address: mysql://db\n"
        "    mysql: {password: '${DB_PW}'}\n"
        "  - address: mysql://db\n"
        "    postgres: {user: app}\n",
        encoding="utf-8",
    )
    result = run_portpatrol({"DB_PW": "pw-S3cret"}, ["validate", "--config", str(config)])
    assert result.code == 2
    assert len(result.lines) == 3, result.lines
    first, second, third = result.lines
    assert "$.targets[0].postgres.query" in first
    assert "give a user" in first
    assert "$.targets[1].mysql.password" in second
    assert "a password needs a user" in second
    assert "$.targets[2].postgres" in third
    assert "S3cret" not in result.stderr


# --------------------------------------------------------------------------- recovery


def test_postgres_kept_in_recovery_shows_starting_up_then_ready() -> None:
    """A slow restore_command keeps the server in archive recovery for seconds: pg_isready says 1
    (rejecting) and portpatrol shows the server's "starting up" meanwhile, then ready."""
    with PgServer() as primary, PgServer() as restored:
        primary.initdb().start()
        restored.basebackup_of(primary)
        primary.stop()
        (restored.data / "standby.signal").unlink()
        restored.write("data/recovery.signal", "")
        restored.settings |= {"restore_command": "sleep 2; false", "hot_standby": "off"}
        env = {"TARGET_ADDRESS": f"postgres://127.0.0.1:{restored.port}", "CHECK_INTERVAL": "200ms"}
        with Running(env) as running:
            restored.start(wait=False)
            restored.wait_for(1)  # pg_isready: rejecting connections (in recovery)
            line = running.wait_for_line("starting up", timeout=30)
            assert "the database system is starting up [SQLSTATE 57P03]" in line
            assert not ready_lines(running.lines)
            restored.wait_for(0, within=120)
            assert running.wait(timeout=20) == 0, running.lines
        assert ready_lines(running.lines)
