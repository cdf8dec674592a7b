"""Fault injection: whatever the peer does, every attempt ends within its bound and waiting goes on.

Each test runs the installed command against one misbehaving peer for a fixed window (CHECK_INTERVAL
200ms, DIAL_TIMEOUT 500ms), then SIGTERMs it, and reads the "not ready" lines (one per failed attempt,
with millisecond timestamps). It asserts that:
  - the attempts are paced: consecutive lines are at least the interval apart, and never more than
    interval (with jitter) + bound + a margin apart, so no attempt overran its bound by much;
  - for faults that can only end by the bound (silence, drops), lines are at least interval + bound
    apart, so the bound is what ended them;
  - the number of attempts in the window is what interval and bound allow;
  - the error= text says why.
Peers that need a network of their own (drops, routes, a dead resolver) run the whole command inside
`unshare -n`, with traffic only to loopback addresses in that namespace."""

from __future__ import annotations

import importlib.util
import json
import shlex
import signal
import ssl
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from tests.faultpeers import (
    NXDOMAIN_SERVER,
    FlappingListener,
    ResetMidResponse,
    ScriptedHttp,
    WindowRun,
    run_window,
)
from tests.peers import HttpPeer, TcpListener, free_port, run_portpatrol

INTERVAL = 0.2
BOUND = 0.5
JITTER = 0.1  # the runner's default: pauses are stretched by up to 10 %
MARGIN = 0.6  # scheduling noise on a busy 2-core machine; an attempt with a 0.5 s bound ends by 1.1 s
WINDOW = 1.8
EARLY = 0.05  # log lines are stamped when written, a little after the attempt ended
TIMING = {"CHECK_INTERVAL": "200ms", "DIAL_TIMEOUT": "500ms"}
DROP_127_0_0_2 = "iptables -A INPUT -d 127.0.0.2 -j DROP"
# HTTP has two implementations: plain GET/HEAD on a bare socket (checks/plainhttp.py) and httpx for
# everything else (a POST takes that path); each HTTP fault is proven against both.
HTTP_PATHS = pytest.mark.parametrize("path_env", [{}, {"HTTP_METHOD": "POST"}], ids=["plain", "httpx"])


def assert_paced(run: WindowRun, *, takes_bound: bool, bound: float = BOUND) -> None:
    """The failed attempts in `run` are paced by interval and bound (see the module docstring).
    `takes_bound`: each attempt can only end when its bound passes (no answer ever comes)."""
    assert run.code == 128 + signal.SIGTERM, run.lines
    assert any("Interrupted by SIGTERM" in line for line in run.lines), run.lines
    stamps = [run.started, *run.failures]
    assert len(stamps) >= 3, run.lines
    shortest = INTERVAL + (bound if takes_bound else 0.0)
    longest = INTERVAL * (1 + JITTER) + bound + MARGIN
    # The first attempt starts at once: it ends within its bound.
    first = stamps[1] - stamps[0]
    assert first <= bound + MARGIN, (first, run.lines)
    if takes_bound:
        assert first >= bound - EARLY, (first, run.lines)
    gaps = [b - a for a, b in pairwise(stamps[1:])]
    # A line's time is when it was written, a little after its attempt ended: allow for that.
    assert min(gaps) >= shortest - EARLY, (gaps, run.lines)
    assert max(gaps) <= longest, (gaps, run.lines)
    # Attempts in the window: at most one per shortest cycle, at least one per longest one.
    count = len(run.failures)
    most = int(run.window / shortest) + 1
    least = int(run.window / longest)
    assert least <= count <= most, (count, least, most, run.window, run.lines)


def assert_says(run: WindowRun, *words: str) -> None:
    for error in run.errors:
        for word in words:
            assert word in error, (word, run.errors)


# --------------------------------------------------------------------------- answers that come fast


def test_refused_is_retried_every_interval() -> None:
    run = run_window({"TARGET_ADDRESS": f"127.0.0.1:{free_port()}", **TIMING}, WINDOW)
    assert_paced(run, takes_bound=False)
    assert_says(run, "connection refused")


@HTTP_PATHS
def test_reset_in_the_middle_of_a_response(path_env: dict[str, str]) -> None:
    with ResetMidResponse() as peer:
        run = run_window({"TARGET_ADDRESS": f"http://127.0.0.1:{peer.port}/", **TIMING, **path_env}, WINDOW)
    assert_paced(run, takes_bound=False)
    assert_says(run, "connection reset by peer")
    # Every accepted connection gave one failure line, bar the attempt SIGTERM may have caught in flight.
    assert len(run.failures) <= peer.accepted <= len(run.failures) + 1, (peer.accepted, run.lines)


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("unreachable", "no route to host"),
        ("prohibit", "permission denied"),
        ("blackhole", "invalid argument"),
    ],
)
def test_route_kinds_fail_at_once_with_the_kernel_reason(kind: str, says: str) -> None:
    setup = f"ip route add {kind} 127.0.0.2/32 table local"
    run = run_window({"TARGET_ADDRESS": f"127.0.0.2:{free_port()}", **TIMING}, WINDOW, setup=setup)
    assert_paced(run, takes_bound=False)
    assert_says(run, says)


def test_name_with_no_reachable_resolver_fails_fast(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")  # nothing listens there: the query is refused
    setup = f"mount --bind {resolv} /etc/resolv.conf"
    env = {"TARGET_ADDRESS": "db.portpatrol.invalid:5432", **TIMING}
    run = run_window(env, WINDOW, setup=setup, mount=True)
    assert_paced(run, takes_bound=False)
    assert_says(run, "lookup db.portpatrol.invalid", "temporary failure in name resolution")


def test_name_that_does_not_exist_says_no_such_host(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    server = tmp_path / "nxdomain.py"
    server.write_text(NXDOMAIN_SERVER)
    setup = (
        f"mount --bind {resolv} /etc/resolv.conf\n"
        f"timeout 20 {shlex.quote(sys.executable)} {server} </dev/null >/dev/null 2>&1 &\n"
        "sleep 0.5"
    )
    env = {"TARGET_ADDRESS": "db.portpatrol.invalid:5432", **TIMING}
    run = run_window(env, WINDOW, setup=setup, mount=True)
    assert_paced(run, takes_bound=False)
    assert_says(run, "lookup db.portpatrol.invalid: no such host")


# --------------------------------------------------------------------------- silence: only the bound ends it


def test_dropped_packets_each_attempt_ends_at_its_bound() -> None:
    env = {"TARGET_ADDRESS": f"127.0.0.2:{free_port()}", **TIMING}
    run = run_window(env, WINDOW, setup=DROP_127_0_0_2)
    assert_paced(run, takes_bound=True)
    assert_says(run, "no answer within 500ms")


def test_resolver_that_drops_queries_is_bounded(tmp_path: Path) -> None:
    """glibc would wait 5 s per try; each attempt still ends at its 500ms bound."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.2\n")
    setup = f"{DROP_127_0_0_2}\nmount --bind {resolv} /etc/resolv.conf"
    env = {"TARGET_ADDRESS": "db.portpatrol.invalid:5432", **TIMING}
    run = run_window(env, WINDOW, setup=setup, mount=True)
    assert_paced(run, takes_bound=True)
    assert_says(run, "lookup db.portpatrol.invalid: no answer in time")


@HTTP_PATHS
def test_accept_then_silence(path_env: dict[str, str]) -> None:
    with HttpPeer() as peer:
        run = run_window({"TARGET_ADDRESS": peer.url("/silent"), **TIMING, **path_env}, WINDOW)
    assert_paced(run, takes_bound=True)
    assert_says(run, "no answer within 500ms")


@HTTP_PATHS
def test_dripping_peer_cannot_stretch_an_attempt(path_env: dict[str, str]) -> None:
    """A byte every 100 ms keeps every single read short: only the whole-attempt bound ends it."""
    with HttpPeer() as peer:
        run = run_window({"TARGET_ADDRESS": peer.url("/drip/0.1"), **TIMING, **path_env}, WINDOW)
    assert_paced(run, takes_bound=True)
    assert_says(run, "no answer within 500ms")


@HTTP_PATHS
def test_one_byte_a_second(path_env: dict[str, str]) -> None:
    with HttpPeer() as peer:
        run = run_window({"TARGET_ADDRESS": peer.url("/drip/1"), **TIMING, **path_env}, WINDOW)
    assert_paced(run, takes_bound=True)
    assert_says(run, "no answer within 500ms")


def test_tls_handshake_that_stalls() -> None:
    """The peer accepts TCP and never speaks TLS."""
    with TcpListener(silent=True) as peer:
        env = {"TARGET_ADDRESS": f"https://127.0.0.1:{peer.port}/", **TIMING}
        run = run_window(env, WINDOW)
    assert_paced(run, takes_bound=True)
    assert_says(run, "TLS handshake", "no answer within 500ms")


def test_icmp_to_a_dropped_address() -> None:
    env = {"TARGET_ADDRESS": "icmp://127.0.0.2", "ICMP_READ_TIMEOUT": "500ms", **TIMING}
    run = run_window(env, WINDOW, setup="iptables -A INPUT -d 127.0.0.2 -p icmp -j DROP")
    # An ICMP attempt's bound is DIAL_TIMEOUT (resolving) + ICMP_READ_TIMEOUT; with an IP literal
    # only the read timeout is spent.
    assert_paced(run, takes_bound=True)
    assert_says(run, "no echo reply within 500ms")


@pytest.mark.parametrize(
    ("kind", "says"), [("unreachable", "no route to host"), ("prohibit", "permission denied")]
)
def test_icmp_route_kinds(kind: str, says: str) -> None:
    setup = f"ip route add {kind} 127.0.0.2/32 table local"
    env = {"TARGET_ADDRESS": "icmp://127.0.0.2", "ICMP_READ_TIMEOUT": "500ms", **TIMING}
    run = run_window(env, WINDOW, setup=setup)
    assert_paced(run, takes_bound=False)
    assert_says(run, says)


# --------------------------------------------------------------------------- proxies


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_that_refuses_is_named(scheme: str) -> None:
    """Through a proxy, a refusal is the proxy's: the error says so (never with its credentials)."""
    proxy = free_port()
    env = {
        "TARGET_ADDRESS": f"{scheme}://127.0.0.1:{free_port()}/",
        f"{scheme.upper()}_PROXY": f"http://user:pw@127.0.0.1:{proxy}",
        **TIMING,
    }
    run = run_window(env, WINDOW)
    assert_paced(run, takes_bound=False)
    assert_says(run, f"proxy 127.0.0.1:{proxy}: connection refused")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_that_stays_silent(scheme: str) -> None:
    with TcpListener(silent=True) as proxy:
        env = {
            "TARGET_ADDRESS": f"{scheme}://127.0.0.1:{free_port()}/",
            f"{scheme.upper()}_PROXY": f"http://127.0.0.1:{proxy.port}",
            **TIMING,
        }
        run = run_window(env, WINDOW)
    assert_paced(run, takes_bound=True)
    assert_says(run, "no answer within 500ms")


# --------------------------------------------------------------------------- bodies and flapping


@HTTP_PATHS
def test_endless_body_is_never_read(path_env: dict[str, str]) -> None:
    """Ready on the status line; a body that never ends changes nothing."""
    with HttpPeer() as peer:
        result = run_portpatrol({"TARGET_ADDRESS": peer.url("/endless"), **TIMING, **path_env}, timeout=15)
    assert result.code == 0, result.lines
    assert result.elapsed < 5, result.elapsed
    assert "is ready ✓" in result.stderr


@HTTP_PATHS
def test_endless_body_with_wrong_status_fails_within_bound(path_env: dict[str, str]) -> None:
    with HttpPeer() as peer:
        env = {
            "TARGET_ADDRESS": peer.url("/endless"),
            "HTTP_EXPECTED_STATUS_CODES": "204",
            **TIMING,
            **path_env,
        }
        run = run_window(env, WINDOW)
    assert_paced(run, takes_bound=False)
    assert_says(run, "status 200, expected 204")


def test_flapping_listener_is_ready_once_up() -> None:
    with FlappingListener(up=0.3, down=0.3) as peer:
        result = run_portpatrol({"TARGET_ADDRESS": peer.address, "CHECK_INTERVAL": "100ms"}, timeout=15)
    assert result.code == 0, result.lines
    assert result.elapsed < 5, result.elapsed
    assert peer.accepted >= 1


def test_flapping_target_is_retried_while_down() -> None:
    """Up and down alternately (503, 200, 503, 200...): with SUCCESS_THRESHOLD=2 it never counts as
    ready, every down attempt is logged with its status, and attempts keep their pace."""
    with ScriptedHttp([503, 200] * 200) as peer:
        env = {"TARGET_ADDRESS": peer.url(), "SUCCESS_THRESHOLD": "2", **TIMING}
        run = run_window(env, WINDOW)
        answered = list(peer.answered)
    assert run.code == 128 + signal.SIGTERM, run.lines
    assert not any("is ready" in line for line in run.lines), run.lines
    assert_says(run, "status 503, expected 200")
    # Every answer is one attempt; the successes in between are silent but still paced.
    assert len(answered) in (2 * len(run.failures) - 1, 2 * len(run.failures), 2 * len(run.failures) + 1)
    gaps = [b - a for a, b in pairwise(run.failures)]
    assert min(gaps) >= 2 * INTERVAL - EARLY, gaps
    assert max(gaps) <= 2 * (INTERVAL * (1 + JITTER)) + MARGIN, gaps


# --------------------------------------------------------------------------- success_threshold


@pytest.mark.parametrize(
    ("threshold", "ready_at"),
    [("1", 1), ("2", 4), ("3", 8)],
)
def test_success_threshold_needs_consecutive_successes(threshold: str, ready_at: int) -> None:
    """Attempts answer ok, fail, ok, ok, fail, ok, ok, ok, ...: ready after N successes in a row."""
    script = [200, 503, 200, 200, 503, 200, 200, 200, 200]
    with ScriptedHttp(script) as peer:
        env = {"TARGET_ADDRESS": peer.url(), "CHECK_INTERVAL": "50ms", "SUCCESS_THRESHOLD": threshold}
        result = run_portpatrol(env, timeout=15)
        answered = list(peer.answered)
    assert result.code == 0, result.lines
    assert len(answered) == ready_at, (answered, result.lines)
    failed = [line for line in result.lines if "is not ready ✗" in line]
    assert len(failed) == script[:ready_at].count(503), result.lines
    assert any("is ready ✓" in line for line in result.lines), result.lines


@pytest.mark.parametrize(("where", "ready_at"), [("target", 8), ("defaults", 8), ("none", 1)])
def test_success_threshold_file_key(tmp_path: Path, where: str, ready_at: int) -> None:
    """The file's success_threshold, per target or in defaults, works like SUCCESS_THRESHOLD."""
    script = [200, 503, 200, 200, 503, 200, 200, 200, 200]
    with ScriptedHttp(script) as peer:
        target = f"{{address: '{peer.url()}', interval: 50ms"
        target += ", success_threshold: 3}" if where == "target" else "}"
        defaults = "defaults: {success_threshold: 3}\n" if where == "defaults" else ""
        config = tmp_path / "pp.yaml"
        config.write_text(f"{defaults}targets:\n  - {target}\n")
        result = run_portpatrol({}, ["--config", str(config)], timeout=15)
        answered = list(peer.answered)
    assert result.code == 0, result.lines
    assert len(answered) == ready_at, (answered, result.lines)


def test_https_with_unknown_ca_is_not_ready_and_says_why(tls_server: tuple[ssl.SSLContext, Path]) -> None:
    with HttpPeer(tls=tls_server[0]) as peer:
        run = run_window({"TARGET_ADDRESS": peer.url("/"), **TIMING}, WINDOW)
    assert_paced(run, takes_bound=False)
    assert_says(run, "TLS certificate", "unable to get local issuer certificate")


# --------------------------------------------------------------------------- soak


SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_soak_20_seconds_no_growth() -> None:
    """The CI version of the soak: 500 flapping targets for 20 s, no growth in descriptors,
    threads or memory, no false ready, prompt exit on SIGTERM (benchmarks/soak.py judges)."""
    done = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "20"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout)
    assert figures["ok"] is True
    assert figures["failed_attempts"] > 1000, figures


def test_soak_judge_sees_growth() -> None:
    """The soak's judge is not blind: synthetic samples that leak are caught."""
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None
    assert spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = soak  # dataclasses look their module up while the class is made
    spec.loader.exec_module(soak)
    steady = [soak.Sample(float(t), 10, 20, 20_000) for t in range(20)]
    assert soak.judge(steady, 5, 64, 4096)[0].ok
    leaking_fds = [soak.Sample(float(t), 10 + t * 20, 20, 20_000) for t in range(20)]  # 20 a second
    leaking_threads = [soak.Sample(float(t), 10, 20 + t, 20_000) for t in range(20)]
    leaking_memory = [soak.Sample(float(t), 10, 20, 20_000 + t * 1_000) for t in range(20)]
    for samples in (leaking_fds, leaking_threads, leaking_memory):
        verdict, _ = soak.judge(samples, 5, 64, 4096)
        assert not verdict.ok, samples
