"""Soak: many flapping targets for a long time, and no growth in descriptors, threads or memory.

N TCP listeners on 127.0.0.1 (default 500) go up and down on their own schedules (each up for --up
seconds, then down for --down, from a random phase), so every attempt portpatrol makes sees either a
connection or a refusal. portpatrol waits for all of them from a YAML config with the largest
success_threshold, so no target ever counts as ready and every target is checked for the whole run:
both the success and the failure paths run thousands of times. Every --sample seconds this script
reads the portpatrol process's open descriptors, threads and resident memory from /proc.

After a warm-up, the samples are split into an early and a late half; the run fails (exit 1) when the
late half holds more descriptors or threads than the early one (plus slack for attempts in flight),
when memory grew by more than --rss-slack, when any target was reported ready (it never held
enough consecutive successes), or when portpatrol did not exit 143 promptly on SIGTERM.

  python benchmarks/soak.py                 # 500 targets for 10 minutes (not in CI)
  python benchmarks/soak.py --seconds 20    # the CI version (tests/e2e/test_faults.py runs it)

Only loopback is used."""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from random import Random

FIRST_PORT = 21000  # below the ephemeral range, so client sockets never take a port while it is down


class Flappers:
    """N loopback listeners, each alternately listening (accepting and closing at once) and closed
    (connections refused), on fixed ports, in one thread."""

    def __init__(self, count: int, up: float, down: float, seed: int = 1) -> None:
        self.up = up
        self.down = down
        self.ports: list[int] = []
        self.accepted = 0
        self.rebind_failures = 0
        self.stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._socks: dict[int, socket.socket] = {}
        random = Random(seed)
        port = FIRST_PORT
        while len(self.ports) < count:
            if self._free(port):
                self.ports.append(port)
            port += 1
        now = time.monotonic()
        # Next toggle per port, from a random phase; every port starts down.
        self._next = {p: now + random.uniform(0, up + down) for p in self.ports}
        self._thread = threading.Thread(target=self._run, name="flappers", daemon=True)

    @staticmethod
    def _free(port: int) -> bool:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    def _open(self, port: int) -> bool:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
        except OSError:
            sock.close()
            self.rebind_failures += 1
            return False
        sock.setblocking(False)
        self._socks[port] = sock
        self._selector.register(sock, selectors.EVENT_READ, port)
        return True

    def _close(self, port: int) -> None:
        sock = self._socks.pop(port)
        self._selector.unregister(sock)
        sock.close()  # connections still queued are reset: a real outage

    def _run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            for port, when in self._next.items():
                if when > now:
                    continue
                if port in self._socks:
                    self._close(port)
                    self._next[port] = now + self.down
                elif self._open(port):
                    self._next[port] = now + self.up
                else:
                    self._next[port] = now + 0.1
            for key, _ in self._selector.select(timeout=0.02):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    while True:
                        conn, _ = sock.accept()
                        conn.close()
                        self.accepted += 1
                except (BlockingIOError, OSError):
                    pass
        for port in list(self._socks):
            self._close(port)

    def __enter__(self) -> Flappers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(5)


@dataclass
class Sample:
    at: float  # seconds since portpatrol started
    fds: int
    threads: int
    rss_kib: int


def sample(pid: int, at: float) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Sample(at, fds, int(fields["Threads"]), int(fields["VmRSS"].split()[0]))


def command() -> list[str]:
    beside = Path(sys.executable).parent / "portpatrol"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "portpatrol"]


def config_text(ports: list[int], interval: str, dial_timeout: str) -> str:
    lines = [
        "defaults:",
        f"  interval: {interval}",
        f"  dial_timeout: {dial_timeout}",
        "  success_threshold: 1000  # never reached: every target stays in its loop all run",
        "targets:",
    ]
    lines += [f"  - {{name: flap-{port}, address: '127.0.0.1:{port}'}}" for port in ports]
    return "\n".join(lines) + "\n"


class LineCounter:
    """Reads portpatrol's stderr and counts the lines that matter."""

    def __init__(self, stream: object) -> None:
        self.failed = 0
        self.ready = 0
        self.other: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for raw in self._stream:  # type: ignore[attr-defined]
            line = raw.decode("utf-8", "replace")
            if "is not ready" in line:
                self.failed += 1
            elif "is ready ✓" in line:
                self.ready += 1
            elif "Waiting for" not in line and len(self.other) < 20:
                self.other.append(line.rstrip())

    def join(self) -> None:
        self._thread.join(5)


@dataclass
class Verdict:
    ok: bool
    reasons: list[str]


def judge(
    samples: list[Sample], warmup: float, sockets: int, rss_slack_kib: int
) -> tuple[Verdict, dict[str, float]]:
    """`sockets`: the most that attempts in flight may hold at once."""
    steady = [s for s in samples if s.at >= warmup]
    reasons: list[str] = []
    if len(steady) < 4:
        return Verdict(False, [f"only {len(steady)} samples after the warm-up"]), {}
    half = len(steady) // 2
    early, late = steady[:half], steady[half:]
    figures = {
        "fds_early_max": max(s.fds for s in early),
        "fds_late_max": max(s.fds for s in late),
        "fds_early_min": min(s.fds for s in early),
        "fds_late_min": min(s.fds for s in late),
        "threads_early_max": max(s.threads for s in early),
        "threads_late_max": max(s.threads for s in late),
        "rss_early_median_kib": statistics.median(s.rss_kib for s in early),
        "rss_late_median_kib": statistics.median(s.rss_kib for s in late),
        "rss_max_kib": max(s.rss_kib for s in samples),
    }
    if len(steady) >= 3:
        slope = statistics.linear_regression([s.at for s in steady], [s.rss_kib for s in steady]).slope
        figures["rss_slope_kib_per_min"] = round(slope * 60, 1)
    # Descriptors: connects in flight come and go in bursts (the runner's poll loop starts every
    # due target at once and reaps them at its next wake, up to 25 ms later), so growth is the late
    # half's floor above the early half's (a leak raises the floor), with room for a burst of 64
    # reaped late; and the peak must stay within what attempts in flight can hold.
    if figures["fds_late_min"] > figures["fds_early_min"] + 64:
        reasons.append(f"descriptors grew: at least {figures['fds_early_min']} -> {figures['fds_late_min']}")
    if figures["fds_late_max"] > sockets + 48:
        reasons.append(f"{figures['fds_late_max']} descriptors open, more than attempts in flight explain")
    if figures["threads_late_max"] > figures["threads_early_max"] + 2:
        reasons.append(f"threads grew: {figures['threads_early_max']} -> {figures['threads_late_max']}")
    grown = figures["rss_late_median_kib"] - figures["rss_early_median_kib"]
    if grown > rss_slack_kib:
        reasons.append(f"memory grew by {grown:.0f} KiB (allowed {rss_slack_kib} KiB)")
    return Verdict(not reasons, reasons), figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (default 600)")
    parser.add_argument("--targets", type=int, default=500, help="flapping listeners (default 500)")
    parser.add_argument("--interval", default="500ms", help="portpatrol's interval (default 500ms)")
    parser.add_argument("--dial-timeout", default="500ms", help="portpatrol's dial_timeout (default 500ms)")
    parser.add_argument("--up", type=float, default=1.5, help="seconds each listener stays up")
    parser.add_argument("--down", type=float, default=1.5, help="seconds each listener stays down")
    parser.add_argument("--sample", type=float, default=1.0, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=float, help="seconds ignored at the start (default: a quarter, at most 60)"
    )
    parser.add_argument(
        "--rss-slack", type=int, default=4096, help="KiB of memory growth allowed (default 4096)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the samples and figures here")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.seconds / 4)
    # One connect per target on the runner's thread (at most 512), one socket per worker (48).
    sockets = min(args.targets, 512) + 48

    with Flappers(args.targets, args.up, args.down) as flappers, tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "soak.yaml"
        config.write_text(config_text(flappers.ports, args.interval, args.dial_timeout))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_FORMAT": "text"}
        started = time.monotonic()
        proc = subprocess.Popen(
            [*command(), "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        lines = LineCounter(proc.stderr)
        samples: list[Sample] = []
        try:
            while (now := time.monotonic() - started) < args.seconds and proc.poll() is None:
                taken = sample(proc.pid, now)
                if taken is not None:
                    samples.append(taken)
                time.sleep(args.sample)
            ended_early = proc.poll() is not None
            stop_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                code = None
            stop_took = time.monotonic() - stop_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        lines.join()
        accepted, rebind_failures = flappers.accepted, flappers.rebind_failures

    verdict, figures = judge(samples, warmup, sockets, args.rss_slack)
    if ended_early:
        verdict.reasons.append(f"portpatrol ended on its own (status {proc.returncode}): {lines.other}")
    elif code != 128 + signal.SIGTERM:
        verdict.reasons.append(f"SIGTERM gave status {code}, expected 143")
    elif stop_took > 2:
        verdict.reasons.append(f"SIGTERM took {stop_took:.1f}s")
    if lines.ready:
        verdict.reasons.append(f"{lines.ready} target(s) reported ready without 1000 successes in a row")
    if lines.failed == 0 or accepted == 0:
        verdict.reasons.append(f"the targets did not flap: {lines.failed} failures, {accepted} connections")
    ok = not verdict.reasons
    duration = samples[-1].at if samples else 0.0
    figures |= {
        "targets": args.targets,
        "seconds": round(duration, 1),
        "failed_attempts": lines.failed,
        "successful_connections": accepted,
        "attempts_per_second": round((lines.failed + accepted) / duration, 1) if duration else 0.0,
        "listener_rebind_failures": rebind_failures,
        "sigterm_exit": code if code is not None else -1,
        "sigterm_seconds": round(stop_took, 3),
    }
    print(json.dumps({"ok": ok, **figures, "problems": verdict.reasons}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "samples": [asdict(s) for s in samples]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
