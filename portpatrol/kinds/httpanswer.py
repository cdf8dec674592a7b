"""What an HTTP answer must hold beyond its status: a body matching a regular expression, JSON
conditions (RFC 9535 paths), header values. Compiled once from the target's `http.expect` block
(bad expressions and paths are configuration errors), judged on every answer. The body is read
once, decoded (content-encoding, then charset), never more than `max_body` decompressed bytes."""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping

from portpatrol.errors import BadValue, NotReady
from portpatrol.jsonpath import Path, compile_path, equal
from portpatrol.model import Record, set_fields
from portpatrol.wire import peer_text

TYPE_CHECKING = False  # typing costs ~2 ms of start-up; only mypy needs these names
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

MAX_BODY = 1024 * 1024  # the default of max_body: health answers are small, a bomb is not
SHOWN = 200  # characters of a body a reason shows
ACCEPT_ENCODING = "gzip, deflate"  # what read_body() can decode, so what a request may accept
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")
_NONE = object()
_LIMIT = 1024**3  # max_body at most 1 GiB: larger is a typo, and memory to match


class Condition(Record):
    """Records, not dataclasses: `import dataclasses` (inspect, ast, typing...) was a third of the
    start-up of a target with a JSON expectation (docs/performance.md)."""

    __slots__ = ("path", "test", "value")
    path: Path
    test: str  # "equals", "matches" or "exists"
    value: Any  # the JSON value, the compiled expression, or the boolean

    def __init__(self, path: Path, test: str, value: Any) -> None:
        set_fields(self, path=path, test=test, value=value)

    def failure(self, document: Any) -> str | None:
        """Why the document does not satisfy this condition, or None when it does."""
        found = self.path.select(document)
        where = self.path.text
        if self.test == "exists":
            if bool(found) == self.value:
                return None
            return (
                f"{where} selects nothing"
                if self.value
                else f"{where} is {_shown(found[0])}, expected absent"
            )
        if not found:
            return f"{where} selects nothing, expected {self.expected}"
        if self.test == "equals":
            wrong = next((value for value in found if not equal(value, self.value)), _NONE)
            return None if wrong is _NONE else f"{where} is {_shown(wrong)}, expected {self.expected}"
        search = self.value.search
        for value in found:
            if search(value if isinstance(value, str) else _text(value)) is None:
                return f"{where} is {_shown(value)}, expected to match {self.expected}"
        return None

    @property
    def expected(self) -> str:
        if self.test == "matches":
            return f"/{peer_text(self.value.pattern)}/"
        return _shown(self.value)


class Expectations(Record):
    __slots__ = ("body", "json", "headers", "max_body")  # noqa: RUF023 (the order of __init__)
    body: re.Pattern[str] | None
    json: tuple[Condition, ...]
    headers: tuple[tuple[str, re.Pattern[str]], ...]
    max_body: int

    def __init__(
        self,
        body: re.Pattern[str] | None = None,
        json: tuple[Condition, ...] = (),
        headers: tuple[tuple[str, re.Pattern[str]], ...] = (),
        max_body: int = MAX_BODY,
    ) -> None:
        set_fields(self, body=body, json=json, headers=headers, max_body=max_body)

    @property
    def reads_body(self) -> bool:
        return self.body is not None or bool(self.json)

    def describe(self) -> str:
        parts = []
        if self.body is not None:
            parts.append(f"body /{peer_text(self.body.pattern, 40)}/")
        if self.json:
            parts.append(f"{len(self.json)} JSON condition{'s' if len(self.json) > 1 else ''}")
        parts.extend(f"header {name}" for name, _ in self.headers)
        return "expects " + ", ".join(parts) if parts else ""

    def judge(self, headers: Sequence[tuple[str, str]], body: bytes, content_type: str | None) -> None:
        """Raises NotReady saying what was seen when the answer does not hold what is expected."""
        for name, pattern in self.headers:
            values = [value for key, value in headers if key.lower() == name.lower()]
            if not values:
                raise NotReady(
                    f"no {peer_text(name)} header, expected to match /{peer_text(pattern.pattern)}/"
                )
            joined = ", ".join(values)
            if pattern.search(joined) is None:
                raise NotReady(
                    f"header {peer_text(name)} is {peer_text(repr_json(joined))}, "
                    f"expected to match /{peer_text(pattern.pattern)}/"
                )
        if self.body is not None:
            text = body.decode(_charset(content_type), "replace")
            if self.body.search(text) is None:
                raise NotReady(
                    f"body does not match /{peer_text(self.body.pattern)}/ "
                    f"(first {SHOWN} characters: {peer_text(text, SHOWN)})"
                )
        if self.json:
            import json

            try:
                document = json.loads(body)
            except RecursionError:
                raise NotReady(f"body is JSON nested deeper than {MAX_DEPTH} levels") from None
            except ValueError:
                raise NotReady(
                    f"body is not JSON (first {SHOWN} characters: {peer_text(body, SHOWN)})"
                ) from None
            if _too_deep(document):
                raise NotReady(f"body is JSON nested deeper than {MAX_DEPTH} levels")
            for condition in self.json:
                failure = condition.failure(document)
                if failure is not None:
                    raise NotReady(failure)


def parse(block: Mapping[str, Any]) -> Expectations:
    """The expectations of an `http` block: its `expect` and `max_body` (valid against the schema),
    or their env forms, every value a string: `expect.body`, `expect.json` (kinds/http.py ENV).
    Raises BadValue naming the key inside the block (("expect", "json", 0, "path")), with an example."""
    expect: Mapping[str, Any] = block.get("expect") or {}
    max_body = MAX_BODY
    if block.get("max_body") not in (None, ""):
        try:
            max_body = parse_size(block["max_body"])
        except ValueError as error:
            raise BadValue(("max_body",), str(error)) from None
    body_key: tuple[str | int, ...] = ("expect", "body")
    pattern = expect.get("body")
    if block.get("expect.body"):
        body_key, pattern = ("expect.body",), block["expect.body"]
    body = None if not pattern else _regex(pattern, body_key, "ok|healthy")
    conditions: Any = expect.get("json") or ()
    json_key: tuple[str | int, ...] = ("expect", "json")
    if block.get("expect.json"):
        json_key, conditions = ("expect.json",), block["expect.json"]
    if isinstance(conditions, str):
        try:
            conditions = conditions_from_text(conditions)
        except ValueError as error:
            raise BadValue(json_key, str(error)) from None
    json = tuple(_condition(item, json_key, index) for index, item in enumerate(conditions))
    headers = tuple(
        (str(name), _regex(value, ("expect", "headers", str(name)), "json"))
        for name, value in (expect.get("headers") or {}).items()
    )
    return Expectations(body, json, headers, max_body)


def conditions_from_text(text: str) -> list[dict[str, Any]]:
    """HTTP_EXPECT_JSON: the list of conditions written as JSON or YAML flow, or the shorthand
    object {"$.status": "UP"} meaning equals."""
    import json

    example = """(e.g. [{"path": "$.status", "equals": "UP"}] or {"$.status": "UP"})"""
    try:
        value = json.loads(text)
    except ValueError:  # YAML flow, then: yaml costs ~10 ms of start-up that JSON need not pay
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(f"not JSON or YAML {example}") from None
    if isinstance(value, dict):
        return [{"path": str(path), "equals": expected} for path, expected in value.items()]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"not a list of conditions {example}")
    return value


def _condition(item: Mapping[str, Any], key: tuple[str | int, ...], index: int) -> Condition:
    """One condition. From a file, a problem is at its key (("expect", "json", 0, "path")); from
    the environment (key ("expect.json",)) the message says which condition."""
    example = '(e.g. {path: "$.status", equals: "UP"})'
    env = len(key) == 1
    at: tuple[str | int, ...] = key if env else (*key, index)

    def problem(where: str, message: str) -> BadValue:
        if env:
            return BadValue(at, f"condition {index + 1}{' ' + where if where else ''}: {message}")
        return BadValue((*at, where) if where else at, message)

    if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
        raise problem("", f"a condition needs a path {example}")
    unknown = sorted(str(name) for name in set(item) - {"path", "equals", "matches", "exists"})
    if unknown:
        raise problem("", f"unknown key {unknown[0]!r} {example}")
    tests = [name for name in ("equals", "matches", "exists") if name in item]
    if len(tests) > 1:
        raise problem("", f"give one of equals, matches or exists {example}")
    try:
        path = compile_path(item["path"])
    except ValueError as error:
        raise problem("path", str(error)) from None
    test = tests[0] if tests else "exists"
    value = item.get(test, True)
    if test == "matches":
        try:
            value = _regex(value, (), "^(pass|warn)$")
        except BadValue as error:
            raise problem("matches", str(error)) from None
    elif test == "exists" and not isinstance(value, bool):
        raise problem("exists", f"true or false {example}")
    return Condition(path, test, value)


def _regex(pattern: object, key: tuple[str | int, ...], example: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise BadValue(key, f"a regular expression as a string (e.g. {example})")
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise BadValue(key, f"not a regular expression: {error} (e.g. {example})") from None


def parse_size(value: object) -> int:
    """1048576, "1MiB", "64 KiB", "2MB" -> bytes."""
    example = "(e.g. 1MiB, 64KiB or 500000)"
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.fullmatch(str(value))
        if match is None or match[2].lower() not in _UNITS:
            raise ValueError(f"max_body: not a size {example}")
        size = int(match[1]) * _UNITS[match[2].lower()]
    if not 1 <= size <= _LIMIT:
        raise ValueError(f"max_body: from 1 byte to 1GiB {example}")
    return size


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def read_body(chunks: Iterable[bytes], content_encoding: str | None, limit: int) -> bytes:
    """The body from its raw chunks (transfer coding already undone), content-decoded, or NotReady
    once more than `limit` bytes would come out: a gzip bomb costs `limit` bytes of memory, no more."""
    too_large = NotReady(f"body larger than {format_size(limit)}")
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise NotReady(
                f"body has content-encoding {peer_text(coding, 40)}, which portpatrol does not decode"
            )
    decoders = [_Decoder(coding) for coding in reversed(codings)]
    out = bytearray()
    raw = 0
    for chunk in chunks:
        raw += len(chunk)
        # Compressed data is never much larger than what it inflates to: a stream twice the limit
        # is too large whatever it holds (and bytes after a gzip member's end are not kept).
        if raw > (2 * limit if decoders else limit) + 65536:
            raise too_large
        data = chunk
        for decoder in decoders:
            data = decoder.feed(data, limit - len(out) + 1)
        out += data
        if len(out) > limit:
            raise too_large
    for decoder in decoders:
        decoder.finish()
    return bytes(out)


class _Decoder:
    """One content coding, undone with a cap on what it may produce at a time."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        # gzip: its header; deflate: zlib-wrapped as the RFC says, or raw as some servers send it.
        self.inflate = zlib.decompressobj(31 if coding != "deflate" else 15)
        self.started = False

    def feed(self, data: bytes, room: int) -> bytes:
        if self.inflate.eof:  # trailing bytes after the stream's end: unused_data would keep them all
            return b""
        try:
            if not self.started and self.coding == "deflate" and data:
                self.started = True
                try:
                    return self.inflate.decompress(data, room)
                except zlib.error:
                    self.inflate = zlib.decompressobj(-15)
            self.started = True
            return self.inflate.decompress(self.inflate.unconsumed_tail + data, room)
        except zlib.error:
            raise NotReady(f"body is not valid {self.coding} data") from None

    def finish(self) -> None:
        if not self.inflate.eof and self.started:
            raise NotReady(f"body ends before its {self.coding} data does")


MAX_DEPTH = 64  # JSON nesting judged: paths and values are walked recursively


def _too_deep(document: Any) -> bool:
    """Whether JSON is nested deeper than MAX_DEPTH (a peer's body: walked level by level)."""
    level: list[Any] = [document]
    for _ in range(MAX_DEPTH + 1):
        level = [
            child
            for value in level
            if isinstance(value, dict | list)
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _charset(content_type: str | None) -> str:
    import codecs

    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip('"')
            try:
                info = codecs.lookup(name)
            except (LookupError, UnicodeError):
                break
            # Only text encodings: `hex`, `rot13`, `zlib` and the like are codecs too, and `idna` or
            # `punycode` fail on arbitrary bytes; a peer naming one gets UTF-8.
            if info._is_text_encoding and info.name not in ("idna", "punycode"):
                return info.name
            break
    return "utf-8"


def _text(value: object) -> str:
    """A JSON value's text, as `matches` sees it: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False)


def repr_json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _shown(value: object) -> str:
    """A value as a reason shows it: as JSON, escaped, cut."""
    return peer_text(repr_json(value), 80)
