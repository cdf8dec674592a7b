"""Misbehaving peers and a fixed-window runner for the fault-injection, secrets and privilege tests.

tests/peers.py has the well-behaved peers and most bad ones (silent, drip, endless); this module adds
what those lack: a peer that resets mid-response, a listener that flaps, an HTTP peer answering from a
script of statuses, a DNS server that answers NXDOMAIN, and `run_window`, which runs the installed
command (optionally inside a private network namespace) for a fixed time and returns its log lines
with their timestamps. Only loopback, or namespaces made here, is ever used."""

from __future__ import annotations

import shlex
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.peers import (
    PORTPATROL,
    Result,
    Serving,
    command_for_anyone,
    free_port,
    line_time,
    minimal_env,
    parse_line,
)

NOT_READY = "is not ready ✗"


# --------------------------------------------------------------------------- running for a window


@dataclass
class WindowRun:
    code: int
    lines: list[str]
    window: float  # seconds from the "Waiting" line to SIGTERM (or to the end, when it ended itself)

    @property
    def started(self) -> float:
        return next(line_time(line) for line in self.lines if "Waiting for" in line)

    @property
    def failures(self) -> list[float]:
        """Timestamps of the "not ready" lines: one per failed attempt."""
        return [line_time(line) for line in self.lines if NOT_READY in line]

    @property
    def errors(self) -> list[str]:
        return [parse_line(line).get("error", "") for line in self.lines if NOT_READY in line]


def namespace_command(
    setup: str,
    env: Mapping[str, str],
    *,
    mount: bool = False,
    wrap: Sequence[str] = (),
    args: Sequence[str] = (),
) -> list[str]:
    """argv running `setup` (shell lines) then the installed command, inside a new network namespace
    (and mount namespace when `mount`) with loopback up; `wrap` goes before the command (e.g. a
    setpriv that drops privileges). unshare, sh and setpriv exec in place, so the pid of the process
    started is the pid of portpatrol itself, and signals reach it directly."""
    assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    command = command_for_anyone() if wrap else PORTPATROL  # a wrap runs it as another user
    prefix = " ".join(shlex.quote(word) for word in wrap)
    script = (
        f"set -e\nip link set lo up\n{setup}\n"
        f"exec {prefix} env -i {assignments} {shlex.join([str(command), *args])}"
    )
    return ["unshare", "-n", *(["-m"] if mount else []), "sh", "-c", script]


def run_window(
    env: Mapping[str, str],
    window: float,
    *,
    setup: str | None = None,
    mount: bool = False,
    args: Sequence[str] = (),
) -> WindowRun:
    """Run portpatrol with `env` for `window` seconds after its first line, then SIGTERM it.
    With `setup`, it runs inside a private network namespace after those shell lines."""
    full = minimal_env(env)
    argv = (
        [str(PORTPATROL), *args] if setup is None else namespace_command(setup, full, mount=mount, args=args)
    )
    proc = subprocess.Popen(argv, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    first = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            first.set()
        first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(15), "portpatrol wrote nothing within 15s"
        began = time.monotonic()
        try:
            code = proc.wait(window)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(5)
        ran = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    reader.join(5)
    return WindowRun(code, lines, ran)


# --------------------------------------------------------------------------- peers


class _Acceptor:
    """A loopback listener whose accepted connections go to `handle` in their own thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.stop = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(2)
        self.sock.close()


class ResetMidResponse(_Acceptor):
    """Reads the request, sends half a status line, then resets the connection (SO_LINGER 0)."""

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 20")
        time.sleep(0.02)  # let the half line arrive before the reset
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class FlappingListener:
    """A TCP listener on a fixed loopback port that is up for `up` seconds, then down for `down`,
    alternately, starting down. `transitions` records (monotonic time, is_up)."""

    def __init__(self, up: float, down: float) -> None:
        self.port = free_port()
        self.up = up
        self.down = down
        self.accepted = 0
        self.stop = threading.Event()
        self.transitions: list[tuple[float, bool]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self.stop.wait(self.down):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.port))
                sock.listen(64)
                sock.settimeout(0.02)
                self.transitions.append((time.monotonic(), True))
                until = time.monotonic() + self.up
                while time.monotonic() < until and not self.stop.is_set():
                    try:
                        conn, _ = sock.accept()
                    except TimeoutError:
                        continue
                    self.accepted += 1
                    conn.close()
            finally:
                sock.close()  # queued, unaccepted connections are reset: a real outage
                self.transitions.append((time.monotonic(), False))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(5)


class _ScriptHandler(BaseHTTPRequestHandler):
    server: _ScriptServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        peer = self.server.peer
        with peer.lock:
            index = len(peer.answered)
            code = peer.script[min(index, len(peer.script) - 1)]
            peer.answered.append(code)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True


class _ScriptServer(ThreadingHTTPServer):
    daemon_threads = True
    peer: ScriptedHttp


class ScriptedHttp:
    """An HTTP peer answering the n-th request with script[n] (the last entry repeats), so a test
    decides exactly which attempts succeed. `answered` lists the codes sent, in order."""

    def __init__(self, script: Sequence[int]) -> None:
        self.script = list(script)
        self.answered: list[int] = []
        self.lock = threading.Lock()
        self._server = _ScriptServer(("127.0.0.1", 0), _ScriptHandler)
        self._server.peer = self
        self.port = int(self._server.server_address[1])
        self._serving: Serving | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Self:
        self._serving = Serving(self._server)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._serving is not None:
            self._serving.stop()


# A DNS server answering every query "no such name" (NXDOMAIN), started inside a namespace on
# 127.0.0.1:53 so that the resolver gets a real, authoritative "does not exist".
NXDOMAIN_SERVER = r"""
import socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
while True:
    query, peer = sock.recvfrom(512)
    if len(query) < 12:
        continue
    # same id; flags: response, recursion desired+available, rcode 3; the question echoed back
    end = 12
    while end < len(query) and query[end] != 0:
        end += query[end] + 1
    question = query[12 : end + 5]
    sock.sendto(query[:2] + b"\x81\x83\x00\x01\x00\x00\x00\x00\x00\x00" + question, peer)
"""


def run_namespaced(
    setup: str,
    env: Mapping[str, str],
    *,
    wrap: Sequence[str] = (),
    mount: bool = False,
    args: Sequence[str] = (),
    timeout: float = 30,
) -> Result:
    """Run portpatrol to its end inside a new network namespace (see namespace_command)."""
    argv = namespace_command(setup, minimal_env(env), mount=mount, wrap=wrap, args=args)
    started = time.monotonic()
    # The background helpers a setup starts must not hold our pipes open: they write to /dev/null.
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    return Result(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
    )
