"""PostgreSQL frontend/backend protocol 3.0: the messages a readiness check needs after the startup
message (framing, errors, authentication, one simple query), over a bounded Wire.
Every length is checked before it is trusted; whatever the server says is cut and escaped."""

from __future__ import annotations

import struct

from portpatrol.errors import NotReady
from portpatrol.wire import Wire, peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portpatrol import scram

MAX_MESSAGE = 1 << 20  # a server's message longer than this is not a readiness answer


def message(wire: Wire, what: str) -> tuple[bytes, bytes]:
    """One backend message: its type byte and its body, its length checked before it is read."""
    header = wire.exact(5, what)
    kind, length = header[:1], int.from_bytes(header[1:], "big")
    if length < 4:
        raise NotReady(f"the server sent a message with an invalid length ({length}) during {what}")
    if length - 4 > MAX_MESSAGE:
        raise NotReady(f"the server sent a message of {length} bytes, over the 1 MiB limit, during {what}")
    return kind, wire.exact(length - 4, what)


def send(wire: Wire, kind: bytes, body: bytes) -> None:
    wire.send(kind + struct.pack("!i", len(body) + 4) + body)


def error_fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse: code letter -> text."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(body) and body[at] != 0:
        end = body.find(b"\0", at + 1)
        if end < 0:
            raise NotReady("the server sent a malformed error message")
        fields[chr(body[at])] = body[at + 1 : end].decode("utf-8", "replace")
        at = end + 1
    return fields


def server_error(body: bytes, password: str | None = None) -> str:
    """An ErrorResponse as a reason, in the server's words: message, detail, SQLSTATE."""
    fields = error_fields(body)
    text = fields.get("M", "an error without a message")
    if fields.get("D"):
        text += f" ({fields['D']})"
    if password:  # a hostile server could echo it back
        text = text.replace(password, "***")
    return f"{peer_text(text)} [SQLSTATE {peer_text(fields.get('C', '?'), 5)}]"


def unexpected(kind: bytes, what: str) -> NotReady:
    return NotReady(f"the server sent an unexpected message {peer_text(repr(kind)[1:], 10)} during {what}")


def authenticate(wire: Wire, user: str, password: str | None) -> None:
    """Answers the server's authentication requests until ReadyForQuery."""
    client: scram.Client | None = None  # set while a SCRAM exchange waits for its challenge
    expected: bytes | None = None  # the server signature SCRAM's last message must carry
    authenticated = False
    while True:
        kind, body = message(wire, "login")
        if kind == b"E":
            raise NotReady(server_error(body, password))
        if kind == b"Z":
            if not authenticated:
                raise NotReady("the server said ready for queries before authentication ended")
            return
        if kind in (b"S", b"K", b"N"):  # parameter status, cancel key, notice: not needed here
            continue
        if kind != b"R" or len(body) < 4:
            raise unexpected(kind, "login")
        code, data = int.from_bytes(body[:4], "big"), body[4:]
        if code == 0:
            # A bare "ok" in the middle of SCRAM would let a server skip proving that it knows the
            # password (libpq refuses it too).
            if client is not None or expected is not None:
                raise NotReady("the server ended SCRAM before proving that it knows the password")
            authenticated = True
        elif code in (3, 5, 10) and password is None:
            raise NotReady(
                f"the server asks for a password for user {peer_text(user, 60)} and none was given"
            )
        elif code == 3:  # cleartext
            send(wire, b"p", f"{password}\0".encode())
        elif code == 5 and len(data) == 4:  # md5: "md5" + md5(md5(password + user) + salt)
            import hashlib

            inner = hashlib.md5(f"{password}{user}".encode()).hexdigest()  # noqa: S324 (the protocol's)
            send(wire, b"p", f"md5{hashlib.md5(inner.encode() + data).hexdigest()}\0".encode())  # noqa: S324
        elif code == 10 and client is None and expected is None:
            client = _scram_start(wire, data, password or "")
        elif code == 11 and client is not None:
            expected = _scram_answer(wire, client, data)
            client = None
        elif code == 12 and expected is not None:
            _scram_check(data, expected)
            expected = None
        elif code in (10, 11, 12):
            raise NotReady(f"the server sent a SASL message out of order ({code})")
        else:
            raise NotReady(f"the server asks for an authentication method portpatrol does not speak ({code})")


def _scram_start(wire: Wire, mechanisms: bytes, password: str) -> scram.Client:
    import base64
    import os

    from portpatrol import scram

    if b"SCRAM-SHA-256" not in mechanisms.split(b"\0"):
        offered = peer_text(mechanisms.replace(b"\0", b" ").strip(), 60)
        raise NotReady(f"the server offers only SASL mechanisms portpatrol does not speak: {offered}")
    client = scram.Client(password, base64.b64encode(os.urandom(18)).decode())
    first = client.first
    send(wire, b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
    return client


def _scram_answer(wire: Wire, client: scram.Client, server_first: bytes) -> bytes:
    from portpatrol import scram

    try:
        final, expected = client.final(server_first, wire.deadline)
    except scram.ScramError as error:
        raise NotReady(peer_text(str(error))) from None
    send(wire, b"p", final)
    return expected


def _scram_check(server_final: bytes, expected: bytes) -> None:
    from portpatrol import scram

    try:
        scram.verify_final(server_final, expected)
    except scram.ScramError as error:
        raise NotReady(peer_text(str(error))) from None


def query(wire: Wire, query: str, password: str | None) -> None:
    """Simple Query; ready when the first value of the first row is true."""
    send(wire, b"Q", query.encode() + b"\0")
    first: bytes | None = None
    rows = 0
    error: str | None = None
    while True:
        kind, body = message(wire, "query")
        if kind == b"D":
            if rows == 0:
                first = first_value(body)
            rows += 1
        elif kind == b"E":
            error = server_error(body, password)
        elif kind == b"Z":
            break
        elif kind not in (b"T", b"C", b"I", b"N", b"S"):
            raise unexpected(kind, "query")
    if error is not None:
        raise NotReady(f"the query failed: {error}")
    if rows == 0:
        raise NotReady("the query returned no rows")
    verdict = falsy(first)
    if verdict:
        raise NotReady(f"the query returned {verdict}")


def first_value(row: bytes) -> bytes | None:
    """The first column of a DataRow (None for NULL)."""
    if len(row) < 2:
        raise NotReady("the server sent a malformed data row")
    if int.from_bytes(row[:2], "big") == 0:
        raise NotReady("the query returned a row without columns")
    if len(row) < 6:
        raise NotReady("the server sent a malformed data row")
    size = int.from_bytes(row[2:6], "big", signed=True)
    if size == -1:
        return None
    if size < 0 or 6 + size > len(row):
        raise NotReady("the server sent a malformed data row")
    return row[6 : 6 + size]


def falsy(value: bytes | None) -> str | None:
    """Why a value is false (NULL, empty, f/false, a number equal to 0), or None when it is true."""
    if value is None:
        return "NULL"
    text = value.decode("utf-8", "replace").strip()
    if not text:
        return "an empty value"
    if text.lower() in ("f", "false"):
        return "false"
    try:
        zero = float(text) == 0
    except ValueError:
        zero = False
    return f"{peer_text(text, 20)} (zero)" if zero else None
