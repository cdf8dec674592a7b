"""SCRAM-SHA-256 (RFC 5802, RFC 7677), client side, without channel binding, and SASLprep (RFC 4013)
as PostgreSQL applies it to passwords. Pure functions of their inputs, so published vectors test them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

GS2_HEADER = "n,,"  # no channel binding, no authorization identity
# PBKDF2 cannot be interrupted, so the count bounds how far an attempt may run past its deadline:
# 100,000 take ~80 ms on a loaded 2-core machine (1,000,000 took 0.8 s). PostgreSQL's default is 4096.
MAX_ITERATIONS = 100_000


class ScramError(Exception):
    """The server's SCRAM messages are malformed or do not prove that it knows the password."""


def saslprep(text: str) -> str | None:
    """RFC 4013 SASLprep, or None when `text` holds a prohibited or badly bidirectional character."""
    import stringprep
    import unicodedata

    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    prepared = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(check(c) for c in prepared for check in prohibited):
        return None
    if any(stringprep.in_table_d1(c) for c in prepared):
        # RFC 3454 6: a string with RandALCat characters has no LCat ones and starts and ends with one
        if any(stringprep.in_table_d2(c) for c in prepared):
            return None
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return None
    return prepared


def password_bytes(password: str) -> bytes:
    """The password as PostgreSQL hashes it: ASCII as it is, else SASLprep'd, else the raw UTF-8."""
    if password.isascii():
        return password.encode()
    return (saslprep(password) or password).encode()


QUICK_ITERATIONS = 4096  # PostgreSQL's default: ~6 ms of PBKDF2, done inline


def salted_password(password: bytes, salt: bytes, iterations: int, deadline: float | None) -> bytes:
    """PBKDF2-HMAC-SHA-256. It cannot be interrupted, but it releases the GIL: a count above
    PostgreSQL's default runs on a helper thread that the attempt stops waiting for at its
    deadline (the helper finishes on its own, within MAX_ITERATIONS' ~100 ms)."""
    if deadline is None or iterations <= QUICK_ITERATIONS:
        return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    import threading
    import time

    found: list[bytes] = []
    helper = threading.Thread(
        target=lambda: found.append(hashlib.pbkdf2_hmac("sha256", password, salt, iterations)),
        name="portpatrol-scram",
        daemon=True,
    )
    helper.start()
    helper.join(max(0.0, deadline - time.monotonic()))
    if not found:
        raise ScramError(f"the attempt's time ran out during the server's {iterations:,} SCRAM iterations")
    return found[0]


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


@dataclass(frozen=True, slots=True)
class Client:
    """One SCRAM exchange. `nonce` is printable ASCII without commas (random per exchange)."""

    password: str = field(repr=False)
    nonce: str
    user: str = ""  # PostgreSQL takes the user from the startup message and wants "n=" here

    @property
    def first_bare(self) -> str:
        return f"n={self.user},r={self.nonce}"

    @property
    def first(self) -> bytes:
        return (GS2_HEADER + self.first_bare).encode()

    def final(self, server_first: bytes, deadline: float | None = None) -> tuple[bytes, bytes]:
        """The client-final message for `server_first`, and the server signature to expect.
        With a `deadline` (time.monotonic()), PBKDF2 is given only the time left (salted_password)."""
        try:
            text = server_first.decode("ascii")
        except UnicodeDecodeError:
            raise ScramError("the server's first SCRAM message is not ASCII") from None
        attrs = dict(part.partition("=")[::2] for part in text.split(","))
        nonce, salt_text, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("the server's SCRAM nonce does not extend ours")
        try:
            salt = base64.b64decode(salt_text, validate=True)
        except ValueError:
            raise ScramError("the server's SCRAM salt is not base64") from None
        if not (
            iterations.isascii() and iterations.isdigit() and len(iterations) <= 12 and int(iterations) > 0
        ):
            raise ScramError("the server's SCRAM iteration count is not a positive number")
        if int(iterations) > MAX_ITERATIONS:
            raise ScramError(
                f"the server asks for {int(iterations):,} SCRAM iterations, over portpatrol's limit of "
                f"{MAX_ITERATIONS:,} (PostgreSQL's default is 4096)"
            )
        salted = salted_password(password_bytes(self.password), salt, int(iterations), deadline)
        without_proof = f"c={base64.b64encode(GS2_HEADER.encode()).decode()},r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        client_key = _hmac(salted, b"Client Key")
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
        return final, server_signature


def verify_final(server_final: bytes, expected: bytes) -> None:
    """Raises ScramError unless the server's final message carries `expected` (it knows the password)."""
    text = server_final.decode("ascii", "replace")
    if text.startswith("e="):
        raise ScramError(f"the server ended SCRAM with an error: {text[2:]}")
    attrs = dict(part.partition("=")[::2] for part in text.split(","))
    try:
        signature = base64.b64decode(attrs.get("v", ""), validate=True)
    except ValueError:
        raise ScramError("the server's SCRAM signature is not base64") from None
    if not hmac.compare_digest(signature, expected):
        raise ScramError("the server's SCRAM signature is wrong: it does not know the password")
