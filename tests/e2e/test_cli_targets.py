"""Target arguments and combined sources, `validate`, the deadline, `--report`, name collisions and
concurrency, end to end with the installed command against real peers on loopback (issue 3: 1, 5-7)."""

from __future__ import annotations

import json
import signal
from itertools import pairwise
from pathlib import Path
from typing import Any

from tests.peers import HttpPeer, Running, TcpListener, free_port, line_time, parse_line, run_portpatrol

FAST = ["--interval", "100ms"]


def messages(stderr: str) -> list[str]:
    return [parse_line(line).get("msg", "") for line in stderr.splitlines()]


def load_report(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    assert isinstance(report, dict)
    return report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in report["targets"]}


# --------------------------------------------------------------------------- target arguments


def test_argument_targets_of_every_kind(http_peer: HttpPeer) -> None:
    with TcpListener() as db, TcpListener() as cache:
        result = run_portpatrol(
            args=[
                *FAST,
                "--dial-timeout",
                "500ms",
                f"tcp://{db.address}",
                http_peer.url("/healthz"),
                "icmp://127.0.0.1",
                cache.address,
            ],
            timeout=20,
        )
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    said = messages(result.stderr)
    assert said[-1] == "All 4 targets are ready"
    assert sum(msg.endswith("is ready ✓") for msg in said) == 4
    assert db.accepted == 1
    assert cache.accepted == 1
    assert [(r.method, r.path) for r in http_peer.requests] == [("GET", "/healthz")]
    assert http_peer.requests[0].header_values("User-Agent")[0].startswith("portpatrol/")


def test_interval_and_dial_timeout_apply_to_argument_targets(http_peer: HttpPeer) -> None:
    result = run_portpatrol(
        args=["--interval", "200ms", "--dial-timeout", "700ms", http_peer.url("/flaky/3/200")], timeout=20
    )
    assert result.code == 0, result.stderr
    seen = [r.at for r in http_peer.requests]
    assert len(seen) == 4
    gaps = [b - a for a, b in pairwise(seen)]
    assert all(0.15 < gap < 1.5 for gap in gaps), gaps  # the 200ms interval, not the default 2s
    plan = run_portpatrol(args=["validate", "--interval", "200ms", "--dial-timeout", "700ms", "db:5432"])
    assert plan.code == 0, plan.stderr
    assert plan.stdout.splitlines()[2].split()[3:5] == ["200ms", "700ms"]


def test_env_target_and_argument_targets_together(http_peer: HttpPeer) -> None:
    env = {"TARGET_ADDRESS": http_peer.url("/status/200"), "TARGET_NAME": "api", "CHECK_INTERVAL": "100ms"}
    with TcpListener(start_after=None) as db, Running(env, [*FAST, db.address]) as running:
        running.wait_for_line("127.0.0.1 is not ready")
        db.start()
        assert running.wait(20) == 0, running.lines
    said = messages("\n".join(running.lines))
    assert "api is ready ✓" in said
    assert "127.0.0.1 is ready ✓" in said
    assert "127.0.0.1 is not ready ✗" in said
    assert said[-1] == "All 2 targets are ready"


def test_inferred_names_that_collide_are_made_distinct() -> None:
    with TcpListener() as one, TcpListener() as two:
        env = {"TARGET_ADDRESS": one.address, "CHECK_INTERVAL": "100ms"}
        result = run_portpatrol(env, [*FAST, two.address], timeout=20)
        plan = run_portpatrol(env, ["validate", two.address])
    assert result.code == 0, result.stderr
    said = messages(result.stderr)
    assert f"Waiting for {one.address} to become ready..." in said
    assert f"{one.address} is ready ✓" in said
    assert f"{two.address} is ready ✓" in said
    names = [line.split()[0] for line in plan.stdout.splitlines()[2:]]
    assert names == [one.address, two.address]


def test_same_host_and_port_in_two_kinds_still_get_distinct_names(http_peer: HttpPeer) -> None:
    plan = run_portpatrol(args=["validate", f"tcp://{http_peer.hostport}", http_peer.url("/healthz")])
    assert plan.code == 0, plan.stderr
    names = [line.split("  ")[0].strip() for line in plan.stdout.splitlines()[2:]]
    assert len(names) == 2
    assert len(set(names)) == 2, names


# --------------------------------------------------------------------------- validate


def test_validate_prints_the_plan_hides_secrets_and_touches_no_network(http_peer: HttpPeer) -> None:
    with TcpListener() as db:
        env = {
            "TARGET_ADDRESS": http_peer.url("/healthz"),
            "TARGET_NAME": "api",
            "HTTP_HEADERS": "Authorization=Bearer s3cr3t-token",
            "HTTP_EXPECTED_STATUS_CODES": "200,204",
            "CHECK_INTERVAL": "5s",
            "PORTPATROL_TIMEOUT": "1m30s",
        }
        args = [
            "validate",
            "--dial-timeout",
            "250ms",
            db.address,
            f"http://admin:hunter2@{http_peer.hostport}/x",
            "icmp://127.0.0.1",
        ]
        plan = run_portpatrol(env, args, timeout=20)
        assert db.accepted == 0
    assert http_peer.requests == []
    assert plan.code == 0, plan.stderr
    assert plan.stderr == ""
    lines = plan.stdout.splitlines()
    assert lines[0] == "4 targets, deadline 1m30s"
    assert lines[1].split() == ["NAME", "TYPE", "ADDRESS", "INTERVAL", "DIAL_TIMEOUT", "DETAILS"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["api"][1:5] == ["HTTP", http_peer.url("/healthz"), "5s", "1s"]
    assert "Authorization" in plan.stdout
    # CHECK_INTERVAL applies to TARGET arguments too (issue 11.9); --dial-timeout wins over DIAL_TIMEOUT.
    assert rows[db.address][1:5] == ["TCP", db.address, "5s", "250ms"]
    assert rows["127.0.0.1"][1:3] == ["ICMP", "127.0.0.1"]
    assert "s3cr3t" not in plan.stdout
    assert "hunter2" not in plan.stdout
    assert f"http://***@{http_peer.hostport}/x" in plan.stdout


def test_validate_reports_every_problem_and_exits_2() -> None:
    with TcpListener() as db:
        plan = run_portpatrol(
            {"TARGET_ADDRESS": db.address, "CHECK_INTERVAL": "5"},
            ["validate", "htp://x", "--timeout", "soon"],
        )
        assert db.accepted == 0
    assert plan.code == 2
    assert plan.stdout == ""
    problems = plan.stderr.splitlines()
    assert all(line.startswith("portpatrol: ") for line in problems), problems
    assert any("CHECK_INTERVAL" in line for line in problems)
    assert any("htp" in line for line in problems)
    assert any("--timeout" in line for line in problems)
    assert "Traceback" not in plan.stderr


# --------------------------------------------------------------------------- deadline


def test_timeout_option_gives_124_at_once_with_one_error_line_per_target_not_ready(tmp_path: Path) -> None:
    refused = f"127.0.0.1:{free_port()}"
    with HttpPeer() as silent, TcpListener() as db:
        # The silent peer's attempt is still hanging (bound 10s) when the 1s deadline passes.
        args = [*FAST, "--dial-timeout", "10s", "--timeout", "1s", db.address, refused, silent.url("/silent")]
        result = run_portpatrol(args=[*args, "--report", str(tmp_path / "r.json")], timeout=30)
    assert result.code == 124, result.stderr
    assert result.elapsed < 5  # at once: not after the hanging attempt's 10s bound
    errors = [parse_line(line) for line in result.lines if "level=ERROR" in line]
    assert len(errors) == 2, result.stderr
    assert {e["msg"] for e in errors} == {
        f"{refused} did not become ready in time ✗",
        f"{silent.hostport}/silent did not become ready in time ✗",  # colliding HTTP names get the path
    }
    assert all(e.get("error") for e in errors)
    by_msg = {e["msg"].split()[0]: e for e in errors}
    assert by_msg[refused]["error"] == "connection refused"
    assert f"{db.address} is ready ✓" in messages(result.stderr)
    report = by_name(load_report(tmp_path / "r.json"))
    assert report[refused]["ready"] is False
    assert report[refused]["last_error"] == "connection refused"
    assert report[refused]["attempts"] >= 3
    assert report[db.address]["ready"] is True


def test_portpatrol_timeout_env_gives_124() -> None:
    result = run_portpatrol({"PORTPATROL_TIMEOUT": "700ms"}, [*FAST, f"127.0.0.1:{free_port()}"], timeout=20)
    assert result.code == 124
    assert result.elapsed < 5
    errors = [line for line in result.lines if "level=ERROR" in line]
    assert len(errors) == 1
    assert 'error="connection refused"' in errors[0]


def test_no_deadline_by_default() -> None:
    with Running(args=[*FAST, f"127.0.0.1:{free_port()}"]) as running:
        running.wait_for_line("is not ready")
        for _ in range(10):
            running.wait_for_line("is not ready")  # still trying, a second later
        assert running.proc.poll() is None
        running.signal(signal.SIGTERM)
        assert running.wait(10) == 143


# --------------------------------------------------------------------------- report


def test_report_on_success(tmp_path: Path, http_peer: HttpPeer) -> None:
    path = tmp_path / "report.json"
    result = run_portpatrol(
        args=[*FAST, "--report", str(path), http_peer.url("/flaky/2/200")],
        env={"TARGET_ADDRESS": f"127.0.0.1:{http_peer.port}", "TARGET_NAME": "tcp-side"},
        timeout=20,
    )
    assert result.code == 0, result.stderr
    report = load_report(path)
    assert report["ready"] is True
    assert report["exit_status"] == 0
    entries = by_name(report)
    flaky = entries["127.0.0.1"]
    assert flaky["type"] == "HTTP"
    assert flaky["address"] == http_peer.url("/flaky/2/200")
    assert flaky["ready"] is True
    assert flaky["attempts"] == 3
    assert 0 < flaky["time_to_ready"] < 10
    assert flaky["last_error"] is None  # an earlier attempt's 503 is not a ready target's state (issue 11.7)
    tcp = entries["tcp-side"]
    assert tcp["ready"] is True
    assert tcp["attempts"] == 1
    assert tcp["last_error"] is None
    assert set(tcp) >= {"name", "ready", "attempts", "time_to_ready", "last_error"}


def test_report_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    refused = f"127.0.0.1:{free_port()}"
    with Running(args=[*FAST, "--report", str(path), refused]) as running:
        running.wait_for_line("is not ready")
        running.signal(signal.SIGTERM)
        assert running.wait(10) == 143
    report = load_report(path)
    assert report["ready"] is False
    assert report["exit_status"] == 143
    (entry,) = report["targets"]
    assert entry["ready"] is False
    assert entry["time_to_ready"] is None
    assert entry["attempts"] >= 1
    assert entry["last_error"] == "connection refused"


def test_report_hides_secrets(tmp_path: Path, http_peer: HttpPeer) -> None:
    path = tmp_path / "report.json"
    url = f"http://admin:hunter2@{http_peer.hostport}/status/503"
    result = run_portpatrol(args=[*FAST, "--timeout", "400ms", "--report", str(path), url], timeout=20)
    assert result.code == 124
    text = path.read_text()
    assert "hunter2" not in text
    assert "hunter2" not in result.stderr
    assert load_report(path)["targets"][0]["address"] == f"http://***@{http_peer.hostport}/status/503"


# --------------------------------------------------------------------------- concurrency


def test_late_target_while_another_is_already_ready(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    with (
        TcpListener() as early,
        TcpListener(start_after=None) as late,
        Running(args=[*FAST, "--report", str(path), early.address, late.address]) as running,
    ):
        running.wait_for_line(f"{early.address} is ready ✓")
        for _ in range(5):  # the late one keeps failing while the early one is done
            running.wait_for_line(f"{late.address} is not ready ✗")
        late.start()
        assert running.wait(20) == 0, running.lines
    # A ready target is never checked again (counted by portpatrol itself: a listener's accept
    # count would also see stray connects from other programs on a shared machine).
    attempts = {entry["name"]: entry["attempts"] for entry in load_report(path)["targets"]}
    assert attempts[early.address] == 1
    lines = running.lines
    ready_at = {parse_line(line)["msg"]: line_time(line) for line in lines if "is ready ✓" in line}
    early_ready, late_ready = ready_at[f"{early.address} is ready ✓"], ready_at[f"{late.address} is ready ✓"]
    assert late_ready - early_ready > 0.3
    assert parse_line(lines[-1])["msg"] == "All 2 targets are ready"
    entries = by_name(load_report(path))
    assert entries[early.address]["attempts"] == 1
    assert entries[late.address]["attempts"] > 3
    assert entries[late.address]["time_to_ready"] > entries[early.address]["time_to_ready"]


def test_a_hanging_target_does_not_delay_another_targets_attempts() -> None:
    refused = f"127.0.0.1:{free_port()}"
    with HttpPeer() as silent:
        # Two targets, so two workers: one is stuck in the silent peer for the whole run.
        args = [*FAST, "--dial-timeout", "10s", "--timeout", "2s", silent.url("/silent"), refused]
        result = run_portpatrol(args=args, timeout=30)
        assert len(silent.requests) == 1  # its one attempt hung the whole time
    assert result.code == 124
    failures = [line for line in result.lines if f'msg="{refused} is not ready ✗"' in line]
    # At 100ms intervals ~18 attempts fit in 2s; a serialised loop would manage none after the hang.
    assert len(failures) >= 8, result.stderr
    assert not any(f"{silent.hostport} is not ready" in line for line in result.lines)


def test_every_problem_of_every_source_in_one_run(tmp_path: Path) -> None:
    with TcpListener() as db:
        env = {"TARGET_ADDRESS": db.address, "CHECK_INTERVAL": "5", "DIAL_TIMEOUT": "-1s"}
        args = ["htp://x", "tcp://127.0.0.1", "--timeout", "0s", "--", "touch", str(tmp_path / "ran")]
        result = run_portpatrol(env, args, timeout=20)
        assert db.accepted == 0
    assert result.code == 2
    assert not (tmp_path / "ran").exists()
    problems = result.lines
    assert all(line.startswith("portpatrol: ") for line in problems), problems
    for where in ("CHECK_INTERVAL", "DIAL_TIMEOUT", "htp", "tcp://127.0.0.1", "--timeout"):
        assert sum(where in line for line in problems) == 1, (where, problems)
    assert len(problems) == 5
    assert 'CHECK_INTERVAL="5"' in result.stderr
    assert "e.g. 5s" in result.stderr
