"""The HTTP client policy both request paths share (checks/plainhttp.py and checks/http.py), so
both give the same verdict and reason for the same answers: which proxy the environment selects
where a redirect leads and what is sent there (next_hop), and which proxy the environment selects
for a URL (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY; kinds/http.py's environment() hook asks).

Only urllib.parse and ipaddress, imported when called: a plain HTTP wait's start-up already has them."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Dropped from a request when a redirect leaves the origin: they were meant for the first server.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "host", "proxy-authorization"})


def next_hop(
    url: str,
    status: int,
    location: str,
    *,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
) -> tuple[str, str, list[tuple[str, str]], bytes | None]:
    """Where a redirect leads and what is sent there, for both paths alike (RFC 9110 15.4):
    303 (and 301/302 after a POST) becomes a GET without body; a redirect that leaves the origin
    (scheme, host or port) drops Authorization, Cookie and Host, meant for the first server; user
    info written in a Location is dropped (credentials a peer chose are never sent)."""
    from urllib.parse import urljoin, urlsplit, urlunsplit

    target = urljoin(url, location)
    if "@" in urlsplit(location).netloc:  # the peer's user info; a relative Location keeps ours
        parts = urlsplit(target)
        target = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")]
    if origin(target) != origin(url):
        headers = [(name, value) for name, value in headers if name.lower() not in CREDENTIAL_HEADERS]
    return target, method, headers, body


def origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def select_proxy(url: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The proxy for `url` by the usual variables (lower case wins over upper case), as
    (variable, proxy URL), or None when none is set or NO_PROXY bypasses the host.
    A proxy without a scheme is an http:// one."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    found = _proxy_variable(environ, f"{parts.scheme}_proxy") or _proxy_variable(environ, "all_proxy")
    if found is None:
        return None
    no_proxy = _proxy_variable(environ, "no_proxy")
    if no_proxy and _bypassed(parts.hostname or "", parts.port, no_proxy[1]):
        return None
    key, proxy = found
    return key, proxy if "://" in proxy else "http://" + proxy


def _proxy_variable(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for key in (name.lower(), name.upper()):
        if environ.get(key, "").strip():
            return key, environ[key].strip()
    return None


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    import ipaddress

    host = host.lower()
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if not entry:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
                continue
            except ValueError:
                pass
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False
