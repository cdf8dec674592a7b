"""HTTP answers judged beyond their status (issue 13), against real servers on loopback: JSON that
changes over time, a 200 that says DOWN, gzip bombs in the body and behind a redirect (bounded memory
and time), a private CA and a server requiring a client certificate (trustme), and redirect chains
across origins where each server records the headers it got. The plain-HTTP path and the httpx path
are driven through the same peers and must give the same verdict and reason."""

from __future__ import annotations

import gzip
import json
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from portpatrol.checks.http import HttpCheck
from portpatrol.checks.plainhttp import PlainHttpCheck
from portpatrol.errors import NotReady
from portpatrol.kinds import http as kind
from tests.peers import PORTPATROL, Running, Serving, minimal_env, run_portpatrol

Handler = Callable[[BaseHTTPRequestHandler], None]


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that closes a redirect unread resets the connection: expected here


class Server:
    """A ThreadingHTTPServer whose every request runs `answer(handler)`; it records what it got."""

    def __init__(self, answer: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.seen.append((self.command, self.path, list(self.headers.items()), body))
                outer.answer(self)

            do_GET = do_POST = do_HEAD = do_PUT = _any

        self.server = _Quiet(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls else "http"

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def headers_of(self, index: int) -> dict[str, str]:
        return {name.lower(): value for name, value in self.seen[index][2]}

    def __enter__(self) -> Server:
        self.serving = Serving(self.server)
        return self

    def __exit__(self, *exc: object) -> None:
        self.serving.stop()


def reply(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    return answer


def redirect(location: str, code: int = 302, body: bytes = b"", encoding: str | None = None) -> Handler:
    headers = {"Location": location} | ({"Content-Encoding": encoding} if encoding else {})
    return reply(code, body, headers)


@cache
def bomb() -> bytes:
    """gzip of 512 MiB of zeros: about 500 KiB on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    return b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()


def env_for(url: str, **http: str) -> dict[str, str]:
    return {"TARGET_ADDRESS": url, "CHECK_INTERVAL": "100ms", "DIAL_TIMEOUT": "2s", **http}


# --------------------------------------------------------------------------- JSON over time


def test_not_ready_until_the_json_says_up() -> None:
    state = {"status": "starting"}
    with Server(lambda h: reply(200, json.dumps(state).encode())(h)) as server:
        env = env_for(server.url("/actuator/health"), HTTP_EXPECT_JSON='{"$.status": "UP"}')
        with Running(env, ["--timeout", "30s"]) as running:
            line = running.wait_for_line("is not ready", timeout=15)
            assert 'error="$.status is \\"starting\\", expected \\"UP\\""' in line, line
            assert running.proc.poll() is None
            state["status"] = "UP"
            assert running.wait(20) == 0, running.lines
    assert "is ready" in running.lines[-1]


def test_a_200_that_says_down_is_never_ready() -> None:
    with Server(reply(200, b'{"status": "DOWN"}')) as server:
        env = env_for(
            server.url(), HTTP_EXPECT_JSON='[{"path": "$.status", "equals": "UP"}]', LOG_FORMAT="json"
        )
        result = run_portpatrol(env, ["--timeout", "2s"])
    assert result.code == 124, result.stderr
    assert result.records[-1]["error"] == '$.status is "DOWN", expected "UP"'
    assert len(server.seen) >= 2  # tried again and again, every time 200


def test_body_regex_and_headers_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    with Server(reply(200, b"all healthy", {"Content-Type": "text/plain"})) as server:
        config.write_text(
            f"targets:\n  - address: {server.url()}\n    http:\n      method: POST\n"
            f"      body: '{{\"probe\": true}}'\n      expect:\n        body: 'ok|healthy'\n"
            "        headers: {Content-Type: '^text/'}\n"
        )
        result = run_portpatrol({}, ["--config", str(config), "--timeout", "10s"])
    assert result.code == 0, result.stderr
    assert server.seen[0][0] == "POST"
    assert server.seen[0][3] == b'{"probe": true}'


@pytest.mark.parametrize(
    ("expect", "where"),
    [
        ("        body: '('\n", "http.expect.body"),
        ("        json:\n          - {path: status, equals: UP}\n", "http.expect.json[0].path"),
        ("        json:\n          - {path: $.a, matches: '['}\n", "http.expect.json[0].matches"),
    ],
)
def test_invalid_expressions_are_configuration_errors_with_file_line_and_path(
    tmp_path: Path, expect: str, where: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"targets:\n  - address: http://127.0.0.1:1/\n    http:\n      expect:\n{expect}")
    result = run_portpatrol({}, ["--config", str(config)])
    assert result.code == 2, result.stderr
    assert f"{config}:" in result.stderr
    assert where in result.stderr, result.stderr


def test_an_invalid_env_expectation_names_the_variable() -> None:
    result = run_portpatrol({"TARGET_ADDRESS": "http://127.0.0.1:1/", "HTTP_EXPECT_JSON": '[{"path": "x"}]'})
    assert result.code == 2, result.stderr
    assert "HTTP_EXPECT_JSON" in result.stderr
    assert "condition 1 path" in result.stderr


# --------------------------------------------------------------------------- gzip bombs


def peak_rss_of(argv: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    """Runs `argv` in a fresh Python that waits for it, so getrusage(RUSAGE_CHILDREN) is that
    command's alone: (exit status, seconds, peak RSS in KiB)."""
    code = (
        "import resource, subprocess, sys, time, json\n"
        "start = time.monotonic()\n"
        "quiet = {'stdout': subprocess.DEVNULL, 'stderr': subprocess.DEVNULL}\n"
        "status = subprocess.run(sys.argv[1:], **quiet).returncode\n"
        "print(json.dumps([status, time.monotonic() - start,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], env=minimal_env(env), capture_output=True, timeout=60, check=True
    )
    status, seconds, peak = json.loads(done.stdout)
    return status, seconds, peak


LIMIT_KIB = 150 * 1024


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.test")
    other = trustme.CA().issue_cert("client.test")  # a key that matches none of the above
    paths = {
        "ca": folder / "ca.pem",
        "cert": folder / "client.pem",
        "key": folder / "client.key",
        "other_key": folder / "other.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    other.private_key_pem.write_to_path(str(paths["other_key"]))
    return {"ca": ca, "server": server, **{key: str(value) for key, value in paths.items()}}


def server_context(files: dict[str, Any], *, require_client: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    files["server"].configure_cert(context)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(files["ca"])
    return context


@pytest.mark.parametrize("tls", [False, True], ids=["plain-path", "httpx-path"])
def test_a_gzip_bomb_in_the_body_costs_max_body_not_the_bomb(tls: bool, tls_files: dict[str, Any]) -> None:
    answer = reply(200, bomb(), {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    context = server_context(tls_files) if tls else None
    with Server(answer, context) as server:
        env = env_for(server.url(), HTTP_EXPECT_JSON='{"$.status": "UP"}', HTTP_CA_FILE=tls_files["ca"])
        env["LOG_FORMAT"] = "json"
        status, seconds, peak = peak_rss_of([str(PORTPATROL), "--timeout", "3s"], env)
        result = run_portpatrol(env, ["--timeout", "2s"])
    assert status == 124
    assert result.records[-1]["error"] == "body larger than 1 MiB", result.stderr
    assert seconds < 20
    assert peak < LIMIT_KIB, f"peak RSS {peak} KiB"


@pytest.mark.parametrize("tls", [False, True], ids=["plain-path", "httpx-path"])
def test_a_gzip_bomb_behind_a_redirect_is_never_read(tls: bool, tls_files: dict[str, Any]) -> None:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        if handler.path == "/ok":
            reply(200, b'{"status": "UP"}')(handler)
        else:
            redirect("/ok", 302, bomb(), "gzip")(handler)

    with Server(answer, server_context(tls_files) if tls else None) as server:
        env = env_for(
            server.url("/start"), HTTP_EXPECT_JSON='{"$.status": "UP"}', HTTP_CA_FILE=tls_files["ca"]
        )
        status, seconds, peak = peak_rss_of([str(PORTPATROL), "--timeout", "10s"], env)
    assert status == 0  # the target was ready, and is reported so
    assert seconds < 10
    assert peak < LIMIT_KIB, f"peak RSS {peak} KiB"
    assert [seen[1] for seen in server.seen][:2] == ["/start", "/ok"]


# --------------------------------------------------------------------------- TLS identities


def test_a_private_ca_by_ca_file(tls_files: dict[str, Any]) -> None:
    with Server(reply(200, b'{"status": "UP"}'), server_context(tls_files)) as server:
        trusted = run_portpatrol(env_for(server.url(), HTTP_CA_FILE=tls_files["ca"]), ["--timeout", "10s"])
        untrusted = run_portpatrol(env_for(server.url(), LOG_FORMAT="json"), ["--timeout", "1s"])
    assert trusted.code == 0, trusted.stderr
    assert untrusted.code == 124
    assert (
        "certificate verify failed" in untrusted.records[-1]["error"]
        or "TLS certificate" in (untrusted.records[-1]["error"])
    ), untrusted.stderr


def test_a_server_that_requires_a_client_certificate(tls_files: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "mtls.yaml"
    with Server(reply(200, b'{"ready": true}'), server_context(tls_files, require_client=True)) as server:
        config.write_text(
            f"targets:\n  - address: {server.url('/healthz')}\n    http:\n"
            f"      ca_file: {tls_files['ca']}\n      cert_file: {tls_files['cert']}\n"
            f"      key_file: {tls_files['key']}\n      expect:\n        json:\n"
            "          - {path: $.ready, equals: true}\n"
        )
        with_cert = run_portpatrol({}, ["--config", str(config), "--timeout", "10s"])
        without = run_portpatrol(
            env_for(server.url(), HTTP_CA_FILE=tls_files["ca"], LOG_FORMAT="json"), ["--timeout", "1s"]
        )
    assert with_cert.code == 0, with_cert.stderr
    assert without.code == 124
    assert "certificate required" in without.records[-1]["error"], without.stderr


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"HTTP_CA_FILE": "/nonexistent/ca.pem"}, "HTTP_CA_FILE"),
        ({"HTTP_CERT_FILE": "{cert}", "HTTP_KEY_FILE": "{other_key}"}, "HTTP_KEY_FILE"),
        ({"HTTP_CERT_FILE": "{ca}"}, "HTTP_CERT_FILE"),  # a certificate without its key
        ({"HTTP_CA_FILE": "{key}", "HTTP_CERT_FILE": "{cert}", "HTTP_KEY_FILE": "{key}"}, "HTTP_CA_FILE"),
        ({"HTTP_KEY_FILE": "{key}"}, "HTTP_KEY_FILE"),
        ({"HTTP_CA_FILE": "{key}"}, "HTTP_CA_FILE"),  # not a certificate at all
    ],
)
def test_unusable_tls_files_are_configuration_errors_at_start(
    tls_files: dict[str, Any], variables: dict[str, str], named: str
) -> None:
    env = {"TARGET_ADDRESS": "https://127.0.0.1:1/"} | {
        k: v.format(**tls_files) for k, v in variables.items()
    }
    result = run_portpatrol(env, ["--timeout", "30s"])
    assert result.code == 2, result.stderr
    assert named in result.stderr
    assert result.elapsed < 10  # at start, not retried until the deadline


# --------------------------------------------------------------------------- redirects, both paths


def outcome(check: Any) -> str:
    try:
        check.attempt()
    except NotReady as error:
        return str(error)
    return "ready"


def both(url: str, block: dict[str, Any]) -> tuple[str, str]:
    """The plain-HTTP check and the httpx check on the same settings: their verdicts."""
    spec = kind.parse(url, block)
    return outcome(PlainHttpCheck(spec, 3.0)), outcome(HttpCheck(spec, 3.0))


CREDENTIALS = {"Authorization": "Bearer s3cret-token", "Cookie": "session=abc", "Host": "api.example.test"}


def test_credentials_are_not_forwarded_across_origins() -> None:
    other = Server(reply(200, b'{"status": "UP"}'))
    with other, Server(redirect(other.url("/final"), 307)) as first:
        block = {"headers": tuple(CREDENTIALS.items()), "method": "POST", "body": "probe"}
        verdicts = both(first.url("/start"), block)
    assert verdicts == ("ready", "ready")
    for index in (0, 1):  # plain path, then httpx path
        got = first.headers_of(index)
        assert got["authorization"] == "Bearer s3cret-token"
        assert got["cookie"] == "session=abc"
        assert got["host"] == "api.example.test"
        sent = other.headers_of(index)
        assert "authorization" not in sent, sent
        assert "cookie" not in sent, sent
        assert sent["host"] == f"127.0.0.1:{other.port}"  # its own, not the first server's
        assert other.seen[index][0] == "POST"  # 307 keeps the method and the body
        assert other.seen[index][3] == b"probe"


def test_credentials_stay_within_one_origin() -> None:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        (reply(200) if handler.path == "/final" else redirect("/final", 302))(handler)

    with Server(answer) as server:
        assert both(
            server.url("/start"), {"headers": (("Authorization", "Bearer t"), ("Cookie", "c=1"))}
        ) == (
            "ready",
            "ready",
        )
    for index in (1, 3):  # the second request of each path
        assert server.headers_of(index)["authorization"] == "Bearer t"
        assert server.headers_of(index)["cookie"] == "c=1"


def chain(hops: int) -> Handler:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        step = int(handler.path.strip("/") or 0)
        if step >= hops:
            reply(200, b'{"status": "UP"}')(handler)
        else:
            redirect(f"/{step + 1}", 302, gzip.compress(b"x" * 100000), "gzip")(handler)

    return answer


@pytest.mark.parametrize(
    ("answer", "block", "reason"),
    [
        (
            reply(200, b'{"status": "DOWN"}'),
            {"expect": {"json": [{"path": "$.status", "equals": "UP"}]}},
            '$.status is "DOWN", expected "UP"',
        ),
        (reply(503, b"down"), {"expect": {"body": "ok"}}, "status 503, expected 200"),
        (
            reply(200, b"<html>"),
            {"expect": {"json": [{"path": "$.a"}]}},
            "body is not JSON (first 200 characters: <html>)",
        ),
        (
            reply(200, b"starting"),
            {"expect": {"body": "^ok$"}},
            "body does not match /^ok$/ (first 200 characters: starting)",
        ),
        (
            reply(200, b"{}", {"Content-Type": "text/html"}),
            {"expect": {"headers": {"content-type": "json"}}},
            'header content-type is "text/html", expected to match /json/',
        ),
        (reply(200, b"x" * 3000), {"expect": {"body": "y"}, "max_body": "2KiB"}, "body larger than 2 KiB"),
        (chain(3), {"expect": {"json": [{"path": "$.status", "equals": "UP"}]}}, "ready"),
        (chain(3), {"max_redirects": 2}, "more than 2 redirects"),
        (chain(3), {"follow_redirects": False}, "status 302, expected 200"),
        (redirect("/loop"), {}, "more than 10 redirects"),
        (redirect("/x", 303), {"method": "POST", "body": "b", "expected_status_codes": "303"}, "ready"),
    ],
)
def test_both_paths_give_the_same_verdict(answer: Handler, block: dict[str, Any], reason: str) -> None:
    with Server(answer) as server:
        assert both(server.url("/"), block) == (reason, reason)


def test_a_chunked_body_is_read_on_the_plain_path() -> None:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for piece in (b'{"sta', b'tus": ', b'"UP"}'):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"0\r\n\r\n")

    block = {"expect": {"json": [{"path": "$.status", "equals": "UP"}]}}
    with Server(answer) as server:
        assert both(server.url(), block) == ("ready", "ready")
        check = PlainHttpCheck(kind.parse(server.url(), block), 3.0)
        check.attempt()
    assert check._httpx is None


def test_a_body_that_drips_is_bounded_by_the_attempt() -> None:
    stop = threading.Event()

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        while not stop.wait(0.2):
            try:
                handler.wfile.write(b" ")
                handler.wfile.flush()
            except OSError:
                return

    with Server(answer) as server:
        spec = kind.parse(server.url(), {"expect": {"body": "x"}})
        for check in (PlainHttpCheck(spec, 1.0), HttpCheck(spec, 1.0)):
            start = time.monotonic()
            assert outcome(check) == "no answer within 1s"
            assert time.monotonic() - start < 5
        stop.set()


def test_user_info_a_redirect_names_is_never_used() -> None:
    """A Location with credentials in it: neither path sends them (no Authorization arrives)."""
    other = Server(reply(200))
    with other, Server(redirect(f"http://mallory:pw@127.0.0.1:{other.port}/x", 302)) as first:
        assert both(first.url(), {}) == ("ready", "ready")
    assert len(first.seen) == len(other.seen) == 2  # once by each path
    for index in (0, 1):
        assert "authorization" not in other.headers_of(index)
