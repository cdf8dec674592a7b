"""Values of a config file checked against the published schema, with messages that name the
file, the line and the JSON path and give an example, every problem at once.

Checker interprets the parts of JSON Schema the published schema uses (type, anyOf, $ref,
properties, required, additionalProperties, propertyNames, items, pattern, minimum, maximum,
enum, minLength, minItems, maxProperties), replaces `${VAR}` references from the environment and
keeps what they put in as secrets. sources/file.py builds the targets on it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

from portpatrol.errors import Problem
from portpatrol.sources.yamlread import SKIP, JsonPath, Map, Seq, json_path, kind_of
from portpatrol.text import mask_secrets, not_utf8, quote, scrub
from portpatrol.values import parse_duration, parse_threshold

T = TypeVar("T")

# `${NAME}`, `${NAME:-default}`, the escape `$${` (a literal `${`), or a malformed `${`.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
# After the last `}` no `${` can close, and matching _REFERENCE there rescans the rest of the text
# from every `${` (quadratic: 80 KB of `${a:-` took 8 s, a 1 MB value minutes). There, this.
_UNCLOSED = re.compile(r"\$\$\{|\$\{")
# Values checked by a pattern (durations, methods, status codes) are short: what the schema's
# patterns check in bounded time.
_MAX_CHECKED = 1024
_MAX_CHECKED_REFERENCES = 16
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# JSON Schema's types, as a message names them.
_TYPE_NAMES = {
    "string": "a string",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


class Text:
    """A string value after `${...}` references were replaced, and what they were replaced by."""

    __slots__ = ("secrets", "value")

    def __init__(self, value: str, secrets: frozenset[str]) -> None:
        self.value, self.secrets = value, secrets


class Block:
    """What checking one kind's block against its schema found, for the kind's parse() and for
    the messages about it. Keys are paths inside the block: ("headers", "Accept")."""

    __slots__ = ("base", "deferred", "interpolated", "secret_keys", "written")

    def __init__(self, base: int, secret_keys: frozenset[str]) -> None:
        self.base = base  # the length of the block's own JSON path
        self.secret_keys = secret_keys
        self.written: dict[JsonPath, str] = {}  # key -> the text as written, before `${...}`
        self.interpolated: dict[JsonPath, frozenset[str]] = {}  # key -> what `${...}` put in
        # (JSON path, the schema's message, the value as written or None): problems that parse()
        # may put better (see Checker.conform)
        self.deferred: list[tuple[JsonPath, str, str | None]] = []

    def shows(self, key: JsonPath) -> bool:
        """Whether a value at `key` may be shown: never one of a secret key (a header value)."""
        return not key or key[0] not in self.secret_keys

    def defer(self, path: JsonPath, message: str, text: str | None = None) -> None:
        self.deferred.append((path, message, text if self.shows(path[self.base :]) else None))


class Checker:
    """Checks values at JSON paths of one document, adding a Problem for each thing wrong."""

    def __init__(
        self,
        where: str,
        root: Any,
        environ: Mapping[str, str],
        problems: list[tuple[int, Problem]],
        schema: dict[str, Any],
        *,
        no_env: bool = False,
    ) -> None:
        """`problems` are those already found in the YAML; values they concern are `SKIP`."""
        self.no_env = no_env
        self.where = where
        self.root = root
        self.environ = environ
        self.problems = problems
        self.paths: list[JsonPath] = []  # where each problem added here is, in the same order
        self.defs: dict[str, Any] = schema["$defs"]
        self.top = schema
        self.target_schema = self.defs["target"]
        self.duration_re = re.compile(self.defs["duration"]["pattern"])

    # Where things are.

    def _line(self, path: JsonPath, key: bool) -> int | None:
        """The line of the value at `path` (or of its key), or of the nearest enclosing one."""
        node: Any = self.root
        line = getattr(node, "line", None)
        for depth, step in enumerate(path, 1):
            if isinstance(node, Map) and isinstance(step, str) and step in node.lines:
                key_line, line = node.lines[step]
                if key and depth == len(path):
                    return key_line
            elif isinstance(node, Seq) and isinstance(step, int) and step < len(node.lines):
                line = node.lines[step]
            else:
                return line
            node = node[step]
        return line

    def _position(self, path: JsonPath) -> list[int]:
        """Where `path` is in the document's order of keys and items."""
        node: Any = self.root
        found: list[int] = []
        for step in path:
            if isinstance(node, Map) and isinstance(step, str) and step in node:
                found.append(list(node).index(step))
            elif isinstance(node, Seq) and isinstance(step, int) and step < len(node):
                found.append(step)
            else:
                break
            node = node[step]
        return found

    def add(self, path: JsonPath, message: str, *, key: bool = False, value: str | None = None) -> None:
        """A problem at `path`; `value` (the text as written, never an interpolated value) is quoted."""
        line = self._line(path, key)
        where = self.where if line is None else f"{self.where}:{line}"
        shown = json_path(path) if value is None else f"{json_path(path)}={quote(mask_secrets(value))}"
        self.problems.append((line or 0, Problem(where, f"{shown}: {message}")))
        self.paths.append(path)

    # Shapes.

    def mapping(self, path: JsonPath, value: Any, schema: dict[str, Any]) -> Map | None:
        """`value` when it is a mapping with every required key (its unknown keys reported, where
        the schema allows none); else None."""
        if value is SKIP:
            return None
        if not isinstance(value, Map):
            self.add(path, f"expected a mapping, got {kind_of(value)}")
            return None
        if schema.get("additionalProperties", True) is False:
            known = schema.get("properties", {})
            for name in [name for name in value if name not in known]:
                self.add((*path, name), f"unknown key ({_hint(name, known)})", key=True)
        missing = [name for name in schema.get("required", ()) if name not in value]
        for name in missing:
            self.add(path, f"{name} is required")
        return None if missing else value

    def string(self, path: JsonPath, value: Any, *, expected: str = "a string") -> str | None:
        if value is SKIP:
            return None
        if not isinstance(value, str):
            self.add(path, f"expected {expected}, got {kind_of(value)}")
            return None
        return value

    def boolean(self, path: JsonPath, value: Any) -> bool:
        if value is SKIP or isinstance(value, bool):
            return value is True
        shown = f" ({quote(value)})" if isinstance(value, str) else ""
        self.add(path, f"expected true or false, got {kind_of(value)}{shown}")
        return False

    def interpolate(
        self, path: JsonPath, text: str, *, show: bool = True, schema: dict[str, Any] | None = None
    ) -> Text | None:
        """`text` with `${NAME}` and `${NAME:-default}` replaced from the environment. An empty
        variable counts as unset, as everywhere in portpatrol. `schema` is the value's, if known."""
        if "${" not in text:
            return Text(text, frozenset())
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
            return self.stand_in(path, schema) if default is None else default

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
        return Text(value, frozenset(s for s in secrets if s))

    def stand_in(self, path: JsonPath, schema: dict[str, Any] | None) -> str:
        """What an unset variable stands for under `validate --no-env`: a value valid at its key,
        so the rest of the value is still checked (`${HOST}:99999` is still a wrong port): 1s for a
        duration; in a kind's block the schema's first example; else 1. An address shows the
        reference as written, as it always does (as_written)."""
        if schema is None:  # a common key
            key = next((step for step in reversed(path) if isinstance(step, str)), "")
            found = self.target_schema["properties"].get(key) or self.top["properties"].get(key, {})
            return "1s" if self.is_duration(found) else "1"
        if self.is_duration(schema):
            return "1s"
        examples = self.resolve(schema).get("examples", ())
        return next((e for e in examples if isinstance(e, str) and "${" not in e), "1")

    def is_duration(self, schema: dict[str, Any]) -> bool:
        branches = [self.resolve(branch) for branch in schema.get("anyOf", ())] or [self.resolve(schema)]
        return any(branch.get("pattern") == self.duration_re.pattern for branch in branches)

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
        if _too_long(text):
            self.add(path, f"far too long for {expected} ({_LIMITS})", value=text)
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
            self.add(path, hide(str(error), resolved.secrets), value=text)
            return None

    def duration(self, path: JsonPath, value: Any) -> tuple[float, frozenset[str]] | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.add(path, _number_for_duration(value))
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
        if value is SKIP:
            return None
        if isinstance(value, float) and value.is_integer():  # JSON Schema counts 3.0 as an integer
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"not a whole number from 1 to 1000 (e.g. 3), got {kind_of(value)}")
            return None
        try:
            return parse_threshold(str(value))
        except ValueError as error:
            self.add(path, f"{error}, got {value}")
            return None

    # A kind's block, by its schema.

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """`schema` with its `$ref` (to `$defs`) put in place; its own keys win."""
        while "$ref" in schema:
            rest = {key: value for key, value in schema.items() if key != "$ref"}
            schema = self.defs[schema["$ref"].removeprefix("#/$defs/")] | rest
        return schema

    def conform(self, path: JsonPath, value: Any, schema: dict[str, Any], block: Block) -> Any:
        """`value` checked against `schema` (the parts of JSON Schema the published schema uses),
        its strings' `${...}` replaced: what the kind's parse() gets, or SKIP. A wrong shape (a
        type, a missing or unknown key) is reported here, as parse() could not read the value; a
        pattern, bound or enum that a value breaks is deferred: parse() says what is wrong in its
        own words (the env source's), and the schema's words are used only if it does not."""
        found = None if value is SKIP else self.typed(path, value, schema)
        if found is None:
            return SKIP
        schema = found
        if isinstance(value, Map):
            return self.conform_mapping(path, value, schema, block)
        if isinstance(value, Seq):
            return self.conform_list(path, value, schema, block)
        if isinstance(value, str):
            return self.conform_text(path, value, schema, block)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = int(value) if schema.get("type") == "integer" else value
            low, high = schema.get("minimum", value), schema.get("maximum", value)
            if not low <= value <= high:
                block.defer(path, f"{value} is outside {low}-{high}{_example(schema)}")
        return value

    def typed(self, path: JsonPath, value: Any, schema: dict[str, Any]) -> dict[str, Any] | None:
        """The schema that applies to `value` (`$ref` resolved, the branch of an `anyOf` that has
        its type), or None when the value's type is wrong (reported)."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            branches = [self.resolve(branch) for branch in schema["anyOf"]]
            chosen = next((branch for branch in branches if _has_type(value, branch["type"])), None)
            if chosen is None:
                either = " or ".join(_TYPE_NAMES[branch["type"]] for branch in branches)
                self.add(path, f"expected {schema.get('title', either)}, got {kind_of(value)}")
                return None
            schema = {key: item for key, item in schema.items() if key != "anyOf"} | chosen
        if "type" in schema and not _has_type(value, schema["type"]):
            self.add(path, self.mismatch(value, schema))
            return None
        if "enum" in schema and not isinstance(value, str) and value not in schema["enum"]:
            self.add(path, f"expected one of {', '.join(map(str, schema['enum']))}, got {kind_of(value)}")
            return None
        return schema

    def conform_list(self, path: JsonPath, value: Seq, schema: dict[str, Any], block: Block) -> Any:
        items = schema.get("items", {})
        found = [self.conform((*path, index), item, items, block) for index, item in enumerate(value)]
        if len(value) < schema.get("minItems", 0):
            block.defer(path, f"needs at least {schema['minItems']} item(s){_example(schema)}")
        return [item for item in found if item is not SKIP]

    def conform_mapping(self, path: JsonPath, value: Map, schema: dict[str, Any], block: Block) -> Any:
        found = self.mapping(path, value, schema)
        if found is None:
            return SKIP
        properties = schema.get("properties", {})
        others = schema.get("additionalProperties", True)
        names = self.resolve(schema.get("propertyNames", {}))
        result: dict[str, Any] = {}
        for name, item in found.items():
            if name not in properties and others is False:
                continue  # reported by mapping()
            if "pattern" in names and not _compiled(names["pattern"]).search(name):
                # at the mapping: a name in the JSON path would be shown, and it may be a secret
                # (curl's `Authorization: Basic ...` written as a header's name)
                block.defer(path, f"a key that is not valid here{_example(names)}")
            conformed = self.conform((*path, name), item, properties.get(name, others or {}), block)
            if conformed is SKIP and name in schema.get("required", ()):
                return SKIP
            if conformed is not SKIP:
                result[name] = conformed
        if len(found) > schema.get("maxProperties", len(found)):
            block.defer(path, f"has more than {schema['maxProperties']} keys{_example(schema)}")
        return result

    def conform_text(self, path: JsonPath, text: str, schema: dict[str, Any], block: Block) -> Any:
        key = path[block.base :]
        show = block.shows(key)
        pattern = schema.get("pattern")
        if pattern is not None:
            if _too_long(text):
                self.add(path, f"far too long ({_LIMITS})", value=text if show else None)
                return SKIP
            if not _compiled(pattern).search(text):
                block.defer(path, f"not valid here{_example(schema)}", text)
        if len(text) < schema.get("minLength", 0):
            block.defer(path, "must not be empty")
        if "enum" in schema and text not in schema["enum"]:
            block.defer(path, f"not one of {', '.join(schema['enum'])}", text)
        resolved = self.interpolate(path, text, show=show, schema=schema)
        if resolved is None:
            return SKIP
        block.written[key] = text
        if resolved.secrets:
            block.interpolated[key] = resolved.secrets
        return resolved.value

    def mismatch(self, value: Any, schema: dict[str, Any]) -> str:
        """What is wrong with a value of the wrong JSON type."""
        got = kind_of(value)
        wanted = schema["type"]
        if wanted == "boolean":
            shown = f" ({quote(value)})" if isinstance(value, str) else ""
            return f"expected true or false, got {got}{shown}"
        if wanted == "string" and isinstance(value, (int, float)):
            if self.is_duration(schema) and not isinstance(value, bool):
                return _number_for_duration(value)
            return f"{schema.get('title', 'the value')} must be a string, got {got} (quote it)"
        return f"expected {schema.get('title', _TYPE_NAMES[wanted])}, got {got}"


def hide(message: str, secrets: frozenset[str], written: tuple[object, ...] = ()) -> str:
    """A parser's message about an interpolated value: whatever it quotes may be (part of) a
    secret, cut or escaped by `quote`, so every quoted text goes but what the file itself holds
    (`written`: a key, the text as written), and any secret left over."""
    if not secrets:
        return message

    def hidden(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0)[1:-1] in written else '"***"'

    return scrub(_QUOTED.sub(hidden, message), secrets)


def _has_type(value: Any, kind: str) -> bool:
    """Whether a JSON value is of a JSON Schema type (3.0 is an integer, true is not)."""
    if isinstance(value, bool):
        return kind == "boolean"
    if isinstance(value, int | float):
        return kind == "number" or (kind == "integer" and float(value).is_integer())
    if isinstance(value, str):
        return kind == "string"
    if isinstance(value, list):
        return kind == "array"
    if isinstance(value, dict):
        return kind == "object"
    return kind == "null" and value is None


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _example(schema: Mapping[str, Any]) -> str:
    """` (e.g. ...)` from a schema's first example, or nothing."""
    examples = schema.get("examples")
    return f" (e.g. {json.dumps(examples[0], ensure_ascii=False)})" if examples else ""


def _hint(name: str, known: Mapping[str, Any]) -> str:
    import difflib  # ~2 ms, only for a file that has a wrong key

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else "expected one of " + ", ".join(known)


def _too_long(text: str) -> bool:
    r"""Too long to check by a pattern: the schema's `.*\$\{...\}.*` takes time quadratic in the
    length and in the number of `${` (a 100 KB duration of `${a:-` took 10 s), and no value that
    a pattern checks (a duration, a method, status codes) is ever meant to be that long."""
    return len(text) > _MAX_CHECKED or text.count("${") > _MAX_CHECKED_REFERENCES


def _number_for_duration(value: float) -> str:
    return f"{value} is a number, not a duration (use a unit, e.g. {value}s, 500ms, 1m30s)"


_LIMITS = f"at most {_MAX_CHECKED} characters and {_MAX_CHECKED_REFERENCES} ${{...}} references"
