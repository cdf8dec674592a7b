"""Runs every target's own retry loop at the same time until all are ready or the deadline passes.

This thread keeps a heap of when each target is next due. A TCP attempt to an IP address is a
non-blocking connect that this thread watches with poll() itself: a thousand waiting targets cost
no thread and no hand-off per attempt (docs/performance.md). Every other attempt (a name to look
up, HTTP, a protocol) goes to a bounded pool of worker threads, started only when one is needed, which
report back through a pipe that the same poll() watches. So a thousand targets need no thousand
threads, and an attempt that hangs (within its bound) delays no other target as long as fewer
attempts hang than there are workers. Events are emitted from this thread only. A signal handler
that raises in this thread ends the wait at once: workers are daemons, connects are abandoned.
The pool's `threading` and `queue` are imported when the first worker is needed: a wait for TCP
targets given by IP address never pays for them (docs/performance.md)."""

from __future__ import annotations

import os
import select
import time
from heapq import heappop, heappush

from portpatrol.checks import NotReady, timed_out
from portpatrol.events import AllReady, Event, Failed, GaveUp, Ready, Tick, Waiting
from portpatrol.model import Target

TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from portpatrol.checks import Check
    from portpatrol.checks.tcp import Connecting

DEFAULT_JITTER = 0.1
# Seconds: how often at most this thread wakes for failures. Each wake costs a context switch,
# which on a virtual machine is as dear as the attempts themselves; a ready target that comes
# just after a failure may wait this long (detection allows 50 ms, docs/performance.md).
COALESCE = 0.025
# Connects in flight at once on this thread; beyond that, due targets queue for the next free one,
# so sockets stay well inside the usual limit of 1,024 open files even when every peer is silent.
MAX_CONNECTING = 512


TICK = 1.0


class Progress:
    """Where one target stands; what a report shows."""

    __slots__ = ("attempts", "failures", "last_error", "ready_after", "stretch", "successes", "target")

    def __init__(self, target: Target, stretch: float = 0.0) -> None:
        self.target = target
        self.stretch = stretch  # this target's share of the jitter, from 0 to 1
        self.attempts = 0
        self.successes = 0  # consecutive
        self.failures = 0  # consecutive: how far the pause has backed off
        self.last_error: str | None = None
        self.ready_after: float | None = None


def pause(interval: float, jitter: float, draw: float) -> float:
    """The pause before the next attempt: the interval, stretched by up to `jitter` of itself,
    so that many waiters started together drift apart instead of retrying in lockstep."""
    return interval * (1.0 + jitter * draw)


# A pause never grows beyond this without a max_interval: a day, still a time the heap can hold.
LONGEST_PAUSE = 86400.0


def backoff(interval: float, factor: float, max_interval: float | None, failures: int) -> float:
    """The pause (before jitter) after the `failures`-th consecutive failure: interval *
    factor^(failures-1), at most max_interval. 0 failures (a success short of the threshold):
    the interval."""
    cap = LONGEST_PAUSE if max_interval is None else max_interval
    if failures <= 1 or factor <= 1.0:
        return min(interval, cap)
    try:
        grown = interval * factor ** (failures - 1)
    except OverflowError:  # factor^n beyond a float: long past any cap
        return cap
    return min(grown, cap)


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
        self._poll = select.poll()
        self._outcomes: list[tuple[int, str | None, float]] = []  # (target, error or None, when)
        self._connecting: dict[int, tuple[int, int, Connecting]] = {}  # fd: (target, serial, connect)
        self._bounds: list[tuple[float, int, int]] = []  # heap of (when, serial, fd) to give up on a connect
        # Bounds of the connects begun since the last poll: most (a refused port) have ended by the
        # next poll and never enter the heap, where a push and its stale pop one bound later cost
        # ~2.3 µs a connect (a heap of ~475 for the idle benchmark's 1,000 refusing targets).
        self._fresh: list[tuple[float, int, int]] = []
        self._serial = 0
        self._queued: list[int] = []  # TCP targets due while MAX_CONNECTING connects were in flight
        self._pool: _Pool | None = None

    def run(self, timeout: float | None = None) -> bool:
        """True when every target is ready; False when `timeout` seconds passed first."""
        start = self.clock()
        deadline = None if timeout is None else start + timeout
        due = [(start, index) for index in range(len(self.progress))]
        for item in self.progress:
            self.emit(Waiting(item.target))
        try:
            return self._loop(start, deadline, due)
        finally:
            for _, _, connecting in self._connecting.values():
                connecting.close()
            self._connecting.clear()
            if self._pool is not None:
                self._pool.stop()

    def _loop(self, start: float, deadline: float | None, due: list[tuple[float, int]]) -> bool:
        pending = len(self.progress)
        ticked = woken = start
        while True:
            now = self.clock()
            if self._queued and len(self._connecting) < MAX_CONNECTING:
                free = MAX_CONNECTING - len(self._connecting)
                starting, self._queued = self._queued[:free], self._queued[free:]
                for index in starting:
                    self._begin(index, now)
            while due and due[0][0] <= now:
                self._begin(heappop(due)[1], now)
            self._expire(now)
            outcomes, self._outcomes = self._outcomes, []
            failed = False
            for index, error, finished in outcomes:
                item = self.progress[index]
                item.attempts += 1
                timing = item.target.timing
                if error is None:
                    item.failures = 0
                    item.successes += 1
                    if item.successes >= timing.success_threshold:
                        item.ready_after = finished - start
                        pending -= 1
                        self.emit(Ready(item.target, item.attempts, item.ready_after))
                        continue
                else:
                    failed = True
                    item.successes = 0
                    item.failures += 1
                    item.last_error = error
                    self.emit(Failed(item.target, error, item.attempts))
                grown = backoff(timing.interval, timing.backoff_factor, timing.max_interval, item.failures)
                wait = pause(grown, self.jitter, item.stretch)
                heappush(due, (finished + wait, index))
            if not pending:
                break
            if deadline is not None and now >= deadline:
                self._give_up()
                return False
            if now - ticked >= TICK:
                ticked = now
                self.emit(Tick())
            if self._outcomes:  # connects that ended at once: no need to wait for them
                continue
            self.idle()
            wake = ticked + TICK
            if self._fresh:
                wake = min(wake, min(self._fresh)[0])
            for when in (due[0][0] if due else wake, self._bounds[0][0] if self._bounds else wake, deadline):
                wake = wake if when is None else min(wake, when)
            # Many targets failing: let the outcomes of the next few milliseconds join these, so
            # this thread wakes about 40 times a second, not once per attempt. With nothing in
            # flight (no connect, no worker) nothing can end the wait before `wake`: when that is
            # later anyway, the wait below is the only wake-up, where a sleep first made two.
            in_flight = self._connecting or self._pool is not None
            if failed and now - woken < COALESCE and (in_flight or wake < woken + COALESCE):
                time.sleep(COALESCE - (now - woken))
            self._wait(wake - self.clock())
            woken = self.clock()
        self.emit(AllReady(len(self.progress), self.clock() - start))
        return True

    def _begin(self, index: int, now: float) -> None:
        """Starts an attempt: on this thread for a check that dials (a TCP connect to an IP
        address, see the kind contract), else on a worker."""
        check = self.checks[index]
        dial = getattr(check, "dial", None)
        if dial is not None:
            if len(self._connecting) >= MAX_CONNECTING:
                self._queued.append(index)  # started as soon as a connect ends
                return
            try:
                connecting = dial()
            except NotReady as failure:
                self._outcomes.append((index, str(failure), now))
                return
        if dial is not None and connecting is not None:
            if not connecting.waiting:
                self._outcomes.append((index, connecting.result(), now))
                return
            self._serial += 1
            self._connecting[connecting.fd] = (index, self._serial, connecting)
            self._fresh.append((now + connecting.bound, self._serial, connecting.fd))
            self._poll.register(connecting.fd, select.POLLOUT)
            return
        if self._pool is None:
            self._pool = _Pool(self.checks, self.workers, self.clock, self._poll)
        self._pool.jobs.put(index)

    def _expire(self, now: float) -> None:
        """Connects still in flight when their bound passes have failed."""
        while self._bounds and self._bounds[0][0] <= now:
            _, serial, fd = heappop(self._bounds)
            entry = self._connecting.get(fd)
            if entry is None or entry[1] != serial:
                continue  # it ended before its bound (and the fd may be another connect's now)
            del self._connecting[fd]
            self._poll.unregister(fd)
            index, _, connecting = entry
            connecting.close()
            self._outcomes.append((index, timed_out(connecting.bound), now))

    def _wait(self, seconds: float) -> None:
        """Until a connect ends, a worker reports, or `seconds` pass."""
        # poll() counts whole milliseconds: round up, or it would return early and spin.
        ready = self._poll.poll(max(0, int(seconds * 1000 + 0.999)))
        finished = self.clock()
        for fd, _ in ready:
            entry = self._connecting.pop(fd, None)
            if entry is None:  # the workers' pipe
                assert self._pool is not None
                self._outcomes += self._pool.results()
                continue
            self._poll.unregister(fd)
            index, _, connecting = entry
            self._outcomes.append((index, connecting.result(), finished))
        for bound in self._fresh:  # still in flight: its bound goes into the heap
            entry = self._connecting.get(bound[2])
            if entry is not None and entry[1] == bound[1]:
                heappush(self._bounds, bound)
        self._fresh.clear()

    def _give_up(self) -> None:
        for item in self.progress:
            if item.ready_after is None:
                self.emit(GaveUp(item.target, item.last_error, item.attempts))


class _Pool:
    """Worker threads for attempts that block. Each result is queued, then a byte is written to a
    pipe so that the runner's poll() wakes. The last worker to end closes the pipe: none writes
    to it after that, whose number could by then belong to another file."""

    def __init__(self, checks: list[Check], size: int, clock: Callable[[], float], poll: select.poll) -> None:
        import queue
        import threading

        self.checks = checks
        self.clock = clock
        self.size = size
        self.jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[int, str | None, float]] = queue.SimpleQueue()
        self._empty = queue.Empty
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        poll.register(self._read, select.POLLIN)
        self._lock = threading.Lock()
        self._running = size
        for _ in range(size):
            threading.Thread(target=self._work, daemon=True).start()

    def results(self) -> list[tuple[int, str | None, float]]:
        try:  # noqa: SIM105 (contextlib costs start-up; see the module's docstring)
            os.read(self._read, 65536)
        except BlockingIOError:
            pass
        taken = []
        while True:
            try:
                taken.append(self._results.get_nowait())
            except self._empty:
                return taken

    def stop(self) -> None:
        """Workers end after the attempt they are making."""
        for _ in range(self.size):
            self.jobs.put(-1)

    def _work(self) -> None:
        try:
            while (index := self.jobs.get()) >= 0:
                try:
                    self.checks[index].attempt()
                    error = None
                except NotReady as failure:
                    error = str(failure)
                except Exception as bug:  # a bug in a check must read as "not ready", never as ready
                    error = f"unexpected {type(bug).__name__}: {bug}"
                self._results.put((index, error, self.clock()))
                try:  # noqa: SIM105
                    os.write(self._write, b"!")
                except BlockingIOError:
                    pass  # the pipe is full: the runner is about to wake anyway
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    os.close(self._read)
                    os.close(self._write)
