"""The privilege matrix: what portpatrol needs to run, proven by running it as uid 65534 with every
capability dropped (no inheritable, ambient or bounding capabilities), as a hardened container does.

- TCP and HTTP(S) need nothing.
- ICMP needs one of: ping sockets allowed for the user's group (net.ipv4.ping_group_range), or
  CAP_NET_RAW. With neither it stops at once, exit 2, with one line naming both remedies.
ping_group_range is per network namespace, so each ICMP case runs in a namespace of its own,
where the test sets it without touching the host."""

from __future__ import annotations

import os
import shlex
import ssl
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from tests.faultpeers import run_namespaced
from tests.peers import HttpPeer, Result, TcpListener, command_for_anyone, free_port, run_portpatrol

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
NO_CAPS = [*NOBODY, "--inh-caps=-all", "--bounding-set=-all"]
# Only CAP_NET_RAW, handed down to the program as an ambient capability (Kubernetes' NET_RAW).
NET_RAW = [*NOBODY, "--inh-caps=-all,+net_raw", "--ambient-caps=+net_raw", "--bounding-set=-all,+net_raw"]
ALLOW_PING = "sysctl -qw net.ipv4.ping_group_range='0 2147483647'"
DENY_PING = "sysctl -qw net.ipv4.ping_group_range='1 0'"
QUICK = {"PORTPATROL_TIMEOUT": "5s", "CHECK_INTERVAL": "100ms"}
PERMISSION_LINE = "portpatrol: ICMP is not permitted here"


def as_nobody(env: dict[str, str], wrap: list[str] = NO_CAPS) -> Result:
    return run_portpatrol({**QUICK, **env}, command=[*wrap, str(command_for_anyone())], timeout=30)


def assert_ready(result: Result) -> None:
    assert result.code == 0, (result.code, result.stderr)
    assert "is ready ✓" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_unprivileged_user_really_has_nothing() -> None:
    """The wrapper used below drops everything: no capability at all in any set."""
    shown = run_portpatrol({}, command=[*NO_CAPS, "sh", "-c", "id -u; grep ^Cap /proc/self/status"])
    lines = shown.stdout.split()
    assert lines[0] == "65534", shown.stdout
    caps = dict(zip(lines[1::2], lines[2::2], strict=True))
    assert set(caps.values()) == {"0000000000000000"}, caps


def test_tcp_needs_no_privilege() -> None:
    with TcpListener() as peer:
        assert_ready(as_nobody({"TARGET_ADDRESS": peer.address}))


def test_tcp_failure_needs_no_privilege() -> None:
    result = as_nobody({"TARGET_ADDRESS": f"127.0.0.1:{free_port()}", "PORTPATROL_TIMEOUT": "500ms"})
    assert result.code == 124, result.stderr
    assert 'error="connection refused"' in result.stderr


def test_http_needs_no_privilege(http_peer: HttpPeer) -> None:
    assert_ready(as_nobody({"TARGET_ADDRESS": http_peer.url("/status/200")}))


def test_https_needs_no_privilege(tls_server: tuple[ssl.SSLContext, Path]) -> None:
    # The CA must be readable by the unprivileged user: a world-readable copy.
    folder = Path(tempfile.mkdtemp(prefix="pp-ca-public-"))
    folder.chmod(0o755)
    ca = folder / "ca.pem"
    ca.write_bytes(tls_server[1].read_bytes())
    ca.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    with HttpPeer(tls=tls_server[0]) as peer:
        assert_ready(as_nobody({"TARGET_ADDRESS": peer.url("/status/200"), "SSL_CERT_FILE": str(ca)}))


def test_tcp_and_http_in_a_namespace_as_nobody() -> None:
    """The same in a private network namespace, with the peer started inside it."""
    port = free_port()
    server = f"timeout 20 {shlex.quote(sys.executable)} -m http.server --bind 127.0.0.1 {port}"
    setup = f"{server} </dev/null >/dev/null 2>&1 &\nsleep 0.7"
    for address in (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}/"):
        assert_ready(run_namespaced(setup, {"TARGET_ADDRESS": address, **QUICK}, wrap=NO_CAPS))


# --------------------------------------------------------------------------- ICMP


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_icmp_as_nobody_where_ping_sockets_are_allowed(host: str) -> None:
    result = run_namespaced(ALLOW_PING, {"TARGET_ADDRESS": f"icmp://{host}", **QUICK}, wrap=NO_CAPS)
    assert_ready(result)


def test_icmp_as_nobody_with_only_net_raw() -> None:
    result = run_namespaced(DENY_PING, {"TARGET_ADDRESS": "icmp://127.0.0.1", **QUICK}, wrap=NET_RAW)
    assert_ready(result)


def test_icmp_as_root_uses_a_raw_socket() -> None:
    result = run_namespaced(DENY_PING, {"TARGET_ADDRESS": "icmp://127.0.0.1", **QUICK})
    assert_ready(result)


@pytest.mark.parametrize(
    "ping_range",
    ["'1 0'", "'100 200'"],
    ids=["ping-sockets-off", "other-groups-only"],
)
def test_icmp_as_nobody_without_permission_fails_clearly(ping_range: str) -> None:
    setup = f"sysctl -qw net.ipv4.ping_group_range={ping_range}"
    result = run_namespaced(setup, {"TARGET_ADDRESS": "icmp://127.0.0.1", **QUICK}, wrap=NO_CAPS)
    assert result.code == 2, (result.code, result.stderr)
    assert result.elapsed < 5, result.elapsed  # at once, not after the deadline
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(PERMISSION_LINE), lines
    assert "ping_group_range" in lines[0]
    assert "NET_RAW" in lines[0]
    assert "Traceback" not in result.stderr


def test_icmp_permission_error_comes_before_waiting_on_other_targets() -> None:
    """One ICMP target that cannot run fails the whole run at once, even beside fine TCP targets."""
    env = {"TARGET_ADDRESS": "icmp://127.0.0.1", **QUICK}
    result = run_namespaced(DENY_PING, env, wrap=NO_CAPS, args=["127.0.0.1:1", "tcp://127.0.0.1:2"])
    assert result.code == 2
    assert "Waiting for" not in result.stderr


def test_unprivileged_ping_to_a_dropped_address_times_out() -> None:
    setup = f"{ALLOW_PING}\niptables -A INPUT -d 127.0.0.2 -p icmp -j DROP"
    env = {
        "TARGET_ADDRESS": "icmp://127.0.0.2",
        "ICMP_READ_TIMEOUT": "300ms",
        "PORTPATROL_TIMEOUT": "1500ms",
        "CHECK_INTERVAL": "100ms",
    }
    result = run_namespaced(setup, env, wrap=NO_CAPS)
    assert result.code == 124, result.stderr
    assert 'error="no echo reply within 300ms"' in result.stderr


def test_command_is_usable_by_other_users() -> None:
    """The suite's premise: a portpatrol install and its interpreter are readable by uid 65534
    (Debian's python in CI; pyenv's under /root is not). The checkout may be where it cannot reach:
    then a copy made for the session is (tests/peers.py, command_for_anyone)."""
    command = command_for_anyone()
    assert os.access(command, os.X_OK)
    shown = run_portpatrol({}, ["--version"], command=[*NO_CAPS, str(command)])
    assert shown.code == 0, shown.stderr
