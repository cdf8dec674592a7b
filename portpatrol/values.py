"""The values every source and kind reads the same way: durations in Go's syntax (`2s`, `500ms`,
`1m30s`), read and written; booleans; counts of successes."""

from __future__ import annotations

DURATION_EXAMPLE = "use a unit, e.g. 5s, 500ms, 1m30s"

_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_MAX_DURATION = 8760 * 3600  # a year, in seconds: far beyond any wait, well inside every timer
_DIGITS = "0123456789"
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def parse_duration(text: str) -> float:
    """Go's duration syntax (`2s`, `500ms`, `1m30s`, `1.5h`) to seconds; must be > 0."""
    pieces = _duration_pieces(text) if len(text) <= 64 else None
    if not pieces:
        raise ValueError(f"not a duration ({DURATION_EXAMPLE})")
    ns = sum(float(number) * _NS[unit] for number, unit in pieces)
    if ns < 1:
        raise ValueError(f"must be greater than 0 ({DURATION_EXAMPLE})")
    if ns / 1e9 > _MAX_DURATION:
        raise ValueError("must be at most 8760h (a year)")
    return ns / 1e9


def _duration_pieces(text: str) -> list[tuple[str, str]] | None:
    """The (number, unit) pieces of `text`, each number `\\d+(\\.\\d*)?|\\.\\d+` in ASCII digits
    (as Go and the schema), or None when `text` is anything else."""
    pieces = []
    i, end = 0, len(text)
    while i < end:
        start = i
        while i < end and text[i] in _DIGITS:
            i += 1
        digits = i > start
        if i < end and text[i] == ".":
            i += 1
            fraction = i
            while i < end and text[i] in _DIGITS:
                i += 1
            digits = digits or i > fraction
        unit = text[i : i + 2] if text[i : i + 2] in _NS else text[i : i + 1]
        if not digits or unit not in _NS:
            return None
        pieces.append((text[start:i], unit))
        i += len(unit)
    return pieces


def format_duration(seconds: float) -> str:
    """Seconds in Go's Duration.String form: `2s`, `500ms`, `1m30s`, `1h0m0s`."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        unit, size = ("ns", 1) if ns < 10**3 else ("µs", 10**3) if ns < 10**6 else ("ms", 10**6)
        return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _decimal(rest, 10**9) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(len(str(size)) - 1, '0').rstrip('0')}"


def parse_threshold(text: str) -> int:
    """A count of consecutive successes: a whole number from 1 to 1000."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 1000):
        raise ValueError("not a whole number from 1 to 1000 (e.g. 3)")
    return int(text)


MAX_BACKOFF_FACTOR = 100.0


def parse_backoff_factor(text: str) -> float:
    """How much each failure stretches the pause: a number from 1 (no backoff) to 100."""
    try:
        factor = float(text) if len(text) <= 32 else 0.0
    except ValueError:
        factor = 0.0
    if not 1.0 <= factor <= MAX_BACKOFF_FACTOR or text.strip() != text:  # NaN fails the comparison
        raise ValueError("not a number from 1 (no backoff) to 100 (e.g. 2 or 1.5)")
    return factor


def parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean (use true or false)")
