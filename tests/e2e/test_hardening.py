"""Hardening (issue 11): each test reproduces one way the tool went wrong, as the issue describes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_status_line import frames, run_on_tty
from tests.peers import PORTPATROL, TcpListener, in_netns, run_portpatrol

# --------------------------------------------------------------------------- 1. TCP self-connect

# Inside a namespace of its own, with only two ephemeral ports, a connect to one of them from
# that same port is a TCP simultaneous open with itself: connected, with nothing listening.
TWO_EPHEMERAL_PORTS = {"net.ipv4.ip_local_port_range": "40000 40001"}


@pytest.mark.parametrize(
    ("address", "method"),
    [
        ("127.0.0.1:40000", "GET"),  # an IP address: the runner's own non-blocking connect
        ("tcp://localhost:40000", "GET"),  # a name: the lookup and connect of checks/net.py
        ("http://127.0.0.1:40000/", "GET"),  # the plain-HTTP check
        ("http://127.0.0.1:40000/", "POST"),  # not plain enough for it: the httpx check
    ],
)
def test_a_connection_to_itself_is_not_ready(address: str, method: str) -> None:
    command = in_netns([str(PORTPATROL)], sysctls=TWO_EPHEMERAL_PORTS)
    env = {
        "TARGET_ADDRESS": address,
        "HTTP_METHOD": method,
        "CHECK_INTERVAL": "10ms",
        "DIAL_TIMEOUT": "500ms",
    }
    result = run_portpatrol(env, ["--timeout", "3s"], command=command)
    assert result.code == 124, result.stderr
    assert "connected to itself (nothing listening on that port)" in result.stderr


# --------------------------------------------------------------------------- 6. status line names


def test_names_that_collide_after_renaming_keep_the_status_line_and_run_the_command(tmp_path: Path) -> None:
    with TcpListener() as listener:
        config = tmp_path / "targets.yaml"
        config.write_text(
            "targets:\n"
            f"  - {{name: db, address: '{listener.address}'}}\n"
            f"  - {{name: db, address: '{listener.address}'}}\n"
            f"  - {{name: 'db:{listener.port} #2', address: '{listener.address}'}}\n"
        )
        run = run_on_tty(["--config", str(config), "--timeout", "10s", "--", "echo", "the command ran"])
    assert run.code == 0, run.terminal
    assert run.stdout == "the command ran\n"
    assert "Traceback" not in run.terminal
    shown = [line.split("✓ ", 1)[1] for line in frames(run.terminal) if " is ready after " in line]
    names = {line.split(" is ready after ")[0] for line in shown}
    assert len(shown) == 3, shown
    assert len(names) == 3, shown


# --------------------------------------------------------------------------- 12. one target, one ready line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_one_target_ends_with_its_ready_line(log_format: str) -> None:
    with TcpListener() as first, TcpListener() as second:
        one = run_portpatrol({"LOG_FORMAT": log_format}, ["--timeout", "10s", first.address])
        two = run_portpatrol({"LOG_FORMAT": log_format}, ["--timeout", "10s", first.address, second.address])
    assert one.code == two.code == 0, (one.stderr, two.stderr)
    assert [record["msg"] for record in one.records][-1] == "127.0.0.1 is ready ✓", one.stderr
    # The summary is for two or more.
    assert [record["msg"] for record in two.records][-1] == "All 2 targets are ready", two.stderr
