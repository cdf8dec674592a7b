"""Issue 11.5b: a name lookup whose helper thread cannot start (the machine refuses threads) is a
failed attempt with a reason, and the next attempt looks the name up again."""

from __future__ import annotations

import _thread
import time
from types import SimpleNamespace

import pytest

from portpatrol.checks import net
from portpatrol.errors import NotReady


def test_a_lookup_thread_that_cannot_start_is_undone_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(function: object, args: object) -> int:
        raise RuntimeError("can't start new thread")  # what _thread says when clone() fails (EAGAIN)

    refusing = SimpleNamespace(start_new_thread=refuse, allocate_lock=_thread.allocate_lock)
    with monkeypatch.context() as patch:
        patch.setattr(net, "_thread", refusing)
        with pytest.raises(NotReady, match=r"^lookup localhost: cannot start a thread"):
            net.resolve("localhost", time.monotonic() + 5)
    assert "localhost" not in net._running  # nothing left for the next attempt to wait on
    assert net._slots.qsize() == net.LOOKUP_THREADS  # its slot is back
    # The next attempt, with threads to be had again, looks the name up (in /etc/hosts).
    found = net.resolve("localhost", time.monotonic() + 10)
    assert {info[4][0] for info in found} & {"127.0.0.1", "::1"}
