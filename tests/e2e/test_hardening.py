"""Hardening (issue 11): each test reproduces one way the tool went wrong, as the issue describes it."""

from __future__ import annotations

import pytest

from tests.peers import PORTPATROL, in_netns, run_portpatrol

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
