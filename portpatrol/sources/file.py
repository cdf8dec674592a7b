"""Targets from a YAML config file, as described by schemas/portpatrol.schema.json.

The schema is the one description of the format: key names, patterns, enums and bounds are read
from it, so the loader accepts nothing the schema rejects (a property test proves it). Validating
10,000 targets with jsonschema takes about a second, so the loader checks the document itself in
one pass, which also gives better messages: every problem at once, with its file, line and JSON path.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from portpatrol import kinds
from portpatrol.address import Address
from portpatrol.errors import BadValue, ConfigError, Problem
from portpatrol.kinds.http import StatusCodes, bad_header_name, parse_method, parse_status_codes
from portpatrol.model import Kind, Plan, Target, Timing
from portpatrol.schema import schema_text
from portpatrol.sources import Collector, settings, target
from portpatrol.text import cut, mask_secrets, not_utf8, printable, quote, scrub
from portpatrol.values import parse_backoff_factor, parse_duration, parse_threshold

T = TypeVar("T")
JsonPath = tuple[str | int, ...]

# `${NAME}`, `${NAME:-default}`, the escape `$${` (a literal `${`), or a malformed `${`.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
# After the last `}` no `${` can close, and matching _REFERENCE there rescans the rest of the text
# from every `${` (quadratic: 80 KB of `${a:-` took 8 s, a 1 MB value minutes). There, this.
_UNCLOSED = re.compile(r"\$\$\{|\$\{")
# Durations, methods and status codes are short: what the schema's patterns check in bounded time.
_MAX_CHECKED = 1024
_MAX_CHECKED_REFERENCES = 16
# Numbers in a config file are ports, counts and status codes: a few digits.
_MAX_NUMBER = 100
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Aliases may repeat parts of a document, but not blow it up (the "billion laughs" attack):
# values reached through aliases may number at most this plus ten per value written.
_ALIAS_ALLOWANCE = 100_000
# A real config is a few levels deep and well under a megabyte per 10,000 targets.
_MAX_DEPTH = 32
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
    reader = _Reader(where)
    root = reader.read(data)
    plan = _Compiler(where, root, environ, reader.problems, no_env=no_env).plan()
    # The document already read: a second read of the path would find a pipe (`--config <(...)`,
    # /dev/stdin) empty, or a file changed in between.
    if check_schema and (problems := _schema_verdict(root, where)):
        raise ConfigError(problems)
    return plan


def schema_problems(path: str) -> list[Problem]:
    """The published schema's own verdict on a file that loads, by jsonschema. `portpatrol
    validate` adds it to the loader's one-pass checks, which the tests prove accept nothing the
    schema rejects; the wait itself skips it (a second pass costs about 1 s per 10,000 targets).
    Messages name the rule, never the value, which may be a secret."""
    where = printable(path)
    return _schema_verdict(_Reader(where).read(Path(path).read_bytes()), where)


def _schema_verdict(root: Any, where: str) -> list[Problem]:
    from jsonschema import Draft202012Validator

    errors = Draft202012Validator(_schema()).iter_errors(root)
    return [
        Problem(
            where,
            f"{_json_path(tuple(error.absolute_path))}: rejected by the schema's {error.validator} rule",
        )
        for error in errors
    ]


# -- YAML to JSON values, keeping line numbers ---------------------------------------------------


class _Map(dict[str, Any]):
    """A mapping that remembers where it and each of its entries were written."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[str, tuple[int, int]] = {}  # key -> (line of the key, line of the value)


class _Seq(list[Any]):
    """A list that remembers where it and each of its items were written."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []


class _Skip:
    """Stands for a value that was already reported as wrong, so it is not reported again."""


_SKIP = _Skip()
_TAG = "tag:yaml.org,2002:"


class _Reader:
    """Builds JSON values from the YAML parser's events: strings, numbers, booleans, null, lists
    and mappings with string keys, nothing else. Working from events rather than composed nodes
    halves the time for a big file; aliases share the value they refer to, so memory stays flat."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[tuple[int, Problem]] = []
        # A frame per open collection: [container, anchor, pending key, line of the key, size,
        # start mark], where size counts the values inside, aliases expanded.
        self.stack: list[list[Any]] = []

    def problem(self, mark: Any, message: str, *, at_path: bool = True) -> None:
        line = mark.line + 1
        if at_path:
            steps: list[str | int] = []
            for container, _, key, *_ in self.stack:
                if isinstance(container, _Seq):
                    steps.append(len(container))
                elif isinstance(key, str):
                    steps.append(key)
            message = f"{_json_path(tuple(steps))}: {message}"
        self.problems.append((line, Problem(f"{self.where}:{line}:{mark.column + 1}", message)))

    def read(self, data: bytes | str) -> Any:
        import yaml

        loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        loader = loader_class(data)
        try:
            root = self._build(yaml, loader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            message = error.problem or error.context or "not valid YAML"
            if error.context and error.context_mark and mark is not error.context_mark:
                message += f" ({error.context} on line {error.context_mark.line + 1})"
            if mark is None:
                raise ConfigError([Problem(self.where, f"YAML syntax: {message}")]) from None
            self.problem(mark, f"YAML syntax: {message}", at_path=False)
            root = _SKIP
        except yaml.reader.ReaderError as error:  # bad encoding, unprintable characters
            problem = f"not a YAML file: {error.reason} (at byte {error.position})"
            raise ConfigError([Problem(self.where, problem)]) from None
        finally:
            loader.dispose()
        return root

    def _build(self, yaml: Any, loader: Any) -> Any:
        stack = self.stack
        anchors: dict[str, tuple[Any, int]] = {}
        root: Any = None  # an empty file
        documents = 0
        written = 0  # values written out in the file
        expanded = 0  # values reached through aliases

        def add(value: Any, mark: Any, size: int, text: str | None = None) -> None:
            nonlocal root
            line = mark.line + 1
            if not stack:
                root = value
                return
            frame = stack[-1]
            frame[4] += size
            container = frame[0]
            if isinstance(container, _Seq):
                container.append(value)
                container.lines.append(line)
            elif frame[2] is None:  # a key
                frame[3] = line
                frame[2] = _SKIP
                if value is _SKIP:
                    pass
                elif not isinstance(value, str):
                    self.problem(
                        mark,
                        "a key must be a string, not a list or mapping"
                        if text is None
                        else f"keys must be strings: quote {quote(text)}",
                    )
                elif value in container.lines:
                    first = container.lines[value][0]
                    self.problem(mark, f"duplicate key {quote(value)} (first on line {first})")
                else:
                    frame[2] = value
            else:
                key = frame[2]
                frame[2] = None
                if key is not _SKIP:
                    container[key] = value
                    container.lines[key] = (frame[3], line)

        # Dispatch on the exact event class, most frequent first: this loop is most of the time
        # spent on a big file.
        scalar, alias = yaml.ScalarEvent, yaml.AliasEvent
        starts = {yaml.MappingStartEvent: "map", yaml.SequenceStartEvent: "seq"}
        ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
        # Plain scalars whose first character starts no implicit type (null, bool, int, float,
        # date...) are strings, like every quoted scalar.
        typed_starts = frozenset(yaml.resolver.Resolver.yaml_implicit_resolvers)
        while True:
            event = loader.get_event()
            kind = event.__class__
            if kind is scalar:
                written += 1
                text = event.value
                if event.tag is None and (not event.implicit[0] or text[:1] not in typed_starts):
                    value = text
                else:
                    value = self._scalar(yaml, event)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                add(value, event.start_mark, 1, text)
            elif kind in starts:
                if len(stack) >= _MAX_DEPTH:  # stop before the parser's cost grows with depth
                    self.problem(event.start_mark, f"nested more than {_MAX_DEPTH} levels deep")
                    return _SKIP
                written += 1
                line = event.start_mark.line + 1
                container: _Map | _Seq = _Map(line) if kind is yaml.MappingStartEvent else _Seq(line)
                if event.tag not in (None, "!", _TAG + starts[kind]):
                    self._bad_tag(event)
                stack.append([container, event.anchor, None, 0, 1, event.start_mark])
            elif kind in ends:
                container, anchor, _, _, size, start = stack.pop()
                if anchor is not None:
                    anchors[anchor] = (container, size)
                add(container, start, size)
            elif kind is alias:
                written += 1
                found = anchors.get(event.anchor)
                if found is None:
                    message = f"the alias *{event.anchor} refers to no anchor written before it"
                    if any(frame[1] == event.anchor for frame in stack):
                        message = f"the alias *{event.anchor} refers to a value that contains it"
                    self.problem(event.start_mark, message)
                    add(_SKIP, event.start_mark, 1)
                    continue
                value, size = found
                expanded += size
                if expanded > _ALIAS_ALLOWANCE + 10 * written:
                    self.problem(
                        event.start_mark,
                        "aliases expand to too many values (a YAML alias bomb?); write the values out",
                    )
                    return _SKIP
                add(value, event.start_mark, size)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    self.problem(event.start_mark, "a config file holds one YAML document, not several")
                    return _SKIP
            elif event is None or kind is yaml.StreamEndEvent:
                return root

    def _scalar(self, yaml: Any, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = _resolve(yaml, event.value, event.implicit[0])
        if tag in (_TAG + "str", _TAG + "value"):  # `value` is a lone `=`: text in JSON
            return event.value
        if tag == _TAG + "merge":
            self.problem(
                event.start_mark, "merge keys (<<) are not supported: use defaults, or write keys out"
            )
            return _SKIP
        if tag not in (_TAG + "int", _TAG + "float", _TAG + "bool", _TAG + "null"):
            return self._bad_tag(event, tag)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            if len(event.value) > _MAX_NUMBER and tag in (_TAG + "int", _TAG + "float"):
                # No value here needs it, and a huge 0b..., 0x... or 1:2:3... (base 60) made an int
                # that every message then failed to print (ValueError: over 4300 digits), or took
                # quadratic time to build.
                raise ValueError(f"{quote(event.value, 20)} is far too long (e.g. 3)")
            value = yaml.constructor.SafeConstructor().construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            self.problem(event.start_mark, f"not a valid {tag.removeprefix(_TAG)}: {cut(str(error), 200)}")
            return _SKIP
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(event.start_mark, f"{event.value} is not a finite number, which JSON cannot hold")
            return _SKIP
        return value

    def _bad_tag(self, event: Any, tag: str | None = None) -> _Skip:
        tag = tag or event.tag
        shown = "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
        if tag == _TAG + "timestamp":
            message = f"{quote(event.value)} is read as a date; quote it to mean text"
        else:
            message = (
                f"the tag {shown} is not allowed: a config file holds only strings, numbers, booleans, "
                "null, lists and mappings"
            )
        self.problem(event.start_mark, message)
        return _SKIP


def _resolve(yaml: Any, value: str, plain: bool) -> str:
    """The implicit tag of a scalar, as yaml's Resolver decides it (YAML 1.1: yes, on, 0x1F...)."""
    if not plain:
        return _TAG + "str"
    resolvers = yaml.resolver.Resolver.yaml_implicit_resolvers.get(value[:1] or "", ())
    for tag, regexp in resolvers:
        if regexp.match(value):
            return str(tag)
    return _TAG + "str"


# -- JSON values to targets --------------------------------------------------------------------


def _json_path(path: JsonPath) -> str:
    text = "$"
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif len(step) <= 80 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", step):
            text += f".{step}"
        else:  # escaped as every quoted value (json.dumps leaves NEL and U+2028 raw), and cut
            text += f"[{quote(step)}]"
    return text


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "a mapping"


@dataclasses.dataclass(slots=True)
class _Text:
    """A string value after `${...}` references were replaced, and what they were replaced by."""

    value: str
    secrets: frozenset[str]


@dataclasses.dataclass(slots=True)
class _Http:
    """The http block, checked key by key; the keys are the block's (kinds/http.py SCHEMA)."""

    method: str
    headers: tuple[tuple[str, str], ...]
    expected_status_codes: StatusCodes
    skip_tls_verify: bool
    rest: dict[str, Any]  # the other keys (body, expect, TLS files...), for the kind's parse()


# The keys of Timing, in a target and in defaults.
TIMING_KEYS = ("interval", "dial_timeout", "success_threshold", "backoff_factor", "max_interval", "invert")
_HTTP_REST = (
    "body",
    "expect",
    "max_body",
    "ca_file",
    "cert_file",
    "key_file",
    "follow_redirects",
    "max_redirects",
)


class _Compiler:
    def __init__(
        self,
        where: str,
        root: Any,
        environ: Mapping[str, str],
        problems: list[tuple[int, Problem]],
        *,
        no_env: bool = False,
    ) -> None:
        """`problems` are those already found in the YAML; values they concern are `_SKIP`."""
        self.no_env = no_env
        self.where = where
        self.root = root
        self.environ = environ
        self.problems = problems
        schema = _schema()
        self.defs: dict[str, Any] = schema["$defs"]
        self.top = schema
        self.target_schema = self.defs["target"]
        http = self.target_schema["properties"]["http"]["properties"]
        self.http_schema = http
        self.duration_re = re.compile(self.defs["duration"]["pattern"])
        self.method_re = re.compile(http["method"]["pattern"])
        codes = http["expected_status_codes"]["anyOf"]
        self.codes_re = re.compile(codes[0]["pattern"])
        self.code_bounds = (codes[1]["minimum"], codes[1]["maximum"])
        self.header_name_re = re.compile(self.defs["header_name"]["pattern"])
        self.header_value_re = re.compile(self.defs["header_value"]["pattern"])
        threshold = self.target_schema["properties"]["success_threshold"]
        self.threshold_bounds = (threshold["minimum"], threshold["maximum"])
        self.types: list[str] = self.target_schema["properties"]["type"]["enum"]

    # Where things are.

    def _line(self, path: JsonPath, key: bool) -> int | None:
        """The line of the value at `path` (or of its key), or of the nearest enclosing one."""
        node: Any = self.root
        line = getattr(node, "line", None)
        for depth, step in enumerate(path, 1):
            if isinstance(node, _Map) and isinstance(step, str) and step in node.lines:
                key_line, line = node.lines[step]
                if key and depth == len(path):
                    return key_line
            elif isinstance(node, _Seq) and isinstance(step, int) and step < len(node.lines):
                line = node.lines[step]
            else:
                return line
            node = node[step]
        return line

    def add(self, path: JsonPath, message: str, *, key: bool = False, value: str | None = None) -> None:
        """A problem at `path`; `value` (the text as written, never an interpolated value) is quoted."""
        line = self._line(path, key)
        where = self.where if line is None else f"{self.where}:{line}"
        shown = _json_path(path) if value is None else f"{_json_path(path)}={quote(mask_secrets(value))}"
        self.problems.append((line or 0, Problem(where, f"{shown}: {message}")))

    # Shapes.

    def mapping(self, path: JsonPath, value: Any, schema: dict[str, Any]) -> _Map | None:
        """`value` when it is a mapping with only known keys (unknown ones are reported and
        dropped) and every required key; else None."""
        if value is _SKIP:
            return None
        if not isinstance(value, _Map):
            self.add(path, f"expected a mapping, got {_kind_of(value)}")
            return None
        known = schema["properties"]
        for name in [name for name in value if name not in known]:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "expected one of " + ", ".join(known)
            self.add((*path, name), f"unknown key ({hint})", key=True)
        for name in schema.get("required", ()):
            if name not in value:
                self.add(path, f"{name} is required")
        if any(name not in value for name in schema.get("required", ())):
            return None
        return value

    def string(self, path: JsonPath, value: Any, *, expected: str = "a string") -> str | None:
        if value is _SKIP:
            return None
        if not isinstance(value, str):
            self.add(path, f"expected {expected}, got {_kind_of(value)}")
            return None
        return value

    def boolean(self, path: JsonPath, value: Any) -> bool:
        if value is _SKIP or isinstance(value, bool):
            return value is True
        shown = f" ({quote(value)})" if isinstance(value, str) else ""
        self.add(path, f"expected true or false, got {_kind_of(value)}{shown}")
        return False

    def interpolate(self, path: JsonPath, text: str, *, show: bool = True) -> _Text | None:
        """`text` with `${NAME}` and `${NAME:-default}` replaced from the environment. An empty
        variable counts as unset, as everywhere in portpatrol."""
        if "${" not in text:
            return _Text(text, frozenset())
        secrets: set[str] = set()
        missing: list[str] = []
        undecodable: list[str] = []
        malformed = False

        def replace(match: re.Match[str]) -> str:
            nonlocal malformed
            whole = match.group(0)
            name, default = match.groups() if match.re is _REFERENCE else (None, None)
            if whole == "$${":
                return "${"
            if name is None:
                malformed = True
                return whole
            found = self.environ.get(name)
            if found and not_utf8(found):
                undecodable.append(name)
                return whole
            if found:
                secrets.add(found)
                return found
            if default is None and not self.no_env:
                missing.append(name)
                return whole
            # written in the file, so no secret; or, under --no-env, a value valid at its key
            return self.stand_in(path) if default is None else default

        close = text.rfind("}") + 1  # see _UNCLOSED
        value = _REFERENCE.sub(replace, text[:close]) + _UNCLOSED.sub(replace, text[close:])
        written = text if show else None
        if malformed:
            self.add(
                path,
                "a ${ that is not a variable reference (use ${NAME} or ${NAME:-default}, "
                "or $${ for a literal ${)",
                value=written,
            )
        for name in dict.fromkeys(missing):
            self.add(path, f"${{{name}}} is not set (set {name}, or give a default: ${{{name}:-value}})")
        for name in dict.fromkeys(undecodable):
            self.add(path, f"${{{name}}} holds bytes that are not UTF-8 (set {name} to UTF-8 text)")
        if malformed or missing or undecodable:
            return None
        return _Text(value, frozenset(s for s in secrets if s))

    @staticmethod
    def stand_in(path: JsonPath) -> str:
        """What an unset variable stands for under `validate --no-env`: a value valid at its key,
        so the rest of the value is still checked (`${HOST}:99999` is still a wrong port). An
        address shows the reference as written, as it always does (as_written)."""
        key = next((step for step in reversed(path) if isinstance(step, str)), "")
        if key in ("timeout", "interval", "dial_timeout", "read_timeout"):
            return "1s"
        return {"expected_status_codes": "200", "method": "GET", "headers": "x"}.get(key, "1")

    def checked(
        self,
        path: JsonPath,
        value: Any,
        pattern: re.Pattern[str],
        parser: Callable[[str], T],
        *,
        fallback: str,
        expected: str,
    ) -> tuple[T, frozenset[str]] | None:
        """A string that matches the schema's `pattern`, interpolated, then parsed by the same
        parser the env source uses, so the same key means the same thing everywhere."""
        text = self.string(path, value, expected=expected)
        if text is None:
            return None
        if len(text) > _MAX_CHECKED or text.count("${") > _MAX_CHECKED_REFERENCES:
            # The schema's `.*\$\{...\}.*` takes time quadratic in the length and the number of `${`
            # (a 100 KB duration of `${a:-` took 10 s), and no such value is ever meant.
            limits = f"at most {_MAX_CHECKED} characters and {_MAX_CHECKED_REFERENCES} ${{...}} references"
            self.add(path, f"far too long for {expected} ({limits})", value=text)
            return None
        if not pattern.search(text):
            try:
                parser(text)
                message = fallback
            except ValueError as error:
                message = str(error)
            self.add(path, message, value=text)
            return None
        resolved = self.interpolate(path, text)
        if resolved is None:
            return None
        try:
            return parser(resolved.value), resolved.secrets
        except ValueError as error:
            self.add(path, _hide(str(error), resolved.secrets), value=text)
            return None

    def duration(self, path: JsonPath, value: Any) -> tuple[float, frozenset[str]] | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.add(path, f"{value} is a number, not a duration (use a unit, e.g. {value}s, 500ms, 1m30s)")
            return None
        return self.checked(
            path,
            value,
            self.duration_re,
            parse_duration,
            fallback="not a duration (use a unit, e.g. 5s, 500ms, 1m30s)",
            expected="a duration such as 2s",
        )

    def threshold(self, path: JsonPath, value: Any) -> int | None:
        if value is _SKIP:
            return None
        if isinstance(value, float) and value.is_integer():  # JSON Schema counts 3.0 as an integer
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"not a whole number from 1 to 1000 (e.g. 3), got {_kind_of(value)}")
            return None
        try:
            return parse_threshold(str(value))
        except ValueError as error:
            self.add(path, f"{error}, got {value}")
            return None

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
        raw = root.get("targets", _SKIP) if isinstance(root, _Map) else _SKIP
        if isinstance(raw, _Seq) and not raw:
            self.add(("targets",), "needs at least one target, e.g. targets: [{address: db:5432}]")
        elif raw is not _SKIP and not isinstance(raw, _Seq):
            self.add(("targets",), f"expected a list of targets, got {_kind_of(raw)}")
        elif isinstance(raw, _Seq):
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
            return None if value is _SKIP or not isinstance(value, bool) else (flag, frozenset())
        if key == "backoff_factor":
            return self.factor(path, value)
        return self.duration(path, value)

    def factor(self, path: JsonPath, value: Any) -> tuple[float, frozenset[str]] | None:
        if value is _SKIP:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(path, f"expected a number from 1 to 100 (e.g. 2), got {_kind_of(value)}")
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
                (*path, "type"), item["type"], expected="one of " + ", ".join(self.types)
            )
            if check_type is not None and check_type not in self.types:
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
        resolved: _Text | None = None
        if template is not None and not template.strip():
            self.add(address_path, "must not be empty (e.g. db:5432 or http://api:8080/healthz)")
        elif template is not None:
            resolved = self.interpolate(address_path, template)
        if resolved is not None:
            secrets |= resolved.secrets
            try:
                address = kinds.parse_address(resolved.value, check_type, "type")
            except ValueError as error:
                self.add(address_path, _hide(str(error), resolved.secrets), value=template)
        # The settings blocks are checked even when the address is wrong: every problem at once.
        is_http = "http" in item or (address is not None and address.kind is Kind.HTTP)
        http = self.http_settings(path, item, secrets) if is_http else None
        read_timeout = self.icmp_settings(path, item, secrets)
        if address is None or template is None or resolved is None:
            return None
        for other in kinds.KINDS:  # a block of another kind than the target's
            if other not in item or other == "command":
                continue
            kind = Kind(other.upper())
            if address.kind is not kind:
                self.add(
                    (*path, other),
                    f"only for {kind.value} targets, and this one is {address.kind.value} "
                    f"(from its address{' and type' if check_type else ''})",
                    key=True,
                )
        block: dict[str, Any] | None = {}
        own = address.kind.value.lower()
        if address.kind is Kind.HTTP and http is not None:
            block = {field.name: getattr(http, field.name) for field in dataclasses.fields(http)}
            block |= block.pop("rest")
        elif address.kind is Kind.ICMP and read_timeout is not None:
            block = {"read_timeout": read_timeout}
        elif address.kind not in (Kind.HTTP, Kind.ICMP) and own in item:
            block = self.block((*path, own), item[own], secrets)
        if block is None:
            return None
        spec = self.settings(path, address, resolved.value, block, template)
        if len(self.problems) > count or spec is None:
            return None
        if resolved.value != template:
            address = self.as_written(template, check_type, address, resolved.secrets)
        values = {key: found[0] for key, found in timing.items()}
        return target(address, name, Timing(**values), spec, frozenset(secrets))

    def command_target(  # noqa: PLR0917 (what target() found so far)
        self,
        path: JsonPath,
        item: _Map,
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
        if not isinstance(raw, _Seq) or not raw:
            self.add(where, f"expected a list of words, e.g. [pg_isready, -h, db], got {_kind_of(raw)}")
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
            self.add(where, _hide(str(error), frozenset(secrets)))
            return None
        address = command.target_address(words, list(raw), frozenset(secrets))
        values = {key: found[0] for key, found in timing.items()}
        return target(address, name, Timing(**values), spec, frozenset(secrets))

    def block(self, path: JsonPath, raw: Any, secrets: set[str]) -> dict[str, Any] | None:
        """A kind's block, its keys checked against the kind's SCHEMA and `${...}` replaced in its
        strings; the kind's parse() checks the values (a kind's own keys, see kinds/__init__.py)."""
        found = self.mapping(path, raw, self.target_schema["properties"][str(path[-1])])
        if found is None:
            return None
        block: dict[str, Any] = {}
        for key, value in found.items():
            block[key] = value
            if isinstance(value, str):
                text = self.interpolate((*path, key), value)
                if text is None:
                    return None
                secrets |= text.secrets
                block[key] = text.value
        return block

    def settings(
        self, path: JsonPath, address: Address, written: str, block: dict[str, Any], template: str
    ) -> Any:
        """The kind's settings, with what the environment adds (e.g. the proxy for the URL).
        A kind's BadValue is added at its key in the kind's block."""
        collector = Collector()
        name = address.kind.value.lower()

        def where(error: BadValue) -> str:
            key = (*path, name, *error.key)
            self.add(key, str(error), value=_written(block, error.key) if error.quoted else None)
            return ""

        spec = settings(
            kinds.module(name),
            address.url or written,
            block,
            self.environ,
            collector,
            where,
            lambda: "address",
        )
        for problem in collector.problems:
            if problem.where == "address":  # the kind's parse() found the address wrong
                self.add((*path, "address"), problem.message, value=template)  # never the interpolated one
            elif problem.where:  # the environment's problems (a proxy variable) are the address's
                self.add((*path, "address"), f"{problem.where}: {problem.message}")
        return spec

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

    def icmp_settings(self, path: JsonPath, item: _Map, secrets: set[str]) -> float | None:
        """The read timeout of the `icmp` block, if it sets one."""
        schema = self.target_schema["properties"]["icmp"]
        settings = self.mapping((*path, "icmp"), item["icmp"], schema) if "icmp" in item else None
        if settings is not None and "read_timeout" in settings:
            found = self.duration((*path, "icmp", "read_timeout"), settings["read_timeout"])
            if found is not None:
                secrets |= found[1]
                return found[0]
        return None

    def http_settings(self, path: JsonPath, item: _Map, secrets: set[str]) -> _Http | None:
        """The `http` block (or its defaults), or None when it is wrong."""
        http_path = (*path, "http")
        settings = self.mapping(
            http_path, item.get("http", _Map(0)), self.target_schema["properties"]["http"]
        )
        if settings is None:
            return None
        method = "GET"
        if "method" in settings:
            found = self.checked(
                (*http_path, "method"),
                settings["method"],
                self.method_re,
                parse_method,
                fallback="not an HTTP method (e.g. GET, HEAD, POST)",
                expected="an HTTP method such as GET",
            )
            if found is not None:
                method = found[0]
                secrets |= found[1]
        expected = StatusCodes()
        if "expected_status_codes" in settings:
            codes = self.status_codes(
                (*http_path, "expected_status_codes"), settings["expected_status_codes"]
            )
            if codes is not None:
                expected = codes[0]
                secrets |= codes[1]
        allow = self.boolean(
            (*http_path, "allow_duplicate_headers"), settings.get("allow_duplicate_headers", False)
        )
        headers = self.headers((*http_path, "headers"), settings.get("headers", _Map(0)), allow, secrets)
        skip = self.boolean((*http_path, "skip_tls_verify"), settings.get("skip_tls_verify", False))
        rest: dict[str, Any] = {}
        for key in _HTTP_REST:  # values the kind's parse() checks; `${...}` replaced in strings
            if key in settings and settings[key] is not _SKIP:
                value = settings[key]
                if isinstance(value, str):
                    text = self.interpolate((*http_path, key), value)
                    if text is None:
                        continue
                    secrets |= text.secrets
                    value = text.value
                rest[key] = value
        return _Http(method, headers, expected, skip, rest)

    def status_codes(self, path: JsonPath, value: Any) -> tuple[StatusCodes, frozenset[str]] | None:
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = self.code_bounds
            if low <= value <= high:
                return StatusCodes(((value, value),)), frozenset()
            self.add(path, f"{value} is outside {low}-{high} (e.g. 200,301-302,500-502)")
            return None
        return self.checked(
            path,
            value,
            self.codes_re,
            parse_status_codes,
            fallback="not a list of status codes (e.g. 200,301-302,500-502)",
            expected="status codes such as 200 or 200,301-302",
        )

    def headers(
        self, path: JsonPath, value: Any, allow: bool, secrets: set[str]
    ) -> tuple[tuple[str, str], ...]:
        """Header values are never quoted in a message: they may be credentials."""
        pairs: list[tuple[JsonPath, Any, Any]] = []
        if isinstance(value, _Map):
            pairs = [((*path, name), name, item) for name, item in value.items()]
        elif isinstance(value, _Seq):
            item_schema = self.http_schema["headers"]["anyOf"][1]["items"]
            for index, entry in enumerate(value):
                checked = self.mapping((*path, index), entry, item_schema)
                if checked is not None:
                    pairs.append(((*path, index), checked["name"], checked["value"]))
        elif value is not _SKIP:
            self.add(
                path,
                f"expected a mapping of name to value (or a list of name and value), got {_kind_of(value)}",
            )
        headers: list[tuple[str, str]] = []
        seen: set[str] = set()
        for where, name, text in pairs:
            if not isinstance(name, str) or not self.header_name_re.search(name):
                at = where if isinstance(where[-1], int) else path  # the JSON path would show the name
                why = bad_header_name(name) if isinstance(name, str) else f"has {_kind_of(name)} as its name"
                self.add(at, f"the header {why} (e.g. Authorization, X-Request-Id)")
                continue
            if not isinstance(text, str):
                self.add(where, f"a header value must be a string, got {_kind_of(text)} (quote it)")
                continue
            if not self.header_value_re.search(text):
                self.add(where, f"header {quote(name)} has a control character in its value")
                continue
            resolved = self.interpolate(where, text, show=False)
            if resolved is None:
                continue
            if _CONTROL.search(resolved.value):
                self.add(where, f"header {quote(name)} has a control character in its value")
                continue
            if name.lower() in seen and not allow:
                self.add(
                    where,
                    f"header {quote(name)} is given twice (set allow_duplicate_headers: true to send both)",
                )
                continue
            seen.add(name.lower())
            secrets |= resolved.secrets
            headers.append((name, resolved.value.strip()))
        return tuple(headers)


def _written(block: Mapping[str, Any], key: tuple[str | int, ...]) -> str | None:
    """The value at `key` in a block, when it is text (shown beside a message about it)."""
    value: Any = block
    for step in key:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value if isinstance(value, str) else None


def _hide(message: str, secrets: frozenset[str]) -> str:
    """A parser's message about an interpolated value: whatever it quotes may be (part of) a
    secret, cut or escaped by `quote`, so every quoted text goes, and any secret left over."""
    if not secrets:
        return message
    return scrub(_QUOTED.sub('"***"', message), secrets)


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
