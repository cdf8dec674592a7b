"""Many targets from a YAML file, run by the installed command against real listeners on loopback."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

from tests.peers import HttpPeer, Running, TcpListener, free_port, parse_line, run_portpatrol

SCHEMA = Path(__file__).parents[2] / "schemas" / "portpatrol.schema.json"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_250_targets_in_one_file_are_all_ready_in_seconds(tmp_path: Path) -> None:
    with ExitStack() as stack:
        listeners = [stack.enter_context(TcpListener()) for _ in range(250)]
        targets = "".join(f"  - address: {listener.address}\n" for listener in listeners)
        config = write(tmp_path / "many.yaml", f"defaults: {{interval: 100ms}}\ntargets:\n{targets}")
        result = run_portpatrol(args=["--config", config, "--timeout", "60s"], timeout=90)
    assert result.code == 0, result.stderr[-2000:]
    assert result.elapsed < 15
    ready = [line for line in result.lines if "is ready ✓" in line]
    assert len(ready) == 250
    assert parse_line(result.lines[-1])["msg"] == "All 250 targets are ready"
    # Every inferred name was 127.0.0.1: each got its port, so the logs tell them apart.
    names = {parse_line(line)["msg"].removesuffix(" is ready ✓") for line in ready}
    assert names == {listener.address for listener in listeners}


def test_a_late_target_while_another_is_already_ready(tmp_path: Path) -> None:
    with TcpListener() as early, TcpListener(start_after=1.5) as late:
        config = write(
            tmp_path / "pp.yaml",
            "targets:\n"
            f"  - {{name: early, address: {early.address}}}\n"
            f"  - {{name: late, address: {late.address}, interval: 200ms}}\n",
        )
        result = run_portpatrol(args=["--config", config, "--timeout", "30s"])
    assert result.code == 0, result.stderr
    messages = [parse_line(line)["msg"] for line in result.lines]
    early_ready, late_ready = messages.index("early is ready ✓"), messages.index("late is ready ✓")
    # The late one kept failing after the early one was ready, then became ready itself.
    assert early_ready < late_ready
    assert "late is not ready ✗" in messages[early_ready:late_ready]
    assert messages[-1] == "All 2 targets are ready"


def test_the_file_timeout_is_the_deadline_and_names_each_target_not_ready(tmp_path: Path) -> None:
    with TcpListener() as up:
        down = f"127.0.0.1:{free_port()}"
        config = write(
            tmp_path / "pp.yaml",
            f"timeout: 1s\ndefaults: {{interval: 100ms}}\ntargets:\n  - address: {up.address}\n"
            f"  - {{name: db, address: '{down}'}}\n",
        )
        result = run_portpatrol(args=["--config", config, "--report", str(tmp_path / "r.json")])
    assert result.code == 124
    assert result.elapsed < 10
    errors = [parse_line(line) for line in result.lines if "level=ERROR" in line]
    assert [(e["msg"], e["error"]) for e in errors] == [
        ("db did not become ready in time ✗", "connection refused")
    ]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_status"] == 124
    by_name = {entry["name"]: entry for entry in report["targets"]}
    assert by_name["db"]["ready"] is False
    assert by_name["db"]["last_error"] == "connection refused"
    assert by_name["db"]["attempts"] >= 3
    assert by_name["127.0.0.1"]["ready"] is True


def test_a_command_line_timeout_wins_over_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "pp.yaml", f"timeout: 1h\ntargets:\n  - address: 127.0.0.1:{free_port()}\n")
    result = run_portpatrol(args=["--config", config, "--timeout", "500ms"])
    assert result.code == 124
    assert result.elapsed < 10


def test_config_from_the_environment_and_an_interpolated_secret_never_logged(tmp_path: Path) -> None:
    secret = "s3cr3t-T0KEN-4711"
    with HttpPeer() as peer:
        config = write(
            tmp_path / "pp.yaml",
            "targets:\n"
            f"  - address: {peer.url('/status/503')}\n"
            "    interval: 100ms\n"
            '    http: {headers: {Authorization: "Bearer ${API_TOKEN}"}}\n',
        )
        env = {"PORTPATROL_CONFIG": config, "API_TOKEN": secret, "LOG_EXTRA_FIELDS": "true"}
        with Running(env=env, args=["--timeout", "1s"]) as running:
            code = running.wait(15)
        seen = [request.header_values("Authorization") for request in peer.requests]
    assert code == 124
    assert seen
    assert seen[0] == [f"Bearer {secret}"]
    assert not [line for line in running.lines if secret in line]
    assert any("status 503" in line for line in running.lines)


def test_validate_prints_the_plan_and_hides_secrets(tmp_path: Path) -> None:
    config = write(
        tmp_path / "pp.yaml",
        "timeout: 5m\ntargets:\n"
        "  - {name: postgres, address: 'db.invalid:5432', dial_timeout: 2s}\n"
        "  - address: 'http://user:hunter2pw@api.invalid:8080/healthz?token=abcdef123'\n"
        '    http: {headers: {Authorization: "Bearer ${API_TOKEN}"}, expected_status_codes: "200,300-302"}\n'
        "  - {address: 'icmp://gw.invalid', icmp: {read_timeout: 3s}}\n",
    )
    result = run_portpatrol(env={"API_TOKEN": "tok-9f8e7d"}, args=["validate", "--config", config])
    assert result.code == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == "3 targets, deadline 5m0s"
    assert "postgres" in out
    assert "2s" in out
    assert "expect 200,300-302" in out
    assert "read timeout 3s" in out
    for secret in ("hunter2pw", "abcdef123", "tok-9f8e7d"):
        assert secret not in out + result.stderr


def test_a_bad_file_reports_every_problem_with_file_line_and_path(tmp_path: Path) -> None:
    config = write(
        tmp_path / "pp.yaml",
        "targets:\n  - address: db:5432\n    dial_timout: 1s\n  - address: db\n    interval: 5\n",
    )
    result = run_portpatrol(args=["--config", config])
    assert result.code == 2
    assert "Traceback" not in result.stderr
    lines = result.lines
    assert len(lines) >= 3, lines
    assert all(line.startswith(f"portpatrol: {config}:") for line in lines), lines
    text = result.stderr
    assert "$.targets[0].dial_timout" in text
    assert "did you mean dial_timeout?" in text
    assert "$.targets[1]" in text


def test_schema_command_prints_the_published_schema() -> None:
    result = run_portpatrol(args=["schema"])
    assert result.code == 0
    assert json.loads(result.stdout) == json.loads(SCHEMA.read_text(encoding="utf-8"))
