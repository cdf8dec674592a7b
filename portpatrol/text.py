"""Text safety, the one place for it: masking secrets, escaping what could end or forge a line
(control and invisible characters), and cutting long text. Logs, errors, reports and the peer
text in reasons all go through these."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~2 ms to import; its names are only needed by mypy here
if TYPE_CHECKING:
    from typing import Any

# json.dumps(text, ensure_ascii=False)'s escapes, and more: JSON leaves DEL, the C1 controls (NEL
# among them) and the Unicode line separators raw; some terminals and log collectors take those
# as line breaks or commands, so they are escaped too.
LINE_UNSAFE = (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)  # code points escaped in any line
# Bidirectional overrides and isolates, zero-width characters and the byte order mark: they reorder or
# hide what a line shows (a peer's `\u202e` turns a reason around), so they are escaped too.
LINE_UNSAFE += (*range(0x200B, 0x2010), *range(0x202A, 0x202F), 0x2060, *range(0x2066, 0x206A), 0xFEFF)
_ESCAPES = {c: f"\\u{c:04x}" for c in LINE_UNSAFE}
_ESCAPES |= {ord(c): "\\" + short for c, short in zip('"\\\b\f\n\r\t', '"\\bfnrt', strict=True)}
# The same escapes without those of the quote and the backslash: for text shown unquoted (a path).
_UNQUOTED_ESCAPES = {c: escape for c, escape in _ESCAPES.items() if c not in (ord('"'), ord("\\"))}

MASK = "***"
# Query parameters whose values are hidden in an address shown (`?token=...`).
HIDDEN_QUERY_NAME = r"(?i)token|key|secret|pass|pwd|auth|sig|credential|session|code"
_QUERY_PAIR = r"([?&;]([^=&#;?]*)=)[^&]*"  # a value runs to the next & (an unencoded ; or # of it too)
_SORTED: dict[frozenset[str], tuple[str, ...]] = {}
# Shorter secrets are not looked for in a peer's text: a value such as `1` (X-Debug=1) is too
# likely to be ordinary text there (`HTTP/1.1 401`), and masking it would garble the line.
LONG_SECRET = 6
_TOKEN_PATTERNS: dict[frozenset[str], Any] = {}


def json_string(text: str) -> str:
    """`text` as a JSON string literal, with every character that could end or forge a line escaped."""
    return f'"{text.translate(_ESCAPES)}"'


def printable(text: str) -> str:
    """`text` as json_string escapes it but unquoted: no character in it can break or drive a line."""
    return text.translate(_UNQUOTED_ESCAPES)


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and an ellipsis when it is longer."""
    return text if len(text) <= limit else text[:limit] + "…"


def quote(value: str, limit: int = 80) -> str:
    """A value as it appears in an error line: quoted, escaped, and cut when huge."""
    return json_string(cut(value, limit))


def lower_first(text: str) -> str:
    """`Connection refused` -> `connection refused`; `TLS failed` stays."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def not_utf8(text: str) -> bool:
    """Whether `text` holds a lone surrogate: a byte that was not UTF-8, decoded with surrogateescape."""
    return not text.isascii() and any("\ud800" <= c <= "\udfff" for c in text)


def utf8_text(text: str, example: str) -> str:
    """`text`, unless it holds bytes that are not UTF-8 (lone surrogates, from an environment variable
    or argument): no host name, URL or header value can hold those, nor a name a report can write."""
    if not_utf8(text):
        raise ValueError(f"holds bytes that are not UTF-8 (shown as \\udcXX); write it in UTF-8 {example}")
    return text


def mask_secrets(text: str) -> str:
    """Text that may be an address, as a line may quote it: everything that can be user info
    hidden (from after `scheme://` to the last `@`, or from the start without one: `user:pw@host`,
    `http:/user:pw@host`, a password with a space or a `/`), and the values of token-like query
    parameters. For values that did not even parse; too much hidden beats a password shown."""
    import re

    at = text.rfind("@")
    if at >= 0:
        written = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text)
        start = written.end() if written and written.end() <= at else 0
        text = f"{text[:start]}{MASK}{text[at:]}"
    return re.sub(
        _QUERY_PAIR, lambda m: f"{m[1]}{MASK}" if re.search(HIDDEN_QUERY_NAME, m[2]) else m[0], text
    )


def shown_value(text: str, alphabet: str, limit: int = 24) -> str | None:
    """`text` quoted when it is short and made only of `alphabet` (what a valid value is made of,
    e.g. a duration's digits and units): then it is a typo worth showing. Else None: an option's
    value may be an address or a token that an unquoted empty variable shifted into it."""
    if len(text) <= limit and not text.strip(alphabet):
        return quote(text)
    return None


def mask_tokens(text: str, secrets: frozenset[str]) -> str:
    """Text a peer chose (a reason, a command's output) or a user wrote (an address shown), with
    each secret of at least LONG_SECRET characters masked where it stands as a whole token, in any
    case (a server may quote it lower-cased). A whole token: an end of the secret that is a letter
    or digit must not touch another one (`123456` is masked in `code 123456`, not in `41234567`).
    The fields we write ourselves (time, level, msg...) never go through this."""
    if secrets not in _TOKEN_PATTERNS:
        if len(_TOKEN_PATTERNS) >= 4096:  # one per target: a bound, should there be thousands
            _TOKEN_PATTERNS.clear()
        _TOKEN_PATTERNS[secrets] = _token_pattern(secrets)
    pattern = _TOKEN_PATTERNS[secrets]
    return text if pattern is None else pattern.sub(MASK, text)


def _token_pattern(secrets: frozenset[str]) -> Any:
    """One expression for a target's long secrets, longest first, or None when it has none."""
    long = [secret for secret in _longest_first(secrets) if len(secret) >= LONG_SECRET]
    if not long:
        return None
    import re

    def alternative(secret: str) -> str:
        before = r"(?<![^\W_])" if secret[0].isalnum() else ""  # no letter or digit before it
        after = r"(?![^\W_])" if secret[-1].isalnum() else ""
        return before + re.escape(secret) + after

    return re.compile("|".join(map(alternative, long)), re.IGNORECASE)


def scrub(text: str, secrets: frozenset[str]) -> str:
    """`text` with every one of `secrets` replaced by the mask, wherever it occurs: for messages
    about a value the user wrote (configuration errors), never for a peer's text or a log line
    (mask_tokens)."""
    for secret in _longest_first(secrets):
        text = text.replace(secret, MASK)
    return text


def _longest_first(secrets: frozenset[str]) -> tuple[str, ...]:
    """So a secret containing another is masked whole; sorted once per target, not per field."""
    found = _SORTED.get(secrets)
    if found is None:
        found = _SORTED[secrets] = tuple(sorted(secrets, key=len, reverse=True))
    return found
