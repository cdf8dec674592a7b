"""redis, nats, memcached and amqp through the installed command, where the four behave alike: the plan
`validate` prints, one line with an example for each bad address, and SIGTERM while a peer that accepted
stays silent in the middle of the handshake."""

from __future__ import annotations

import signal
import time

import pytest

from tests.cacheservers import ScriptedPeer
from tests.peers import Running, run_portpatrol


def test_validate_prints_each_kinds_plan_without_secrets() -> None:
    result = run_portpatrol(
        {"REDIS_PASSWORD": "env-secret-1"},
        [
            "validate",
            "redis://:url-secret-2@cache:6380/2",
            "rediss://app:url-secret-3@cache",
            "nats://app:url-secret-4@queue",
            "nats://tok-secret-5@queue:4333",
            "memcached://memo",
            "amqp://guest:url-secret-6@broker/%2F",
            "amqps://broker/orders",
        ],
    )
    assert result.code == 0, result.stderr
    plan = result.stdout.splitlines()
    assert plan[0] == "7 targets, no deadline"
    details = [line.split("1s", 1)[1].strip() for line in plan[2:]]
    assert details == [
        "cache:6380 db=2 login=yes tls=off",
        "cache:6379 db=default login=yes user=app tls=verify",
        "queue:4222 login=yes user=app tls=when-required verify",
        "queue:4333 login=yes token tls=when-required verify",
        "memo:11211 login=no tls=off",
        "broker:5672 vhost=/ login=yes user=guest tls=off",
        "broker:5671 vhost=orders login=no tls=verify",
    ]
    assert "secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("redis://cache/zero", "the path is a database number, as in redis://cache/2"),
        ("redis://app:@cache", "a Redis user needs a password (AUTH user password)"),
        ("rediss://cache:99999", "port"),
        ("nats://queue/subject", "a NATS address has no /path, ?query or #fragment"),
        ("memcached://user:pw@memo", "memcached's text protocol has no login"),
        ("amqp://broker/a/b", "a / inside a vhost name is written %2F"),
        ("amqp://:only-a-password@broker", "a password needs a user"),
    ],
)
def test_a_bad_address_is_one_line_with_an_example_and_exit_2(address: str, message: str) -> None:
    for args in (["validate", address], ["--timeout", "5s", address]):
        result = run_portpatrol({}, args)
        assert result.code == 2, result.stderr
        assert len(result.lines) == 1, result.lines
        assert message in result.lines[0]
        assert "e.g. " in result.lines[0]
        assert "only-a-password" not in result.stderr


def test_a_bad_value_from_the_environment_names_the_variable() -> None:
    address = run_portpatrol({"TARGET_ADDRESS": "redis://cache/x"}, ["validate"])
    assert address.code == 2
    assert address.lines == [
        'portpatrol: TARGET_ADDRESS="redis://cache/x": the path is a database number, as in '
        "redis://cache/2 (e.g. redis://:secret@cache:6379/0)"
    ]
    env = {"TARGET_ADDRESS": "rediss://cache", "REDIS_SKIP_TLS_VERIFY": "perhaps"}
    variable = run_portpatrol(env, ["validate"])
    assert variable.code == 2
    assert variable.lines == ['portpatrol: REDIS_SKIP_TLS_VERIFY="perhaps": not true or false (e.g. true)']


@pytest.mark.parametrize("scheme", ["redis", "nats", "memcached", "amqp"])
def test_sigterm_while_a_silent_peer_holds_the_handshake_exits_143_at_once(scheme: str) -> None:
    with ScriptedPeer(b"", hold=True) as peer:
        address = f"{scheme}://127.0.0.1:{peer.port}"
        with Running(args=["--dial-timeout", "60s", "--interval", "60s", address]) as running:
            running.wait_for_line("Waiting for", 10)
            time.sleep(0.5)  # connected, its first message sent or awaited, nothing answered
            assert running.proc.poll() is None
            assert peer._threads, "the command never connected to the silent peer"
            signalled = time.monotonic()
            running.signal(signal.SIGTERM)
            code = running.wait(5)
            assert code == 143, running.lines
            assert time.monotonic() - signalled < 2
