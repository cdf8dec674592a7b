"""RFC 9535 JSONPath: what an HTTP target's `expect.json` conditions select in an answer.

A small recursive-descent parser compiles a path once, at configuration time (a bad path is a
configuration error with its position), into nested closures; evaluating them selects the values of
the nodes, in document order. Everything in the RFC is here: name, wildcard, index, slice and filter
selectors, descendant segments, comparisons, and the five standard functions (length, count, match,
search, value). Paths are short and bodies are bounded, so plain recursion is fine."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from portpatrol.model import Record, set_fields

JSON = object  # a decoded JSON value: dict, list, str, int, float, bool or None
Query = Callable[[JSON, JSON], list[JSON]]  # (current node, root) -> selected values
_Selector = Callable[[JSON, JSON], list[JSON]]
_Expr = Callable[[JSON, JSON], object]  # a filter's value: a JSON value, _NOTHING, bool or a node list

_NOTHING = object()  # the absence of a value (a singular query that selects nothing)
_MAX_INT = 2**53 - 1  # I-JSON's exact integers: the RFC's bound on indexes and slice values
_SPACE = " \t\n\r"
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"(?:-?(?:0|[1-9][0-9]*))(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_FUNCTION = re.compile(r"[a-z][a-z0-9_]*\(")
_ARITY = {"length": 1, "count": 1, "match": 2, "search": 2, "value": 1}
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "/": "/", "\\": "\\"}


class Path(Record):
    """A compiled path. A Record, not a dataclass: dataclasses costs start-up (model.Record)."""

    __slots__ = ("text", "query", "singular")  # noqa: RUF023 (the order of __init__)
    text: str
    query: Query
    singular: bool

    def __init__(self, text: str, query: Query, singular: bool) -> None:
        set_fields(self, text=text, query=query, singular=singular)

    def select(self, document: JSON) -> list[JSON]:
        return self.query(document, document)


def _name_char(char: str, *, first: bool) -> bool:
    """RFC 9535's name-first and name-char. Not a regular expression: a class spanning the
    Unicode ranges takes ~5 ms to compile, on every start of a target with a JSON expectation."""
    return (
        "a" <= char <= "z"
        or "A" <= char <= "Z"
        or char == "_"
        or (not first and "0" <= char <= "9")
        or (char >= "\x80" and not "\ud800" <= char <= "\udfff")
    )


def compile_path(text: str) -> Path:
    """Raises ValueError naming the position of the first problem."""
    parser = _Parser(text)
    if not text.startswith("$"):
        raise ValueError("a JSONPath starts with $ (e.g. $.status)")
    parser.pos = 1
    query, singular = parser.segments(root=True)
    if parser.pos != len(text):
        parser.fail("unexpected text")
    return Path(text, query, singular)


# --- evaluation helpers ---------------------------------------------------------------------


def _children(value: JSON, _root: JSON = None) -> list[JSON]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return []


def _descendants(value: JSON) -> Iterator[JSON]:
    """The value and every value under it, in document order."""
    yield value
    for child in _children(value):
        yield from _descendants(child)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(a: object, b: object) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1 (as Python would have it)."""
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return a == b


def _less(a: object, b: object) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(a < b)  # type: ignore[operator]
    if isinstance(a, str) and isinstance(b, str):
        return a < b
    return False


def _compare(op: str, a: object, b: object) -> bool:
    if op in ("==", "!=", "<=", ">="):
        same = (a is _NOTHING and b is _NOTHING) or (a is not _NOTHING and b is not _NOTHING and equal(a, b))
        if op == "==":
            return same
        if op == "!=":
            return not same
        if op == "<=":
            return same or _less(a, b)
        return same or _less(b, a)
    return _less(a, b) if op == "<" else _less(b, a)


def _iregexp(pattern: str, full: bool) -> re.Pattern[str] | None:
    """RFC 9485 I-Regexp as a Python expression: `.` is any character but CR and LF. None when the
    pattern is not valid (the RFC: the function then yields false)."""
    translated, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            translated.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[" and not in_class:
            in_class = True
            translated.append(char)
        elif char == "]" and in_class:
            in_class = False
            translated.append(char)
        elif char == "." and not in_class:
            translated.append("[^\\n\\r]")
        else:
            translated.append(char)
    try:
        body = "".join(translated)
        return re.compile(f"^(?:{body})\\Z" if full else body)
    except (re.error, RecursionError, OverflowError):
        return None


# --- the parser -----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> None:
        raise ValueError(f"{message} at character {self.pos + 1} of the JSONPath (e.g. $.checks[*].state)")

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def take(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.take(literal):
            self.fail(f"expected {literal!r}")

    def space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def segments(self, root: bool) -> tuple[Query, bool]:
        """Segments after $ or @: the query, and whether it is singular (names and indexes only)."""
        steps: list[tuple[bool, list[_Selector]]] = []  # (descendant, selectors)
        singular = True
        while True:
            start = self.pos
            self.space()
            if self.take(".."):
                selectors, _ = self.dotted_or_bracketed(descendant=True)
                steps.append((True, selectors))
                singular = False
            elif self.take("."):
                selectors, one = self.dotted_or_bracketed(descendant=False, dotted_only=True)
                steps.append((False, selectors))
                singular &= one
            elif self.peek("["):
                selectors, one = self.bracketed()
                steps.append((False, selectors))
                singular &= one
            else:
                self.pos = start  # the space belongs to what follows
                break
        del root

        def query(node: JSON, root_value: JSON) -> list[JSON]:
            values = [node]
            for descendant, selectors in steps:
                sources = [d for v in values for d in _descendants(v)] if descendant else values
                if len(selectors) == 1:
                    select = selectors[0]
                    values = [out for v in sources for out in select(v, root_value)]
                else:
                    values = [out for v in sources for select in selectors for out in select(v, root_value)]
            return values

        return query, singular

    def dotted_or_bracketed(
        self, descendant: bool, dotted_only: bool = False
    ) -> tuple[list[_Selector], bool]:
        if self.take("*"):
            return [_children], False
        if not dotted_only and self.peek("["):
            return self.bracketed()
        text, end = self.text, self.pos
        if end >= len(text) or not _name_char(text[end], first=True):
            self.fail("expected a member name, * or [" if descendant else "expected a member name or *")
        end += 1
        while end < len(text) and _name_char(text[end], first=False):
            end += 1
        name = text[self.pos : end]
        self.pos = end
        return [_name_selector(name)], True

    def bracketed(self) -> tuple[list[_Selector], bool]:
        self.expect("[")
        selectors: list[_Selector] = []
        singular = True
        while True:
            self.space()
            selector, one = self.selector()
            selectors.append(selector)
            singular &= one
            self.space()
            if self.take("]"):
                return selectors, singular and len(selectors) == 1
            self.expect(",")

    def selector(self) -> tuple[_Selector, bool]:
        if self.peek("'") or self.peek('"'):
            return _name_selector(self.string()), True
        if self.take("*"):
            return _children, False
        if self.take("?"):
            self.space()
            test = self.logical()
            return _filter_selector(test), False
        start = self.integer(optional=True)
        self.space()
        if not self.peek(":"):
            if start is None:
                self.fail("expected a selector ('name', *, an index, a slice or ?filter)")
            assert start is not None
            return _index_selector(start), True
        self.take(":")
        self.space()
        end = self.integer(optional=True)
        self.space()
        step = None
        if self.take(":"):
            self.space()
            step = self.integer(optional=True)
        return _slice_selector(start, end, step), False

    def integer(self, optional: bool = False) -> int | None:
        match = _INT.match(self.text, self.pos)
        if match is None or match.group() == "-0":
            if optional and match is None:
                return None
            self.fail("expected an integer")
        assert match is not None
        value = int(match.group())
        if abs(value) > _MAX_INT:
            self.fail("integer out of range")
        self.pos = match.end()
        return value

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                self.fail("unterminated string")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\":
                out.append(self.escape(quote))
            elif ord(char) < 0x20:
                self.pos -= 1
                self.fail("control character in a string")
            else:
                out.append(char)

    def escape(self, quote: str) -> str:
        char = self.text[self.pos : self.pos + 1]
        self.pos += 1
        if char == quote:
            return quote
        if char in _ESCAPES:
            return _ESCAPES[char]
        if char == "u":
            high = self.hex4()
            if 0xD800 <= high <= 0xDBFF:
                if not self.take("\\u"):
                    self.fail("lone surrogate in a string")
                low = self.hex4()
                if not 0xDC00 <= low <= 0xDFFF:
                    self.fail("lone surrogate in a string")
                return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
            if 0xDC00 <= high <= 0xDFFF:
                self.fail("lone surrogate in a string")
            return chr(high)
        self.pos -= 1
        self.fail("unknown escape in a string")
        return ""

    def hex4(self) -> int:
        digits = self.text[self.pos : self.pos + 4]
        if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            self.fail("expected four hex digits")
        self.pos += 4
        return int(digits, 16)

    # filter expressions: each returns a function (node, root) -> value

    def logical(self) -> Callable[[JSON, JSON], bool]:
        parts = [self.conjunction()]
        while True:
            self.space()
            if not self.take("||"):
                break
            self.space()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else lambda n, r: any(p(n, r) for p in parts)

    def conjunction(self) -> Callable[[JSON, JSON], bool]:
        parts = [self.basic()]
        while True:
            save = self.pos
            self.space()
            if not self.take("&&"):
                self.pos = save
                break
            self.space()
            parts.append(self.basic())
        return parts[0] if len(parts) == 1 else lambda n, r: all(p(n, r) for p in parts)

    def basic(self) -> Callable[[JSON, JSON], bool]:
        if self.take("!"):
            self.space()
            inner = self.parenthesised_or_test()
            return lambda n, r: not inner(n, r)
        if self.peek("("):
            return self.parenthesised_or_test()
        left, kind = self.operand()
        save = self.pos
        self.space()
        op = next((o for o in ("==", "!=", "<=", ">=", "<", ">") if self.take(o)), None)
        if op is None:
            self.pos = save
            return self.as_test(left, kind)
        if kind not in ("singular", "value"):
            self.fail("only a singular query, a literal or a value function can be compared")
        self.space()
        right, right_kind = self.operand()
        if right_kind not in ("singular", "value"):
            self.fail("only a singular query, a literal or a value function can be compared")
        return lambda n, r: _compare(op, left(n, r), right(n, r))

    def parenthesised_or_test(self) -> Callable[[JSON, JSON], bool]:
        if self.take("("):
            self.space()
            inner = self.logical()
            self.space()
            self.expect(")")
            return inner
        return self.as_test(*self.operand())

    def as_test(self, operand: _Expr, kind: str) -> Callable[[JSON, JSON], bool]:
        """A test: a query is true when it selects something, match() and search() by their result."""
        if kind == "singular":
            assert isinstance(operand, _Singular)
            nodes = operand.nodes
            return lambda n, r: bool(nodes(n, r))
        if kind == "query":
            return lambda n, r: bool(operand(n, r))
        if kind == "logical":
            return lambda n, r: operand(n, r) is True
        self.fail("a literal or a value alone is not a test; compare it (e.g. @.status == 'UP')")
        raise AssertionError  # unreachable: fail() raises

    def operand(self) -> tuple[_Expr, str]:
        """(function, kind): kind is 'singular' (a singular query, compared by its value), 'query'
        (a query selecting any number of nodes), 'value' (a literal or a value function) or
        'logical' (match() or search())."""
        if self.peek("@") or self.peek("$"):
            root = self.text[self.pos] == "$"
            self.pos += 1
            query, singular = self.segments(root=root)

            def nodes(n: JSON, r: JSON) -> list[JSON]:
                return query(r if root else n, r)

            return (_Singular(nodes), "singular") if singular else (nodes, "query")
        if self.peek("'") or self.peek('"'):
            return _Literal(self.string()), "value"
        for word, constant in (("true", True), ("false", False), ("null", None)):
            if self.take(word):
                return (lambda n, r, v=constant: v), "value"
        number = _NUMBER.match(self.text, self.pos)
        if number is not None:
            self.pos = number.end()
            written = number.group()
            literal = float(written) if any(c in written for c in ".eE") else int(written)
            return (lambda n, r: literal), "value"
        name = _FUNCTION.match(self.text, self.pos)
        if name is not None:
            self.pos = name.end()
            return self.function(name.group()[:-1])
        self.fail("expected a query, a literal or a function")
        raise AssertionError  # unreachable: fail() raises

    def function(self, name: str) -> tuple[_Expr, str]:
        if name not in _ARITY:
            self.pos -= len(name) + 1
            self.fail(f"unknown function {name}()")
        args: list[tuple[_Expr, str]] = []
        self.space()
        while not self.peek(")"):
            if args:
                self.expect(",")
                self.space()
            args.append(self.operand())
            self.space()
        self.expect(")")
        if len(args) != _ARITY[name]:
            self.fail(f"{name}() takes {_ARITY[name]} argument(s)")
        if name in ("count", "value"):
            operand, kind = args[0]
            if kind not in ("singular", "query"):
                self.fail(f"{name}() takes a query")
            nodes = operand.nodes if isinstance(operand, _Singular) else operand
            if name == "count":
                return (lambda n, r: len(nodes(n, r))), "value"  # type: ignore[arg-type]

            def single(n: JSON, r: JSON) -> object:
                found = nodes(n, r)
                return found[0] if isinstance(found, list) and len(found) == 1 else _NOTHING

            return single, "value"
        if any(kind not in ("singular", "value") for _, kind in args):
            self.fail(f"{name}() takes values: literals, singular queries or value functions")
        if name == "length":
            arg = args[0][0]

            def length(n: JSON, r: JSON) -> object:
                value = arg(n, r)
                return len(value) if isinstance(value, str | list | dict) else _NOTHING

            return length, "value"
        subject, pattern = args[0][0], args[1][0]
        # The pattern must be written in the path: one taken from the peer's document could be made
        # to backtrack for as long as the peer likes. Compiled once, here.
        if not isinstance(pattern, _Literal) or not isinstance(pattern.value, str):
            self.fail(f"the pattern of {name}() must be a string written in the path")
        assert isinstance(pattern, _Literal)
        compiled = _iregexp(str(pattern.value), name == "match")
        if compiled is None:
            self.fail(f"the pattern of {name}() is not a regular expression")
        assert compiled is not None

        def matches(n: JSON, r: JSON) -> bool:
            text = subject(n, r)
            return isinstance(text, str) and compiled.search(text) is not None

        return matches, "logical"


class _Literal:
    """A string written in the path."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, node: JSON, root: JSON) -> object:
        return self.value


class _Singular:
    """A singular query as an operand: its one value, or _NOTHING."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: Callable[[JSON, JSON], list[JSON]]) -> None:
        self.nodes = nodes

    def __call__(self, node: JSON, root: JSON) -> object:
        found = self.nodes(node, root)
        return found[0] if found else _NOTHING


def _name_selector(name: str) -> _Selector:
    def select(value: JSON, _root: JSON) -> list[JSON]:
        return [value[name]] if isinstance(value, dict) and name in value else []

    return select


def _index_selector(index: int) -> _Selector:
    def select(value: JSON, _root: JSON) -> list[JSON]:
        return [value[index]] if isinstance(value, list) and -len(value) <= index < len(value) else []

    return select


def _slice_selector(start: int | None, end: int | None, step: int | None) -> _Selector:
    def select(value: JSON, _root: JSON) -> list[JSON]:
        return value[start:end:step] if isinstance(value, list) and step != 0 else []

    return select


def _filter_selector(test: Callable[[JSON, JSON], bool]) -> _Selector:
    def select(value: JSON, root: JSON) -> list[JSON]:
        return [child for child in _children(value) if test(child, root)]

    return select
