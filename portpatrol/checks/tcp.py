"""TCP: resolve, connect, close. Nothing is sent."""

from __future__ import annotations

import time

from portpatrol.checks import net
from portpatrol.model import TcpSpec


class TcpCheck:
    def __init__(self, spec: TcpSpec, dial_timeout: float) -> None:
        self.spec = spec
        self.dial_timeout = dial_timeout

    def attempt(self) -> None:
        deadline = time.monotonic() + self.dial_timeout
        net.connect(self.spec.host, self.spec.port, deadline, self.dial_timeout).close()
