"""Text safety (portpatrol/text.py): what logs, errors and reports share."""

from __future__ import annotations

from portpatrol import text


def test_secrets_are_sorted_once_per_set() -> None:
    secrets = frozenset({"abc", "abcdef", "xy"})
    assert text._longest_first(secrets) == ("abcdef", "abc", "xy")
    assert text._longest_first(secrets) is text._longest_first(frozenset({"xy", "abc", "abcdef"}))
