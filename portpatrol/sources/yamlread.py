"""A YAML document read into JSON values (strings, numbers, booleans, null, lists, mappings)
that remember the line each was written on, with every problem of the YAML itself: syntax, tags
other than JSON's, duplicate keys, merge keys, alias bombs, depth. The config file source
(sources/file.py) then checks the values against the schema."""

from __future__ import annotations

import math
import re
from typing import Any

from portpatrol.errors import ConfigError, Problem
from portpatrol.text import cut, quote

JsonPath = tuple[str | int, ...]

# Numbers in a config file are ports, counts and status codes: a few digits.
_MAX_NUMBER = 100
# Aliases may repeat parts of a document, but not blow it up (the "billion laughs" attack):
# values reached through aliases may number at most this plus ten per value written.
_ALIAS_ALLOWANCE = 100_000
# A real config is a few levels deep and well under a megabyte per 10,000 targets.
MAX_DEPTH = 32


class Map(dict[str, Any]):
    """A mapping that remembers where it and each of its entries were written."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[str, tuple[int, int]] = {}  # key -> (line of the key, line of the value)


class Seq(list[Any]):
    """A list that remembers where it and each of its items were written."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []


class Skip:
    """Stands for a value that was already reported as wrong, so it is not reported again."""


SKIP = Skip()
_TAG = "tag:yaml.org,2002:"


class Reader:
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
                if isinstance(container, Seq):
                    steps.append(len(container))
                elif isinstance(key, str):
                    steps.append(key)
            message = f"{json_path(tuple(steps))}: {message}"
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
            root = SKIP
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
            if isinstance(container, Seq):
                container.append(value)
                container.lines.append(line)
            elif frame[2] is None:  # a key
                frame[3] = line
                frame[2] = SKIP
                if value is SKIP:
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
                if key is not SKIP:
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
                if len(stack) >= MAX_DEPTH:  # stop before the parser's cost grows with depth
                    self.problem(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
                    return SKIP
                written += 1
                line = event.start_mark.line + 1
                container: Map | Seq = Map(line) if kind is yaml.MappingStartEvent else Seq(line)
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
                    add(SKIP, event.start_mark, 1)
                    continue
                value, size = found
                expanded += size
                if expanded > _ALIAS_ALLOWANCE + 10 * written:
                    self.problem(
                        event.start_mark,
                        "aliases expand to too many values (a YAML alias bomb?); write the values out",
                    )
                    return SKIP
                add(value, event.start_mark, size)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    self.problem(event.start_mark, "a config file holds one YAML document, not several")
                    return SKIP
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
            return SKIP
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
            return SKIP
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(event.start_mark, f"{event.value} is not a finite number, which JSON cannot hold")
            return SKIP
        return value

    def _bad_tag(self, event: Any, tag: str | None = None) -> Skip:
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
        return SKIP


def _resolve(yaml: Any, value: str, plain: bool) -> str:
    """The implicit tag of a scalar, as yaml's Resolver decides it (YAML 1.1: yes, on, 0x1F...)."""
    if not plain:
        return _TAG + "str"
    resolvers = yaml.resolver.Resolver.yaml_implicit_resolvers.get(value[:1] or "", ())
    for tag, regexp in resolvers:
        if regexp.match(value):
            return str(tag)
    return _TAG + "str"


def json_path(path: JsonPath) -> str:
    text = "$"
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif len(step) <= 80 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", step):
            text += f".{step}"
        else:  # escaped as every quoted value (json.dumps leaves NEL and U+2028 raw), and cut
            text += f"[{quote(step)}]"
    return text


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "a mapping"
