"""Loopback peers for the benchmark, each run as its own process so it never shares a GIL with
what is measured. Every mode prints one JSON line on stdout once it is listening (the ports),
then serves until SIGTERM.

  servers.py listen N [--accept] [--record FILE]
      N listening TCP sockets on 127.0.0.1-127.0.0.8, ports picked by the kernel. Without
      --accept nothing is accepted: the kernel completes the handshake from the listen queue,
      which is all a TCP readiness check sees. With --record every accept's CLOCK_MONOTONIC
      time is written to FILE on SIGTERM (the clock is shared by every process on the machine).
  servers.py http STATUS
      One http.server.ThreadingHTTPServer on 127.0.0.1 answering every GET/HEAD with STATUS.
  servers.py closed N
      N ports on 127.0.0.1 that nothing listens on (bound, then closed): connects are refused.
  servers.py postgres
      A minimal PostgreSQL server on 127.0.0.1: it answers an SSLRequest with N (no TLS) and a
      startup message with AuthenticationCleartextPassword, which is what a server that is up says
      to a client without credentials (what pg_isready and portpatrol's postgres kind wait for).
"""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

ADDRESSES = [f"127.0.0.{n}" for n in range(1, 9)]


class Stop(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


def listen(count: int, accept: bool, record: str | None) -> None:
    _raise_fd_limit(count + 64)
    socks = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((ADDRESSES[index % len(ADDRESSES)], 0))
        sock.listen(4096)
        sock.setblocking(False)
        socks.append(sock)
    print(json.dumps({"targets": ["{}:{}".format(*s.getsockname()) for s in socks]}), flush=True)
    stamps: list[float] = []
    try:
        if not accept:
            while True:
                time.sleep(3600)
        selector = selectors.DefaultSelector()
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                listener = key.fileobj
                assert isinstance(listener, socket.socket)
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    stamps.append(time.monotonic())
                    conn.close()
    except Stop:
        pass
    finally:
        if record:
            with open(record, "w") as out:
                json.dump(stamps, out)


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


def http(status: int) -> None:
    _Handler.status = status
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}/"}), flush=True)
    with contextlib.suppress(Stop):
        server.serve_forever()


def closed(count: int) -> None:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    print(json.dumps({"targets": [f"127.0.0.1:{port}" for port in ports]}), flush=True)


def _postgres_client(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            while True:
                head = conn.recv(8, socket.MSG_WAITALL)
                if len(head) < 8:
                    return
                length, code = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
                if length > 8:
                    conn.recv(length - 8, socket.MSG_WAITALL)
                if code == 80877103:  # SSLRequest
                    conn.sendall(b"N")
                    continue
                conn.sendall(b"R\0\0\0\x08\0\0\0\x03")  # asks for a password: the server is up
                return


def postgres() -> None:
    import threading

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(json.dumps({"url": f"postgres://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
    with contextlib.suppress(Stop):
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=_postgres_client, args=(conn,), daemon=True).start()


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, _stop)
    mode = argv[0]
    if mode == "listen":
        record = argv[argv.index("--record") + 1] if "--record" in argv else None
        listen(int(argv[1]), "--accept" in argv, record)
    elif mode == "http":
        http(int(argv[1]))
    elif mode == "closed":
        closed(int(argv[1]))
    elif mode == "postgres":
        postgres()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
