"""RFC 9535 JSONPath: the RFC's own examples, its comparison rules, and errors with positions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portpatrol.jsonpath import compile_path

STORE: Any = json.loads("""
{"store": {
  "book": [
    {"category": "reference", "author": "Nigel Rees", "title": "Sayings of the Century", "price": 8.95},
    {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword of Honour", "price": 12.99},
    {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553-21311-3",
     "price": 8.99},
    {"category": "fiction", "author": "J. R. R. Tolkien", "title": "The Lord of the Rings",
     "isbn": "0-395-19395-8", "price": 22.99}
  ],
  "bicycle": {"color": "red", "price": 399}
}}""")
AUTHORS = ["Nigel Rees", "Evelyn Waugh", "Herman Melville", "J. R. R. Tolkien"]


def select(path: str, document: Any = STORE) -> list[Any]:
    return compile_path(path).select(document)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.store.book[*].author", AUTHORS),
        ("$..author", AUTHORS),
        ("$.store..price", [8.95, 12.99, 8.99, 22.99, 399]),
        ("$..book[2].author", ["Herman Melville"]),
        ("$..book[-1].title", ["The Lord of the Rings"]),
        ("$..book[0,1].price", [8.95, 12.99]),
        ("$..book[:2].price", [8.95, 12.99]),
        ("$..book[?@.isbn].title", ["Moby Dick", "The Lord of the Rings"]),
        ("$..book[?@.price<10].title", ["Sayings of the Century", "Moby Dick"]),
        ("$.store.bicycle['color']", ["red"]),
        ('$["store"]["bicycle"].price', [399]),
        ("$.store.book[?@.category == 'fiction' && @.price > 20].author", ["J. R. R. Tolkien"]),
        ("$.store.book[?!(@.price < 20)].author", ["J. R. R. Tolkien"]),
        ("$.store.book[?@.author == 'Nigel Rees' || @.price == 399].price", [8.95]),
        ("$.store.book[?match(@.author, 'J.*')].price", [22.99]),
        ("$.store.book[?search(@.title, 'Dick')].price", [8.99]),
        ("$.store.book[?length(@.title) == 9].author", ["Herman Melville"]),
        ("$.store[?count(@.*) == 2].color", ["red"]),
        ("$.store.book[?value(@..isbn) == '0-553-21311-3'].title", ["Moby Dick"]),
        ("$.store.book[::-2].price", [22.99, 12.99]),
        ("$.store.book[5]", []),
        ("$.store.missing", []),
        ("$", [STORE]),
    ],
)
def test_rfc_examples(path: str, expected: list[Any]) -> None:
    assert select(path) == expected


def test_the_store_has_every_value_once_under_a_descendant_wildcard() -> None:
    assert len(select("$..*")) == 27


@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("$[?@ == 1]", [1, 1.0, True, "1"], [1, 1.0]),  # true is not 1
        ("$[?@ == true]", [1, True], [True]),
        ("$[?@.a == @.b]", [{"a": 1}, {"a": 1, "b": 1}, {}], [{"a": 1, "b": 1}, {}]),  # nothing == nothing
        ("$[?@ < 'b']", ["a", "c", 1], ["a"]),
        ("$[?@ > 0]", [0, 1, "2", None], [1]),
        ("$[?@ == null]", [None, 0, False], [None]),
    ],
)
def test_comparisons_follow_the_rfc(path: str, document: Any, expected: list[Any]) -> None:
    assert select(path, document) == expected


def test_a_test_of_a_value_that_is_false_still_exists() -> None:
    assert select("$[?@.a]", [{"a": False}, {"a": None}, {}]) == [{"a": False}, {"a": None}]


def test_match_is_anchored_and_dot_stops_at_line_ends() -> None:
    assert select("$[?match(@, 'a.c')]", ["abc", "xabc", "a\nc"]) == ["abc"]
    assert select("$[?search(@, 'a.c')]", ["abc", "xabcx", "a\nc"]) == ["abc", "xabcx"]


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("status", "starts with $"),
        ("$.", "character 3"),
        ("$[", "character 3"),
        ("$[01]", "character 4"),
        ("$[-0]", "character 3"),
        ("$[?@.a==]", "character 9"),
        ("$[?foo(@)]", "unknown function foo()"),
        ("$[?1]", "not a test"),
        ("$[?@.* == 1]", "compared"),
        ("$[?length(@.*) == 1]", "takes values"),
        ("$['a]", "unterminated"),
        ("$['\\q']", "unknown escape"),
        ("$[9007199254740992]", "out of range"),
        ("$.a b", "unexpected text"),
        ("$[?match(@.a, @.b)]", "must be a string written in the path"),
        ("$[?search(@, '(')]", "not a regular expression"),
    ],
)
def test_invalid_paths_say_where(path: str, where: str) -> None:
    with pytest.raises(ValueError, match="JSONPath") as caught:
        compile_path(path)
    assert where in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="$@.[]*?'\"()!=<>&|,:-0123456789abc lengthmatch", max_size=30), json_values)
def test_any_path_text_compiles_or_is_refused_and_never_crashes(text: str, document: Any) -> None:
    try:
        path = compile_path(text)
    except ValueError:
        return
    assert isinstance(path.select(document), list)
