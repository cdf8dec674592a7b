"""A real RabbitMQ (Debian's rabbitmq-server) for the amqp tests, started and stopped by a fixture.

Everything lives in one temporary directory owned by the `rabbitmq` user the package made (a non-root
user; the server runs as it): node name, data, logs, config, the enabled-plugins file (empty: no
management plugin), HOME with its Erlang cookie. Every port is free and on loopback: AMQP, AMQPS,
Erlang distribution, and an EPMD this module starts itself on a free port, so that it owns the pid and
nothing collides with another node or leaves a daemon behind. The server's own CLI (rabbitmqctl,
rabbitmq-diagnostics), run with the same environment, is the oracle."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from tests.peers import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"
BOOT_BOUND = 90.0  # seconds; it boots in about ten here, more on a loaded CI machine
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"  # the distribution port on loopback only


class RabbitServer:
    """One broker with a plain listener (`port`) and a TLS one (`tls_port`, certificate for
    127.0.0.1 and localhost from a CA made here; its PEM is `ca_file`)."""

    def __init__(self) -> None:
        self.user = pwd.getpwnam("rabbitmq")
        self.dir = Path(tempfile.mkdtemp(prefix="pp-rabbit-"))
        self.port, self.tls_port, self.dist_port, self.epmd_port = (free_port() for _ in range(4))
        self.node = f"pp-{secrets.token_hex(4)}@localhost"
        self.ca_file = self.dir / "ca.pem"
        self.server: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.dir / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": LOOPBACK_DIST,
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_DIST,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    # ----------------------------------------------------------------------- life

    def _prepare(self) -> None:
        import trustme

        for sub in ("home", "mnesia", "log"):
            (self.dir / sub).mkdir()
        cookie = self.dir / "home" / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        issued = ca.issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
        issued.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
            f"ssl_options.cacertfile = {self.ca_file}\n"
            f"ssl_options.certfile = {self.dir / 'cert.pem'}\n"
            f"ssl_options.keyfile = {self.dir / 'key.pem'}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
            "log.file.level = info\n"
        )
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.dir.chmod(0o700)

    def _as_rabbitmq(self) -> list[str]:
        return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups"]

    def start(self) -> None:
        self._prepare()
        self.epmd = subprocess.Popen(
            [*self._as_rabbitmq(), EPMD, "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.epmd_port, self.epmd)  # else erl starts an epmd of its own, detached
        with (self.dir / "server.out").open("wb") as out:
            self.server = subprocess.Popen(
                [*self._as_rabbitmq(), str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env,
                cwd=self.dir,
                start_new_session=True,  # its own process group: beam and its children end together
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + BOOT_BOUND
        while not self.accepting():
            if self.server.poll() is not None:
                raise AssertionError(f"rabbitmq-server ended ({self.server.returncode}): {self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"rabbitmq-server not up within {BOOT_BOUND}s: {self.output()}")
            time.sleep(0.5)

    def accepting(self) -> bool:
        """The server's own word that its AMQP listeners accept connections."""
        return self.diagnostics("check_port_connectivity").returncode == 0

    def stop(self) -> None:
        try:
            if self.server is not None and self.server.poll() is None:
                self.ctl("stop", timeout=60)
                with contextlib.suppress(subprocess.TimeoutExpired):  # the group is ended below
                    self.server.wait(30)
        finally:
            for proc in (self.server, self.epmd):
                if proc is not None:
                    _end_group(proc)
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------- the server's own CLI

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self._cli("rabbitmqctl", args, timeout)

    def diagnostics(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self._cli("rabbitmq-diagnostics", ("-q", *args), timeout)

    def _cli(self, tool: str, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_rabbitmq(), str(RABBIT_BIN / tool), "-n", self.node, *args],
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def leftovers(self) -> list[int]:
        """Pids of any process of this node (beam, a CLI) or of its EPMD still alive."""
        name, port = self.node.partition("@")[0].encode(), str(self.epmd_port).encode()
        found = []
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            except OSError:
                continue  # gone meanwhile
            if any(name in arg for arg in argv) or (argv and argv[0].endswith(b"epmd") and port in argv):
                found.append(int(entry.name))
        return found

    def output(self) -> str:
        path = self.dir / "server.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], bound: float = 10) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} (exit status {proc.poll()})")


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """Ends the process group this module started (its leader's pid is the group id), then reaps."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            break
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; a child of it may linger in the group a moment
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
