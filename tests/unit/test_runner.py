"""The runner with fake checks: pacing, jitter, isolation of hanging checks, the deadline, and
success_threshold. Checks are fakes here because the runner's contract is about when it calls
them, not about the network; the end-to-end fault tests cover real peers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol.checks import NotReady
from portpatrol.checks.tcp import TcpCheck
from portpatrol.events import AllReady, Event, Failed, GaveUp, Ready, Waiting
from portpatrol.kinds.tcp import TcpSpec
from portpatrol.model import Target, Timing
from portpatrol.runner import Runner, pause
from tests.peers import TcpListener, free_port


def target(name: str, interval: float = 0.05, threshold: int = 1, dial_timeout: float = 1.0) -> Target:
    return Target(name, f"{name}:1", TcpSpec(name, 1), Timing(interval, dial_timeout, threshold))


class Fake:
    """A check whose n-th attempt follows script[n] (the last entry repeats): True succeeds,
    False fails, a float sleeps that long and then fails. Records when each attempt started."""

    def __init__(self, script: Sequence[bool | float]) -> None:
        self.script = list(script)
        self.started: list[float] = []
        self.lock = threading.Lock()

    def attempt(self) -> None:
        with self.lock:
            self.started.append(time.monotonic())
            step = self.script[min(len(self.started) - 1, len(self.script) - 1)]
        if step is True:
            return
        if step is not False:
            time.sleep(float(step))
        raise NotReady("down")


class Events(list[Event]):
    def of(self, kind: type) -> list[Event]:
        return [event for event in self if isinstance(event, kind)]


def run(
    pairs: Sequence[tuple[Target, Fake]],
    timeout: float | None,
    **options: object,
) -> tuple[bool, Events]:
    events = Events()
    runner = Runner(pairs, events.append, **options)  # type: ignore[arg-type]
    return runner.run(timeout), events


# --------------------------------------------------------------------------- pause() and jitter


@given(
    interval=st.floats(min_value=0.001, max_value=3600, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=1),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_pause_is_the_interval_stretched_by_at_most_jitter(
    interval: float, jitter: float, draw: float
) -> None:
    wait = pause(interval, jitter, draw)
    assert interval <= wait <= interval * (1 + jitter) * (1 + 1e-12)


def test_pause_without_jitter_is_the_interval() -> None:
    assert pause(2.0, 0.0, 0.999) == 2.0
    assert pause(2.0, 0.1, 0.0) == 2.0
    assert pause(2.0, 0.1, 0.5) == pytest.approx(2.1)


def test_jitter_stretches_real_pauses_within_bounds() -> None:
    """With the largest draw and jitter 0.5, every pause is 1.5 intervals, never less."""
    fake = Fake([False])
    ok, _ = run([(target("a", interval=0.04), fake)], 0.6, jitter=0.5, draw=lambda: 0.999)
    assert not ok
    gaps = [b - a for a, b in pairwise(fake.started)]
    assert gaps, fake.started
    assert min(gaps) >= 0.04 * 1.5 * 0.99, gaps


# --------------------------------------------------------------------------- pacing


def test_one_attempt_per_interval_never_bursts() -> None:
    fake = Fake([False])
    ok, events = run([(target("a", interval=0.05), fake)], 2.0, jitter=0.0)
    assert not ok
    gaps = [b - a for a, b in pairwise(fake.started)]
    assert min(gaps) >= 0.05 * 0.98, gaps  # never sooner than the interval
    assert max(gaps) < 1.5, gaps  # and not stalled (generous: a loaded machine)
    # 2 s at one attempt per >= 50 ms: at most 41 attempts, and on a busy machine at least a few.
    assert 4 <= len(fake.started) <= 41, len(fake.started)
    assert len(events.of(Failed)) == len(fake.started) or len(events.of(Failed)) == len(fake.started) - 1


def test_many_targets_each_keep_their_own_pace() -> None:
    fakes = [Fake([False]) for _ in range(50)]
    pairs = [(target(f"t{i}", interval=0.05), fake) for i, fake in enumerate(fakes)]
    ok, _ = run(pairs, 0.6, jitter=0.1, workers=8)
    assert not ok
    for fake in fakes:
        gaps = [b - a for a, b in pairwise(fake.started)]
        assert min(gaps) >= 0.05 * 0.98, gaps
        assert len(fake.started) <= int(0.6 / 0.05) + 1


def test_first_attempt_is_immediate_and_events_come_in_order() -> None:
    fake = Fake([False, False, True])
    start = time.monotonic()
    ok, events = run([(target("a", interval=0.02), fake)], 5)
    assert ok
    assert fake.started[0] - start < 2
    kinds = [type(event) for event in events]
    assert kinds == [Waiting, Failed, Failed, Ready, AllReady]
    ready = events.of(Ready)[0]
    assert isinstance(ready, Ready)
    assert ready.attempts == 3
    done = events.of(AllReady)[0]
    assert isinstance(done, AllReady)
    assert done.count == 1


# --------------------------------------------------------------------------- isolation


def test_a_hanging_check_does_not_delay_others_while_workers_remain() -> None:
    slow = Fake([4.0])  # every attempt hangs 4 s (within its bound) and fails
    quick = Fake([False, False, False, True])
    pairs = [(target("slow", interval=0.02), slow), (target("quick", interval=0.02), quick)]
    ok, events = run(pairs, 3.0, workers=2)
    assert not ok
    ready = [event for event in events.of(Ready) if isinstance(event, Ready)]
    # Ready within the 3 s run while "slow"'s first attempt hangs 4 s: its four attempts were not
    # queued behind that one (bounds in seconds, for a loaded machine).
    assert [event.target.name for event in ready] == ["quick"]
    assert len(quick.started) == 4


def test_hanging_checks_only_delay_others_when_every_worker_hangs() -> None:
    """The documented limit: with one worker busy on a hanging attempt, the other target waits."""
    slow = Fake([0.4])
    quick = Fake([True])
    pairs = [(target("slow"), slow), (target("quick"), quick)]
    started = time.monotonic()
    ok, _ = run(pairs, 0.3, workers=1)
    assert not ok
    assert not quick.started or quick.started[0] - started >= 0.35


def test_a_check_that_raises_a_bug_reads_as_not_ready() -> None:
    class Broken:
        def attempt(self) -> None:
            raise KeyError("oops")

    events = Events()
    ok = Runner([(target("a", interval=0.02), Broken())], events.append).run(0.2)
    assert not ok
    failures = [event for event in events.of(Failed) if isinstance(event, Failed)]
    assert failures
    assert failures[0].error == "unexpected KeyError: 'oops'"
    assert not events.of(Ready)


# --------------------------------------------------------------------------- deadline


def test_deadline_returns_false_and_gives_up_on_each_unready_target() -> None:
    pairs = [
        (target("up"), Fake([True])),
        (target("down1", interval=0.03), Fake([False])),
        (target("down2", interval=0.03), Fake([False])),
        (target("never-finishes"), Fake([5.0])),
    ]
    started = time.monotonic()
    ok, events = run(pairs, 0.3)
    took = time.monotonic() - started
    assert not ok
    assert took < 1.5, took  # the deadline does not wait for the hanging attempt
    gave_up = {event.target.name: event for event in events.of(GaveUp) if isinstance(event, GaveUp)}
    assert set(gave_up) == {"down1", "down2", "never-finishes"}
    assert gave_up["down1"].error == "down"
    assert gave_up["down1"].attempts >= 2
    assert gave_up["never-finishes"].error is None
    assert gave_up["never-finishes"].attempts == 0
    assert not events.of(AllReady)


def test_no_deadline_when_all_ready_in_time() -> None:
    ok, events = run([(target("a"), Fake([True])), (target("b"), Fake([False, True]))], 5)
    assert ok
    assert not events.of(GaveUp)


# --------------------------------------------------------------------------- success_threshold


def _ready_attempts(script: Sequence[bool], threshold: int) -> int:
    """Where a target with `script` outcomes becomes ready: after `threshold` successes in a row."""
    streak = 0
    for number, outcome in enumerate(script, 1):
        streak = streak + 1 if outcome else 0
        if streak >= threshold:
            return number
    raise AssertionError("never ready")


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_success_threshold_needs_consecutive_successes(threshold: int) -> None:
    script = [True, False, True, True, False, True, True, True, False, True, True, True, True, True]
    fake = Fake(script)
    ok, events = run([(target("a", interval=0.005, threshold=threshold), fake)], 5)
    assert ok
    expected = _ready_attempts(script, threshold)
    assert len(fake.started) == expected
    ready = events.of(Ready)[0]
    assert isinstance(ready, Ready)
    assert ready.attempts == expected
    # Only failures are logged; successes below the threshold are silent.
    assert len(events.of(Failed)) == script[:expected].count(False)


@settings(deadline=None)  # failures in a row are coalesced: each may wait runner.COALESCE
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.integers(min_value=1, max_value=4))
def test_success_threshold_property(prefix: list[bool], threshold: int) -> None:
    script = [*prefix, *([True] * threshold)]
    fake = Fake(script)
    ok, _ = run([(target("a", interval=0.0001, threshold=threshold), fake)], 5, jitter=0.0)
    assert ok
    assert len(fake.started) == _ready_attempts(script, threshold)


def os_threads() -> int:
    """Every thread of this process, however it was started (the runner uses _thread)."""
    return len(os.listdir("/proc/self/task"))


def test_workers_end_when_the_run_ends() -> None:
    before = os_threads()
    fakes = [(target(name, interval=0.01), Fake([False, True])) for name in "abc"]
    runner = Runner(fakes, lambda event: None)
    assert runner.run(5)
    assert runner._pool is not None  # the fakes needed workers
    deadline = time.monotonic() + 5
    while os_threads() > before and time.monotonic() < deadline:  # other tests' threads may end too
        time.sleep(0.01)
    assert os_threads() <= before


# --------------------------------------------------------------------------- TCP on the runner's thread


def tcp(name: str, host: str, port: int, interval: float = 0.05) -> tuple[Target, TcpCheck]:
    spec = TcpSpec(host, port)
    return Target(name, f"{host}:{port}", spec, Timing(interval, 1.0)), TcpCheck(spec, 1.0)


def test_tcp_to_an_ip_address_needs_no_worker_thread() -> None:
    with TcpListener() as up, TcpListener(start_after=0.3) as later:
        pairs = [tcp("up", "127.0.0.1", up.port), tcp("later", "127.0.0.1", later.port)]
        events = Events()
        runner = Runner(pairs, events.append)
        assert runner.run(5)
    assert runner._pool is None
    failed = events.of(Failed)
    assert failed, events
    assert all(isinstance(e, Failed) and e.error == "connection refused" for e in failed), failed
    assert {e.target.name for e in events.of(Ready) if isinstance(e, Ready)} == {"up", "later"}


def test_names_go_to_workers_beside_addresses_on_the_runners_thread() -> None:
    with TcpListener() as up:
        runner = Runner(
            [tcp("ip", "127.0.0.1", up.port), tcp("name", "localhost", up.port)], lambda event: None
        )
        assert runner.run(5)
    assert runner._pool is not None


def test_connects_beyond_the_cap_wait_for_a_free_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("portpatrol.runner.MAX_CONNECTING", 2)
    with TcpListener() as up, TcpListener(start_after=0.2) as later:
        pairs = [tcp(f"up{i}", "127.0.0.1", up.port) for i in range(3)]
        pairs += [tcp(f"later{i}", "127.0.0.1", later.port) for i in range(3)]
        events = Events()
        runner = Runner(pairs, events.append)
        assert runner.run(5)
    assert len(events.of(Ready)) == 6
    assert runner._pool is None


def test_no_sleep_before_a_later_attempt_with_nothing_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failures are coalesced by a sleep; with no connect in flight and the next attempt further
    off than that, the wait for the attempt is the only wake-up (a sleep first cost a second one)."""
    sleeps: list[float] = []
    monkeypatch.setattr("portpatrol.runner.time.sleep", sleeps.append)  # never called by this wait
    events = Events()
    runner = Runner([tcp("down", "127.0.0.1", free_port(), interval=0.2)], events.append, jitter=0.0)
    assert not runner.run(0.9)
    assert 3 <= len(events.of(Failed)) <= 5  # paced by the interval: at 0, 0.2, 0.4, 0.6, 0.8 s
    assert sleeps == []
