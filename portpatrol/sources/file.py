"""Targets from a YAML config file, as described by schemas/portpatrol.schema.json.

The schema is the one description of the format. The loader interprets it (sources/checker.py):
the keys, types, patterns, bounds and enums of the common keys and of every kind's block are read
from it, and nothing of a kind is written here; sources/yamlread.py reads the YAML. Its messages
name the file, line and JSON path and give an example, every problem at once; property tests
prove it accepts nothing jsonschema rejects. jsonschema itself costs ~110 ms to import, several
times a wait's whole start-up, so only `portpatrol validate` runs it (schema_problems).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from portpatrol import kinds
from portpatrol.address import Address
from portpatrol.errors import BadValue, ConfigError, Problem
from portpatrol.model import Kind, Plan, Target, Timing
from portpatrol.schema import schema_text
from portpatrol.sources import Collector, settings, target
from portpatrol.sources.checker import Block, Checker, Text, hide
from portpatrol.sources.yamlread import SKIP, JsonPath, Map, Reader, Seq, json_path, kind_of
from portpatrol.text import cut, mask_secrets, printable
from portpatrol.values import parse_backoff_factor

_MAX_BYTES = 16 * 1024 * 1024


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text())
    return schema


def load(path: str, environ: Mapping[str, str], *, check_schema: bool = False, no_env: bool = False) -> Plan:
    """The plan a config file describes. Raises ConfigError listing every problem.
    `check_schema` adds the published schema's own verdict (see schema_problems); `no_env`
    allows unset variables (see _Compiler.stand_in)."""
    where = printable(path)  # a path may hold any byte but NUL: none of them may break the line
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_BYTES + 1)
    except OSError as error:  # cut: a path too long to open may be any length; masked: it may be
        # an address that an unquoted empty variable made --config's value
        shown = cut(printable(mask_secrets(path)), 200)
        raise ConfigError([Problem(shown, f"cannot read: {error.strerror or error}")]) from None
    if len(data) > _MAX_BYTES:
        raise ConfigError([Problem(where, f"larger than {_MAX_BYTES // 2**20} MiB: not a config file")])
    return loads(data, where, environ, check_schema=check_schema, no_env=no_env)


def loads(
    data: bytes | str,
    where: str,
    environ: Mapping[str, str],
    *,
    check_schema: bool = False,
    no_env: bool = False,
) -> Plan:
    """The plan in a config document; `where` names it in messages."""
    reader = Reader(where)
    root = reader.read(data)
    plan = _Compiler(where, root, environ, reader.problems, _schema(), no_env=no_env).plan()
    # The document already read: a second read of the path would find a pipe (`--config <(...)`,
    # /dev/stdin) empty, or a file changed in between.
    if check_schema and (problems := _schema_verdict(root, where)):
        raise ConfigError(problems)
    return plan


def schema_problems(path: str) -> list[Problem]:
    """The published schema's own verdict on a file that loads, by jsonschema. `portpatrol
    validate` adds it to the loader's checks, which the tests prove accept nothing the schema
    rejects. Messages name the rule, never the value, which may be a secret."""
    where = printable(path)
    with open(path, "rb") as file:
        return _schema_verdict(Reader(where).read(file.read()), where)


def _schema_verdict(root: Any, where: str) -> list[Problem]:
    from jsonschema import Draft202012Validator

    errors = Draft202012Validator(_schema()).iter_errors(root)
    return [
        Problem(
            where,
            f"{json_path(tuple(error.absolute_path))}: rejected by the schema's {error.validator} rule",
        )
        for error in errors
    ]


# The keys of Timing, in a target and in defaults.
TIMING_KEYS = ("interval", "dial_timeout", "success_threshold", "backoff_factor", "max_interval", "invert")


class _Compiler(Checker):
    """Builds the plan: the document, its defaults, each target and its kind's block."""

    def kind_settings(  # noqa: PLR0917 (what target() found so far)
        self,
        path: JsonPath,
        name: str,
        item: Map,
        text: str,
        template: str | None,
        secrets: set[str],
    ) -> Any:
        """The settings of a target of kind `name` from its address (`text`) and its block, checked
        against the schema, then by the kind's parse(), with what the environment adds (the proxy
        of a URL); None after a problem. A kind's BadValue is added at its key in the block. With
        no `template`, the address was wrong and is reported already: only the block is checked."""
        module = kinds.module(name)
        where = (*path, name)
        block = Block(len(where), module.SECRET_KEYS)
        first = len(self.paths)
        values: Any = {}
        if name in item and module.SCHEMA is not None:
            # the kind's own SCHEMA if the shipped file predates it (a checkout before
            # `python -m portpatrol.schema`; tests/unit/test_schema.py fails then)
            schema = self.target_schema["properties"].get(name, module.SCHEMA)
            values = self.conform(where, item[name], schema, block)
        for found in block.interpolated.values():
            secrets |= found
        spec = None
        reported: list[JsonPath] = []
        if values is not SKIP:

            def at(error: BadValue) -> str:
                reported.append(error.key)
                shown = block.written.get(error.key) if error.quoted else None
                inside = [s for key, s in block.interpolated.items() if key[: len(error.key)] == error.key]
                message = hide(str(error), frozenset().union(*inside), (*error.key, shown))
                self.add((*where, *error.key), message, value=shown)
                return ""

            collector = Collector()
            address = (lambda: "address") if template is not None else None
            spec = settings(module, text, values, self.environ, collector, at, address)
            for problem in collector.problems:
                if problem.where == "address":  # the kind's parse() found the address wrong
                    self.add((*path, "address"), problem.message, value=template)  # as written
                elif problem.where:  # the environment's problems (a proxy variable) are the address's
                    self.add((*path, "address"), f"{problem.where}: {problem.message}")
        for place, message, shown in block.deferred:
            key = place[block.base :]
            if not any(key[: len(other)] == other or other[: len(key)] == key for other in reported):
                self.add(place, message, value=shown)
                spec = None
        # A block's problems in the order they are written, wherever they were found.
        if len(self.paths) - first > 1:
            added = sorted(
                zip(self.problems[-(len(self.paths) - first) :], self.paths[first:], strict=True),
                key=lambda pair: (pair[0][0], self._position(pair[1])),
            )
            self.problems[-len(added) :] = [problem for problem, _ in added]
            self.paths[first:] = [place for _, place in added]
        return spec

    # The document.

    def plan(self) -> Plan:
        root = self.root
        if root is None:
            self.add((), "the file is empty: it needs a targets list, e.g. targets: [{address: db:5432}]")
            self._raise()
        document = self.mapping((), root, self.top)
        timeout = None
        timing: dict[str, tuple[Any, frozenset[str]]] = {}
        shared: frozenset[str] = frozenset()
        if document is not None:
            if document.get("timeout") is not None:
                found = self.duration(("timeout",), document["timeout"])
                timeout = found[0] if found else None
            if "defaults" in document:
                defaults = self.mapping(
                    ("defaults",), document["defaults"], self.top["properties"]["defaults"]
                )
                for key, value in (defaults or {}).items():
                    if key not in TIMING_KEYS:
                        continue  # mapping() said it is unknown, with the nearest known key
                    parsed = self.timing_value(("defaults", key), key, value)
                    if parsed is not None:
                        timing[key] = parsed
                        shared |= parsed[1]
        targets: list[Target] = []
        raw = root.get("targets", SKIP) if isinstance(root, Map) else SKIP
        if isinstance(raw, Seq) and not raw:
            self.add(("targets",), "needs at least one target, e.g. targets: [{address: db:5432}]")
        elif raw is not SKIP and not isinstance(raw, Seq):
            self.add(("targets",), f"expected a list of targets, got {kind_of(raw)}")
        elif isinstance(raw, Seq):
            for index, item in enumerate(raw):
                found_target = self.target(("targets", index), item, timing, shared)
                if found_target is not None:
                    targets.append(found_target)
        self._raise()
        return Plan(tuple(targets), timeout)

    def _raise(self) -> None:
        if self.problems:
            raise ConfigError(problem for _, problem in sorted(self.problems, key=lambda p: p[0]))

    def timing_value(self, path: JsonPath, key: str, value: Any) -> tuple[Any, frozenset[str]] | None:
        if key == "success_threshold":
            count = self.threshold(path, value)
            return None if count is None else (count, frozenset())
        if key == "invert":
            flag = self.boolean(path, value)
            return None if value is SKIP or not isinstance(value, bool) else (flag, frozenset())
        if key == "backoff_factor":
            return self.factor(path, value)
        return self.duration(path, value)

    def factor(self, path: JsonPath, value: Any) -> tuple[float, frozenset[str]] | None:
        if value is SKIP:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(path, f"expected a number from 1 to 100 (e.g. 2), got {kind_of(value)}")
            return None
        try:
            return parse_backoff_factor(repr(float(value))), frozenset()
        except ValueError as error:
            self.add(path, f"{error}, got {value}")
            return None

    def target(
        self,
        path: JsonPath,
        raw: Any,
        defaults: dict[str, tuple[Any, frozenset[str]]],
        shared: frozenset[str],
    ) -> Target | None:
        item = self.mapping(path, raw, self.target_schema)
        if item is None:
            return None
        count = len(self.problems)
        name = None
        if "name" in item:
            name = self.string((*path, "name"), item["name"])
            if name == "":
                self.add((*path, "name"), "must not be empty (leave it out to use the host of the address)")
        check_type = None
        if "type" in item:
            check_type = self.string(
                (*path, "type"), item["type"], expected="one of " + ", ".join(kinds.TYPES)
            )
            if check_type is not None and check_type not in kinds.TYPES:
                self.add((*path, "type"), kinds.TYPE_HINT, value=check_type)
                check_type = None
        secrets = set(shared)
        timing = dict(defaults)
        for key in TIMING_KEYS:
            if key in item:
                found = self.timing_value((*path, key), key, item[key])
                if found is not None:
                    timing[key] = found
        for _, found_secrets in timing.values():
            secrets |= found_secrets
        if "command" in item or "address" not in item:
            return self.command_target(path, item, check_type, name, timing, secrets)
        address_path = (*path, "address")
        template = self.string(address_path, item["address"])
        address: Address | None = None
        resolved: Text | None = None
        if template is not None and not template.strip():
            self.add(address_path, "must not be empty (e.g. db:5432 or http://api:8080/healthz)")
        elif template is not None:
            resolved = self.interpolate(address_path, template)
        if resolved is not None:
            secrets |= resolved.secrets
            try:
                address = kinds.parse_address(resolved.value, check_type, "type")
            except ValueError as error:
                self.add(address_path, hide(str(error), resolved.secrets), value=template)
        # The kind's block is checked even when the address is wrong: every problem at once.
        intended = address.kind if address is not None else kinds.intended_kind(template or "", check_type)
        spec = None
        if intended is not None:
            text = resolved.value if resolved is not None else template or ""
            known = template if address is not None else None
            text = address.url or text if address is not None else text
            spec = self.kind_settings(path, intended.value.lower(), item, text, known, secrets)
        if address is None or template is None or resolved is None:
            return None
        for other in kinds.KINDS:  # a block of another kind than the target's
            if other not in item or other == "command" or Kind(other.upper()) is address.kind:
                continue
            self.add(
                (*path, other),
                f"only for {other.upper()} targets, and this one is {address.kind.value} "
                f"(from its address{' and type' if check_type else ''})",
                key=True,
            )
        if len(self.problems) > count or spec is None:
            return None
        if resolved.value != template:
            address = self.as_written(template, check_type, address, resolved.secrets)
        values = {key: found[0] for key, found in timing.items()}
        return target(address, name, Timing(**values), spec, frozenset(secrets))

    def command_target(  # noqa: PLR0917 (what target() found so far)
        self,
        path: JsonPath,
        item: Map,
        check_type: str | None,
        name: str | None,
        timing: dict[str, tuple[Any, frozenset[str]]],
        secrets: set[str],
    ) -> Target | None:
        """A target with `command: [argv...]` instead of an address (kinds/command.py). Each word's
        `${VAR}` is replaced; the values are secrets (scrubbed from the command's output too)."""
        from portpatrol.kinds import command

        where = (*path, "command")
        if "address" in item:
            self.add(where, "a target has an address or a command, not both (drop one)", key=True)
            return None
        if "command" not in item:
            self.add(path, "address is required (or command: [program, args...])")
            return None
        if check_type not in (None, "command"):
            self.add((*path, "type"), "a target with a command is a command target (drop type)")
        for other in kinds.KINDS:
            if other != "command" and other in item:
                self.add(
                    (*path, other), "only for targets of that kind, and this one runs a command", key=True
                )
        raw = item["command"]
        if not isinstance(raw, Seq) or not raw:
            self.add(where, f"expected a list of words, e.g. [pg_isready, -h, db], got {kind_of(raw)}")
            return None
        words: list[str] = []
        for index, word in enumerate(raw):
            text = self.string((*where, index), word)
            if text is not None and not text:
                self.add((*where, index), "must not be empty")
            elif text is not None and (resolved := self.interpolate((*where, index), text)) is not None:
                secrets |= resolved.secrets
                words.append(resolved.value)
        if len(words) != len(raw):
            return None
        try:
            spec = command.parse("", {"argv": words})
        except ValueError as error:
            self.add(where, hide(str(error), frozenset(secrets)))
            return None
        address = command.target_address(words, list(raw), frozenset(secrets))
        values = {key: found[0] for key, found in timing.items()}
        return target(address, name, Timing(**values), spec, frozenset(secrets))

    def as_written(
        self, template: str, check_type: str | None, address: Address, secrets: frozenset[str]
    ) -> Address:
        """The address shown in logs and the inferred name come from the address as written,
        so no interpolated value ends up in them."""
        try:
            written = kinds.parse_address(template, check_type, "type")
        except ValueError:
            written = address.replace(
                display=mask_secrets(template), host=_host_of(template), secrets=frozenset()
            )
        # Masked by position (user info, token-like query values) and free of interpolated values:
        # scrubbing it of them too hid `1` in `:15672` when a password was `1`.
        return address.replace(display=written.display, host=written.host)


def _host_of(template: str) -> str:
    """The host part of an address that does not parse before interpolation
    (`http://${HOST}:8080/x` gives `${HOST}`), or the whole template."""
    rest = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", template)
    hostport = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    if hostport.startswith("["):
        host = hostport[1:].partition("]")[0]
    else:
        host = re.sub(r":(?:[0-9]*|\$\{[^}]*\})$", "", hostport)
    return host or template
