"""The MySQL client/server protocol (MySQL 4.1+ and MariaDB), the byte-level part a readiness check
needs: packet framing over a bounded Wire, the handshake greeting, the login packet, the auth-plugin
scrambles (mysql_native_password, caching_sha2_password), OK/ERR/EOF packets, one text query.
Every length is checked before it is trusted; whatever the server says is cut and escaped.
What the settings mean (ssl-mode, when to log in) is portpatrol.kinds.mysql's."""

from __future__ import annotations

import time
from dataclasses import dataclass

from portpatrol.errors import NotReady
from portpatrol.wire import Wire, peer_text

# Capability flags (MySQL client/server protocol, "Capabilities Flags").
LONG_PASSWORD = 0x1
CONNECT_WITH_DB = 0x8
PROTOCOL_41 = 0x200
SSL = 0x800
TRANSACTIONS = 0x2000
SECURE_CONNECTION = 0x8000
PLUGIN_AUTH = 0x80000
PLUGIN_AUTH_LENENC = 0x200000

UTF8MB4 = 45  # utf8mb4_general_ci, known to MySQL 5.5+ and every MariaDB
MAX_PACKET = 1 << 20  # the largest packet read: a greeting is ~100 bytes, a row we look at is small
MAX_AUTH_STEPS = 6  # switches and more-data rounds a login may take before it is called a loop
MAX_COLUMNS = 4096  # MySQL's own limit on the columns of a table
DRAIN_PACKETS = 1000  # rows read past the first so COM_QUIT finds a quiet connection
NATIVE = "mysql_native_password"
SHA2 = "caching_sha2_password"


def native_scramble(password: bytes, nonce: bytes) -> bytes:
    """mysql_native_password: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))."""
    import hashlib

    if not password:
        return b""
    stage1 = hashlib.sha1(password, usedforsecurity=False).digest()
    mask = hashlib.sha1(
        nonce + hashlib.sha1(stage1, usedforsecurity=False).digest(), usedforsecurity=False
    ).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def sha2_scramble(password: bytes, nonce: bytes) -> bytes:
    """caching_sha2_password's fast path: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)."""
    import hashlib

    if not password:
        return b""
    stage1 = hashlib.sha256(password).digest()
    mask = hashlib.sha256(hashlib.sha256(stage1).digest() + nonce).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


SCRAMBLES = {NATIVE: native_scramble, SHA2: sha2_scramble}


class Reader:
    """A packet's payload read front to back; running out is the server's fault, named as such."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def more(self) -> bool:
        return self.pos < len(self.data)

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise NotReady(f"the server sent a packet too short for {self.what}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def nul(self) -> bytes:
        """A NUL-terminated string; a missing NUL ends it at the packet's end (some servers omit it)."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            end = len(self.data)
        chunk = self.data[self.pos : end]
        self.pos = end + 1
        return chunk

    def lenenc(self) -> int:
        first = self.number(1)
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.number(2)
        if first == 0xFD:
            return self.number(3)
        if first == 0xFE:
            return self.number(8)
        raise NotReady(f"the server sent a malformed length in {self.what}")

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


class Conversation:
    """Packets over a Wire: a 3-byte length and a sequence id, then the payload."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.seq = 0  # the id of the next packet sent: one past the last received

    def read(self, what: str) -> bytes:
        header = self.wire.exact(4, what)
        length = int.from_bytes(header[:3], "little")
        if length > MAX_PACKET:
            raise NotReady(f"the server sent a packet of {length} bytes during {what} (limit {MAX_PACKET})")
        # A server's id out of step is tolerated: ours follow whatever it sent.
        self.seq = (header[3] + 1) % 256
        return self.wire.exact(length, what)

    def send(self, payload: bytes, *, new_command: bool = False) -> None:
        if new_command:
            self.seq = 0
        self.wire.send(len(payload).to_bytes(3, "little") + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) % 256


def error_reason(packet: bytes, what: str = "") -> str:
    """An ERR packet in the server's words: `Too many connections (error 1040)`."""
    reader = Reader(packet, "an error")
    reader.take(1)
    code = reader.number(2)
    if reader.data[reader.pos : reader.pos + 1] == b"#":
        reader.take(6)  # '#' and the SQLSTATE: the code already says it
    message = peer_text(reader.rest()) or "no message"
    return f"{what}{message} (error {code})"


@dataclass(frozen=True, slots=True)
class Greeting:
    capabilities: int
    nonce: bytes
    plugin: str


def parse_greeting(packet: bytes) -> Greeting:
    if not packet:
        raise NotReady("the server sent an empty greeting")
    if packet[0] == 0xFF:
        raise NotReady(error_reason(packet))
    if packet[0] != 10:
        raise NotReady(f"not a MySQL greeting: protocol {packet[0]}, expected 10")
    reader = Reader(packet, "the greeting")
    reader.take(1)
    reader.nul()  # server version
    reader.take(4)  # connection id
    nonce = reader.take(8)
    reader.take(1)
    capabilities = reader.number(2)
    plugin = NATIVE
    if reader.more():
        reader.take(3)  # character set, status flags
        capabilities |= reader.number(2) << 16
        data_length = reader.number(1)
        reader.take(10)
        if capabilities & SECURE_CONNECTION:
            part2 = reader.take(max(13, data_length - 8))
            nonce += part2[:-1] if part2.endswith(b"\0") else part2
        if capabilities & PLUGIN_AUTH:
            plugin = reader.nul().decode("ascii", "replace")
    if not capabilities & PROTOCOL_41 or not capabilities & SECURE_CONNECTION:
        raise NotReady("the server speaks the pre-4.1 protocol, which portpatrol does not")
    return Greeting(capabilities, nonce, plugin)


def _login_packet(flags: int, plugin: str, auth: bytes, user: str | None, database: str | None) -> bytes:
    packet = bytearray(flags.to_bytes(4, "little") + MAX_PACKET.to_bytes(4, "little"))
    packet += bytes([UTF8MB4]) + bytes(23)
    packet += (user or "").encode() + b"\0"
    if flags & PLUGIN_AUTH_LENENC:
        packet += _lenenc(len(auth)) + auth
    else:
        packet += bytes([len(auth)]) + auth
    if flags & CONNECT_WITH_DB:
        packet += (database or "").encode() + b"\0"
    if flags & PLUGIN_AUTH:
        packet += plugin.encode() + b"\0"
    return bytes(packet)


def _lenenc(value: int) -> bytes:
    if value < 0xFB:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    return b"\xfd" + value.to_bytes(3, "little")


def login(
    talk: Conversation,
    greeting: Greeting,
    flags: int,
    tls: bool,
    *,
    user: str | None,
    secret: str,
    database: str | None,
) -> None:
    """The login after the greeting (and TLS): returns on OK, raises NotReady with the reason."""
    password = secret.encode()
    # Start with the server's default plugin when we speak it; otherwise the server switches us.
    plugin = greeting.plugin if greeting.plugin in SCRAMBLES else NATIVE
    talk.send(_login_packet(flags, plugin, SCRAMBLES[plugin](password, greeting.nonce), user, database))
    for _ in range(MAX_AUTH_STEPS):
        packet = talk.read("the login")
        head = packet[:1]
        if head == b"\x00":
            return
        if head == b"\xff":
            raise NotReady(error_reason(packet, "login failed: "))
        if head == b"\xfe":
            reader = Reader(packet[1:], "an authentication switch")
            if not reader.more():
                raise NotReady(
                    "the server asks for the pre-4.1 password scheme, which portpatrol does not speak"
                )
            plugin = reader.nul().decode("ascii", "replace")
            if plugin not in SCRAMBLES:
                raise NotReady(
                    f"the server asks for the authentication plugin {peer_text(plugin, 60)}; "
                    f"portpatrol speaks {NATIVE} and {SHA2}"
                )
            nonce = reader.rest()
            talk.send(SCRAMBLES[plugin](password, nonce[:-1] if nonce.endswith(b"\0") else nonce))
        elif head == b"\x01" and plugin == SHA2:
            if packet[1:] == b"\x03":  # fast authentication succeeded: an OK follows
                continue
            if packet[1:] != b"\x04":
                raise NotReady("the server sent an unknown caching_sha2_password step")
            if not tls:
                raise NotReady(
                    "the server asks for caching_sha2_password's full authentication, which needs TLS "
                    "(portpatrol does not do the RSA key exchange): use a server with TLS and ssl-mode "
                    "PREFERRED or stricter, or log in once with the mysql client to fill its cache"
                )
            talk.send(password + b"\0")
        else:
            raise NotReady(
                f"the server sent an unexpected packet (0x{packet[:1].hex() or 'empty'}) during the login"
            )
    raise NotReady(f"the login did not end within {MAX_AUTH_STEPS} steps")


def _is_eof(packet: bytes) -> bool:
    return packet[:1] == b"\xfe" and len(packet) < 9


def query(talk: Conversation, query: str) -> None:
    """One text query after the login: returns when its first value is true (see truthy)."""
    talk.send(b"\x03" + query.encode(), new_command=True)
    first = talk.read("the query")
    if first[:1] == b"\xff":
        raise NotReady(error_reason(first, "the query failed: "))
    if first[:1] == b"\x00":
        raise NotReady("the query returned no result set (use a SELECT)")
    if first[:1] == b"\xfb":
        raise NotReady("the server asked for a local file, which portpatrol never sends")
    columns = Reader(first, "the column count").lenenc()
    if not 0 < columns <= MAX_COLUMNS:
        raise NotReady(f"the server announced {columns} columns")
    for _ in range(columns):
        talk.read("the query's columns")
    if not _is_eof(talk.read("the query's columns")):
        raise NotReady("the server did not end the query's columns")
    row = talk.read("the query's rows")
    if _is_eof(row):
        raise NotReady("the query returned no rows")
    if row[:1] == b"\xff":
        raise NotReady(error_reason(row, "the query failed: "))
    value = None
    if row[:1] != b"\xfb":  # 0xFB is NULL
        reader = Reader(row, "a row")
        value = reader.take(reader.lenenc())
    # Read the other rows so that COM_QUIT finds a quiet connection, but for a second at most: the
    # answer is in, and a server that stops after the first row must not hold it to the deadline.
    talk.wire.deadline = min(talk.wire.deadline, time.monotonic() + 1.0)
    try:
        for _ in range(DRAIN_PACKETS):
            rest = talk.read("the query's rows")
            if _is_eof(rest) or rest[:1] == b"\xff":
                break
    except NotReady:
        pass  # the answer is in; a server slow with the rest does not change it
    if not truthy(value):
        shown = "NULL" if value is None else (peer_text(value, 40) or "an empty value")
        raise NotReady(f"the query returned {shown}")


def truthy(value: bytes | None) -> bool:
    """A first value that means yes: not NULL, empty, a number equal to 0, `false`, or a zero BIT."""
    if value is None:
        return False
    text = value.strip().lower()
    if text in (b"", b"false", b"\0"):
        return False
    try:
        return float(text) != 0
    except ValueError:
        return True
