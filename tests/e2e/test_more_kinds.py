"""Issue 14 through the installed command: dns (dnsmasq), file, unix, command, invert, backoff and
every address of a name (localhost's two families; a name in a test-made namespace whose IPv6
address swallows connects). Only loopback and namespaces made here are used."""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dnsserver import Dnsmasq
from tests.faultpeers import run_window
from tests.peers import Running, TcpListener, free_port, line_time, parse_line, run_portpatrol

FAST = {"CHECK_INTERVAL": "200ms", "DIAL_TIMEOUT": "1s"}


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    peer = Dnsmasq()
    try:
        yield peer
    finally:
        peer.stop()


def errors(lines: list[str]) -> list[str]:
    return [parse_line(line).get("error", "") for line in lines if "is not ready" in line]


# ------------------------------------------------------------------------------------------- dns


def test_a_dns_record_added_then_sighup_is_ready_within_a_few_intervals(dnsmasq: Dnsmasq) -> None:
    dnsmasq.set_hosts("")
    with Running({**FAST, "TARGET_ADDRESS": dnsmasq.url("late.pp.test")}) as running:
        line = running.wait_for_line("is not ready", 10)
        assert parse_line(line)["error"] == "late.pp.test does not exist (NXDOMAIN)"
        assert "late.pp.test is NXDOMAIN" in dnsmasq.log.read_text()  # the server's own word
        added = time.monotonic()
        dnsmasq.set_hosts("127.0.0.7 late.pp.test\n")
        assert running.wait(10) == 0
        assert time.monotonic() - added < 5  # a few 200 ms intervals, generously
    assert "late.pp.test is 127.0.0.7" in dnsmasq.log.read_text()
    assert "late.pp.test is ready ✓" in running.lines[-1]


def test_a_wrong_dns_value_is_never_ready(dnsmasq: Dnsmasq) -> None:
    dnsmasq.set_hosts("127.0.0.8 wrong.pp.test\n")
    env = {**FAST, "TARGET_ADDRESS": dnsmasq.url("wrong.pp.test"), "DNS_EXPECT": "127.0.0.9"}
    result = run_portpatrol(env, ["--timeout", "2s"])
    assert result.code == 124, result.stderr
    assert set(errors(result.lines)) == {"A answers 127.0.0.8; expected 127.0.0.9"}
    assert "wrong.pp.test is 127.0.0.8" in dnsmasq.log.read_text()


# ---------------------------------------------------------------------------------- file and unix


def test_a_file_created_while_portpatrol_waits(tmp_path: Path) -> None:
    path = tmp_path / "token"
    config = tmp_path / "pp.yaml"
    config.write_text(
        f"targets:\n  - address: file://{path}\n    interval: 100ms\n    file: {{contains: '^ok$'}}\n"
    )
    threading.Timer(2.0, path.write_text, ("starting\n",)).start()
    threading.Timer(3.5, path.write_text, ("starting\nok\n",)).start()
    result = run_portpatrol({}, ["--config", str(config), "--timeout", "20s"])
    assert result.code == 0, result.stderr
    assert result.elapsed >= 3.4  # not before the line was written
    seen = set(errors(result.lines))
    assert "no such file or directory" in seen
    assert "the file does not contain ^ok$" in seen


def test_a_unix_socket_created_while_portpatrol_waits(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def listen() -> None:
        server.bind(str(path))
        server.listen(1)

    threading.Timer(1.0, listen).start()
    try:
        result = run_portpatrol({}, ["--interval", "100ms", "--timeout", "20s", f"unix://{path}"])
    finally:
        server.close()
    assert result.code == 0, result.stderr
    assert result.elapsed >= 0.9
    assert "no such file or directory" in errors(result.lines)


# ---------------------------------------------------------------------------------------- command


def test_a_command_that_fails_then_succeeds(tmp_path: Path) -> None:
    mark = tmp_path / "second"
    config = tmp_path / "pp.yaml"
    script = f"test -e {mark} || {{ touch {mark}; echo 'not yet: migrations running'; exit 3; }}"
    config.write_text(
        f'targets:\n  - command: [sh, -c, "{script}"]\n    name: migrations\n    interval: 100ms\n'
    )
    result = run_portpatrol({}, ["--config", str(config), "--timeout", "20s"])
    assert result.code == 0, result.stderr
    assert errors(result.lines) == ["exit status 3: not yet: migrations running"]
    assert "migrations is ready ✓" in result.lines[-1]


def test_a_hanging_command_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = f"{random.randint(100, 999)}.{random.randint(10000, 99999)}"  # a unique sleep length
    config = tmp_path / "pp.yaml"
    config.write_text(
        f'targets:\n  - command: [sh, -c, "sleep {marker} & sleep {marker}; echo never"]\n'
        "    dial_timeout: 500ms\n    interval: 100ms\n"
    )
    result = run_portpatrol({}, ["--config", str(config), "--timeout", "2s"])
    assert result.code == 124, result.stderr
    assert set(errors(result.lines)) == {"no exit within 500ms (killed)"}
    time.sleep(0.3)  # reaping is done before each attempt returns; this is only slack
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True, check=False)
    assert left.stdout == "", left.stdout  # no process left behind, children included


def test_a_secret_printed_by_a_command_is_scrubbed(tmp_path: Path) -> None:
    config = tmp_path / "pp.yaml"
    config.write_text('targets:\n  - command: [sh, -c, "echo token=${DEPLOY_TOKEN}; exit 1"]\n')
    result = run_portpatrol({"DEPLOY_TOKEN": "tok-5ecret-77"}, ["--config", str(config), "--timeout", "1s"])
    assert result.code == 124
    assert "tok-5ecret-77" not in result.stderr
    assert "exit status 1: token=***" in errors(result.lines)
    shown = run_portpatrol({"DEPLOY_TOKEN": "tok-5ecret-77"}, ["validate", "--config", str(config)])
    assert shown.code == 0
    assert "tok-5ecret-77" not in shown.stdout
    assert "${DEPLOY_TOKEN}" in shown.stdout


def test_target_command_from_the_environment(tmp_path: Path) -> None:
    result = run_portpatrol({"TARGET_COMMAND": '["sh", "-c", "exit 0"]'})
    assert result.code == 0, result.stderr
    both = run_portpatrol({"TARGET_COMMAND": "true", "TARGET_ADDRESS": "127.0.0.1:1"})
    assert both.code == 2
    assert "not both" in both.stderr


# ----------------------------------------------------------------------------------------- invert


def test_an_inverted_tcp_target_is_ready_after_its_listener_closes() -> None:
    listener = TcpListener()
    listener.__enter__()
    closed: list[float] = []

    def close() -> None:
        listener.__exit__()
        closed.append(time.monotonic())

    threading.Timer(1.0, close).start()
    try:
        with Running(
            {}, ["--invert", "--interval", "100ms", "--timeout", "20s", listener.address]
        ) as running:
            assert running.wait(20) == 0, running.lines
            ended = time.monotonic()
    finally:
        listener.__exit__()
    assert closed
    assert ended >= closed[0]  # after it closed, not before
    assert "still accepting connections" in errors(running.lines)
    assert f"{listener.host} is gone ✓" in running.lines[-1]
    assert listener.accepted >= 2  # the listener really was there, answering attempts


def test_an_inverted_target_still_there_times_out(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("")
    result = run_portpatrol({"TARGET_ADDRESS": f"file://{path}", "TARGET_INVERT": "true", **FAST},
                            ["--timeout", "1s"])  # fmt: skip
    assert result.code == 124
    assert set(errors(result.lines)) == {"still exists"}
    plan = run_portpatrol({"TARGET_ADDRESS": f"file://{path}", "TARGET_INVERT": "true"}, ["validate"])
    assert "invert: ready once gone" in plan.stdout


# ---------------------------------------------------------------------------------------- backoff


def test_backoff_makes_far_fewer_attempts() -> None:
    port = free_port()  # nothing listens: refused at once
    base = {"TARGET_ADDRESS": f"127.0.0.1:{port}", "CHECK_INTERVAL": "100ms"}
    fixed = run_window(base, 6.0)
    doubling = run_window({**base, "CHECK_BACKOFF_FACTOR": "2"}, 6.0)
    capped = run_window({**base, "CHECK_BACKOFF_FACTOR": "2", "CHECK_MAX_INTERVAL": "400ms"}, 6.0)
    # 6 s of 100 ms pauses: ~50 attempts; doubling: 0.1+0.2+...+3.2 s, ~6; capped at 400 ms: ~16.
    assert len(fixed.failures) >= 25, fixed.lines
    assert len(doubling.failures) <= 10, doubling.lines
    assert len(fixed.failures) >= 3 * len(doubling.failures)
    assert len(doubling.failures) < len(capped.failures) < len(fixed.failures)
    gaps = [b - a for a, b in zip(doubling.failures, doubling.failures[1:], strict=False)]
    assert gaps[-1] > 4 * gaps[0]  # the pauses grew


# ---------------------------------------------------------------------- every address of a name


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_localhost_means_both_families(host: str) -> None:
    """/etc/hosts here maps localhost to 127.0.0.1 only; RFC 6761 makes it ::1 too."""
    with TcpListener(host) as listener:
        result = run_portpatrol(
            {"TARGET_ADDRESS": f"localhost:{listener.port}", **FAST}, ["--timeout", "10s"]
        )
    assert result.code == 0, result.stderr
    assert listener.accepted >= 1


LISTEN = (
    "python3 -c 'import socket,sys,time,os\n"
    "s=socket.socket(socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    's.bind(("127.0.0.1", {port})); s.listen(8); open("{up}", "w").close(); time.sleep(60)\' &\n'
    "while [ ! -e {up} ]; do sleep 0.05; done\n"
)


def test_an_address_that_swallows_connects_does_not_use_up_the_attempt(tmp_path: Path) -> None:
    """In a test-made namespace: dual.pp.test is ::1 and 127.0.0.1 (a bind-mounted /etc/hosts), ::1
    drops every SYN, 127.0.0.1 listens. One attempt of 3 s is ready at once: ::1 gets 250 ms."""
    hosts = tmp_path / "hosts"
    hosts.write_text("::1 dual.pp.test\n127.0.0.1 dual.pp.test\n")
    port = free_port()
    setup = (
        f"mount --bind {hosts} /etc/hosts\n"
        f"ip6tables -A INPUT -d ::1 -p tcp --dport {port} -j DROP\n"
        + LISTEN.format(port=port, up=tmp_path / "up")
    )
    env = {"TARGET_ADDRESS": f"dual.pp.test:{port}", "DIAL_TIMEOUT": "3s", "CHECK_INTERVAL": "100ms"}
    run = run_window(env, 15.0, setup=setup, mount=True)
    assert run.code == 0, run.lines
    assert run.failures == [], run.lines
    ready = next(line_time(line) for line in run.lines if "is ready ✓" in line)
    assert ready - run.started < 2.0  # not the 3 s the swallowed ::1 connect would take


def test_when_every_address_fails_the_reason_names_each(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("::1 dual.pp.test\n127.0.0.1 dual.pp.test\n")
    port = free_port()
    setup = f"mount --bind {hosts} /etc/hosts\nip6tables -A INPUT -d ::1 -p tcp --dport {port} -j DROP\n"
    env = {"TARGET_ADDRESS": f"dual.pp.test:{port}", "DIAL_TIMEOUT": "1s", "CHECK_INTERVAL": "100ms"}
    run = run_window(env, 2.5, setup=setup, mount=True)
    assert f"[::1]:{port}: no answer within 1s; 127.0.0.1:{port}: connection refused" in run.errors, run.lines


def test_argument_targets_take_backoff_from_the_environment_and_invert_from_the_flag() -> None:
    env = {"CHECK_BACKOFF_FACTOR": "2", "CHECK_MAX_INTERVAL": "10s"}
    result = run_portpatrol(env, ["validate", "--invert", "cache:6379"])
    assert result.code == 0, result.stderr
    assert "invert: ready once gone" in result.stdout
    assert "backoff x2 up to 10s" in result.stdout
    flags = run_portpatrol(env, ["validate", "--backoff-factor", "3", "cache:6379"])
    assert "backoff x3 up to 10s" in flags.stdout  # the option wins, the variable fills the rest
