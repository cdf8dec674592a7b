"""Real PostgreSQL 15 servers for the tests, run as `nobody` from the Debian binaries, on a free
loopback port, in a temporary directory, stopped (process group killed) and removed at the end.

`PgServer` drives one cluster's life: initdb (or pg_basebackup from a primary, for a standby), start,
the server's own client (`pg_isready`, `psql`) as the oracle, promote, stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.peers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
NOBODY = 65534
AS_NOBODY = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": "/tmp", "PGCONNECT_TIMEOUT": "5"}

# Who logs in how over TCP; everything else (the unix socket the fixture's psql uses) is trust.
HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all trusted 127.0.0.1/32 trust
host all md5_user 127.0.0.1/32 md5
host all clear_user 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 trust
"""
USERS_SQL = """\
CREATE USER trusted;
CREATE USER scram_user PASSWORD 'scr@m:pa ss/é';
SET password_encryption = 'md5';
CREATE USER md5_user PASSWORD 'md5-secret';
CREATE USER clear_user PASSWORD 'clear-secret';
"""


def _run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, *argv], env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


class PgServer:
    """One cluster in its own temporary directory (owned by nobody), started and stopped at will."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="portpatrol-pg-"))
        os.chown(self.root, NOBODY, NOBODY)
        self.data = self.root / "data"
        self.port = free_port()
        self.settings = dict(settings or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "server.log"

    # ------------------------------------------------------------------ making the cluster

    def initdb(self, hba: str | None = None) -> Self:
        done = _run([str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"])
        assert done.returncode == 0, done.stderr
        if hba is not None:
            (self.data / "pg_hba.conf").write_text(hba)
        return self

    def basebackup_of(self, primary: PgServer) -> Self:
        """A standby of `primary` (pg_basebackup -R writes standby.signal and primary_conninfo)."""
        done = _run(
            [
                str(BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-R",
                "--no-sync",
            ],
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return self

    def write(self, name: str, text: str, mode: int = 0o600) -> Path:
        path = self.root / name
        path.write_text(text)
        os.chown(path, NOBODY, NOBODY)
        path.chmod(mode)
        return path

    # ------------------------------------------------------------------ its life

    def start(self, wait: bool = True) -> Self:
        options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.root)}
        options |= self.settings
        argv = [str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += [word for key, value in options.items() for word in ("-c", f"{key}={value}")]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*AS_NOBODY, *argv], env=ENV, stdout=log, stderr=log, start_new_session=True
            )
        if wait:
            self.wait_for(0)
        return self

    def isready(self) -> int:
        """pg_isready's status: 0 accepting, 1 rejecting (e.g. starting up), 2 no response."""
        argv = [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "5"]
        return _run(argv, timeout=30).returncode

    def wait_for(self, status: int, within: float = 60) -> None:
        until = time.monotonic() + within
        while (now := self.isready()) != status:
            assert self.proc is None or self.proc.poll() is None, f"postgres exited: {self.log_text()}"
            assert time.monotonic() < until, f"pg_isready stayed {now}, not {status}: {self.log_text()}"
            time.sleep(0.1)

    def psql(self, sql: str) -> str:
        argv = [str(BIN / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", "postgres"]
        done = _run([*argv, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def promote(self, within: float = 60) -> None:
        # pg_ctl refuses until the startup process has marked the control file "in archive recovery".
        until = time.monotonic() + within
        while True:
            done = _run([str(BIN / "pg_ctl"), "promote", "-D", str(self.data), "-w", "-t", "60"], timeout=90)
            if done.returncode == 0 or "not in standby mode" not in done.stderr or time.monotonic() > until:
                break
            time.sleep(0.2)
        assert done.returncode == 0, done.stderr + self.log_text()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # fast shutdown: every backend ends
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc is not None:
            # children left in the group (none after a fast shutdown, but never leave any)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
