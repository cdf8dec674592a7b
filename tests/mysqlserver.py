"""A real MariaDB for the tests: the Debian server, as `nobody`, on a free loopback port, in a temporary
directory, stopped at the end (its whole process group). `mariadb-install-db` takes seconds, so one
data directory is made per session and each server starts on a copy of it.

The template has no anonymous accounts (they would shadow `app@%` from localhost) and two accounts:
`app` (mysql_native_password, a password with URL-special characters) and `root` on the socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.peers import free_port

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
APP_USER = "app"
APP_PASSWORD = "S3cret p@ss:/?#%"  # every character an address must percent-encode


def _own(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, 65534, 65534)


def make_dir(prefix: str) -> Path:
    """A directory `nobody` owns (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    os.chown(path, 65534, 65534)
    return path


class MariaDB:
    """One server on a copy of `template`. Not started until `start()`; `stop()` is idempotent."""

    def __init__(self, template: Path, args: tuple[str, ...] = ()) -> None:
        self.dir = make_dir("ppmaria-")
        shutil.copytree(template, self.dir / "data", symlinks=True)
        _own(self.dir / "data")
        self.port = free_port()
        self.socket = self.dir / "s.sock"
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        log = (self.dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                *NOBODY,
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.socket}",
                "--user=nobody",
                f"--pid-file={self.dir / 'mariadb.pid'}",
                "--skip-log-bin",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole at the end
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, within: float = 60) -> None:
        end = time.monotonic() + within
        while time.monotonic() < end:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.log()[-2000:]}")
            if self.admin_ping_socket().returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"mariadbd not ready in {within}s: {self.log()[-2000:]}")

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")

    def admin_ping_socket(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot", "ping"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def admin_ping(self) -> subprocess.CompletedProcess[str]:
        """The oracle over TCP, as a user would run it: 0 alive; 1 with the server's error."""
        return subprocess.run(
            [
                "mariadb-admin",
                "--no-defaults",
                "-h127.0.0.1",
                f"-P{self.port}",
                "--connect-timeout=5",
                "ping",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def sql(self, statements: str) -> str:
        """Statements run as root on the socket, with the server's own client."""
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statements],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb: {done.stderr}")
        return done.stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def install_template() -> Path:
    """A data directory with the accounts above, made once by starting a server on it."""
    work = make_dir("ppmaria-template-")
    subprocess.run(
        [
            *NOBODY,
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={work / 'data'}",
            "--user=nobody",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    server = MariaDB(work / "data")
    try:
        server.start()
        server.sql(
            "DELETE FROM mysql.global_priv WHERE User='';"
            "DELETE FROM mysql.global_priv WHERE User='root' AND Host NOT IN ('localhost','127.0.0.1','::1');"
            "FLUSH PRIVILEGES;"
            f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}';"
            f"GRANT SELECT ON *.* TO '{APP_USER}'@'%';"
            "CREATE DATABASE appdb;"
        )
        server.stop()
        shutil.copytree(server.dir / "data", work / "template", symlinks=True)
    finally:
        server.close()
    return work / "template"
