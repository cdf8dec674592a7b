"""The path of a `file:///...` or `unix:///...` address, shared by the file and unix kinds."""

from __future__ import annotations

from portpatrol.address import Address
from portpatrol.text import quote


def path_of(address: str, scheme: str, example: str) -> str:
    """The absolute local path of `scheme:///path` (or `scheme://localhost/path`), percent-decoded
    to bytes and then to a str as the file system names it (os.fsdecode: any byte is allowed)."""
    import os
    from urllib.parse import unquote_to_bytes, urlsplit

    parts = urlsplit(address)
    if parts.scheme.lower() != scheme or not address.partition(":")[2].startswith("//"):
        raise ValueError(f"a {scheme} address is {scheme}:///absolute/path ({example})")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"a {scheme} path is local: {quote(parts.netloc)} is not a host here ({example})")
    if parts.query or parts.fragment:
        raise ValueError(f"a {scheme} address has no ? or #: write them as %3F and %23 ({example})")
    path = os.fsdecode(unquote_to_bytes(parts.path))
    if not path.startswith("/") or "\0" in path:
        raise ValueError(f"a {scheme} path is absolute and holds no NUL ({example})")
    return path


def path_address(scheme: str, rest: str, example: str) -> Address:
    """The registry's Address of `scheme:///path` (the kinds' address() hook): the name is the
    path's last part, the display the address as written."""
    from portpatrol.model import Kind

    text = f"{scheme}://{rest}"
    path = path_of(text, scheme, example)
    return Address(
        Kind(scheme.upper()), path.rstrip("/").rpartition("/")[2] or "/", None, text, text, frozenset()
    )
