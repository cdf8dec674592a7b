"""Runs every target's own retry loop at the same time until all are ready or the deadline passes.

A bounded pool of worker threads makes single attempts; this thread keeps a heap of when each
target is next due and hands due targets to the pool. So a thousand targets need no thousand
threads, and a target whose attempt hangs (within its bound) delays no other target as long as
fewer attempts hang than there are workers. Events are emitted from this thread only.
A signal handler that raises in this thread ends the wait at once: workers are daemons."""

from __future__ import annotations

import heapq
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from portpatrol.checks import Check, NotReady
from portpatrol.model import Target

DEFAULT_JITTER = 0.1


@dataclass(frozen=True, slots=True)
class Waiting:
    target: Target


@dataclass(frozen=True, slots=True)
class Failed:
    target: Target
    error: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Ready:
    target: Target
    attempts: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class AllReady:
    count: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The deadline passed before this target was ready."""

    target: Target
    error: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Tick:
    """About once a second while nothing else happens, for outputs that show elapsed time."""


Event = Waiting | Failed | Ready | AllReady | GaveUp | Tick
TICK = 1.0


@dataclass(slots=True)
class Progress:
    """Where one target stands; what a report shows."""

    target: Target
    attempts: int = 0
    successes: int = 0  # consecutive
    last_error: str | None = None
    ready_after: float | None = None


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
        draw: Callable[[], float] = random.random,
        idle: Callable[[], None] = lambda: None,
    ) -> None:
        """`idle` is called whenever the runner is about to wait (outputs flush there, so a
        burst of events costs one write, not one per line)."""
        self.checks = [check for _, check in checks]
        self.progress = [Progress(target) for target, _ in checks]
        self.emit = emit
        self.workers = max(1, min(workers, len(checks)))
        self.jitter = jitter
        self.clock = clock
        self.draw = draw
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
        pending = len(self.progress)
        ticked = start
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
            wake = min(
                due[0][0] if due else now + TICK, ticked + TICK, now + TICK if deadline is None else deadline
            )
            try:
                index, error, finished = self._results.get_nowait()
            except queue.Empty:
                self.idle()
                try:
                    index, error, finished = self._results.get(timeout=max(0.0, wake - now))
                except queue.Empty:
                    continue
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
            wait = pause(timing.interval, self.jitter, self.draw())
            heapq.heappush(due, (finished + wait, index))
        self.emit(AllReady(len(self.progress), self.clock() - start))
        return True

    def _give_up(self) -> None:
        for item in self.progress:
            if item.ready_after is None:
                self.emit(GaveUp(item.target, item.last_error, item.attempts))

    def _work(self) -> None:
        while True:
            index = self._jobs.get()
            try:
                self.checks[index].attempt()
                error = None
            except NotReady as failure:
                error = str(failure)
            except Exception as bug:  # a bug in a check must read as "not ready", never as ready
                error = f"unexpected {type(bug).__name__}: {bug}"
            self._results.put((index, error, self.clock()))
