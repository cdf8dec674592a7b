"""The live status line (issue 4.4): on an interactive terminal, with no log format asked for, one
redrawn line instead of a stream of warnings; plain log lines everywhere else.

Standard error is the slave side of a real pseudo-terminal (pty.openpty); standard output is a pipe,
as when a user redirects it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.peers import PORTPATROL, Running, TcpListener, minimal_env


@dataclass
class TtyRun:
    code: int
    stdout: str
    terminal: str  # everything written to the terminal, as the terminal received it


def run_on_tty(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    columns: int = 200,
    timeout: float = 20,
    watch: Callable[[str], None] | None = None,
    stop_when: str | None = None,
) -> TtyRun:
    """Run to the end with stderr on a terminal; `watch` sees all output so far after every read
    (to start a late peer once the command has shown that it is waiting, whatever the machine's speed).
    Once the output holds `stop_when`, the command gets SIGTERM."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [str(PORTPATROL), *args], env=minimal_env(env), stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave side is gone
                break
            if not chunk:
                break
            received += chunk
            if stop_when is not None and stop_when in received.decode("utf-8", "replace"):
                proc.send_signal(signal.SIGTERM)
                stop_when = None
            if watch is not None:
                watch(received.decode("utf-8", "replace"))
        stdout, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    return TtyRun(proc.returncode, stdout.decode(), received.decode("utf-8", "replace"))


def frames(terminal: str) -> list[str]:
    """What the user saw, redraw by redraw: the pieces between carriage returns, erase codes dropped."""
    pieces = terminal.replace("\x1b[2K", "").replace("\r\n", "\n").split("\r")
    return [piece for piece in pieces if piece.strip()]


def start_after_failures(listener: TcpListener, count: int) -> Callable[[str], None]:
    """A watcher that starts `listener` once `count` failed attempts were shown."""

    def watch(text: str) -> None:
        if text.count("connection refused") >= count:
            listener.start()

    return watch


def test_live_line_on_a_terminal_shows_ready_count_waiting_names_reasons_and_time() -> None:
    with TcpListener() as early, TcpListener(start_after=None) as late:
        watch = start_after_failures(late, 8)
        run = run_on_tty(["--interval", "100ms", early.address, late.address], watch=watch)
    assert run.code == 0, run.terminal
    assert run.stdout == ""
    shown = frames(run.terminal)
    assert "level=" not in run.terminal  # no stream of log lines
    assert "\x1b[2K" in run.terminal  # the line is erased and redrawn in place
    # Many redraws while the late one is down, each with the count, the name, the reason, the time.
    live = [frame for frame in shown if frame.startswith("1/2 ready")]
    assert all(f"waiting for {late.address} (" in frame for frame in live), live
    refused = [frame for frame in live if f"waiting for {late.address} (connection refused)" in frame]
    assert len(refused) >= 3, shown  # the first frames may still say "(first attempt)"
    assert all(early.address not in frame.split("waiting for")[1] for frame in live), live
    times = [frame.split(" · ")[1] for frame in live]
    assert all(t.endswith(("ms", "s")) and t[0].isdigit() for t in times), times
    assert len(set(times)) > 1  # elapsed time moves
    # Outcomes stay on the screen as lines of their own.
    assert f"✓ {early.address} is ready" in run.terminal
    assert f"✓ {late.address} is ready" in run.terminal
    assert "✓ all 2 ready in" in run.terminal
    # Nothing scrolls but outcomes: every line that ends with a newline is one.
    scrolled = [line for line in run.terminal.replace("\x1b[2K", "").split("\r\n") if line.strip()]
    assert len(scrolled) == 3
    assert all(line.split("\r")[-1].startswith("✓ ") for line in scrolled), scrolled


def test_live_line_fits_the_width_of_the_terminal_on_standard_error() -> None:
    # stdout is a pipe here: the width must come from the terminal the line is drawn on.
    names = [f"127.0.0.1:{port}" for port in (1, 2, 3, 4, 5)]
    run = run_on_tty(["--interval", "100ms", "--timeout", "600ms", *names], columns=50)
    assert run.code == 124
    live = [frame for frame in frames(run.terminal) if " ready · " in frame]
    assert live
    assert all(len(frame) < 50 for frame in live), [len(frame) for frame in live]


def test_deadline_on_a_terminal_says_who_was_not_ready_and_why() -> None:
    run = run_on_tty(["--interval", "100ms", "--timeout", "500ms", "127.0.0.1:1"])
    assert run.code == 124
    assert "✗ 127.0.0.1 did not become ready in time: connection refused\r\n" in run.terminal


def test_asking_for_a_log_format_on_a_terminal_gives_plain_lines() -> None:
    with TcpListener(start_after=None) as late:
        watch = start_after_failures(late, 2)
        text = run_on_tty(["--interval", "100ms", late.address], {"LOG_FORMAT": "text"}, watch=watch)
    with TcpListener(start_after=None) as late:
        watch = start_after_failures(late, 2)
        json_run = run_on_tty(["--interval", "100ms", late.address], {"LOG_FORMAT": "json"}, watch=watch)
    assert text.code == 0
    assert json_run.code == 0
    for run in (text, json_run):
        assert "\x1b[2K" not in run.terminal
        assert " ready · " not in run.terminal
    text_lines = text.terminal.splitlines()
    assert all(line.startswith("time=") for line in text_lines), text_lines
    assert any("level=WARN" in line and 'error="connection refused"' in line for line in text_lines)
    records = [json.loads(line) for line in json_run.terminal.splitlines()]
    assert any(r["level"] == "WARN" and r["error"] == "connection refused" for r in records)
    assert records[-1]["msg"] == "127.0.0.1 is ready ✓"


def test_not_a_terminal_gives_plain_lines() -> None:
    with (
        TcpListener(start_after=None) as late,
        Running(args=["--interval", "100ms", late.address]) as running,
    ):
        running.wait_for_line("is not ready")
        late.start()
        code = running.wait(20)
        stdout = running.proc.stdout.read() if running.proc.stdout else b""
    err = "\n".join(running.lines)
    assert code == 0
    assert stdout == b""
    assert "\r" not in err
    assert "\x1b" not in err
    assert all(line.startswith("time=") for line in err.splitlines())
    assert "level=WARN" in err


def test_wrapped_command_writes_to_a_clean_terminal() -> None:
    with TcpListener() as db:
        run = run_on_tty([db.address, "--", "sh", "-c", "echo from-command >&2; echo out"])
    assert run.code == 0
    assert run.stdout == "out\n"
    # The live line was erased before COMMAND started: its text starts a fresh line.
    before, _, _ = run.terminal.partition("from-command")
    assert before.endswith(("\r\x1b[2K", "\n")), repr(run.terminal)
