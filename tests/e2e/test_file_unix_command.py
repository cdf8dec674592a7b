"""The file, unix and command kinds against real files, sockets and processes."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from portpatrol.errors import NotReady
from portpatrol.kinds import command, file, unix


def why(module: object, settings: object, bound: float = 2.0) -> str:
    with pytest.raises(NotReady) as caught:
        module.attempt(settings, time.monotonic() + bound, bound)  # type: ignore[attr-defined]
    return str(caught.value)


def go(module: object, settings: object, bound: float = 2.0) -> None:
    module.attempt(settings, time.monotonic() + bound, bound)  # type: ignore[attr-defined]


def poll_until_ready(module: object, settings: object, seconds: float) -> float:
    """Attempts every 0.1 s until one succeeds; the time it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            go(module, settings, 1.0)
            return time.monotonic() - started
        except NotReady:
            time.sleep(0.1)
    raise AssertionError("never ready")


# ------------------------------------------------------------------------------------------ file


def test_file_created_and_removed_while_attempts_run(tmp_path: Path) -> None:
    path = tmp_path / "token"
    settings = file.parse(f"file://{path}", {})
    assert why(file, settings) == "no such file or directory"
    threading.Timer(1.0, path.write_text, ("x",)).start()
    assert poll_until_ready(file, settings, 10) >= 0.9  # not before the file exists
    path.unlink()
    assert why(file, settings) == "no such file or directory"


def test_file_non_empty_and_contains(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_text("")
    empty = file.parse(f"file://{path}", {"non_empty": True})
    assert why(file, empty) == "the file is empty"
    assert why(file, file.parse(f"file://{path}", {"non_empty": "true"})) == (
        "the file is empty"  # FILE_NON_EMPTY=true
    )
    go(file, file.parse(f"file://{path}", {}))  # it exists, empty or not
    ready = file.parse(f"file://{path}", {"contains": "^status: (ok|up)$"})
    path.write_text("starting\nstatus: down\n")
    go(file, empty)
    assert why(file, ready) == "the file does not contain ^status: (ok|up)$"
    path.write_text("starting\nstatus: up\n")
    go(file, ready)


def test_file_contains_reads_one_mib_only(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * file.READ_LIMIT + b"READY")
    assert why(file, file.parse(f"file://{path}", {"contains": "READY"})) == (
        "the file does not contain READY in its first MiB"
    )


def test_a_fifo_is_not_read_and_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert why(file, file.parse(f"file://{fifo}", {"contains": "x"})) == "exists but is not a regular file"
    assert time.monotonic() - started < 1
    go(file, file.parse(f"file://{fifo}", {}))


def test_file_path_with_control_characters_is_shown_escaped(tmp_path: Path) -> None:
    settings = file.parse(f"file://{tmp_path}/a%0Ab%1B", {"non_empty": True})
    assert settings.path == f"{tmp_path}/a\nb\x1b"
    assert file.describe(settings) == f"{tmp_path}/a\\nb\\u001b exists non_empty=yes"


def test_file_bad_values() -> None:
    with pytest.raises(ValueError, match="not a regular expression"):
        file.parse("file:///x", {"contains": "("})
    with pytest.raises(ValueError, match="not a boolean"):
        file.parse("file:///x", {"non_empty": "maybe"})
    with pytest.raises(ValueError, match="file:///absolute/path"):
        file.parse("file:x", {})


# ------------------------------------------------------------------------------------------ unix


def test_unix_socket_created_then_listening(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    settings = unix.parse(f"unix://{path}", {})
    assert unix.describe(settings) == f"{path} accepts a stream connection"
    assert why(unix, settings) == "no such file or directory"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        assert why(unix, settings) == "connection refused"  # the file exists, nobody listens
        threading.Timer(1.0, server.listen).start()
        assert poll_until_ready(unix, settings, 10) >= 0.9


def test_unix_path_too_long() -> None:
    with pytest.raises(ValueError, match="at most 107 bytes"):
        unix.parse("unix:///" + "s" * 120, {})


# --------------------------------------------------------------------------------------- command


def marker() -> str:
    """A sleep length no other process on the machine uses, to find our processes with pgrep."""
    return f"{random.randint(10_000, 99_999)}.{random.randint(10_000, 99_999)}"


def running(mark: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", f"sleep {mark}"], capture_output=True, text=True, check=False)
    return found.stdout.splitlines()


def test_command_fails_then_succeeds(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    settings = command.parse(
        "", {"argv": ["sh", "-c", 'test -e "$1" || { echo "not yet: $1"; exit 3; }', "sh", str(flag)]}
    )
    assert why(command, settings) == f"exit status 3: not yet: {flag}"
    threading.Timer(1.0, flag.touch).start()
    assert poll_until_ready(command, settings, 10) >= 0.9


def test_a_hanging_command_is_killed_with_its_children() -> None:
    mark = marker()
    settings = command.parse("", {"argv": ["sh", "-c", f"echo waiting; sleep {mark} & sleep {mark}"]})
    seen: list[list[str]] = []
    watcher = threading.Timer(1.0, lambda: seen.append(running(mark)))
    watcher.start()
    started = time.monotonic()
    assert why(command, settings, bound=2.0) == "no exit within 2s (killed): waiting"
    assert time.monotonic() - started < 5
    watcher.join()
    assert len(seen[0]) == 3  # sh and both sleeps ran: the marker finds them
    assert running(mark) == []


def test_what_a_successful_command_leaves_running_is_killed() -> None:
    mark = marker()
    go(command, command.parse("", {"argv": ["sh", "-c", f"sleep {mark} & exit 0"]}))
    assert running(mark) == []


def test_the_last_line_is_cut_and_escaped() -> None:
    script = 'printf "first\\n"; printf "\\033[2J%0500d\\r\\n\\n  \\n" 7; exit 4'
    text = why(command, command.parse("", {"argv": ["sh", "-c", script]}))
    assert text.startswith("exit status 4: \\u001b[2J0000")
    assert text.endswith("…")
    assert len(text) < 260
    assert all(c.isprintable() for c in text)


def test_only_the_tail_of_a_flood_is_kept() -> None:
    text = why(command, command.parse("", {"argv": ["sh", "-c", "yes | head -c 5000000; echo LAST; exit 2"]}))
    assert text == "exit status 2: LAST"


def test_missing_program_and_signals() -> None:
    assert (
        why(command, command.parse("", {"argv": ["no-such-program-pp"]}))
        == "program not found: no-such-program-pp"
    )
    assert why(command, command.parse("", {"argv": ["sh", "-c", "kill -TERM $$"]})) == "killed by SIGTERM"
    assert why(command, command.parse("", {"argv": ["false"]})) == "exit status 1"


def test_command_from_the_environment_and_bad_values() -> None:
    assert command.parse("", {"argv": '["pg_isready", "-h", "db x"]'}).argv == ("pg_isready", "-h", "db x")
    assert command.parse("", {"argv": "pg_isready -h 'db x'"}).argv == ("pg_isready", "-h", "db x")
    for bad, message in [
        ("[1, 2]", "list of strings"),
        ("[", "not a JSON array"),
        ("a 'b", "does not split"),
        ("", "non-empty list"),
    ]:
        with pytest.raises(ValueError, match=message):
            command.parse("", {"argv": bad})
    with pytest.raises(ValueError, match="has no address"):
        command.parse("tcp://x:1", {"argv": ["true"]})
    assert command.describe(command.parse("", {"argv": ["sh", "-c", "echo\n"]})) == (
        "runs \"sh -c 'echo\\n'\", ready when it exits 0"
    )
