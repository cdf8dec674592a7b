"""Runs every target's own retry loop at the same time until all are ready or the deadline passes.

A bounded pool of worker threads makes single attempts; this thread keeps a heap of when each
target is next due and hands due targets to the pool. So a thousand targets need no thousand
threads, and a target whose attempt hangs (within its bound) delays no other target as long as
fewer attempts hang than there are workers. Events are emitted from this thread only.
A signal handler that raises in this thread ends the wait at once: workers are daemons."""

from __future__ import annotations

import heapq
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence

from portpatrol.checks import Check, NotReady
from portpatrol.model import Record, Target, _set

DEFAULT_JITTER = 0.1
COALESCE = 0.01  # seconds: how often at most this thread wakes for failures


class _Event(Record):
    """Events are matched by position (`case Failed(target, error)`), in __slots__ order."""

    def __init__(self, *values: object) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            _set(self, name, value)


class Waiting(_Event):
    __slots__ = __match_args__ = ("target",)
    target: Target

    def __init__(self, target: Target) -> None:
        super().__init__(target)


class Failed(_Event):
    __slots__ = __match_args__ = ("target", "error", "attempt")
    target: Target
    error: str
    attempt: int

    def __init__(self, target: Target, error: str, attempt: int) -> None:
        super().__init__(target, error, attempt)


class Ready(_Event):
    __slots__ = __match_args__ = ("target", "attempts", "elapsed")
    target: Target
    attempts: int
    elapsed: float

    def __init__(self, target: Target, attempts: int, elapsed: float) -> None:
        super().__init__(target, attempts, elapsed)


class AllReady(_Event):
    __slots__ = __match_args__ = ("count", "elapsed")
    count: int
    elapsed: float

    def __init__(self, count: int, elapsed: float) -> None:
        super().__init__(count, elapsed)


class GaveUp(_Event):
    """The deadline passed before this target was ready."""

    __slots__ = __match_args__ = ("target", "error", "attempts")
    target: Target
    error: str | None
    attempts: int

    def __init__(self, target: Target, error: str | None, attempts: int) -> None:
        super().__init__(target, error, attempts)


class Tick(_Event):
    """About once a second while nothing else happens, for outputs that show elapsed time."""

    __slots__ = __match_args__ = ()


Event = Waiting | Failed | Ready | AllReady | GaveUp | Tick
TICK = 1.0


class Progress:
    """Where one target stands; what a report shows."""

    __slots__ = ("attempts", "last_error", "ready_after", "stretch", "successes", "target")

    def __init__(self, target: Target, stretch: float = 0.0) -> None:
        self.target = target
        self.stretch = stretch  # this target's share of the jitter, from 0 to 1
        self.attempts = 0
        self.successes = 0  # consecutive
        self.last_error: str | None = None
        self.ready_after: float | None = None


def pause(interval: float, jitter: float, draw: float) -> float:
    """The pause before the next attempt: the interval, stretched by up to `jitter` of itself,
    so that many waiters started together drift apart instead of retrying in lockstep."""
    return interval * (1.0 + jitter * draw)


class Runner:
    def __init__(
        self,
        checks: Sequence[tuple[Target, Check]],
        emit: Callable[[Event], None],
        *,
        workers: int = 48,
        jitter: float = DEFAULT_JITTER,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = lambda: int.from_bytes(os.urandom(4)) / 2**32,
        idle: Callable[[], None] = lambda: None,
    ) -> None:
        """`idle` is called whenever the runner is about to wait (outputs flush there, so a
        burst of events costs one write, not one per line)."""
        self.checks = [check for _, check in checks]
        # Each target's jitter is drawn once: targets started together then drift apart steadily,
        # where a new draw per pause only spreads them like a random walk (docs/performance.md).
        self.progress = [Progress(target, draw()) for target, _ in checks]
        self.emit = emit
        self.workers = max(1, min(workers, len(checks)))
        self.jitter = jitter
        self.clock = clock
        self.idle = idle
        self._jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[int, str | None, float]] = queue.SimpleQueue()

    def run(self, timeout: float | None = None) -> bool:
        """True when every target is ready; False when `timeout` seconds passed first."""
        start = self.clock()
        deadline = None if timeout is None else start + timeout
        due = [(start, index) for index in range(len(self.progress))]
        for item in self.progress:
            self.emit(Waiting(item.target))
        for number in range(self.workers):
            threading.Thread(target=self._work, name=f"attempt-{number}", daemon=True).start()
        try:
            return self._loop(start, deadline, due)
        finally:
            for _ in range(self.workers):  # workers end after the attempt they are making
                self._jobs.put(-1)

    def _loop(self, start: float, deadline: float | None, due: list[tuple[float, int]]) -> bool:
        pending = len(self.progress)
        ticked = woken = start
        while pending:
            now = self.clock()
            while due and due[0][0] <= now:
                self._jobs.put(heapq.heappop(due)[1])
            if deadline is not None and now >= deadline:
                self._give_up()
                return False
            if now - ticked >= TICK:
                ticked = now
                self.emit(Tick())
            wake = min(ticked + TICK, due[0][0] if due else ticked + TICK, deadline or ticked + TICK)
            try:
                index, error, finished = self._results.get_nowait()
            except queue.Empty:
                self.idle()
                try:
                    index, error, finished = self._results.get(timeout=max(0.0, wake - now))
                except queue.Empty:
                    continue
                if error is not None and now - woken < COALESCE:
                    # Many targets failing: let the failures of the next few milliseconds join
                    # this one, so this thread wakes about 100 times a second, not once per
                    # attempt. Readiness never waits.
                    time.sleep(COALESCE - (now - woken))
                woken = self.clock()
            item = self.progress[index]
            item.attempts += 1
            timing = item.target.timing
            if error is None:
                item.successes += 1
                if item.successes >= timing.success_threshold:
                    item.ready_after = finished - start
                    pending -= 1
                    self.emit(Ready(item.target, item.attempts, item.ready_after))
                    continue
            else:
                item.successes = 0
                item.last_error = error
                self.emit(Failed(item.target, error, item.attempts))
            wait = pause(timing.interval, self.jitter, item.stretch)
            heapq.heappush(due, (finished + wait, index))
        self.emit(AllReady(len(self.progress), self.clock() - start))
        return True

    def _give_up(self) -> None:
        for item in self.progress:
            if item.ready_after is None:
                self.emit(GaveUp(item.target, item.last_error, item.attempts))

    def _work(self) -> None:
        while (index := self._jobs.get()) >= 0:
            try:
                self.checks[index].attempt()
                error = None
            except NotReady as failure:
                error = str(failure)
            except Exception as bug:  # a bug in a check must read as "not ready", never as ready
                error = f"unexpected {type(bug).__name__}: {bug}"
            self._results.put((index, error, self.clock()))
