"""The amqp kind against a real RabbitMQ 3.10 (Debian's, run as the rabbitmq user by tests/rabbitserver.py)
and against real misbehaving TCP peers. The server's own CLI is asked for its state beside each check,
so that a check cannot pass or fail for the wrong reason."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self
from urllib.parse import quote

import pytest

from portpatrol.errors import NotReady
from portpatrol.kinds import amqp
from tests.cacheservers import RedisServer, never_shown, waits_for_a_late_start
from tests.peers import free_port, run_portpatrol
from tests.rabbitserver import RabbitServer

BOUND = 5.0
pytestmark = pytest.mark.timeout(300)  # the broker's boot (up to 90 s) counts in its first test's time


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitServer]:
    with RabbitServer() as server:
        yield server
    assert server.leftovers() == [], "beam or epmd outlived the fixture"


def attempt(address: str, block: dict[str, object] | None = None, bound: float = BOUND) -> str:
    """One attempt: "ready", or the reason it was not; fails the test if it overran its bound."""
    target = amqp.parse(address, block or {})
    started = time.monotonic()
    try:
        amqp.attempt(target, started + bound, bound)
    except NotReady as error:
        return str(error)
    finally:
        assert time.monotonic() - started < bound + 2
    return "ready"


# --------------------------------------------------------------------------- the real broker


def test_the_command_waits_for_a_broker_started_late() -> None:
    """portpatrol first, then the broker (which returns once rabbitmq-diagnostics says its listeners
    accept): refused until then, exit 0 right after. This boots the session's second broker."""
    server = RabbitServer()  # its ports chosen, not started yet
    try:
        late = waits_for_a_late_start(
            f"amqp://guest:guest@127.0.0.1:{server.port}", server.start, server.accepting
        )
    finally:
        server.stop()
    assert server.leftovers() == []
    assert late < 5  # rabbitmq-diagnostics itself takes a second or two


def test_without_credentials_the_broker_answers_connection_start(rabbit: RabbitServer) -> None:
    assert rabbit.accepting()
    assert attempt(f"amqp://127.0.0.1:{rabbit.port}") == "ready"
    assert attempt(f"amqp://localhost:{rabbit.port}/no-such-vhost") == "ready"  # no login: no Open


def test_guest_logs_in_from_loopback(rabbit: RabbitServer) -> None:
    assert rabbit.ctl("authenticate_user", "guest", "guest").returncode == 0
    assert attempt(f"amqp://guest:guest@127.0.0.1:{rabbit.port}") == "ready"
    assert attempt(f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F") == "ready"
    assert attempt(f"amqp://127.0.0.1:{rabbit.port}", {"user": "guest", "password": "guest"}) == "ready"


def test_a_wrong_password_is_refused_in_the_servers_words_without_the_password(rabbit: RabbitServer) -> None:
    assert rabbit.ctl("authenticate_user", "guest", "not-guest-pw").returncode != 0
    reason = attempt(f"amqp://guest:not-guest-pw@127.0.0.1:{rabbit.port}")
    assert reason.startswith("the server closed the connection: 403 ACCESS_REFUSED - Login was refused")
    assert "not-guest-pw" not in reason
    reason = attempt(f"amqp://nobody-here:x@127.0.0.1:{rabbit.port}")
    assert "403 ACCESS_REFUSED" in reason


def test_a_vhost_that_does_not_exist_is_not_ready(rabbit: RabbitServer) -> None:
    assert "nope" not in rabbit.ctl("list_vhosts", "-q").stdout.split()
    reason = attempt(f"amqp://guest:guest@127.0.0.1:{rabbit.port}/nope")
    assert reason == "the server closed the connection: 530 NOT_ALLOWED - vhost nope not found"
    # a bare trailing slash is the empty vhost (RabbitMQ URI spec), which does not exist either
    reason = attempt(f"amqp://guest:guest@127.0.0.1:{rabbit.port}/")
    assert reason == "the server closed the connection: 530 NOT_ALLOWED - vhost  not found"


def test_a_vhost_created_with_rabbitmqctl_opens_once_the_user_may_use_it(rabbit: RabbitServer) -> None:
    vhost = "pp app/é"
    assert rabbit.ctl("add_vhost", vhost).returncode == 0
    address = f"amqp://guest:guest@127.0.0.1:{rabbit.port}/{quote(vhost, safe='')}"
    reason = attempt(address)
    # the user's name is shown as *** here: guest's password is "guest", and no reason shows a password
    assert reason.endswith("530 NOT_ALLOWED - access to vhost 'pp app/é' refused for user '***'")
    assert rabbit.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*").returncode == 0
    assert attempt(address) == "ready"
    assert attempt(
        f"amqp://127.0.0.1:{rabbit.port}", {"user": "guest", "password": "guest", "vhost": vhost}
    ) == ("ready")


def test_a_user_whose_password_needs_escaping_logs_in(rabbit: RabbitServer) -> None:
    password = "p@ss:w/rd %é"
    assert rabbit.ctl("add_user", "pp-user", password).returncode == 0
    assert rabbit.ctl("set_permissions", "-p", "/", "pp-user", ".*", ".*", ".*").returncode == 0
    assert rabbit.ctl("authenticate_user", "pp-user", password).returncode == 0
    assert attempt(f"amqp://pp-user:{quote(password, safe='')}@127.0.0.1:{rabbit.port}") == "ready"
    assert attempt(f"amqp://127.0.0.1:{rabbit.port}", {"user": "pp-user", "password": password}) == "ready"


def test_amqps_verifies_the_brokers_certificate(rabbit: RabbitServer) -> None:
    assert rabbit.diagnostics("check_port_listener", str(rabbit.tls_port)).returncode == 0
    tls = f"amqps://guest:guest@127.0.0.1:{rabbit.tls_port}"
    assert attempt(tls, {"ca_file": str(rabbit.ca_file)}) == "ready"
    assert attempt(f"amqps://localhost:{rabbit.tls_port}", {"ca_file": str(rabbit.ca_file)}) == "ready"
    assert "CERTIFICATE_VERIFY_FAILED" in attempt(tls)  # the system store does not know this CA
    assert attempt(tls, {"skip_tls_verify": True}) == "ready"
    assert attempt(tls.replace("guest:guest", "guest:wrong"), {"ca_file": str(rabbit.ca_file)}).startswith(
        "the server closed the connection: 403 ACCESS_REFUSED"
    )
    # the wrong scheme for each port: a named failure, not a hang
    assert attempt(f"amqp://127.0.0.1:{rabbit.tls_port}", bound=2) == "the server speaks TLS: use amqps://"
    assert attempt(f"amqps://127.0.0.1:{rabbit.port}", {"skip_tls_verify": True}).startswith("TLS failed")


# --------------------------------------------------------------------------- misbehaving peers


class ScriptedPeer:
    """A TCP listener on loopback that runs `script` on each connection it accepts, in a thread."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            with contextlib.suppress(OSError):  # the client hung up first: its reason is what is checked
                self.script(conn)
            self.stopping.wait(10)  # keep it open (silent) until the test ends, unless the script closed

    def __enter__(self) -> Self:
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.acceptor.join(5)
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


def _frame(payload: bytes) -> bytes:
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"


START = _frame(
    b"\x00\x0a\x00\x0a\x00\x09" + struct.pack(">I", 0) + struct.pack(">I", 5) + b"PLAIN" + b"\0\0\0\0"
)


def say(data: bytes, close: bool = False) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        conn.recv(8)
        conn.sendall(data)
        if close:
            conn.shutdown(socket.SHUT_RDWR)

    return script


def start_then_close(conn: socket.socket) -> None:
    conn.recv(8)
    conn.sendall(START)
    conn.recv(4096)  # Start-Ok
    conn.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize(
    ("script", "login", "reason"),
    [
        (say(b""), False, "no answer within 1s (Connection.Start)"),
        (say(START[:10]), False, "no answer within 1s (Connection.Start)"),
        (say(b"SSH-2.0-OpenSSH_9.2\r\n"), False, "the server does not speak AMQP: it sent SSH-2.0"),
        (say(b"\x01\x00\x00\x7f\xff\xff\xff"), False, "a frame of 2147483647 bytes, more than 131064"),
        (say(START[:10], close=True), False, "the server closed the connection during Connection.Start"),
        (say(b"AMQP\x00\x00\x08\x00", close=True), False, "version mismatch"),
        (start_then_close, True, "the server closed the connection during Connection.Tune"),
    ],
)
def test_misbehaving_peers_end_in_the_bound_with_a_named_reason(
    script: Callable[[socket.socket], None], login: bool, reason: str
) -> None:
    with ScriptedPeer(script) as peer:
        started = time.monotonic()
        got = attempt(f"amqp://{'u:p@' if login else ''}127.0.0.1:{peer.port}", bound=1.0)
        assert time.monotonic() - started < 3
    assert reason in got


def test_a_port_nothing_listens_on_is_refused() -> None:
    assert attempt(f"amqp://127.0.0.1:{free_port()}") == "connection refused"


# --------------------------------------------------------------------------- the installed command


def test_a_wrong_password_is_retried_until_the_timeout_in_the_brokers_words(
    rabbit: RabbitServer, tmp_path: Path
) -> None:
    assert rabbit.ctl("authenticate_user", "guest", "wrong-amqp-pw").returncode != 0
    report = tmp_path / "report.json"
    env = {
        "TARGET_ADDRESS": f"amqp://guest:guest@127.0.0.1:{rabbit.port}",
        "AMQP_PASSWORD": "wrong-amqp-pw",  # replaces the address's right one: the block wins
        "CHECK_INTERVAL": "300ms",
    }
    result = run_portpatrol(env, ["--timeout", "4s", "--report", str(report)], timeout=60)
    assert result.code == 124, result.lines
    refused = [line for line in result.lines if "403 ACCESS_REFUSED - Login was refused" in line]
    assert len(refused) >= 2, result.lines
    never_shown("wrong-amqp-pw", result.stdout, result.stderr, report.read_text())


def test_the_right_password_from_a_config_file_with_a_variable(rabbit: RabbitServer, tmp_path: Path) -> None:
    password = "r@bbit:${not a var} %"
    assert rabbit.ctl("add_user", "pp-cli", password).returncode == 0
    assert rabbit.ctl("set_permissions", "-p", "/", "pp-cli", ".*", ".*", ".*").returncode == 0
    assert rabbit.ctl("authenticate_user", "pp-cli", password).returncode == 0
    config = tmp_path / "pp.yaml"
    config.write_text(
        "targets:\n"
        f"  - address: amqp://127.0.0.1:{rabbit.port}\n"
        '    amqp: {user: pp-cli, password: "${RABBITMQ_PASSWORD}", vhost: /}\n'
    )
    report = tmp_path / "report.json"
    env = {"RABBITMQ_PASSWORD": password}
    result = run_portpatrol(env, ["--config", str(config), "--report", str(report)], timeout=60)
    assert result.code == 0, result.lines
    never_shown(password, result.stdout, result.stderr, report.read_text())


def test_arguments_wait_for_a_cache_and_a_broker_together(rabbit: RabbitServer) -> None:
    with RedisServer() as redis:
        redis.start()
        redis.until(lambda: redis.cli("ping") == "PONG")
        args = [f"redis://127.0.0.1:{redis.port}", f"amqp://guest:guest@127.0.0.1:{rabbit.port}"]
        result = run_portpatrol({}, ["--timeout", "20s", *args], timeout=60)
    assert result.code == 0, result.lines
    assert sum("is ready ✓" in line for line in result.lines) == 2
