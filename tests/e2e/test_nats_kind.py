"""The nats kind against a real nats-server (Debian's 2.9, as nobody, on a free loopback port), with a
raw socket reading INFO as the oracle: open, user and password, token, lame duck mode, TLS required, and
peers that misbehave: first one attempt at a time (the kind's attempt()), then the installed command."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portpatrol.errors import NotReady
from portpatrol.kinds import nats
from tests.cacheservers import NatsServer, ScriptedPeer, certificates, never_shown, waits_for_a_late_start
from tests.peers import run_portpatrol


def outcome(address: str, block: dict[str, Any] | None = None, bound: float = 2.0) -> str:
    """The reason the attempt gives ("" when ready); it must end within its bound (with slack)."""
    started = time.monotonic()
    try:
        nats.attempt(nats.parse(address, block or {}), time.monotonic() + bound, bound)
    except NotReady as error:
        reason = str(error)
    else:
        reason = ""
    assert time.monotonic() - started < bound + 2
    return reason


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[NatsServer]:
    options: tuple[str, ...] = getattr(request, "param", ())
    with NatsServer() as started:
        started.start(*options)
        started.until(lambda: started.info() is not None)
        yield started


def test_ready_when_connect_and_ping_get_pong(server: NatsServer) -> None:
    info = server.info()
    assert info is not None
    assert not info.get("auth_required")
    assert outcome(f"nats://127.0.0.1:{server.port}") == ""
    assert outcome(f"nats://localhost:{server.port}") == ""


def test_not_started_is_refused() -> None:
    with NatsServer() as never:
        assert never.info() is None
        assert outcome(f"nats://127.0.0.1:{never.port}") == "connection refused"


@pytest.mark.parametrize("server", [("--user", "app", "--pass", "s3:cr@t")], indirect=True)
def test_user_and_password(server: NatsServer) -> None:
    info = server.info()
    assert info is not None
    assert info["auth_required"] is True
    assert outcome(f"nats://app:s3%3Acr%40t@127.0.0.1:{server.port}") == ""
    assert outcome(f"nats://127.0.0.1:{server.port}", {"user": "app", "password": "s3:cr@t"}) == ""
    assert outcome(f"nats://app:wrong@127.0.0.1:{server.port}") == (
        "the server refused the connection: Authorization Violation"
    )
    assert outcome(f"nats://127.0.0.1:{server.port}") == (
        "the server needs credentials: user:password@ or token@ in the address (Authorization Violation)"
    )


@pytest.mark.parametrize("server", [("--auth", "T0KEN")], indirect=True)
def test_token(server: NatsServer) -> None:
    assert outcome(f"nats://T0KEN@127.0.0.1:{server.port}") == ""
    refused = outcome(f"nats://nottoken@127.0.0.1:{server.port}")
    assert refused == "the server refused the connection: Authorization Violation"
    assert "needs credentials" in outcome(f"nats://127.0.0.1:{server.port}")


def test_lame_duck_mode_is_not_ready() -> None:
    """A client stays connected so the server lingers in lame duck mode: that client is told `ldm`
    (the oracle), the server still runs, and a new attempt is not ready."""
    with NatsServer() as server:
        server.write("n.conf", b'lame_duck_duration: "30s"\nlame_duck_grace_period: "20s"\n')
        server.start("-c", str(server.dir / "n.conf"))
        server.until(lambda: server.info() is not None)
        assert outcome(f"nats://127.0.0.1:{server.port}") == ""
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as held:
            held.recv(65536)
            held.sendall(b'CONNECT {"verbose":false,"protocol":1}\r\nPING\r\n')
            assert b"PONG" in held.recv(65536)
            subprocess.run(["nats-server", "--signal", f"ldm={server.pid}"], check=True, timeout=10)
            told = b""
            while b'"ldm":true' not in told:
                told += held.recv(65536)
            assert server.proc is not None
            assert server.proc.poll() is None
            assert server.info() is None
            assert outcome(f"nats://127.0.0.1:{server.port}") == "connection refused"


def test_lame_duck_mode_in_info_is_named() -> None:
    """What a server in lame duck mode says in INFO, when it still accepts: the server's real INFO,
    with the flag a server sets, from a peer."""
    with NatsServer() as server:
        server.start()
        server.until(lambda: server.info() is not None)
        info = server.info()
        assert info is not None
    line = b"INFO " + json.dumps(info | {"ldm": True}).encode() + b"\r\n"
    with ScriptedPeer(line, hold=True) as peer:
        assert outcome(f"nats://127.0.0.1:{peer.port}") == "the server is in lame duck mode (shutting down)"


def test_tls_required_turns_the_connection_to_tls() -> None:
    with NatsServer() as server:
        ca, cert, key = certificates(server)
        server.start("--tls", "--tlscert", str(cert), "--tlskey", str(key))
        server.until(lambda: server.info() is not None)
        info = server.info()
        assert info is not None
        assert info["tls_required"] is True
        address = f"nats://127.0.0.1:{server.port}"
        assert outcome(address, {"ca_file": str(ca)}) == ""
        assert outcome(f"nats://localhost:{server.port}", {"ca_file": str(ca)}) == ""
        assert outcome(address, {"skip_tls_verify": True}) == ""
        assert outcome(address).startswith("TLS failed: CERTIFICATE_VERIFY_FAILED")


@pytest.mark.parametrize(
    ("script", "hold", "reason"),
    [
        (b"", True, "no answer within 1s (the server's INFO)"),
        (b'INFO {"server_id":', False, "the server closed the connection during the server's INFO"),
        (b"", False, "the server closed the connection during the server's INFO"),
        (b"\x00\xff garbage\r\n", False, "the server did not start with INFO, so it is not NATS"),
        (b"INFO " + b"x" * 100_000, True, "the server sent a line longer than 65536 bytes"),
        (b"INFO {}\r\n", True, "no answer within 1s (the answer to CONNECT and PING)"),
        (b"INFO {}\r\nPO", False, "the server closed the connection during the answer to CONNECT and PING"),
    ],
)
def test_misbehaving_peers_give_bounded_named_reasons(script: bytes, hold: bool, reason: str) -> None:
    with ScriptedPeer(script, hold=hold) as peer:
        assert outcome(f"nats://127.0.0.1:{peer.port}", bound=1.0).startswith(reason)


# --------------------------------------------------------------------------- the installed command

NATS_PASSWORD = "n@ts:pa$$ w/rd"  # a `$` and a space: only a config file's ${VAR} passes it as is


def test_the_command_waits_for_a_nats_server_started_late() -> None:
    with NatsServer() as server:
        late = waits_for_a_late_start(
            f"nats://127.0.0.1:{server.port}", server.start, lambda: server.info() is not None
        )
    assert late < 3


@pytest.mark.parametrize("server", [("--user", "app", "--pass", NATS_PASSWORD)], indirect=True)
def test_wrong_or_missing_credentials_are_retried_until_the_timeout(
    server: NatsServer, tmp_path: Path
) -> None:
    info = server.info()
    assert info is not None
    assert info.get("auth_required") is True  # the server's own word
    report = tmp_path / "report.json"
    env = {
        "TARGET_ADDRESS": f"nats://app:wrong-pw-1@127.0.0.1:{server.port}",
        "NATS_PASSWORD": "wrong-pw-2",  # replaces the address's password (the block wins)
        "CHECK_INTERVAL": "200ms",
    }
    result = run_portpatrol(env, ["--timeout", "3s", "--report", str(report)])
    assert result.code == 124, result.lines
    refused = [line for line in result.lines if "Authorization Violation" in line]
    assert len(refused) >= 3, result.lines
    never_shown("wrong-pw", result.stdout, result.stderr, report.read_text())
    missing = run_portpatrol({}, ["--timeout", "1s", f"nats://127.0.0.1:{server.port}"])
    assert missing.code == 124, missing.lines
    assert "the server needs credentials" in missing.lines[-1]


@pytest.mark.parametrize("server", [("--user", "app", "--pass", NATS_PASSWORD)], indirect=True)
def test_the_right_credentials_from_a_config_file_with_a_variable(server: NatsServer, tmp_path: Path) -> None:
    config = tmp_path / "pp.yaml"
    config.write_text(
        "targets:\n"
        f"  - address: nats://127.0.0.1:{server.port}\n"
        '    nats: {user: app, password: "${NATS_SECRET}"}\n'
    )
    report = tmp_path / "report.json"
    result = run_portpatrol(
        {"NATS_SECRET": NATS_PASSWORD}, ["--config", str(config), "--report", str(report)]
    )
    assert result.code == 0, result.lines
    never_shown(NATS_PASSWORD, result.stdout, result.stderr, report.read_text())
