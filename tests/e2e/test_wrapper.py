"""The exec wrapper, end to end: `portpatrol [options] [TARGET...] -- COMMAND [ARG...]` waits, then
becomes COMMAND (same PID, COMMAND's exit status), and never runs COMMAND when the wait fails."""

from __future__ import annotations

import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pytest

from tests.peers import PORTPATROL, Running, TcpListener, free_port, minimal_env, run_portpatrol


def start(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PORTPATROL), *args], env=minimal_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def read_line(stream: IO[bytes] | None, timeout: float) -> str:
    """One line of a child's pipe, failing the test instead of blocking forever."""
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout}s"
    return stream.readline().decode()


def assert_one_clear_line(stderr: str, contains: str) -> None:
    """Exactly one `portpatrol:` line, containing `contains`, and no traceback."""
    ours = [line for line in stderr.splitlines() if line.startswith("portpatrol:")]
    assert len(ours) == 1, stderr
    assert contains in ours[0], stderr
    assert "Traceback" not in stderr


def test_becomes_the_command_same_pid_its_exit_status_and_clean_stdout() -> None:
    with TcpListener() as db:
        proc = start(["--interval", "100ms", db.address, "--", "sh", "-c", "echo $$; exit 7"])
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 7
    # stdout holds only what COMMAND printed: its PID, which is the PID we started.
    assert out.decode() == f"{proc.pid}\n"
    assert "is ready ✓" in err.decode()


def test_exit_status_zero_and_arguments_passed_as_given() -> None:
    with TcpListener() as db:
        result = run_portpatrol(
            args=[db.address, "--", "printf", "%s|", "two words", "--timeout", "-x"], timeout=20
        )
    # Everything after `--` belongs to COMMAND, options included.
    assert result.code == 0, result.stderr
    assert result.stdout == "two words|--timeout|-x|"


def test_environment_reaches_the_command_unchanged() -> None:
    with TcpListener() as db:
        env = {"TARGET_ADDRESS": db.address, "APP_SETTING": "a b=c", "CHECK_INTERVAL": "100ms"}
        result = run_portpatrol(
            env, ["--", "sh", "-c", 'printf "%s;%s" "$APP_SETTING" "$TARGET_ADDRESS"'], timeout=20
        )
    assert result.code == 0, result.stderr
    assert result.stdout == f"a b=c;{db.address}"


def test_without_double_dash_nothing_changes() -> None:
    with TcpListener() as db:
        result = run_portpatrol(args=[db.address], timeout=20)
    assert result.code == 0
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("case", "args", "env", "status"),
    [
        ("deadline", ["--interval", "100ms", "--timeout", "500ms", "127.0.0.1:{refused}"], {}, 124),
        ("bad option", ["--interval", "5", "127.0.0.1:{refused}"], {}, 2),
        ("bad env", ["127.0.0.1:{refused}"], {"TARGET_ADDRESS": "htp://x"}, 2),
        ("bad argument", ["tcp://127.0.0.1"], {}, 2),
    ],
)
def test_command_never_runs_when_the_wait_fails(
    tmp_path: Path, case: str, args: list[str], env: dict[str, str], status: int
) -> None:
    marker = tmp_path / "ran"
    args = [arg.format(refused=free_port()) for arg in args]
    result = run_portpatrol(env, [*args, "--", "touch", str(marker)], timeout=20)
    assert result.code == status, result.stderr
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    if case == "deadline":
        assert result.elapsed < 8
        assert "did not become ready in time" in result.stderr


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_command_never_runs_when_a_signal_ends_the_wait(
    tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    marker = tmp_path / "ran"
    args = ["--interval", "100ms", f"127.0.0.1:{free_port()}", "--", "touch", str(marker)]
    with Running(args=args) as running:
        running.wait_for_line("is not ready")
        sent = time.monotonic()
        running.signal(signum)
        assert running.wait(10) == status
        assert time.monotonic() - sent < 3
    assert not marker.exists()
    assert not any("Traceback" in line for line in running.lines)
    # A late wait must not run COMMAND either: give a stray exec time to show up.
    time.sleep(0.2)
    assert not marker.exists()


def test_command_not_found_is_127_with_one_clear_line() -> None:
    with TcpListener() as db:
        result = run_portpatrol(args=[db.address, "--", "no-such-command-for-portpatrol"], timeout=20)
    assert result.code == 127
    assert_one_clear_line(result.stderr, "no-such-command-for-portpatrol: command not found")


def test_command_not_executable_is_126_with_one_clear_line(tmp_path: Path) -> None:
    script = tmp_path / "app.sh"
    script.write_text("#!/bin/sh\necho should not run\n")
    script.chmod(0o644)
    with TcpListener() as db:
        result = run_portpatrol(args=[db.address, "--", str(script)], timeout=20)
        directory = run_portpatrol(args=[db.address, "--", str(tmp_path)], timeout=20)
    assert result.code == 126
    assert result.stdout == ""
    assert_one_clear_line(result.stderr, f"{script}: cannot execute")
    assert directory.code == 126
    assert_one_clear_line(directory.stderr, "cannot execute")


def test_double_dash_with_nothing_after_is_a_configuration_error() -> None:
    with TcpListener() as db:
        result = run_portpatrol(args=[db.address, "--"], timeout=20)
    assert result.code == 2
    assert_one_clear_line(result.stderr, "-- must be followed by a COMMAND")
    assert db.accepted == 0  # a configuration error is found before any attempt


def test_signals_after_exec_reach_the_command_itself() -> None:
    script = 'trap "exit 42" TERM; echo $$; while :; do sleep 0.05; done'
    with TcpListener() as db:
        proc = start(["--interval", "100ms", db.address, "--", "sh", "-c", script])
        try:
            assert read_line(proc.stdout, 15) == f"{proc.pid}\n"  # COMMAND runs, as the same PID
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 42  # COMMAND's own trap ran: the signal reached it, not us
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=5)


def test_command_gets_default_signal_dispositions() -> None:
    """Python ignores SIGPIPE (and SIGXFSZ); ignored signals survive exec, so COMMAND must get them
    back at their defaults: `yes | head -1` must end quietly, by SIGPIPE, as in any shell."""
    with TcpListener() as db:
        result = run_portpatrol(args=[db.address, "--", "sh", "-c", "yes | head -1"], timeout=20)
        status = run_portpatrol(args=[db.address, "--", "cat", "/proc/self/status"], timeout=20)
    assert result.code == 0, result.stderr
    assert result.stdout == "y\n"
    assert "Broken pipe" not in result.stderr  # `yes` was killed by SIGPIPE, not told EPIPE
    assert result.elapsed < 10
    fields = dict(line.split(":\t", 1) for line in status.stdout.splitlines() if ":\t" in line)
    assert int(fields["SigIgn"], 16) == 0, f"signals left ignored for COMMAND: {fields['SigIgn']}"
    assert int(fields["SigBlk"], 16) == 0, f"signals left blocked for COMMAND: {fields['SigBlk']}"
