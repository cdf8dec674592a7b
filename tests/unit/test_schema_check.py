"""`portpatrol validate` runs the published schema itself (jsonschema) on a config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from portpatrol.sources.file import schema_problems

EXAMPLES = [
    p for p in sorted((Path(__file__).parents[2] / "examples").glob("*.yaml")) if "compose" not in p.name
]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_the_schema(example: Path) -> None:
    assert schema_problems(str(example)) == []


def test_the_schema_names_the_rule_and_path_but_never_the_value(tmp_path: Path) -> None:
    config = tmp_path / "pp.yaml"
    config.write_text(
        'targets:\n  - address: "db:5432"\n    dial_timeout: "s3cr3t-value"\n    colour: blue\n'
    )
    problems = [str(problem) for problem in schema_problems(str(config))]
    assert f"{config}: $.targets[0].dial_timeout: rejected by the schema's pattern rule" in problems
    assert f"{config}: $.targets[0]: rejected by the schema's additionalProperties rule" in problems
    assert not [p for p in problems if "s3cr3t" in p]
