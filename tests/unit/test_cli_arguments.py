"""The argument fast path: no arguments must mean exactly what argparse's defaults mean."""

from __future__ import annotations

from portpatrol.cli import _arguments, _parser


def test_no_arguments_give_the_parsers_defaults_without_argparse() -> None:
    parsed = vars(_parser().parse_intermixed_args([]))
    defaults = _arguments([])
    assert {name: getattr(defaults, name) for name in parsed} == parsed


def test_targets_and_options_may_be_intermixed() -> None:
    args = _arguments(["db:5432", "--timeout", "5s", "api:80", "--workers", "8"])
    assert args.targets == ["db:5432", "api:80"]
    assert (args.timeout, args.workers) == ("5s", 8)
