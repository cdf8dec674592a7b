"""The registry and the kind contract (portpatrol/kinds/__init__.py)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, is_dataclass

import pytest

from portpatrol import kinds
from portpatrol.model import Target

SAMPLES: dict[str, tuple[str, dict[str, object]]] = {
    "dns": ("dns:db.test", {}),
    "file": ("file:///run/app/token", {}),
    "unix": ("unix:///run/app.sock", {}),
    "command": ("", {"argv": ["true"]}),
}


@pytest.mark.parametrize("name", list(kinds.KINDS))
def test_every_kind_module_follows_the_contract(name: str) -> None:
    kind = kinds.module(name)
    assert name == kind.NAME
    assert kinds.KINDS[name] == (kind.SCHEMES or (kind.NAME,))  # its schemes, or its NAME (command)
    assert kind.DEFAULT_PORT is None or 1 <= kind.DEFAULT_PORT <= 65535
    # command's `command: [argv...]` is the argv itself, not a block (kinds/command.py)
    assert kind.SCHEMA is None or kind.SCHEMA["type"] == ("array" if name == "command" else "object")
    assert set(kind.SECRET_KEYS) <= set(kind.ENV.values())
    if kind.SCHEMA is not None and name != "command":
        # A dotted key is the env form of a nested one: HTTP_EXPECT_BODY -> expect.body.
        assert {key.split(".")[0] for key in kind.ENV.values()} <= set(kind.SCHEMA["properties"])
    for hook in ("parse", "secrets", "describe", "attempt"):
        assert callable(getattr(kind, hook)), hook
    if name in SAMPLES:  # kinds whose address names no host
        settings = kind.parse(*SAMPLES[name])
    else:
        try:
            settings = kind.parse(f"{kind.SCHEMES[0]}://127.0.0.1:1", {})
        except ValueError:  # a kind without ports (icmp)
            settings = kind.parse(f"{kind.SCHEMES[0]}://127.0.0.1", {})
    assert isinstance(settings, kind.Settings)
    # a frozen slotted dataclass, or a model.Record where start-up pays for it
    names = [field.name for field in fields(settings)] if is_dataclass(settings) else settings.__slots__
    assert names
    with pytest.raises(AttributeError):  # FrozenInstanceError is one
        settings.__setattr__(names[0], None)
    assert not hasattr(settings, "__dict__")  # slotted
    target = Target("t", "t", settings)
    assert kinds.of(target) is kind
    assert target.kind.value == name.upper()
    assert isinstance(kind.describe(settings), str)
    assert kind.secrets(settings) == frozenset()


def test_a_scheme_or_a_type_selects_its_kind() -> None:
    assert kinds.module("https") is kinds.module("http")
    assert kinds.parse_address("https://api/x", None, "type").kind.value == "HTTP"
    assert kinds.parse_type(" ICMP ") == "icmp"


def test_a_tcp_wait_loads_no_other_kind_and_validate_no_network_code() -> None:
    code = (
        "import sys\n"
        "from portpatrol.cli import main\n"
        "main(['validate', '127.0.0.1:1', 'http://127.0.0.1:1/', 'icmp://127.0.0.1'])\n"
        "tcp_only = main(['validate', '127.0.0.1:1'])\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(loaded.stdout.split("\n")[-2].split())
    network = {"portpatrol.runner", "portpatrol.checks.net", "portpatrol.checks.tcp", "socket", "httpx"}
    assert not modules & (network | {"icmplib", "portpatrol.checks.http", "portpatrol.checks.plainhttp"})
    code = "import sys\nfrom portpatrol.sources import env\nenv.targets({'TARGET_ADDRESS': 'db:5432'})\n"
    code += "print(' '.join(sorted(sys.modules)))\n"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(loaded.stdout.split())
    assert "portpatrol.kinds.tcp" in modules
    assert not modules & {"portpatrol.kinds.http", "portpatrol.kinds.icmp"}


def test_help_names_every_variable_of_every_kind() -> None:
    from portpatrol import cli

    named = {name for kind in kinds.every() for name in kind.ENV}
    assert named
    assert sorted(name for name in named if name not in cli.ENVIRONMENT_HELP) == []


def test_the_http_plan_line_names_every_header_written() -> None:
    """The User-Agent portpatrol adds is left out, and only that: a User-Agent written in the
    headers replaces it, and the first header written was dropped from the line then."""
    http = kinds.module("http")
    assert http.describe(http.parse("http://a/", {"headers": "X-A=1"})) == "GET, expect 200, headers X-A"
    written = http.parse("http://a/", {"headers": "User-Agent=probe/1,X-A=1"})
    assert http.describe(written) == "GET, expect 200, headers User-Agent,X-A"
    assert http.describe(http.parse("http://a/", {})) == "GET, expect 200"
