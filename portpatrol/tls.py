"""TLS client contexts: one place for the words every kind uses (ca_file, cert_file, key_file,
skip_tls_verify), so HTTP, gRPC, postgres, redis and amqp trust and identify themselves alike."""

from __future__ import annotations

import ssl

# False for `validate --no-env`: the CA, certificate and key files a config names are mounted where it
# runs, not where it is checked; their paths are then taken as written, and no file is read.
READ_FILES = True


def context(
    *,
    verify: bool = True,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    alpn: tuple[str, ...] = (),
) -> ssl.SSLContext:
    """A client context. With `ca_file`, that bundle is trusted instead of the system store (as curl
    --cacert). Raises ssl.SSLError or OSError when a file is missing, unreadable or does not match:
    a source calls this once at start so that such a file is a configuration error, not a retry."""
    if not READ_FILES:
        ca_file = cert_file = key_file = None
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


_shared: dict[tuple[bool, str | None], ssl.SSLContext] = {}  # one per trust setting, not per attempt


def shared(verify: bool, ca_file: str | None, *, checking: bool = False) -> ssl.SSLContext:
    """A client context kept for every later attempt of the same trust setting (loading a CA file
    costs more than a whole conversation). `checking`: called from a kind's parse(), where a file
    that cannot be used is a configuration error at its key; later it is an attempt's reason."""
    from portpatrol.errors import BadValue, NotReady

    key = (verify, ca_file)
    if key not in _shared:
        try:
            _shared[key] = context(verify=verify, ca_file=ca_file)
        except (ssl.SSLError, OSError) as error:
            if checking:
                raise BadValue(("ca_file",), f"cannot be used: {error} (e.g. a readable PEM file)") from None
            raise NotReady(f"TLS cannot start: {error}") from None
    return _shared[key]
