"""Backoff as a pure function, the backoff and invert settings of every source, and the order in
which the addresses of a name are tried (RFC 8305)."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portpatrol.checks import net
from portpatrol.errors import ConfigError
from portpatrol.runner import LONGEST_PAUSE, backoff
from portpatrol.sources import env
from portpatrol.sources.file import loads


def test_the_pause_doubles_up_to_its_ceiling() -> None:
    pauses = [backoff(1.0, 2.0, 30.0, n) for n in range(1, 9)]
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff(2.0, 1.0, None, 50) == 2.0  # factor 1: today's fixed interval
    assert backoff(2.0, 3.0, None, 0) == 2.0  # a success short of the threshold
    assert backoff(1.0, 2.0, None, 10_000) == LONGEST_PAUSE  # no overflow, no endless pause


@given(
    st.floats(0.001, 3600),
    st.floats(1, 100),
    st.none() | st.floats(0.001, 86400),
    st.integers(0, 100_000),
)
def test_the_pause_is_bounded_and_never_shrinks(
    interval: float, factor: float, ceiling: float | None, n: int
) -> None:
    pause = backoff(interval, factor, ceiling, n)
    assert 0 < pause <= (LONGEST_PAUSE if ceiling is None else ceiling)
    assert backoff(interval, factor, ceiling, n + 1) >= pause


def test_backoff_and_invert_from_the_environment() -> None:
    (target,) = env.targets(
        {
            "TARGET_ADDRESS": "db:5432",
            "CHECK_BACKOFF_FACTOR": "1.5",
            "CHECK_MAX_INTERVAL": "1m",
            "TARGET_INVERT": "1",
        }
    )
    assert (target.timing.backoff_factor, target.timing.max_interval, target.timing.invert) == (
        1.5,
        60.0,
        True,
    )
    with pytest.raises(ConfigError) as caught:
        env.targets({"TARGET_ADDRESS": "db:5432", "CHECK_BACKOFF_FACTOR": "0.5", "TARGET_INVERT": "maybe"})
    assert [str(p) for p in caught.value.problems] == [
        'CHECK_BACKOFF_FACTOR="0.5": not a number from 1 (no backoff) to 100 (e.g. 2 or 1.5)',
        'TARGET_INVERT="maybe": not a boolean (use true or false)',
    ]


def test_backoff_and_invert_in_a_config_file() -> None:
    plan = loads(
        "defaults: {backoff_factor: 2, max_interval: 30s}\n"
        "targets:\n  - address: db:5432\n  - address: db:6379\n    backoff_factor: 1\n    invert: true\n",
        "pp.yaml",
        {},
    )
    first, second = (target.timing for target in plan.targets)
    assert (first.backoff_factor, first.max_interval, first.invert) == (2.0, 30.0, False)
    assert (second.backoff_factor, second.max_interval, second.invert) == (1.0, 30.0, True)
    with pytest.raises(ConfigError) as caught:
        loads(
            "targets:\n  - address: db:5432\n    backoff_factor: 0.5\n    invert: yes please\n", "pp.yaml", {}
        )
    assert [str(p) for p in caught.value.problems] == [
        "pp.yaml:3: $.targets[0].backoff_factor: not a number from 1 (no backoff) to 100 "
        "(e.g. 2 or 1.5), got 0.5",
        'pp.yaml:4: $.targets[0].invert: expected true or false, got a string ("yes please")',
    ]


def info(ip: str) -> net.AddrInfo:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return (family, socket.SOCK_STREAM, 6, "", (ip, 0) if family == socket.AF_INET else (ip, 0, 0, 0))


def test_families_interleave_starting_with_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [info(ip) for ip in ("::1", "::2", "::1", "127.0.0.1", "127.0.0.2", "::3")]
    monkeypatch.setattr(net, "resolve", lambda host, deadline: answers)  # the resolver's answer only
    shown = [entry[4][0] for entry in net.addresses("db.test", time.monotonic() + 1)]
    assert shown == ["::1", "127.0.0.1", "::2", "127.0.0.2", "::3"]
    assert [entry[4][0] for entry in net.addresses("LocalHost.", 0)] == ["::1", "127.0.0.1"]
    assert [entry[4][0] for entry in net.addresses("api.localhost", 0)] == ["::1", "127.0.0.1"]
