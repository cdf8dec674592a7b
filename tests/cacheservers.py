"""Real Redis, NATS and memcached servers (Debian's) for the redis, nats and memcached kinds, and the
misbehaving peers those kinds must survive.

Each server runs as nobody (uid 65534) in its own process group, in a temporary directory it owns, on a
free loopback port; `stop` kills the group and the directory goes, whatever the test did. Each server's
own client (redis-cli) or a raw socket speaking its protocol is the oracle of its state."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Self

from portpatrol.wire import Wire
from tests.peers import free_port

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


class Daemon:
    """One server process as nobody; a context manager that always stops it and removes its directory."""

    name = "server"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"pp-{self.name}-"))
        os.chown(self.dir, NOBODY, NOBODY)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self, argv: Sequence[str]) -> None:
        """Starts `argv` as nobody; setpriv execs it, so `pid` is the server's own."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*AS_NOBODY, *argv],
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def until(self, ready: Callable[[], bool], bound: float = 15.0) -> None:
        """Waits until `ready()` (the oracle) says so; fails the test with the server's log when not."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.log()}"
            if ready():
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not up within {bound}s:\n{self.log()}")

    def write(self, name: str, data: bytes) -> Path:
        """A file in the server's directory that it can read."""
        path = self.dir / name
        path.write_bytes(data)
        os.chown(path, NOBODY, NOBODY)
        return path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def certificates(daemon: Daemon) -> tuple[Path, Path, Path]:
    """(CA PEM, server certificate, server key) for 127.0.0.1 and localhost, from a CA made here."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    return (
        daemon.write("ca.pem", ca.cert_pem.bytes()),
        daemon.write("cert.pem", b"".join(pem.bytes() for pem in issued.cert_chain_pems)),
        daemon.write("key.pem", issued.private_key_pem.bytes()),
    )


# --------------------------------------------------------------------------- redis


class RedisServer(Daemon):
    name = "redis"

    def start(self, *options: str, tls: tuple[Path, Path, Path] | None = None) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        if tls is None:
            argv += ["--port", str(self.port)]
        else:
            ca, cert, key = tls
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            argv += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        self.spawn([*argv, *options])

    def cli(
        self, *args: str, password: str | None = None, user: str | None = None, ca: Path | None = None
    ) -> str:
        """redis-cli's answer (stdout and stderr), the password passed as redis-cli reads it from
        the environment, so it is not on a command line."""
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        argv += ["--user", user] if user else []
        argv += ["--tls", "--cacert", str(ca)] if ca else []
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env |= {"REDISCLI_AUTH": password} if password else {}
        done = subprocess.run([*argv, *args], env=env, capture_output=True, timeout=15, check=False)
        return (done.stdout + done.stderr).decode(errors="replace").strip()


# --------------------------------------------------------------------------- nats


class NatsServer(Daemon):
    name = "nats"

    def start(self, *options: str) -> None:
        self.spawn(["nats-server", "-a", "127.0.0.1", "-p", str(self.port), *options])

    def info(self) -> dict[str, object] | None:
        """The oracle: the INFO a raw socket reads from the server, or None when none comes."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                data = b""
                while b"\r\n" not in data and len(data) < 65536:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
        except OSError:
            return None
        if not data.startswith(b"INFO "):
            return None
        info = json.loads(data.split(b"\r\n", 1)[0][5:])
        assert isinstance(info, dict)
        return info


# --------------------------------------------------------------------------- memcached


class MemcachedServer(Daemon):
    name = "memcached"

    def start(self, *options: str) -> None:
        self.spawn(["memcached", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", *options])

    def version(self) -> str | None:
        """The oracle: what `version` gets over a raw socket, or None when nothing answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"version\r\n")
                return sock.recv(1024).decode(errors="replace").strip()
        except OSError:
            return None


# --------------------------------------------------------------------------- misbehaving peers


class ScriptedPeer:
    """A loopback listener that, for each connection, reads what the client sends first (when
    `listen_first`), then sends `script` and closes, or stays silent with the connection open when
    `hold` (until the peer is stopped)."""

    def __init__(self, script: bytes, *, hold: bool = False, listen_first: bool = False) -> None:
        self.script = script
        self.hold = hold
        self.listen_first = listen_first
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._serving = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            if self.listen_first:
                conn.recv(65536)
            conn.sendall(self.script)
            if self.hold:
                self.stopping.wait(30)
                return
            # Half-close, then drain what the client still sends: a full close would answer a late
            # write with a reset, and the reason would depend on which came first.
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass

    def __enter__(self) -> Self:
        self._serving.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._serving.join(2)
        for thread in self._threads:
            thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def wire_to(server_bytes: bytes, *, bound: float = 2.0, close: bool = True) -> Iterator[Wire]:
    """A Wire whose peer (one end of a socketpair) has sent `server_bytes` and then closed (or stays
    open when not `close`): for feeding a conversation arbitrary server bytes without a server."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(True)
    feeder = threading.Thread(target=_feed, args=(theirs, server_bytes, close), daemon=True)
    feeder.start()
    wire = Wire(ours, time.monotonic() + bound, bound)
    try:
        yield wire
    finally:
        ours.close()
        feeder.join(5)
        theirs.close()


def _feed(sock: socket.socket, data: bytes, close: bool) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # drain what the client sends, until it closes
            pass


# --------------------------------------------------------------------------- through the command


def waits_for_a_late_start(address: str, start: Callable[[], None], up: Callable[[], bool]) -> float:
    """Runs the installed command on `address` before anything listens there, then `start()`s the
    server and asks its own client (`up`) when it is up: the command must have said "not ready"
    first and must exit 0 soon after the server is up. Returns seconds from up to exit."""
    from tests.peers import Running

    with Running(args=["--interval", "250ms", "--timeout", "120s", address]) as running:
        running.wait_for_line("is not ready ✗", 15)
        start()
        deadline = time.monotonic() + 30
        while not up():
            assert time.monotonic() < deadline, "the server's own client never said it is up"
            time.sleep(0.05)
        at_up = time.monotonic()
        code = running.wait(30)
        ended = time.monotonic()
    assert code == 0, running.lines
    assert "is ready ✓" in running.lines[-1], running.lines
    assert any("connection refused" in line for line in running.lines), running.lines
    return ended - at_up


def never_shown(secret: str, *texts: str) -> None:
    """The secret is in none of the texts (stdout, stderr, a --report file...)."""
    for text in texts:
        assert secret not in text, text
