"""Turns events into log lines: the original's text format, or JSON lines with the same keys.
Redaction lives here, by position: the fields that can hold a secret (the peer's text in error=,
the address as written) have their target's long secrets masked as whole tokens; the fields we
write (time, level, msg, durations...) are never touched, so a short secret cannot garble them."""

from __future__ import annotations

import os
import time

from portpatrol import __version__
from portpatrol.events import AllReady, Event, Failed, GaveUp, Ready, Tick, Waiting
from portpatrol.model import Target
from portpatrol.text import LINE_UNSAFE, json_string, mask_tokens, printable
from portpatrol.values import format_duration

# Every pod's start-up imports this module (docs/performance.md): no re (~5 ms), json (~6 ms with
# the re it imports), functools or collections.abc; str methods and plain dicts do their work.
TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

# A text value is quoted when it holds one of these or whitespace (Unicode's, as re's \s).
_QUOTED = '="' + "".join(map(chr, LINE_UNSAFE))


# Where a secret can be: the peer's words (a server quoting a header back), and the address as
# written (masked by position at parse time; a header value may also stand in it).
_SECRET_FIELDS = frozenset({"error", "target_address"})


class Sink:
    """Bounded writes to a log stream: a reader that stopped reading (a full pipe) must never hold
    up the deadline or the exit. Before each line, poll() waits at most WAIT for room; a line that
    finds none is dropped and counted, and the count is written, as a line `notice` makes, before
    the next line once there is room again. The stream's file description keeps its flags (an
    O_NONBLOCK set on it would be shared with the shell and the COMMAND exec'd after the wait).
    Lines go out together, as many as fit in CHUNK per poll() and write(): a thousand refusing
    targets log ~450 lines a second, which took ~900 system calls a second one line at a time
    (strace; ~45 a second together)."""

    WAIT = 0.02  # seconds for room before the first dropped line; none while dropping
    CHUNK = 4096  # PIPE_BUF: a pipe that polls writable takes this much without blocking

    def __init__(self, stream: TextIO, notice: Callable[[int], str]) -> None:
        self.stream = stream
        self.notice = notice
        self.dropped = 0
        self.torn = False  # a line was cut short by a full pipe: the next one starts on its own
        try:
            self.fd: int | None = stream.fileno()
            self.encoding = stream.encoding or "utf-8"
        except (AttributeError, OSError, ValueError):  # io.StringIO in tests, or no descriptor
            self.fd = None

    def write(self, text: str) -> None:
        if self.fd is None:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed log stream must not change the outcome of the wait
            return
        import select

        *whole, rest = text.encode(self.encoding, "backslashreplace").split(b"\n")
        lines = [line + b"\n" for line in whole] + ([rest] if rest else [])
        try:
            self.stream.flush()  # anything Python still holds goes first (nothing, normally)
            poller = select.poll()
            poller.register(self.fd, select.POLLOUT)
            if self.dropped:
                notice = self.notice(self.dropped).encode(self.encoding, "backslashreplace")
                if not self._lines(poller, [notice]):
                    self.dropped += len(lines)
                    return
                self.dropped = 0
            start = 0
            while start < len(lines):
                end, size = start + 1, len(lines[start])  # the lines that fit in one CHUNK, at least one
                while end < len(lines) and size + len(lines[end]) <= self.CHUNK:
                    size += len(lines[end])
                    end += 1
                done = self._lines(poller, lines[start:end])
                if done < end - start:
                    self.dropped += len(lines) - start - done
                    return
                start = end
        except (OSError, ValueError):
            pass  # a reader that has gone (EPIPE) or a closed stream: the line is lost

    def _lines(self, poller: Any, lines: list[bytes]) -> int:
        """Writes `lines` together; returns how many were written whole: all of them, unless the
        stream had no room in time (`torn` then says whether the first one left was begun).
        While lines are being dropped, a full stream is not waited for at all."""
        if self.torn:
            lines[0], self.torn = b"\n" + lines[0], False
        data = b"".join(lines)
        written = 0
        while written < len(data):
            if not poller.poll(0 if self.dropped else int(self.WAIT * 1000)):
                done = 0
                for line in lines:  # the first line not written whole, and how much of it was
                    if written < len(line):
                        break
                    written -= len(line)
                    done += 1
                self.torn = written > 0
                return done
            written += os.write(self.fd, data[written : written + self.CHUNK])  # type: ignore[arg-type]
        return len(lines)


def elapsed(seconds: float) -> str:
    return format_duration(round(seconds, 3))


class LogWriter:
    def __init__(
        self,
        stream: TextIO,
        *,
        json_lines: bool = False,
        extra_fields: bool = False,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.sink = Sink(stream, self._dropped)
        self.json_lines = json_lines
        self.extra_fields = extra_fields
        self.now = now
        self.pending: list[str] = []  # event lines, written together by flush()
        self._second = -1
        self._stamp = ""
        # A target's failure line after its time: the same while the reason stays the same, as it
        # does for a long wait (3.0 → 1.7 µs a line, timeit over 1,000 targets). Target name: (error, text).
        self._failed: dict[str, tuple[str, str]] = {}

    def __call__(self, event: Event) -> None:
        """Formats the event; the line is written by the next flush()."""
        write = self._format
        match event:
            case Waiting(target):
                write("INFO", f"Waiting for {target.name} to become ready...", target)
            case Failed(target, error):
                if self._plain(target):  # most lines of a long wait: formatted directly
                    known = self._failed.get(target.name)
                    if known is None or known[0] != error:
                        msg, why = _text_value(f"{target.name} is not ready ✗"), _text_value(error)
                        known = self._failed[target.name] = (error, f" level=WARN msg={msg} error={why}")
                    self.pending.append(f"time={self._time()}{known[1]}")
                else:
                    write("WARN", f"{target.name} is not ready ✗", target, error=error)
            case Ready(target):
                write("INFO", f"{target.name} {_ready_words(target)} ✓", target)
            case GaveUp(target, error, attempts):
                fields = {"error": error or "no attempt finished", "attempts": str(attempts)}
                write("ERROR", f"{target.name} did not become ready in time ✗", target, **fields)
            case AllReady(count, seconds) if count > 1:  # one target's own ready line ends its output
                write("INFO", f"All {count} targets are ready", elapsed=elapsed(seconds))

    def write(self, level: str, msg: str, target: Target | None = None, **fields: str) -> None:
        """One line, written at once (with any event lines still pending before it)."""
        self._format(level, msg, target, **fields)
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        text, self.pending = "\n".join(self.pending) + "\n", []
        self.sink.write(text)

    def _dropped(self, count: int) -> str:
        """The line that says how many lines a full log stream cost."""
        self._format("WARN", f"{count} log lines dropped (the log stream was full: its reader had stopped)")
        return self.pending.pop() + "\n"

    def _plain(self, target: Target) -> bool:
        """Whether a line about `target` is the text format's basic one: no extra fields, no secrets."""
        return not (self.json_lines or self.extra_fields or target.secrets)

    def _format(self, level: str, msg: str, target: Target | None = None, **fields: str) -> None:
        record = {"time": self._time(), "level": level, "msg": msg}
        if target is not None and self.extra_fields:
            record |= {
                "target_address": target.address,
                "interval": format_duration(target.timing.interval),
                "dial_timeout": format_duration(target.timing.dial_timeout),
                "checker_type": target.kind.value,
                "version": __version__,
            }
        record |= fields
        if target is not None and target.secrets:
            for key in _SECRET_FIELDS.intersection(record):
                record[key] = mask_tokens(record[key], target.secrets)
        if self.json_lines:  # json.dumps(record, ensure_ascii=False)'s line, line-forging characters escaped
            pairs = ", ".join(f"{json_string(key)}: {json_string(value)}" for key, value in record.items())
            line = f"{{{pairs}}}"
        else:
            line = " ".join(f"{key}={_text_value(value)}" for key, value in record.items())
        self.pending.append(line)

    def _time(self) -> str:
        now = self.now()
        second = int(now)
        if second != self._second:  # formatted once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(now * 1000) % 1000:03d}Z"


def _ready_words(target: Target) -> str:
    """An inverted target (invert: true) is ready because what it checks has gone."""
    return "is gone" if target.timing.invert else "is ready"


def _text_value(value: str) -> str:
    text = _texts.get(value)
    if text is None:
        if len(_texts) >= 4096:
            _texts.clear()
        text = _texts[value] = json_string(value) if _needs_quotes(value) else value
    return text


# Values as the text format writes them. The same few (messages, reasons) come back on every
# attempt of a long wait; a thousand waiting targets format each of theirs once.
_texts: dict[str, str] = {}


def _needs_quotes(value: str) -> bool:
    """Whether `value` is empty or holds a space, `=`, `"`, a control or line-forging character."""
    if value.isprintable():  # the usual case, at C speed: no whitespace but " ", no control character
        return not value or " " in value or "=" in value or '"' in value
    return any(c in _QUOTED or c.isspace() for c in value)


class StatusLine:
    """On an interactive terminal: one live line (how many are ready, who is still waited for
    and why, elapsed time) instead of a stream of warnings; outcomes stay as plain lines."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        import os

        self.stream = stream
        self.sink = Sink(stream, lambda count: f"\r\x1b[2K{count} log lines dropped (terminal full)\n")
        self.clock = clock
        self.start = clock()
        try:  # the terminal the line is drawn on, not stdout's (which may be redirected)
            self.width = os.get_terminal_size(stream.fileno()).columns or 80
        except (OSError, ValueError, AttributeError):
            self.width = 80
        self.targets: dict[str, Target] = {}
        self.reasons: dict[str, str] = {}
        self.ready = 0

    def __call__(self, event: Event) -> None:
        match event:
            case Waiting(target):
                self.targets[target.name] = target
                self.reasons[target.name] = "first attempt"
            case Failed(target, error):
                self.reasons[target.name] = mask_tokens(error, target.secrets)
            case Ready(target, _, seconds):
                self.ready += 1
                self.reasons.pop(target.name, None)  # a name seen twice must not cost the COMMAND
                self._print(f"✓ {target.name} {_ready_words(target)} after {elapsed(seconds)}")
            case GaveUp(target, error):
                why = mask_tokens(error or "no attempt finished", target.secrets)
                self._print(f"✗ {target.name} did not become ready in time: {why}")
                return
            case AllReady(count, seconds):
                self._print(f"✓ all {count} ready in {elapsed(seconds)}" if count > 1 else "")
                return
            case Tick():
                pass
        self._render()

    def write(self, level: str, msg: str, target: Target | None = None, **fields: str) -> None:
        self._print(msg)

    def _render(self) -> None:
        took = elapsed(self.clock() - self.start)
        line = f"{self.ready}/{len(self.targets)} ready · {took} · waiting for "
        # Only as many names as fit: joining all of thousands on every event would be quadratic.
        shown, size = [], len(line)
        for name, why in self.reasons.items():
            shown.append(f"{printable(name)} ({printable(why)})")
            size += len(shown[-1]) + 2
            if size >= self.width:
                break
        line += ", ".join(shown)
        if len(line) > self.width - 1:
            line = line[: self.width - 2] + "…"
        self._out(f"\r\x1b[2K{line}")

    def flush(self) -> None:
        """Every redraw is written at once."""

    def _print(self, text: str) -> None:
        """A line of its own; no character in it can break the line or drive the terminal."""
        self._out("\r\x1b[2K" + (printable(text) + "\n" if text else ""))

    def _out(self, text: str) -> None:
        self.sink.write(text)
