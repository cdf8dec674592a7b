"""One module per kind of check, and the registry that maps schemes and types to them.

The contract of a kind module (`portpatrol/kinds/<name>.py`), every name required unless marked:

    NAME: str                      # the `type` in a config file and in TARGET_CHECK_TYPE: "postgres"
    SCHEMES: tuple[str, ...]       # URL schemes that select it: ("postgres", "postgresql")
    DEFAULT_PORT: int | None       # the port when the address has none (None: the kind has no port)
    SCHEMA: dict[str, Any] | None  # JSON Schema (draft 2020-12) of the kind's block in a target,
                                   # e.g. `postgres: {query: ..., user: ..., password: ...}`;
                                   # {"type": "object", "additionalProperties": False, ...};
                                   # None: no block (tcp). portpatrol.schema puts it under NAME.
    ENV: dict[str, str]            # environment variable -> key of that block ("POSTGRES_QUERY": "query");
                                   # the env source builds the block from these, every value a string
    SECRET_KEYS: frozenset[str]    # block keys whose values are secrets ("password")

    @dataclass(frozen=True, slots=True)
    class Settings: ...            # everything one attempt needs, typed (tcp and http use a
                                   # model.Record instead: start-up, see docs/performance.md)

    def parse(address: str, block: Mapping[str, Any]) -> Settings
        # The address as written (a URL of one of SCHEMES) and the kind's block (from YAML, already
        # valid against SCHEMA; or from ENV, every value a string). Raises ValueError("what is wrong,
        # and a valid example") for the first problem, or errors.BadValue((key, ...), message) to name the
        # block's key, or an ExceptionGroup of those to report every problem at once (http); the
        # message never holds a secret. Block problems are reported even when the address is wrong.
    def secrets(settings: Settings) -> frozenset[str]
        # Every string that must never reach a line (passwords, tokens).
    def describe(settings: Settings) -> str
        # One line for `portpatrol validate`'s plan, without secrets:
        # "127.0.0.1:5432 database=app login=yes tls=prefer".
    def attempt(settings: Settings, deadline: float, bound: float) -> None
        # One attempt: return when ready, raise errors.NotReady(reason) when not. Never runs past
        # `deadline` (a time.monotonic() value); `bound` is the attempt's length, for wording only.
        # Connect with checks.net.connect, talk through wire.Wire, make TLS with tls.context.
        # Imports its heavy dependencies inside, so a run without this kind never loads them.

Optional hooks (a kind defines them only when it needs them):

    class Settings:
        extra_time: float          # seconds one attempt may take beyond dial_timeout (ICMP's read
                                   # timeout); Target.bound adds it
    DEFS: dict[str, Any]           # `$defs` the SCHEMA refers to (http: header_name, header_value)
    def address(scheme: str, rest: str) -> portpatrol.address.Address
        # The address form of the kind when it is not a URL `scheme://host[:port][/path]` (which the
        # registry parses itself, with DEFAULT_PORT): TCP's bare `db:5432`, ICMP's `icmp://host`.
        # `rest` is the text after `scheme://` (or all of it when no scheme was written).
    def environment(settings: Settings, environ: Mapping[str, str]) -> Settings
        # Settings completed from the process environment (HTTP: the proxy of HTTP_PROXY, NO_PROXY);
        # raises errors.ConfigError whose problems name the variable.
    def check(settings: Settings, dial_timeout: float) -> Check
        # An object whose attempt() makes one attempt, for kinds that keep state from one attempt to
        # the next (a client, a sequence number, a resolved address). Without it the registry calls
        # attempt(settings, now + bound, bound). Raises errors.SetupError when the kind cannot run
        # on this machine at all (ICMP without permission); that is found before the wait starts.
        # Its optional dial() -> Connecting | None hands the runner's poll loop a non-blocking
        # connect instead of a worker (TCP to an IP address): see checks/tcp.py.

Blocks from the environment: parse() gets every value as a string (HTTP_HEADERS as
`Name=value,...`); a kind tells string forms from YAML forms by their type. From a config file,
the loader (sources/file.py) has checked the block against SCHEMA first: parse() gets values of
the types SCHEMA gives (a wrong type is reported before parse() runs), every string with `${VAR}`
replaced. A value that breaks a pattern, bound or enum of SCHEMA still reaches parse(), whose
message (the env source's) is the one shown; the schema's own words only when parse() accepts it.

A kind without an address (`command`): SCHEMES = () and its line `"command": ()`; its NAME is a
`type` all the same (a kind's NAME always selects it). A config target has `command: [...]`
instead of an address; the file source calls parse("", {"argv": words}).

Adding a kind: its module here, one line in KINDS below, tests, docs (docs/design.md).
"""

from __future__ import annotations

import sys
import time

from portpatrol.address import Address, scheme, url_address
from portpatrol.model import Kind, Target
from portpatrol.text import quote, utf8_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

# kind module -> the schemes and `type` values that select it (the module's SCHEMES, checked by a
# test). Modules are imported only when a target of theirs exists: a TCP wait loads no HTTP code.
KINDS: dict[str, tuple[str, ...]] = {
    "tcp": ("tcp",),
    "http": ("http", "https"),
    "icmp": ("icmp",),
    "dns": ("dns",),
    "file": ("file",),
    "unix": ("unix",),
    "command": ("command",),
    "redis": ("redis", "rediss"),
    "nats": ("nats",),
    "memcached": ("memcached",),
    "amqp": ("amqp", "amqps"),
    "grpc": ("grpc", "grpcs"),
    "postgres": ("postgres", "postgresql"),
    "mysql": ("mysql", "mariadb"),
}
_BY_SCHEME = {name: kind for kind, names in KINDS.items() for name in (kind, *names)}
TYPES = tuple(_BY_SCHEME)  # every `type` value, in the registry's order


def module(name: str) -> ModuleType:
    """The kind module that a scheme, a type or a kind's NAME selects."""
    return _imported(f"portpatrol.kinds.{_BY_SCHEME.get(name, name)}")


def of(target: Target) -> ModuleType:
    """The kind module of a target."""
    return _imported(type(target.spec).__module__)


def _imported(name: str) -> ModuleType:
    # __import__, not importlib.import_module: `import importlib` brings warnings, ~1.5 ms of
    # every start-up (docs/performance.md).
    found = sys.modules.get(name)
    if found is None:
        __import__(name)
        found = sys.modules[name]
    return found


def every() -> list[ModuleType]:
    """Every kind module, imported (for the schema and the docs, never for a wait)."""
    return [module(name) for name in KINDS]


def _either(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


TYPE_HINT = f"not a check type (use {_either(TYPES)})"
# Kinds that a `type` selects but no address does (the registry lists their NAME): a command.
NO_ADDRESS = ("command",)
SCHEME_HINT = f"use {_either(tuple(s + '://' for s in TYPES if s not in NO_ADDRESS))}"


def parse_type(text: str) -> str:
    """A `type` (TARGET_CHECK_TYPE) as written, checked and lower-cased."""
    kind = text.strip().lower()
    if kind not in _BY_SCHEME:
        raise ValueError(TYPE_HINT)
    return kind


def parse_address(text: str, check_type: str | None, type_key: str) -> Address:
    """An address in any documented form. `check_type` is an already parsed type, or None;
    `type_key` names where it came from, for the message when the two contradict."""
    text = utf8_text(text, "(e.g. db:5432 or http://api:8080/healthz)").strip()
    written = scheme(text)
    if written is None and text[:4].lower() == "dns:":  # RFC 4501's `dns:NAME`: a scheme without //
        if check_type not in (None, "dns"):
            raise ValueError(f"the scheme dns contradicts {type_key} {quote(check_type)} (drop one)")
        opaque: Address = module("dns").address("dns:", text[4:])
        return opaque
    name = written and written.lower()
    if name is not None and (name not in _BY_SCHEME or name in NO_ADDRESS):
        raise ValueError(f"unknown scheme {quote(name)} ({SCHEME_HINT})")
    if name and check_type and _BY_SCHEME[name] != _BY_SCHEME[check_type]:
        raise ValueError(
            f"the scheme {quote(name)} contradicts {type_key} {quote(check_type)} "
            f"(drop one, or make them agree, e.g. {name}://host:port)"
        )
    name = name or check_type or "tcp"
    kind = module(name)
    rest = text[len(written) + 3 :] if written else text
    if hasattr(kind, "address"):
        found: Address = kind.address(name, rest)
        return found
    example = f"(e.g. {name}://host:{kind.DEFAULT_PORT or 1234})"
    return url_address(Kind(kind.NAME.upper()), f"{name}://{rest}", kind.DEFAULT_PORT, example)


def intended_kind(text: str, check_type: str | None) -> Kind | None:
    """The kind an address that did not parse was meant to have, when that is clear: so the
    variables of that kind can still be checked and every problem reported at once."""
    written = scheme(text.strip())
    name = written and written.lower()
    kinds = {_BY_SCHEME[item] for item in (name, check_type) if item in _BY_SCHEME}
    if len(kinds) != 1 or (name is not None and name not in _BY_SCHEME):
        return None
    return Kind(kinds.pop().upper())


class _Attempts:
    """The check of a kind without a check() hook: each attempt calls its attempt()."""

    __slots__ = ("bound", "kind", "settings")

    def __init__(self, kind: Any, settings: Any, bound: float) -> None:
        self.kind, self.settings, self.bound = kind, settings, bound

    def attempt(self) -> None:
        self.kind.attempt(self.settings, time.monotonic() + self.bound, self.bound)


class _Inverted:
    """The check of an inverted target (`invert: true`): an attempt that fails is a success (it is
    gone), one that succeeds fails with the kind's STILL ("still accepting connections"). Only
    NotReady counts as gone: a bug in a check stays "not ready". No dial(): the attempt runs on a
    worker, so the runner's fast path never sees the uninverted outcome."""

    __slots__ = ("check", "still")

    def __init__(self, check: Any, still: str) -> None:
        self.check, self.still = check, still

    def attempt(self) -> None:
        from portpatrol.errors import NotReady

        try:
            self.check.attempt()
        except NotReady:
            return
        raise NotReady(self.still)


def still(target: Target) -> str:
    """The reason an inverted target is not ready yet: its kind's STILL, or a generic one."""
    return str(getattr(of(target), "STILL", "still there (the check passes)"))


def build(target: Target) -> Any:
    """The check of a target: an object whose attempt() makes one attempt (see the contract).
    Raises SetupError when the kind cannot run on this machine at all."""
    kind = of(target)
    if hasattr(kind, "check"):
        check = kind.check(target.spec, target.timing.dial_timeout)
    else:
        check = _Attempts(kind, target.spec, target.bound)
    return _Inverted(check, still(target)) if target.timing.invert else check
