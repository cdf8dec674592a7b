"""dnsmasq as the test's DNS server: on a free loopback port, as uid 65534, answering only from a
hosts file the test edits (SIGHUP re-reads it) and the records given on its command line.
`--local=/test/` and `--local=/invalid/` make it answer NXDOMAIN for unknown names there instead of
REFUSED (it has no upstream: --no-resolv), so no query ever leaves the machine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.peers import free_port

NOBODY = 65534


class Dnsmasq:
    def __init__(self, records: list[str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pp-dnsmasq-"))
        os.chmod(self.dir, 0o755)
        self.hosts = self.dir / "hosts"
        self.hosts.write_text("")
        os.chmod(self.hosts, 0o644)
        os.chown(self.dir, NOBODY, NOBODY)
        self.port = free_port()
        self.log = self.dir / "log"
        command = [
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "dnsmasq", "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}",
            f"--pid-file={self.dir / 'pid'}", "--local=/test/", "--local=/invalid/",
            "--log-queries", "--log-facility=-", *(records or []),
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        self._wait_up()

    def _wait_up(self) -> None:
        """Until dnsmasq says it read the hosts file (it binds before that)."""
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.log.read_text()}")
            if "read " in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"dnsmasq did not start: {self.log.read_text()}")

    def url(self, name: str, rtype: str = "A") -> str:
        return f"dns://127.0.0.1:{self.port}/{name}?type={rtype}"

    def set_hosts(self, text: str) -> None:
        """New hosts file contents, then SIGHUP; returns once dnsmasq has logged the re-read."""
        reads = self.log.read_text().count("read ")
        self.hosts.write_text(text)
        os.kill(self.process.pid, signal.SIGHUP)
        end = time.monotonic() + 10
        while self.log.read_text().count("read ") <= reads:
            if time.monotonic() > end:
                raise RuntimeError("dnsmasq did not re-read its hosts file")
            time.sleep(0.05)

    def uid(self) -> int:
        return int(Path(f"/proc/{self.process.pid}/status").read_text().split("Uid:")[1].split()[0])

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)
