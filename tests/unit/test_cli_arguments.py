"""The argument fast path: no arguments must mean exactly what argparse's defaults mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from portpatrol.cli import _arguments, _parser, main


def test_no_arguments_give_the_parsers_defaults_without_argparse() -> None:
    parsed = vars(_parser().parse_intermixed_args([]))
    defaults = _arguments([])
    assert {name: getattr(defaults, name) for name in parsed} == parsed


def test_targets_and_options_may_be_intermixed() -> None:
    args = _arguments(["db:5432", "--timeout", "5s", "api:80", "--workers", "8"])
    assert args.targets == ["db:5432", "api:80"]
    assert (args.timeout, args.workers) == ("5s", 8)


@pytest.mark.parametrize("option", ["--timeout", "--interval", "--dial-timeout", "--config"])
def test_an_option_given_empty_is_a_problem_not_ignored(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--timeout "$T"` with T unset must not quietly wait forever.
    assert main(["validate", "db:5432", f"{option}="], {}) == 2
    assert capsys.readouterr().err == f'portpatrol: {option}="": is empty (e.g. {option} ' + (
        "/etc/portpatrol/targets.yaml)\n" if option == "--config" else "30s)\n"
    )


def test_an_empty_variable_counts_as_unset_and_both_timeouts_are_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "db:5432"], {"PORTPATROL_TIMEOUT": ""}) == 0
    capsys.readouterr()
    assert main(["validate", "db:5432", "--timeout", "5s"], {"PORTPATROL_TIMEOUT": "soon"}) == 2
    assert "PORTPATROL_TIMEOUT" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_is_refused_before_the_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for report in (tmp_path / "missing" / "report.json", tmp_path, ""):
        assert main(["validate", "db:5432", f"--report={report}"], {}) == 2
        assert "cannot be written" in capsys.readouterr().err
    assert main(["validate", "db:5432", f"--report={tmp_path / 'report.json'}"], {}) == 0
