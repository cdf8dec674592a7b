"""The JSON Schema of the config file, assembled from the common settings below and every kind's
block (its SCHEMA, under the kind's NAME, and its DEFS). `python -m portpatrol.schema` writes
schemas/portpatrol.schema.json, which the package ships (hatch force-include) and the loader reads;
tests/unit/test_schema.py fails when that file differs from what this module builds."""

from __future__ import annotations

import json
import os
import sys

from portpatrol import kinds

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

# In an installed package the schema sits beside this module; in a checkout, in schemas/.
_HERE = os.path.dirname(os.path.realpath(__file__))
_PACKAGED = os.path.join(_HERE, "portpatrol.schema.json")
_PUBLISHED = os.path.join(os.path.dirname(_HERE), "schemas", "portpatrol.schema.json")
_FILE = _PACKAGED if os.path.exists(_PACKAGED) else _PUBLISHED


def __getattr__(name: str) -> Path:
    """SCHEMA_FILE (the file the loader reads) and PUBLISHED (schemas/ in a checkout), as Paths
    for tests and tools: pathlib is ~5 ms of importtime that a config file's wait does not need."""
    if name not in ("SCHEMA_FILE", "PUBLISHED"):
        raise AttributeError(name)
    from pathlib import Path

    return Path(_FILE if name == "SCHEMA_FILE" else _PUBLISHED)


def common() -> dict[str, Any]:
    """Everything but the kinds' blocks."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://raw.githubusercontent.com/portpatrol/portpatrol/main/schemas/portpatrol.schema.json",
        "title": "portpatrol config file",
        "description": (
            "What portpatrol waits for: a list of targets, each checked in its own retry loop until all "
            "are ready. Use it with `portpatrol --config FILE` or PORTPATROL_CONFIG=FILE."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["targets"],
        "properties": {
            "timeout": {
                "description": (
                    "The overall deadline: when it passes before every target is ready, portpatrol exits "
                    "124 and names each target that was not ready. null (the default) waits forever, as "
                    "the original did. --timeout and PORTPATROL_TIMEOUT take precedence. A duration, "
                    "e.g. 5m, 90s. `${VAR}` and `${VAR:-default}` are replaced from the environment when "
                    "the file is loaded."
                ),
                "anyOf": [{"$ref": "#/$defs/duration"}, {"type": "null"}],
                "default": None,
                "examples": ["5m", "90s", "1h"],
            },
            "defaults": {
                "description": "Timing settings for every target that does not set them itself.",
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    **_timing(),
                },
                "default": {},
                "examples": [{"interval": "2s", "dial_timeout": "1s"}, {"success_threshold": 3}],
            },
            "targets": {
                "description": (
                    "What to wait for, at least one. All targets are checked at the same time; "
                    "portpatrol is done when every one is ready."
                ),
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/target"},
                "examples": [[{"address": "postgres:5432"}, {"address": "http://api:8080/healthz"}]],
            },
        },
        "$defs": {
            "duration": {
                "description": (
                    "A duration in Go's syntax: one or more pieces of a number and a unit, no spaces, "
                    "units ns, us, ms, s, m, h, fractions allowed; greater than 0. Or a ${VAR} reference."
                ),
                "type": "string",
                "pattern": "^(?:(?=[^1-9]*[1-9])(?:(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+|.*\\$\\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\\}.*)$",  # noqa: E501 (a pattern reads best whole)
                "examples": ["2s", "500ms", "1m30s"],
            },
            "target": {
                "description": (
                    "One thing to wait for, by an address or a command: a TCP port, an HTTP(S) endpoint, "
                    "a database, a queue, a host that answers ping, a DNS name, a file..."
                ),
                "type": "object",
                "additionalProperties": False,
                "required": ["address"],
                "properties": {
                    "name": {
                        "description": (
                            "The name in log lines (like TARGET_NAME). By default the host of the "
                            "address, e.g. postgres for postgres:5432. Shown as written: ${VAR} is not "
                            "replaced here."
                        ),
                        "type": "string",
                        "minLength": 1,
                        "examples": ["postgres", "orders API"],
                    },
                    "address": {
                        "description": (
                            "What to check (like TARGET_ADDRESS): host:port or tcp://host:port for TCP, "
                            "else a URL whose scheme selects the kind of check ("
                            + ", ".join(f"{name}://" for name in kinds.TYPES if name not in kinds.NO_ADDRESS)
                            + "), or dns:NAME; IPv6 literals in brackets ([::1]:5432). Logs show it as "
                            "written, passwords masked. `${VAR}` and `${VAR:-default}` are replaced from "
                            "the environment when the file is loaded."
                        ),
                        "type": "string",
                        "minLength": 1,
                        "examples": [
                            "postgres.default.svc.cluster.local:5432",
                            "http://api:8080/healthz",
                            "postgres://app@db:5432/app",
                            "https://user:${API_PASSWORD}@api.example.com/ready",
                        ],
                    },
                    "type": {
                        "description": (
                            "The check type (like TARGET_CHECK_TYPE). By default the scheme of the "
                            "address decides, and tcp without one. With no scheme, http or https makes "
                            "the address a URL (webapp:8080 becomes http://webapp:8080). A type that "
                            "contradicts the scheme is an error."
                        ),
                        "enum": list(kinds.TYPES),
                        "default": "tcp",
                        "examples": list(kinds.TYPES),
                    },
                    **_timing(),
                },
            },
        },
    }


def _timing() -> dict[str, Any]:
    """The timing keys: in `defaults` and in each target."""
    return {
        "interval": {
            "description": (
                "The pause after a failed attempt before the next one (like CHECK_INTERVAL). "
                "A duration: one or more pieces of a number and a unit, units ns, us, ms, s, "
                "m, h, e.g. 500ms, 2s, 1m30s. `${VAR}` and `${VAR:-default}` are replaced "
                "from the environment when the file is loaded."
            ),
            "$ref": "#/$defs/duration",
            "examples": ["2s", "500ms", "1m30s"],
            "default": "2s",
        },
        "dial_timeout": {
            "description": (
                "The bound on one whole attempt: resolving, connecting and, for HTTP, the "
                "response headers (like DIAL_TIMEOUT). A duration, e.g. 1s, 250ms. `${VAR}` "
                "and `${VAR:-default}` are replaced from the environment when the file is "
                "loaded."
            ),
            "$ref": "#/$defs/duration",
            "examples": ["1s", "250ms", "5s"],
            "default": "1s",
        },
        "success_threshold": {
            "description": (
                "How many consecutive successful attempts make the target ready (like "
                "SUCCESS_THRESHOLD). A whole number from 1 to 1000."
            ),
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
            "default": 1,
            "examples": [1, 3],
        },
        "backoff_factor": {
            "description": (
                "How much each consecutive failure stretches the pause (like CHECK_BACKOFF_FACTOR): "
                "after the n-th failure in a row the pause is interval * backoff_factor^(n-1), at most "
                "max_interval, jittered as usual. 1 (the default) keeps the interval fixed. From 1 to 100."
            ),
            "type": "number",
            "minimum": 1,
            "maximum": 100,
            "default": 1,
            "examples": [2, 1.5],
        },
        "max_interval": {
            "description": (
                "The longest pause backoff may reach (like CHECK_MAX_INTERVAL). A duration, e.g. 30s, 5m."
            ),
            "$ref": "#/$defs/duration",
            "default": "24h",
            "examples": ["30s", "5m"],
        },
        "invert": {
            "description": (
                "Wait for the target to go away instead (like TARGET_INVERT): ready once the check "
                "fails success_threshold times in a row, e.g. a port that closes, a lock file removed."
            ),
            "type": "boolean",
            "default": False,
            "examples": [True],
        },
    }


def build() -> dict[str, Any]:
    schema = common()
    target = schema["$defs"]["target"]
    # A target has an address, or (a command target) a command instead.
    del target["required"]
    target["oneOf"] = [{"required": ["address"]}, {"required": ["command"]}]
    for kind in kinds.every():
        if kind.SCHEMA is not None:
            target["properties"][kind.NAME] = kind.SCHEMA
            schema["$defs"] |= getattr(kind, "DEFS", {})
    return schema


def generated_text() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def schema_text() -> str:
    """The JSON Schema of the config file, as shipped."""
    with open(_FILE, encoding="utf-8") as file:
        return file.read()


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else _PUBLISHED, "w", encoding="utf-8") as out:
        out.write(generated_text())
