"""The path of a `file:///...` or `unix:///...` address, shared by the file and unix kinds."""

from __future__ import annotations

from portpatrol.address import Address, unquote_to_bytes
from portpatrol.text import quote


def path_of(address: str, scheme: str, example: str) -> str:
    """The absolute local path of `scheme:///path` (or `scheme://localhost/path`), percent-decoded
    to bytes and then to a str as the file system names it (os.fsdecode: any byte is allowed).
    Plain str methods, not urllib.parse: it imports re, ~20 ms of a file wait's start-up."""
    import os

    written, colon, rest = address.partition(":")
    if not colon or written.lower() != scheme or not rest.startswith("//"):
        raise ValueError(f"a {scheme} address is {scheme}:///absolute/path ({example})")
    netloc, slash, path = rest[2:].partition("/")
    if netloc.lower() not in ("", "localhost"):
        raise ValueError(f"a {scheme} path is local: {quote(netloc)} is not a host here ({example})")
    if "?" in path or "#" in path:
        raise ValueError(f"a {scheme} address has no ? or #: write them as %3F and %23 ({example})")
    decoded = os.fsdecode(unquote_to_bytes(slash + path))
    if not decoded.startswith("/") or "\0" in decoded:
        raise ValueError(f"a {scheme} path is absolute and holds no NUL ({example})")
    return decoded


def path_address(scheme: str, rest: str, example: str) -> Address:
    """The registry's Address of `scheme:///path` (the kinds' address() hook): the name is the
    path's last part, the display the address as written."""
    from portpatrol.model import Kind

    text = f"{scheme}://{rest}"
    path = path_of(text, scheme, example)
    return Address(
        Kind(scheme.upper()), path.rstrip("/").rpartition("/")[2] or "/", None, text, text, frozenset()
    )
