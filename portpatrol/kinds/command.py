"""The command kind: ready when a program exits 0 within the attempt's bound (the Kubernetes exec
probe). No shell: the argv runs as written; write `[sh, -c, "..."]` for one.

The target has no address. In YAML, `command: [pg_isready, -h, db]` instead of `address:`; the
sources call `parse("", {"argv": [...]})` (argv a non-empty list of strings). From the environment,
TARGET_COMMAND holds the argv (ENV maps it to the block's "argv", a str): a JSON array of strings when
it starts with `[` (`["pg_isready", "-h", "db"]`, exact), otherwise split like a POSIX shell does
(shlex.split: `pg_isready -h db`), never run by a shell.

Each attempt runs the program in a new session (its own process group), stdin from /dev/null,
stdout and stderr into one pipe of which only the last 64 KiB are kept. When the attempt's bound
ends first, the whole process group is killed (SIGKILL) and the program reaped; when the program
exits, whatever it left running in its group is killed too, so attempts leave nothing behind (a
program that starts its own session escapes, as from any supervisor). Reasons: "exit status 3:
LAST LINE", "killed by SIGSEGV: LAST LINE", "no exit within 2s (killed): LAST LINE", "program not
found: NAME"; LAST LINE is the last non-empty line of the output, cut and escaped."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from portpatrol.checks import reason
from portpatrol.errors import NotReady
from portpatrol.text import quote
from portpatrol.values import format_duration
from portpatrol.wire import peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping, Sequence
    from typing import Any

    from portpatrol.address import Address

NAME = "command"
SCHEMES: tuple[str, ...] = ()  # no address selects it: the `command` key does
DEFAULT_PORT = None
# Not a block: a config target's `command:` is the argv itself (a list, instead of an address); the
# file source passes it to parse() as {"argv": [...]}.
SCHEMA: dict[str, Any] = {
    "description": (
        "A program to run instead of an address: ready when it exits 0 within dial_timeout; on "
        "timeout its whole process group is killed. No shell: write [sh, -c, '...'] for one. "
        "`${VAR}` and `${VAR:-default}` are replaced in each word; their values are scrubbed from logs."
    ),
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "minItems": 1,
    "examples": [["pg_isready", "-h", "db"], ["sh", "-c", "test -s /run/app/token"]],
}
ENV = {"TARGET_COMMAND": "argv"}
STILL = "still exits 0"  # the reason an inverted target is not ready yet
SECRET_KEYS: frozenset[str] = frozenset()
EXAMPLE = 'e.g. command: [pg_isready, -h, db] or TARGET_COMMAND=\'["pg_isready", "-h", "db"]\''
TAIL = 64 * 1024  # bytes of output kept: the last line is all a reason shows
SHOWN = 200  # characters of that line in a reason


@dataclass(frozen=True, slots=True)
class Settings:
    argv: tuple[str, ...]


def address(scheme: str, rest: str) -> Address:
    """A command has no address: `command://...` is a mistake, said so."""
    raise ValueError(f"a command target has no address ({EXAMPLE})")


def target_address(argv: Sequence[str], shown: Sequence[str], secrets: frozenset[str]) -> Address:
    """The Address the sources give a command target: named after the program, shown as written
    (`shown`: the words before ${VAR} was replaced), `secrets` the values replaced."""
    import shlex

    from portpatrol.address import Address
    from portpatrol.model import Kind

    program = shown[0].rpartition("/")[2] or shown[0]
    return Address(Kind.COMMAND, program, None, None, shlex.join(shown), secrets)


def parse(address: str, block: Mapping[str, Any]) -> Settings:
    if address:
        raise ValueError(f"a command target has no address ({EXAMPLE})")
    argv = block.get("argv")
    if isinstance(argv, str):
        argv = _split(argv)
    if not isinstance(argv, list | tuple) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"the command is a non-empty list of strings ({EXAMPLE})")
    if not argv[0] or any("\0" in a for a in argv):
        raise ValueError(f"the command's program is empty or an argument holds NUL ({EXAMPLE})")
    return Settings(tuple(argv))


def _split(text: str) -> list[str]:
    if text.lstrip().startswith("["):
        import json

        try:
            value = json.loads(text)
        except ValueError as error:
            raise ValueError(f"TARGET_COMMAND is not a JSON array: {error} ({EXAMPLE})") from None
        if not isinstance(value, list):
            raise ValueError(f"TARGET_COMMAND is not a JSON array ({EXAMPLE})")
        return value
    import shlex

    try:
        return shlex.split(text)
    except ValueError as error:
        raise ValueError(f"TARGET_COMMAND does not split into words: {error} ({EXAMPLE})") from None


def secrets(settings: Settings) -> frozenset[str]:
    return frozenset()


def describe(settings: Settings) -> str:
    import shlex

    return f"runs {quote(shlex.join(settings.argv), 200)}, ready when it exits 0"


# Process groups of attempts in flight. The wait may end while one runs (the deadline, a signal:
# workers are daemon threads, abandoned at exit), so at exit each is killed as a timeout kills it.
_running: set[int] = set()


def _kill_running() -> None:
    for group in list(_running):
        try:  # noqa: SIM105 (contextlib costs start-up)
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def attempt(settings: Settings, deadline: float, bound: float) -> None:
    import atexit
    import subprocess

    atexit.unregister(_kill_running)  # registered once, however many attempts
    atexit.register(_kill_running)

    try:
        process = subprocess.Popen(  # noqa: S603 - the user's own argv, and no shell
            settings.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, which a timeout kills whole
        )
    except FileNotFoundError:
        raise NotReady(f"program not found: {peer_text(settings.argv[0])}") from None
    except PermissionError:
        raise NotReady(f"program not executable: {peer_text(settings.argv[0])}") from None
    except OSError as error:
        raise NotReady(f"cannot run {peer_text(settings.argv[0])}: {reason(error, 0.0)}") from None
    _running.add(process.pid)
    try:
        tail, status = _run(process, deadline)
    finally:
        _kill_group(process)
        _running.discard(process.pid)
    line = _last_line(tail)
    if status is None:
        why = f"no exit within {format_duration(bound)} (killed)"
    elif status == 0:
        return
    elif status < 0:
        why = f"killed by {_signal_name(-status)}"
    else:
        why = f"exit status {status}"
    raise NotReady(f"{why}: {line}" if line else why)


def _run(process: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, int | None]:
    """The output's tail and the exit status, or None for the status when the deadline came first.
    Reading stops when the program has exited, even if a child it left still holds the pipe."""
    import select

    assert process.stdout is not None
    fd = process.stdout.fileno()
    tail = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    open_pipe = True
    while True:
        left = deadline - time.monotonic()
        status = _exited(process.pid)
        if status is not None or left <= 0:
            break
        # Wake at least every 50 ms: the pipe may stay open after the program exits.
        if open_pipe and poller.poll(min(left, 0.05) * 1000):
            chunk = os.read(fd, 65536)
            if chunk:
                del tail[: max(0, len(tail) + len(chunk) - TAIL)]
                tail += chunk[-TAIL:]
            else:
                open_pipe = False
        elif not open_pipe:
            time.sleep(min(left, 0.05))
    # What the program wrote just before it exited; a child it left may write on: a few reads only.
    for _ in range(16 if open_pipe else 0):
        if not poller.poll(0) or not (chunk := os.read(fd, 65536)):
            break
        del tail[: max(0, len(tail) + len(chunk) - TAIL)]
        tail += chunk[-TAIL:]
    process.stdout.close()
    return bytes(tail), status


def _exited(pid: int) -> int | None:
    """The program's exit status (negative: the signal that ended it) once it has exited, else None.
    It is not reaped here: while it is a zombie its pid, which is its group's id, cannot be reused, so
    killing the group afterwards cannot hit an unrelated new process."""
    found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if found is None or found.si_pid == 0:
        return None
    return found.si_status if found.si_code == os.CLD_EXITED else -found.si_status


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kills the program's process group, then reaps the program (only now: see _exited)."""
    import contextlib

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _last_line(output: bytes) -> str:
    for line in reversed(output.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return peer_text(line.strip(), SHOWN)
    return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
