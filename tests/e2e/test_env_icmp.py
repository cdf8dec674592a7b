"""ICMP targets (behaviour.md 4.3): loopback over IPv4 and IPv6, through a raw socket as root and through
an unprivileged ping socket in a network namespace of the test's own; exit 2 when neither is allowed."""

from __future__ import annotations

import itertools

import pytest

from tests.peers import (
    PORTPATROL,
    command_for_anyone,
    in_netns,
    line_time,
    lines_until,
    parse_line,
    run_portpatrol,
    unprivileged_can_run,
)

NOBODY = 65534
PING_ALLOWED = {"net.ipv4.ping_group_range": "0 2147483647"}
PING_DENIED = {"net.ipv4.ping_group_range": "1 0"}  # the kernel default: no group may open ping sockets
FAST = {"CHECK_INTERVAL": "100ms"}


@pytest.fixture(scope="module")
def nobody_can_run() -> None:
    why = unprivileged_can_run(NOBODY)
    if why is not None:
        pytest.fail(why)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TARGET_ADDRESS": "icmp://127.0.0.1"}, "127.0.0.1"),
        ({"TARGET_ADDRESS": "icmp://[::1]"}, "::1"),
        ({"TARGET_ADDRESS": "icmp://::1"}, "::1"),
        ({"TARGET_ADDRESS": "127.0.0.1", "TARGET_CHECK_TYPE": "icmp"}, "127.0.0.1"),
        ({"TARGET_ADDRESS": "localhost", "TARGET_CHECK_TYPE": "ICMP"}, "localhost"),
    ],
)
def test_loopback_as_root(env: dict[str, str], name: str) -> None:
    result = run_portpatrol({**env, **FAST})
    assert result.code == 0, result.stderr
    messages = [r["msg"] for r in result.records]
    assert messages[:2] == [f"Waiting for {name} to become ready...", f"{name} is ready ✓"]


@pytest.mark.parametrize("address", ["icmp://127.0.0.1", "icmp://[::1]"])
def test_raw_socket_as_root_when_ping_sockets_are_denied(address: str) -> None:
    command = in_netns([str(PORTPATROL)], sysctls=PING_DENIED)
    result = run_portpatrol({"TARGET_ADDRESS": address, **FAST}, command=command)
    assert result.code == 0, result.stderr
    assert "is ready ✓" in result.stderr


@pytest.mark.usefixtures("nobody_can_run")
@pytest.mark.parametrize("address", ["icmp://127.0.0.1", "icmp://[::1]"])
def test_unprivileged_ping_socket(address: str) -> None:
    command = in_netns([str(command_for_anyone(NOBODY))], sysctls=PING_ALLOWED, user=NOBODY)
    result = run_portpatrol({"TARGET_ADDRESS": address, "LOG_EXTRA_FIELDS": "true", **FAST}, command=command)
    assert result.code == 0, result.stderr
    ready = [parse_line(line) for line in result.lines if "is ready ✓" in line]
    assert len(ready) == 1
    assert ready[0]["checker_type"] == "ICMP"


@pytest.mark.usefixtures("nobody_can_run")
def test_neither_socket_allowed_stops_at_once_naming_both_remedies() -> None:
    command = in_netns([str(command_for_anyone(NOBODY))], sysctls=PING_DENIED, user=NOBODY)
    result = run_portpatrol({"TARGET_ADDRESS": "icmp://127.0.0.1", **FAST}, command=command, timeout=15)
    assert result.code == 2, result.stderr
    assert len(result.lines) == 1, result.stderr
    [line] = result.lines
    assert line.startswith("portpatrol: ")
    assert "CAP_NET_RAW" in line
    assert "ping_group_range" in line
    assert "Traceback" not in result.stderr
    assert result.elapsed < 5


def test_no_reply_bounded_by_read_timeout() -> None:
    # Inside the namespace loopback ignores echo requests: every attempt waits ICMP_READ_TIMEOUT.
    command = in_netns([str(PORTPATROL)], sysctls={"net.ipv4.icmp_echo_ignore_all": "1"})
    env = {"TARGET_ADDRESS": "icmp://127.0.0.1", "ICMP_READ_TIMEOUT": "300ms", "DIAL_TIMEOUT": "1s", **FAST}
    lines = lines_until(env, count=3, command=command)
    failed = [line for line in lines if "is not ready ✗" in line]
    assert all(parse_line(line)["error"] == "no echo reply within 300ms" for line in failed)
    stamps = [line_time(line) for line in lines[:1] + failed]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.25 <= gap < 2.5 for gap in gaps), gaps


def test_unresolvable_name_is_retried_not_fatal() -> None:
    # No network in the namespace: the lookup of a .invalid name fails locally, and is retried.
    command = in_netns([str(PORTPATROL)])
    lines = lines_until({"TARGET_ADDRESS": "icmp://nothing.invalid", **FAST}, count=2, command=command)
    failed = [parse_line(line) for line in lines if "is not ready ✗" in line]
    assert failed[0]["error"].startswith("lookup nothing.invalid")
