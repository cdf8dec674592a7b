"""Hardening (issue 11): each test reproduces one way the tool went wrong, as the issue describes it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import socketserver
import subprocess
import time
from pathlib import Path

import pytest

from portpatrol.text import json_string, printable
from tests.e2e.test_status_line import frames, run_on_tty
from tests.peers import (
    PORTPATROL,
    HttpPeer,
    Result,
    Running,
    Serving,
    TcpListener,
    free_port,
    in_netns,
    lines_until,
    minimal_env,
    run_portpatrol,
)

# --------------------------------------------------------------------------- 1. TCP self-connect

# Inside a namespace of its own, with only two ephemeral ports, a connect to one of them from
# that same port is a TCP simultaneous open with itself: connected, with nothing listening.
TWO_EPHEMERAL_PORTS = {"net.ipv4.ip_local_port_range": "40000 40001"}


@pytest.mark.parametrize(
    ("address", "method"),
    [
        ("127.0.0.1:40000", "GET"),  # an IP address: the runner's own non-blocking connect
        ("tcp://localhost:40000", "GET"),  # a name: the lookup and connect of checks/net.py
        ("http://127.0.0.1:40000/", "GET"),  # the plain-HTTP check
        ("http://127.0.0.1:40000/", "POST"),  # not plain enough for it: the httpx check
    ],
)
def test_a_connection_to_itself_is_not_ready(address: str, method: str) -> None:
    command = in_netns([str(PORTPATROL)], sysctls=TWO_EPHEMERAL_PORTS)
    env = {
        "TARGET_ADDRESS": address,
        "HTTP_METHOD": method,
        "CHECK_INTERVAL": "10ms",
        "DIAL_TIMEOUT": "500ms",
    }
    result = run_portpatrol(env, ["--timeout", "3s"], command=command)
    assert result.code == 124, result.stderr
    assert "connected to itself (nothing listening on that port)" in result.stderr


# --------------------------------------------------------------------------- 6. status line names


def test_names_that_collide_after_renaming_keep_the_status_line_and_run_the_command(tmp_path: Path) -> None:
    with TcpListener() as listener:
        config = tmp_path / "targets.yaml"
        config.write_text(
            "targets:\n"
            f"  - {{name: db, address: '{listener.address}'}}\n"
            f"  - {{name: db, address: '{listener.address}'}}\n"
            f"  - {{name: 'db:{listener.port} #2', address: '{listener.address}'}}\n"
        )
        run = run_on_tty(["--config", str(config), "--timeout", "10s", "--", "echo", "the command ran"])
    assert run.code == 0, run.terminal
    assert run.stdout == "the command ran\n"
    assert "Traceback" not in run.terminal
    shown = [line.split("✓ ", 1)[1] for line in frames(run.terminal) if " is ready after " in line]
    names = {line.split(" is ready after ")[0] for line in shown}
    assert len(shown) == 3, shown
    assert len(names) == 3, shown


# --------------------------------------------------------------------------- 12. one target, one ready line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_one_target_ends_with_its_ready_line(log_format: str) -> None:
    with TcpListener() as first, TcpListener() as second:
        one = run_portpatrol({"LOG_FORMAT": log_format}, ["--timeout", "10s", first.address])
        two = run_portpatrol({"LOG_FORMAT": log_format}, ["--timeout", "10s", first.address, second.address])
    assert one.code == two.code == 0, (one.stderr, two.stderr)
    assert [record["msg"] for record in one.records][-1] == "127.0.0.1 is ready ✓", one.stderr
    # The summary is for two or more.
    assert [record["msg"] for record in two.records][-1] == "All 2 targets are ready", two.stderr


# --------------------------------------------------------------------------- 7. reports


def test_a_report_to_a_fifo_is_refused_at_start(tmp_path: Path) -> None:
    fifo = tmp_path / "report"
    os.mkfifo(fifo)
    with TcpListener() as listener:
        result = run_portpatrol(args=["--report", str(fifo), "--timeout", "5s", listener.address], timeout=20)
    assert result.code == 2, result.stderr
    assert "--report" in result.stderr
    assert "regular file" in result.stderr


def test_a_report_to_dash_goes_to_standard_output(tmp_path: Path) -> None:
    with TcpListener() as listener:
        done = subprocess.run(
            [str(PORTPATROL), "--report", "-", "--timeout", "5s", listener.address],
            cwd=tmp_path,
            env=minimal_env(),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["targets"][0]["ready"] is True
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_a_report_replaces_the_file_at_once(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("old report\n")
    old = tmp_path / "old-link"
    os.link(report, old)  # a second name for the old file: written in place, it would change too
    with TcpListener() as listener:
        result = run_portpatrol(args=["--report", str(report), "--timeout", "5s", listener.address])
    assert result.code == 0, result.stderr
    assert json.loads(report.read_text())["ready"] is True
    assert old.read_text() == "old report\n"  # a new file took the name: no reader saw half a report
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "old-link",
        "report.json",
    ]  # no temp file left


def test_a_report_that_cannot_be_written_at_the_end_is_exit_1(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    with TcpListener(start_after=None) as late:
        args = [
            "--report",
            str(folder / "report.json"),
            "--interval",
            "100ms",
            "--timeout",
            "20s",
            late.address,
        ]
        with Running(args=args) as running:
            running.wait_for_line("is not ready")
            folder.rmdir()
            late.start()
            code = running.wait(20)
    assert code == 1, running.lines
    assert "cannot write" in running.lines[-1], running.lines


def test_a_report_scrubs_addresses_and_shows_no_stale_error(http_peer: HttpPeer, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    # A header's value is a secret wherever it shows, also where the address happens to hold it.
    env = {
        "TARGET_ADDRESS": http_peer.url("/flaky/2/200?s3cr3t-pw"),
        "HTTP_HEADERS": "X-Token=s3cr3t-pw",
        "CHECK_INTERVAL": "100ms",
        "LOG_EXTRA_FIELDS": "true",
    }
    result = run_portpatrol(env, ["--report", str(report), "--timeout", "10s"])
    assert result.code == 0, result.stderr
    assert "s3cr3t-pw" not in result.stderr
    text = report.read_text()
    assert "s3cr3t-pw" not in text
    [entry] = json.loads(text)["targets"]
    assert entry["address"] == result.records[0]["target_address"]  # as the logs show it
    assert entry["ready"] is True
    assert entry["attempts"] == 3  # two failures came first
    assert entry["last_error"] is None  # their error is not the state of a ready target


# --------------------------------------------------------------------------- 8. peer text and exits

# Bidirectional overrides and zero-width characters reorder or hide what a line shows.
INVISIBLE = [*range(0x200B, 0x2010), *range(0x202A, 0x202F), 0x2060, *range(0x2066, 0x206A), 0xFEFF]


@pytest.mark.parametrize("code", INVISIBLE)
def test_invisible_characters_are_escaped_in_every_line(code: int) -> None:
    char = chr(code)
    assert char not in printable(f"a{char}b")
    assert f"\\u{code:04x}" in printable(f"a{char}b")
    assert char not in json_string(f"a{char}b")


def test_a_location_with_a_control_character_is_shown_escaped() -> None:
    location = b"/next\x01\xe2\x80\xaepath"  # a control character and U+202E (right-to-left override)
    answer = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"

    class Answer(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()  # the request line is enough
            self.wfile.write(answer)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answer)
    server.daemon_threads = True
    with Serving(server):
        port = server.server_address[1]
        result = run_portpatrol(
            {"TARGET_ADDRESS": f"http://127.0.0.1:{port}/", "LOG_FORMAT": "json"}, ["--timeout", "2s"]
        )
    assert result.code == 124, result.stderr
    errors = [record["error"] for record in result.records if "error" in record]
    assert errors, result.stderr
    for error in errors:
        assert "'\\x01'" not in error, error  # not Python's repr
        assert "\u202e" not in error, error
        assert "\\x" not in error, error


def test_a_config_error_while_the_reader_of_stderr_is_gone_exits_2() -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [str(PORTPATROL), "--timeout", "soon", "127.0.0.1:1"], stderr=write, env=minimal_env(), timeout=20
        )
    finally:
        os.close(write)
    assert done.returncode == 2


def test_the_readme_says_how_to_trust_a_private_ca_with_options_that_exist() -> None:
    """Issue 11.14: the README points to the HTTP kind's CA option by names the kind really has."""
    from portpatrol.kinds import http

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.partition("### HTTPS with a private CA")[2].partition("\n#")[0]
    assert "ca_file" in section
    assert "HTTP_CA_FILE" in section
    assert "ca_file" in http.SCHEMA["properties"]
    assert http.ENV.get("HTTP_CA_FILE") == "ca_file"


def test_a_tcp_address_of_a_config_file_is_interpolated_and_named_as_written(tmp_path: Path) -> None:
    """Issue 11.3's related bug: `"${HOST}:PORT"` looked up the literal host `${HOST}`."""
    with TcpListener() as listener:
        config = tmp_path / "pp.yaml"
        config.write_text(f'targets: [{{address: "${{HOST}}:{listener.port}"}}]\n')
        result = run_portpatrol({"HOST": "127.0.0.1"}, ["--timeout", "10s", "--config", str(config)])
    assert result.code == 0, result.stderr
    assert "${HOST} is ready" in result.stderr, result.stderr  # the name as written, not the value
    assert "127.0.0.1" not in result.stderr


# --------------------------------------------------------------------------- 3. names as written

SECRET_PATH = "hunter2-in-the-path"


def _same_host_config(tmp_path: Path) -> Path:
    """Two targets on one host: their names (the host) collide, so each gets its port and path."""
    port = free_port()
    config = tmp_path / "pp.yaml"
    config.write_text(
        "targets:\n"
        f"  - {{address: 'http://127.0.0.1:{port}/health'}}\n"
        f"  - {{address: 'http://127.0.0.1:{port}/${{SECRET_PATH}}'}}\n"
    )
    return config


def test_an_interrupted_wait_names_targets_by_the_path_as_written(tmp_path: Path) -> None:
    config = _same_host_config(tmp_path)
    env = {"SECRET_PATH": SECRET_PATH, "PORTPATROL_CONFIG": str(config), "CHECK_INTERVAL": "100ms"}
    lines = lines_until(env, count=4)
    assert SECRET_PATH not in "\n".join(lines), lines
    [interrupted] = [line for line in lines if "Interrupted by SIGTERM while waiting for" in line]
    assert "/${SECRET_PATH}" in interrupted, interrupted
    assert "/health" in interrupted, interrupted


def test_the_status_line_names_targets_by_the_path_as_written(tmp_path: Path) -> None:
    config = _same_host_config(tmp_path)
    run = run_on_tty(
        ["--config", str(config), "--interval", "100ms"],
        {"SECRET_PATH": SECRET_PATH},
        stop_when="(connection refused)",
    )
    assert run.code == 143, run.terminal
    assert SECRET_PATH not in run.terminal, run.terminal
    live = [frame for frame in frames(run.terminal) if frame.startswith("0/2 ready")]
    assert any("/${SECRET_PATH} (" in frame for frame in live), live
    [interrupted] = [f for f in frames(run.terminal) if f.startswith("Interrupted by SIGTERM")]
    assert "/${SECRET_PATH}" in interrupted, interrupted


# --------------------------------------------------------------------------- 5. stalls outside the checks


def _full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: a blocking write to it waits until someone reads."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        while True:
            os.write(write, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write, True)
    return read, write


def test_a_stderr_nobody_reads_does_not_defeat_the_deadline() -> None:
    """Issue 11.5: with stderr's pipe full and its reader stopped, --timeout 3s still ends the wait
    at 3s (exit 124); the lines that did not fit are dropped, and counted once the reader is back."""
    read, write = _full_pipe()
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(PORTPATROL), "--timeout", "3s", "--interval", "10ms", f"127.0.0.1:{free_port()}"],
        stderr=write,
        env=minimal_env(),
    )
    os.close(write)
    try:
        code = proc.wait(timeout=30)  # before the fix: still running after 10s, blocked in a write
        took = time.monotonic() - started
        assert code == 124
        assert took < 10, took
        # Nothing was written while the pipe was full: what is in it is the test's filler only.
        os.set_blocking(read, False)
        held = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(read, 65536):
                held += chunk
        assert held.strip(b"x") == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(read)


def test_lines_dropped_on_a_full_stderr_are_counted_once_it_drains() -> None:
    read, write = _full_pipe()
    proc = subprocess.Popen(
        [str(PORTPATROL), "--timeout", "4s", "--interval", "10ms", f"127.0.0.1:{free_port()}"],
        stderr=write,
        env=minimal_env(),
    )
    os.close(write)
    try:
        time.sleep(1.5)  # attempts fail and their lines find the pipe full
        received = b""
        while chunk := os.read(read, 65536):  # the reader is back: drained to the end
            received += chunk
        assert proc.wait(timeout=30) == 124
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(read)
    text = received.lstrip(b"x").decode()
    found = re.search(r"msg=\"(\d+) log lines dropped", text)
    assert found, text[:2000]
    assert int(found[1]) >= 10, found[0]  # ~100 attempts a second failed while it was full
    assert "did not become ready in time" in text.splitlines()[-1], text[-500:]


def _limited(limit: str, args: list[str]) -> Result:
    """The installed command under a resource limit set by the shell, as a user would."""
    command = ["sh", "-c", f'ulimit {limit}; exec "$0" "$@"', str(PORTPATROL)]
    return run_portpatrol({}, args, command=command, timeout=60)


def test_no_thread_to_be_had_is_a_line_and_exit_1() -> None:
    """Under `ulimit -v` the pool's threads cannot start (no room for their stacks): a line that
    says so and exit 1, not a traceback."""
    targets = [f"http://127.0.0.1:{free_port()}/" for _ in range(100)]  # ~48 workers, 8 MiB of stack each
    result = _limited("-v 100000", ["--timeout", "5s", *targets])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 1, result.stderr
    assert "cannot start a thread" in result.lines[-1], result.lines[-1]
    assert "ulimit" in result.lines[-1], result.lines[-1]


def test_no_file_to_be_had_is_a_line_and_exit_1() -> None:
    """Under `ulimit -n 64`, with a hundred connects in flight (a listener whose backlog is full
    leaves them pending), the pool's pipe cannot be made when a name comes due: a line, exit 1."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # never accepted: after the first, connects stay pending
        port = full.getsockname()[1]
        targets = [f"127.0.0.1:{port}"] * 100 + [f"http://localhost:{free_port()}/"]
        result = _limited("-n 64", ["--timeout", "5s", "--dial-timeout", "4s", *targets])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 1, result.stderr
    assert "too many open files" in result.lines[-1].lower(), result.lines[-1]
    assert "ulimit -n" in result.lines[-1], result.lines[-1]
