"""Text safety (portpatrol/text.py): what logs, errors and reports share."""

from __future__ import annotations

from portpatrol import text


def test_secrets_are_sorted_once_per_set() -> None:
    secrets = frozenset({"abc", "abcdef", "xy"})
    assert text._longest_first(secrets) == ("abcdef", "abc", "xy")
    assert text._longest_first(secrets) is text._longest_first(frozenset({"xy", "abc", "abcdef"}))


# Issue 11.4: secrets are masked where they stand as whole tokens, and only long ones: a short
# value ("1", a header X-Debug=1) is too likely to be ordinary text to be replaced wherever it occurs.
LONG = frozenset({"Sk3cret-Value", "1"})


def test_a_long_secret_is_masked_as_a_whole_token_in_any_case() -> None:
    said = "bad key Sk3cret-Value; seen: sk3cret-value, SK3CRET-VALUE=x, (Sk3cret-Value)"
    assert text.mask_tokens(said, LONG) == "bad key ***; seen: ***, ***=x, (***)"


def test_a_short_secret_is_not_masked_in_peer_text() -> None:
    assert text.mask_tokens("HTTP/1.1 401 at 2026-01-12T10:41:01.123Z", LONG) == (
        "HTTP/1.1 401 at 2026-01-12T10:41:01.123Z"
    )


def test_a_secret_of_digits_does_not_cut_a_longer_number() -> None:
    assert text.mask_tokens("port 41234567, code 123456", frozenset({"123456"})) == "port 41234567, code ***"


def test_a_secret_with_separator_ends_is_masked_where_it_touches_a_word() -> None:
    # Its own ends are no word characters: what stands beside them does not make it part of a word.
    assert text.mask_tokens("key=abc/def==x", frozenset({"=abc/def=="})) == "key***x"


def test_the_longest_secret_is_masked_first() -> None:
    assert (
        text.mask_tokens("Bearer Sk3cret-Value", frozenset({"Sk3cret-Value", "Bearer Sk3cret-Value"}))
        == "***"
    )
