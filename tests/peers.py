"""Real peers on loopback for the tests, and helpers that run the installed command as a user would.

Every peer is a context manager that cleans up after itself (threads stopped, sockets closed).
Only loopback addresses are used; the proxy refuses to forward anywhere else.

HTTP behaviours are chosen by the request path, so one server serves every test:
  /status/<code>            answer <code> (any other path answers the server's `default_status`)
  /redirect/<n>/<code>      redirect n times, then answer <code>; /redirect/0/<code> answers <code>
  /loop                     redirect to itself forever
  /sleep/<seconds>/<code>   sleep, then answer <code>
  /flaky/<n>/<code>         answer 503 the first n times this path is asked, then <code>
  /drip/<seconds>           send the status line and headers one byte each <seconds>
  /endless                  answer 200 and stream a body forever
  /silent                   read the request, then never answer
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import json
import os
import queue
import re
import select
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

PORTPATROL = Path(sys.executable).parent / "portpatrol"


# --------------------------------------------------------------------------- plain TCP


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick; released at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class TcpListener:
    """A TCP listener on a kernel-chosen port that may start late.

    `port` is known at once (reserved, then released until `start`). Accepted connections are closed at
    once, or held open and never answered when `silent` (a peer that accepts and stays silent)."""

    def __init__(self, host: str = "127.0.0.1", *, start_after: float | None = 0.0, silent: bool = False):
        self.host = host
        self.port = free_port(host)
        self.silent = silent
        self.accepted = 0
        self._start_after = start_after
        self._sock: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> None:
        if self._started.is_set():
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        sock.settimeout(0.05)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._started.set()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.silent:
                self._held.append(conn)
            else:
                conn.close()

    def __enter__(self) -> Self:
        if self._start_after == 0.0:
            self.start()
        elif self._start_after is not None:
            self._timer = threading.Timer(self._start_after, self.start)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()
        for conn in self._held:
            conn.close()


# --------------------------------------------------------------------------- HTTP(S)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]  # in the order received, duplicates kept
    at: float = field(default_factory=time.monotonic)

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # TLS handshake here, in the request's own thread, so a stalled client never blocks accept().
        if self.server.tls is not None:
            self.request.settimeout(10)
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _record(self) -> None:
        self.server.peer.requests.append(
            SeenRequest(self.command, self.path, [(k, v) for k, v in self.headers.raw_items()])
        )

    def _answer(self, code: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        self._record()
        stop = self.server.peer.stopping
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        kind, args = parts[0], parts[1:]
        if kind == "status" and args:
            self._answer(int(args[0]))
        elif kind == "redirect" and len(args) == 2:
            hops, code = int(args[0]), int(args[1])
            if hops <= 0:
                self._answer(code)
            else:
                self._answer(302, {"Location": f"/redirect/{hops - 1}/{code}"})
        elif kind == "loop":
            self._answer(302, {"Location": "/loop"})
        elif kind == "sleep" and len(args) == 2:
            stop.wait(float(args[0]))
            self._answer(int(args[1]))
        elif kind == "flaky" and len(args) == 2:
            with self.server.peer.lock:
                seen = self.server.peer.counts.get(self.path, 0)
                self.server.peer.counts[self.path] = seen + 1
            self._answer(503 if seen < int(args[0]) else int(args[1]))
        elif kind == "drip":
            delay = float(args[0]) if args else 1.0
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if stop.wait(delay):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        elif kind == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()  # no length: the body runs until the connection closes
            chunk = b"x" * 65536
            while not stop.is_set():
                self.wfile.write(chunk)
        elif kind == "silent":
            stop.wait()
        else:
            self._answer(self.server.peer.default_status)
        self.close_connection = True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (OSError, ssl.SSLError):
            self.close_connection = True  # the client gave up: expected when it times out

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def handle_expect_100(self) -> bool:
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    peer: HttpPeer
    tls: ssl.SSLContext | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # handshake failures and hang-ups are what many tests provoke


class _Server6(_Server):
    address_family = socket.AF_INET6


class Serving:
    """A socketserver answering in a daemon thread from now until stop() (or the end of a with block)."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HttpPeer:
    """A ThreadingHTTPServer in a thread; see the module docstring for the behaviours by path.

    `requests` records every request (method, path, headers in order). With `tls` (an SSLContext for the
    server side) it speaks HTTPS. With `start_after` it starts listening that many seconds late."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        default_status: int = 200,
        tls: ssl.SSLContext | None = None,
        start_after: float = 0.0,
    ) -> None:
        self.host = host
        self.port = free_port(host)
        self.default_status = default_status
        self.tls = tls
        self.requests: list[SeenRequest] = []
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._start_after = start_after
        self._serving: Serving | None = None
        self._timer: threading.Timer | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.hostport}{path}"

    def start(self) -> None:
        cls = _Server6 if ":" in self.host else _Server
        server = cls((self.host, self.port), _Handler, bind_and_activate=False)
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        server.peer = self
        server.tls = self.tls
        self._serving = Serving(server)

    def __enter__(self) -> Self:
        if self._start_after > 0:
            self._timer = threading.Timer(self._start_after, self.start)
            self._timer.daemon = True
            self._timer.start()
        else:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.stopping.set()
        if self._serving is not None:
            self._serving.stop()


def tls_server_context(
    names: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate from a fresh CA made for this run (trustme), and the path of
    that CA's PEM, for a client that should trust it. Nothing trusts it by default: a self-signed peer."""
    import tempfile

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = Path(tempfile.mkdtemp(prefix="pp-ca-")) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ctx, ca_file


# --------------------------------------------------------------------------- proxy


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        self.server.proxy.seen.append(("CONNECT", self.path))
        if not _loopback(host):
            self.send_error(403, "loopback only")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self._pipe(self.connection, upstream)
        self.close_connection = True

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        stop = self.server.proxy.stopping
        with b:
            while not stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)

    def _forward(self) -> None:
        from urllib.parse import urlsplit

        self.server.proxy.seen.append((self.command, self.path))
        url = urlsplit(self.path)
        if not url.hostname or not _loopback(url.hostname):
            self.send_error(403, "loopback only")
            return
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")
        }
        try:
            target = (url.path or "/") + (f"?{url.query}" if url.query else "")
            conn.request(self.command, target, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except OSError:
            self.send_error(502)
            return
        finally:
            conn.close()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: RecordingProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class RecordingProxy:
    """A forwarding HTTP proxy (absolute-form requests and CONNECT) that records what it sees as
    (method, target) pairs, and forwards only to loopback."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.seen: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self._server = _ProxyServer((host, 0), _ProxyHandler)
        self._server.proxy = self
        self.port = int(self._server.server_address[1])
        self._serving: Serving | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self._serving = Serving(self._server)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self._serving is not None:
            self._serving.stop()


# --------------------------------------------------------------------------- running portpatrol


def minimal_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a test runs the command with: PATH only, plus what the test sets."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    base.update(env or {})
    return base


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    @property
    def records(self) -> list[dict[str, str]]:
        """stderr lines parsed as logfmt (or JSON for JSON lines)."""
        return [parse_line(line) for line in self.lines]


def run_portpatrol(
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    *,
    timeout: float = 30,
    command: Sequence[str] | None = None,
) -> Result:
    """Run the installed command to its end with a minimal environment. `command` replaces the
    default `[portpatrol]` prefix (e.g. for `python -m portpatrol` or a setpriv wrapper)."""
    argv = [*(command if command is not None else [str(PORTPATROL)]), *args]
    started = time.monotonic()
    done = subprocess.run(argv, env=minimal_env(env), capture_output=True, timeout=timeout, check=False)
    return Result(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
    )


class Running:
    """The command started in the background; its stderr lines are collected as they come."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*(command if command is not None else [str(PORTPATROL)]), *args],
            env=minimal_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, contains: str = "", timeout: float = 10) -> str:
        """The first new line containing `contains`; fails the test when none comes in time."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"portpatrol ended before a line with {contains!r}: {self.lines}")
            if contains in line:
                return line
        raise AssertionError(f"no line with {contains!r} within {timeout}s: {self.lines}")

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 10) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def lines_until(
    env: Mapping[str, str],
    contains: str = "is not ready ✗",
    count: int = 2,
    timeout: float = 15,
    *,
    command: Sequence[str] | None = None,
) -> list[str]:
    """Run the command until `count` lines containing `contains` came, then stop it with SIGTERM
    (asserting it exits 143) and return every line it wrote: for targets that never become ready."""
    with Running(env, command=command) as running:
        for _ in range(count):
            running.wait_for_line(contains, timeout)
        running.signal(signal.SIGTERM)
        code = running.wait()
        assert code == 143, (code, running.lines)
        return running.lines


def in_netns(
    command: Sequence[str], *, sysctls: Mapping[str, str] | None = None, user: int | None = None
) -> list[str]:
    """`command` run in a new network namespace of its own (root needed): loopback up, the given
    sysctls set inside it (they are per namespace), then as `user` (uid and gid) when given.
    Every process is exec'd in turn, so signals sent to the returned command's process reach it."""
    script = "ip link set lo up"
    for key, value in (sysctls or {}).items():
        script += f" && sysctl -qw {key}='{value}'"
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    return ["unshare", "-n", "sh", "-c", script + ' && exec "$@"', "sh", *prefix, *command]


def unprivileged_can_run(uid: int = 65534) -> str | None:
    """None when `uid` can run command_for_anyone(); else why not, saying how to fix it."""
    command = command_for_anyone(uid)
    why = _cannot_run(command, uid)
    if why is None:
        return None
    return (
        f"uid {uid} cannot run {command} ({why}). Run the tests with an interpreter every user can "
        "read, such as Debian's: /usr/bin/python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
        ".venv/bin/pytest"
    )


def _cannot_run(command: Path, uid: int) -> str | None:
    # Through env, as the tests run it: setpriv's own exec of a script was seen to succeed where
    # env's exec of it as the same user was denied (an interpreter under root's home).
    probe = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "env",
        "-i",
        str(command),
        "--version",
    ]
    done = subprocess.run(probe, capture_output=True, timeout=30, check=False, env=minimal_env())
    if done.returncode == 0:
        return None
    return (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"])[-1]


def _interpreter_for(uid: int) -> str:
    """A Python of this one's version that `uid` can run: this one's own base, or else Debian's.
    A Python installed under root's home (pyenv's) is out of that user's reach, and so is the
    copy's interpreter when it links there; the version must match, as the compiled dependencies
    copied beside portpatrol are built for it."""
    version = "{}.{}".format(*sys.version_info[:2])
    candidates = [getattr(sys, "_base_executable", sys.executable), "/usr/bin/python3"]
    for candidate in candidates:
        probe = [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "env",
            "-i",
            candidate,
            "-c",
        ]
        probe.append("import sys; print('%d.%d' % sys.version_info[:2])")
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False, cwd="/")
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    raise AssertionError(
        f"uid {uid} can run no Python {version} of {candidates}: install Debian's python3 (apt-get install "
        f"python3) or run the tests with a Python {version} outside root's home"
    )


@functools.cache
def command_for_anyone(uid: int = 65534) -> Path:
    """The installed command when `uid` can run it. When it cannot reach it (a checkout under a
    private directory, such as root's home or `mktemp -d`), a copy of portpatrol and of its runtime
    dependencies in a virtual environment under a world-readable temporary directory, made once
    per session, so the tests of other users and capabilities run wherever the checkout is."""
    if _cannot_run(PORTPATROL, uid) is None:
        return PORTPATROL
    import atexit
    import importlib.metadata
    import shutil
    import tempfile

    import portpatrol

    base = _interpreter_for(uid)
    home = Path(tempfile.mkdtemp(prefix="portpatrol-anyone-"))
    home.chmod(0o755)
    atexit.register(shutil.rmtree, home, True)
    subprocess.run([base, "-m", "venv", "--without-pip", str(home)], check=True, timeout=120)
    python = home / "bin" / "python3"
    where = [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    site = Path(subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip())
    package = Path(portpatrol.__file__).parent
    shutil.copytree(package, site / "portpatrol", ignore=shutil.ignore_patterns("__pycache__"))
    from portpatrol.schema import SCHEMA_FILE

    shutil.copy2(SCHEMA_FILE, site / "portpatrol" / "portpatrol.schema.json")  # as the wheel has it
    wanted, copied = ["portpatrol"], {"portpatrol"}
    while wanted:  # the runtime requirements, and theirs (extras and absent ones left out)
        for requirement in importlib.metadata.requires(wanted.pop()) or []:
            name = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            if "extra ==" in requirement or name in copied:
                continue
            copied.add(name)
            try:
                dist = importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            wanted.append(name)
            for file in dist.files or []:
                source = Path(str(dist.locate_file(file)))
                if not str(file).startswith("..") and source.is_file():
                    (site / file).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, site / file)
    script = (package / "__main__.py").read_text().split("\n", 1)[1]
    command = home / "bin" / "portpatrol"
    command.write_text(f"#!{python}\n{script}")
    command.chmod(0o755)
    return command


# --------------------------------------------------------------------------- reading log lines

_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_line(line: str) -> dict[str, str]:
    """One log line as a dict: JSON lines as they are, text lines as logfmt key=value pairs."""
    if line.startswith("{"):
        record = json.loads(line)
        assert isinstance(record, dict)
        return {str(k): str(v) for k, v in record.items()}
    fields: dict[str, str] = {}
    for key, value in _LOGFMT.findall(line):
        fields[key] = json.loads(value) if value.startswith('"') else value
    return fields


def line_time(line: str) -> float:
    """The `time=` of a log line as seconds since the epoch."""
    stamp = parse_line(line)["time"]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
