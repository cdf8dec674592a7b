"""No secret reaches a log or standard output, in either format, on success, failure, deadline or a
configuration error, including error texts from the HTTP library.

Every secret planted below contains MARK. Each run uses LOG_EXTRA_FIELDS=true (so the target address
is printed too) and a short deadline (so the give-up lines with the last error are printed too), and
the test asserts MARK appears nowhere in stdout or stderr, nor in the base64 or URL-encoded forms a
careless client might print (Basic credentials, an echoed request line)."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.peers import HttpPeer, RecordingProxy, Result, Serving, TcpListener, free_port, run_portpatrol

MARK = "S3CRET"
USERINFO = f"alice:{MARK}-userinfo"
QUERY = f"token={MARK}-token&access_token={MARK}-access&api_key={MARK}-apikey&password={MARK}-pw&page=1"
HEADERS = f"Authorization=Bearer {MARK}-bearer,X-Api-Key={MARK}-apikey-header,Cookie=session={MARK}-cookie"
PROXY_USER = f"bob:{MARK}-proxy"
# Generous for a loaded machine (a ready target must make it within the deadline); speed lives in
# the benchmark.
QUICK = {"DIAL_TIMEOUT": "1s", "CHECK_INTERVAL": "100ms", "PORTPATROL_TIMEOUT": "2s"}


FORMATS = [{"LOG_FORMAT": "text"}, {"LOG_FORMAT": "json"}]


def _forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()]


def assert_no_secret(result: Result, *extra: str) -> None:
    seen = result.stdout + result.stderr
    assert result.stderr, "the run said nothing"
    # Basic credentials are user info in base64: "alice:S3CRET..." is hidden in that form too.
    for secret in (MARK, USERINFO, PROXY_USER, *extra):
        for form in _forms(secret):
            assert form not in seen, (form, result.stdout, result.stderr)
    assert "Traceback" not in seen, result.stderr


def run(env: Mapping[str, str], args: Sequence[str] = (), log: Mapping[str, str] | None = None) -> Result:
    full = {"LOG_EXTRA_FIELDS": "true", **QUICK, **(log or {}), **env}
    return run_portpatrol(full, args, timeout=20)


def http_url(port: int, path: str = "/status/503", scheme: str = "http") -> str:
    return f"{scheme}://{USERINFO}@127.0.0.1:{port}{path}?{QUERY}"


@pytest.fixture(params=FORMATS, ids=["text", "json"])
def log(request: pytest.FixtureRequest) -> dict[str, str]:
    """Both formats, for the broad cases."""
    fmt: dict[str, str] = request.param
    return fmt


@pytest.fixture
def json_log() -> dict[str, str]:
    """JSON lines only, for the narrower cases: its escaping differs from text, and the broad cases
    above already run both formats through the same scrubbing."""
    return {"LOG_FORMAT": "json"}


# --------------------------------------------------------------------------- env source


def test_failing_target_with_every_kind_of_secret(log: dict[str, str]) -> None:
    with HttpPeer() as peer:
        result = run({"TARGET_ADDRESS": http_url(peer.port), "HTTP_HEADERS": HEADERS}, log=log)
        seen = peer.requests
    assert result.code == 124, result.lines
    assert_no_secret(result)
    # The secrets were really used: the peer got them.
    assert seen
    assert seen[0].header_values("Authorization") == [f"Bearer {MARK}-bearer"]
    assert seen[0].header_values("X-Api-Key") == [f"{MARK}-apikey-header"]
    assert f"{MARK}-token" in seen[0].path
    basic = base64.b64encode(USERINFO.encode()).decode()
    assert seen[0].header_values("Authorization") != [f"Basic {basic}"]  # headers win, as written
    assert "did not become ready in time" in result.stderr


def test_ready_target_with_every_kind_of_secret(log: dict[str, str]) -> None:
    with HttpPeer() as peer:
        result = run({"TARGET_ADDRESS": http_url(peer.port, "/status/200"), "HTTP_HEADERS": HEADERS}, log=log)
    assert result.code == 0, result.lines
    assert_no_secret(result)


def test_refused_target(log: dict[str, str]) -> None:
    result = run({"TARGET_ADDRESS": http_url(free_port()), "HTTP_HEADERS": HEADERS}, log=log)
    assert result.code == 124, result.lines
    assert_no_secret(result)


def test_tcp_address_with_userinfo_is_masked(json_log: dict[str, str]) -> None:
    result = run({"TARGET_ADDRESS": f"tcp://{USERINFO}@127.0.0.1:{free_port()}"}, log=json_log)
    assert result.code in (2, 124), result.lines
    assert_no_secret(result)


def test_tls_failure(log: dict[str, str], tls_server: tuple[ssl.SSLContext, Path]) -> None:
    with HttpPeer(tls=tls_server[0]) as peer:
        env = {"TARGET_ADDRESS": http_url(peer.port, scheme="https"), "HTTP_HEADERS": HEADERS}
        result = run(env, log=log)
    assert result.code == 124, result.lines
    assert "TLS certificate" in result.stderr
    assert_no_secret(result)


def test_tls_stall(json_log: dict[str, str]) -> None:
    with TcpListener(silent=True) as peer:
        env = {"TARGET_ADDRESS": http_url(peer.port, scheme="https"), "HTTP_HEADERS": HEADERS}
        result = run(env, log=json_log)
    assert result.code == 124, result.lines
    assert_no_secret(result)


class EchoingPeer:
    """A broken HTTP peer that answers with an unparsable status line echoing the request it got
    (our headers, credentials included): the HTTP library's error text then quotes those bytes."""

    def __init__(self, status: bytes = b"2x0") -> None:
        self.status = status
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.seen: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    request = conn.recv(65536)
                    self.seen.append(request)
                    echo = request.replace(b"\r\n", b" | ")
                    conn.sendall(b"HTTP/1.1 " + self.status + b" " + echo + b"\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def __enter__(self) -> EchoingPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.mark.parametrize("method", ["GET", "POST"], ids=["plain", "httpx"])
@pytest.mark.parametrize("userinfo", [True, False], ids=["userinfo", "headers"])
def test_peer_echoing_our_request_in_an_error(json_log: dict[str, str], method: str, userinfo: bool) -> None:
    with EchoingPeer() as peer:
        url = http_url(peer.port, "/") if userinfo else f"http://127.0.0.1:{peer.port}/?{QUERY}"
        env = {"TARGET_ADDRESS": url, "HTTP_HEADERS": HEADERS, "HTTP_METHOD": method}
        if userinfo:
            del env["HTTP_HEADERS"]  # so that httpx sends the user info as Basic credentials
        result = run(env, log=json_log)
        seen = b"".join(peer.seen)
    assert result.code == 124, result.lines
    assert MARK.encode() in seen or base64.b64encode(USERINFO.encode()) in seen  # the secrets went out
    assert "illegal status line" in result.stderr
    assert_no_secret(result)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_echoing_our_request_in_its_reason(json_log: dict[str, str], scheme: str) -> None:
    """A proxy refusing with 407 and our request (Proxy-Authorization included) as reason phrase."""
    with EchoingPeer(b"407") as proxy:
        env = {
            "TARGET_ADDRESS": http_url(free_port(), scheme=scheme),
            "HTTP_HEADERS": HEADERS,
            f"{scheme.upper()}_PROXY": f"http://{PROXY_USER}@127.0.0.1:{proxy.port}",
        }
        result = run(env, log=json_log)
        seen = b"".join(proxy.seen)
    assert result.code == 124, result.lines
    assert base64.b64encode(PROXY_USER.encode()) in seen  # the proxy got the credentials
    assert "407" in result.stderr
    assert_no_secret(result)


# --------------------------------------------------------------------------- proxies


def test_proxy_with_credentials_that_refuses(log: dict[str, str]) -> None:
    env = {
        "TARGET_ADDRESS": http_url(free_port()),
        "HTTP_HEADERS": HEADERS,
        "HTTP_PROXY": f"http://{PROXY_USER}@127.0.0.1:{free_port()}",
    }
    result = run(env, log=log)
    assert result.code == 124, result.lines
    assert_no_secret(result)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_proxy_with_credentials_that_forwards(json_log: dict[str, str], variable: str) -> None:
    with HttpPeer() as peer, RecordingProxy() as proxy:
        env = {
            "TARGET_ADDRESS": http_url(peer.port),
            "HTTP_HEADERS": HEADERS,
            variable: f"http://{PROXY_USER}@127.0.0.1:{proxy.port}",
        }
        result = run(env, log=json_log)
        seen = list(proxy.seen)
    assert result.code == 124, result.lines
    assert seen, "the proxy was not used"
    assert_no_secret(result)


def test_https_through_proxy_with_credentials(
    json_log: dict[str, str], tls_server: tuple[ssl.SSLContext, Path]
) -> None:
    with HttpPeer(tls=tls_server[0]) as peer, RecordingProxy() as proxy:
        env = {
            "TARGET_ADDRESS": http_url(peer.port, scheme="https"),
            "HTTP_HEADERS": HEADERS,
            "HTTPS_PROXY": f"http://{PROXY_USER}@127.0.0.1:{proxy.port}",
        }
        result = run(env, log=json_log)
        seen = list(proxy.seen)
    assert result.code == 124, result.lines
    assert seen
    assert seen[0][0] == "CONNECT"
    assert_no_secret(result)


class _ProxyAuthRequired(BaseHTTPRequestHandler):
    """A proxy that refuses every request and tunnel with 407."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _refuse(self) -> None:
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="x"')
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    do_GET = do_CONNECT = _refuse


@pytest.fixture
def refusing_proxy() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyAuthRequired)
    server.daemon_threads = True
    with Serving(server):
        yield int(server.server_address[1])


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_that_demands_authentication(
    json_log: dict[str, str], refusing_proxy: int, scheme: str
) -> None:
    env = {
        "TARGET_ADDRESS": http_url(free_port(), scheme=scheme),
        "HTTP_HEADERS": HEADERS,
        f"{scheme.upper()}_PROXY": f"http://{PROXY_USER}@127.0.0.1:{refusing_proxy}",
    }
    result = run(env, log=json_log)
    assert result.code == 124, result.lines
    assert_no_secret(result)


# --------------------------------------------------------------------------- redirects with credentials


class _Redirect(BaseHTTPRequestHandler):
    location = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize(
    "location",
    [
        f"http://carol:{MARK}-redirect@127.0.0.1:{{closed}}/next?token={MARK}-redirect-token",
        f"ftp://carol:{MARK}-redirect@127.0.0.1/",
        f"http://carol:{MARK}-redirect@127.0.0.1:notaport/",
        f"https://carol:{MARK}-redirect@127.0.0.1:{{closed}}/",
    ],
    ids=["refused", "unsupported-scheme", "invalid-location", "https"],
)
def test_redirect_to_a_url_with_credentials(json_log: dict[str, str], location: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    server.location = location.replace("{closed}", str(free_port()))  # type: ignore[attr-defined]
    with Serving(server):
        env = {
            "TARGET_ADDRESS": f"http://{USERINFO}@127.0.0.1:{server.server_address[1]}/",
            "HTTP_HEADERS": HEADERS,
        }
        result = run(env, log=json_log)
    assert result.code == 124, result.lines
    assert "is not ready" in result.stderr
    assert_no_secret(result)


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"TARGET_ADDRESS": f"http://{USERINFO}@exam ple.invalid/?{QUERY}"}),
        pytest.param({"TARGET_ADDRESS": f"htp://{USERINFO}@127.0.0.1/?{QUERY}"}),
        {"TARGET_ADDRESS": f"tcp://{USERINFO}@127.0.0.1:99999"},
        {"TARGET_ADDRESS": "http://127.0.0.1:1/", "HTTP_HEADERS": f"Authorization Bearer {MARK}-nopair"},
        {"TARGET_ADDRESS": "http://127.0.0.1:1/", "HTTP_HEADERS": f"A=1,=Bearer {MARK}-nokey"},
        {
            "TARGET_ADDRESS": "http://127.0.0.1:1/",
            "HTTP_HEADERS": f"Authorization=x {MARK}-dup,authorization=y",
        },
        {"TARGET_ADDRESS": "http://127.0.0.1:1/", "HTTP_HEADERS": f"Bad Name=Bearer {MARK}-badname"},
        {"TARGET_ADDRESS": "http://127.0.0.1:1/", "HTTP_PROXY": f"http://{PROXY_USER}@exam ple.invalid:3128"},
        {"TARGET_ADDRESS": "http://127.0.0.1:1/", "HTTP_PROXY": f"socks5://{PROXY_USER}@127.0.0.1:1080"},
        {"TARGET_ADDRESS": "http://127.0.0.1:1/", "HTTP_PROXY": f"http://{PROXY_USER}@127.0.0.1:notaport"},
        {
            "TARGET_ADDRESS": f"http://{USERINFO}@127.0.0.1:1/?{QUERY}",
            "HTTP_HEADERS": HEADERS,
            "CHECK_INTERVAL": "5",
            "HTTP_METHOD": "G E T",
        },
    ],
    ids=[
        "address-space",
        "address-scheme",
        "address-port",
        "header-no-equals",
        "header-no-name",
        "header-duplicate",
        "header-bad-name",
        "proxy-space",
        "proxy-scheme",
        "proxy-port",
        "other-errors",
    ],
)
def test_configuration_errors_do_not_quote_secrets(env: dict[str, str]) -> None:
    # Configuration errors are plain `portpatrol:` lines whatever LOG_FORMAT says.
    result = run(env, log={"LOG_FORMAT": "json"})
    assert result.code == 2, result.lines
    assert all(line.startswith("portpatrol: ") for line in result.lines), result.lines
    assert_no_secret(result)


# --------------------------------------------------------------------------- target arguments


def test_target_arguments_with_secrets(log: dict[str, str]) -> None:
    with HttpPeer() as peer:
        result = run({}, [http_url(peer.port), f"tcp://{USERINFO}@127.0.0.1:{free_port()}"], log=log)
    assert result.code == 124, result.lines
    assert_no_secret(result)


def test_validate_prints_the_plan_without_secrets() -> None:
    env = {
        "TARGET_ADDRESS": http_url(8080),
        "HTTP_HEADERS": HEADERS,
        "HTTP_PROXY": f"http://{PROXY_USER}@127.0.0.1:3128",
    }
    result = run_portpatrol(env, ["validate", http_url(8081)], timeout=20)
    assert result.code == 0, result.stderr
    assert result.stdout
    seen = result.stdout + result.stderr
    for form in _forms(MARK):
        assert form not in seen, seen


# --------------------------------------------------------------------------- the config file


CONFIG = """
timeout: 1s
defaults: {interval: 200ms, dial_timeout: 300ms}
targets:
  - name: api
    address: "http://alice:${PASSWORD}@127.0.0.1:${PORT}/status/503?token=${TOKEN}"
    http:
      headers: {Authorization: "Bearer ${API_TOKEN}", X-Plain: "literal-${API_TOKEN}-suffix"}
  - name: db
    address: "tcp://127.0.0.1:${CLOSED}"
"""

CONFIG_ENV = {
    "PASSWORD": f"{MARK}-file-password",
    "TOKEN": f"{MARK}-file-token",
    "API_TOKEN": f"{MARK}-file-bearer",
}


def test_interpolated_variables_never_logged(log: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "pp.yaml"
    config.write_text(CONFIG)
    with HttpPeer() as peer:
        env = {**CONFIG_ENV, "PORT": str(peer.port), "CLOSED": str(free_port())}
        result = run(env, ["--config", str(config)], log=log)
        seen = peer.requests
    assert result.code == 124, result.lines
    assert seen
    assert seen[0].header_values("Authorization") == [f"Bearer {MARK}-file-bearer"]
    assert_no_secret(result)


@pytest.mark.parametrize(
    "document",
    [
        'targets: [{address: "http://127.0.0.1:${PORT}/"}]',
        'targets: [{address: "tcp://127.0.0.1:${PORT}"}]',
        'targets: [{address: "${PORT}"}]',
        'targets: [{address: "http://127.0.0.1:1/", interval: "${PORT}"}]',
        'targets: [{address: "http://127.0.0.1:1/", http: {method: "${PORT}"}}]',
        'targets: [{address: "http://127.0.0.1:1/", http: {expected_status_codes: "${PORT}"}}]',
        'targets: [{address: "http://127.0.0.1:1/", http: {headers: {"${PORT}": x}}}]',
        'targets: [{address: "http://127.0.0.1:1/", name: "${PORT}\\u0001"}]',
    ],
)
def test_bad_interpolated_values_are_not_quoted(tmp_path: Path, document: str) -> None:
    """A variable holding a secret that makes a value invalid: the error names the key, not the value."""
    config = tmp_path / "pp.yaml"
    config.write_text(document + "\n")
    result = run({"PORT": f"{MARK} not:a/port\x01"}, ["--config", str(config)])
    assert result.code in (2, 124), result.lines
    assert_no_secret(result)


# --------------------------------------------------------------------------- issue 11.2: every leak found

CASES_11_2 = {
    "curl-header": ([], {"HTTP_HEADERS": f"Authorization: Basic {MARK}dXNlcjpwYXNz"}),
    "curl-header-with-equals": ([], {"HTTP_HEADERS": f"Authorization: Basic {MARK}dXNlcjpwYXNz=="}),
    "header-name-slash": ([], {"HTTP_HEADERS": f"{MARK}/abc=1"}),
    "schemeless-userinfo": ([f"alice:{MARK}@127.0.0.1"], {}),
    "one-slash-typo": ([f"http:/alice:{MARK}@127.0.0.1"], {}),
    "password-with-space": ([f"http://alice:a {MARK}@127.0.0.1/"], {}),
    "schemeless-proxy": ([], {"HTTP_PROXY": f"bob:{MARK}@127.0.0.1:notaport"}),
    "timeout-takes-the-url": (["--timeout", f"http://alice:{MARK}@127.0.0.1:1/"], {}),
    "unknown-option": ([f"--bogus=http://alice:{MARK}@127.0.0.1:1/"], {}),
    "ambiguous-option": ([f"--ti=http://alice:{MARK}@127.0.0.1:1/"], {}),
    "workers-takes-the-url": (["--workers", f"http://alice:{MARK}@127.0.0.1:1/"], {}),
    "jitter-takes-the-url": (["--jitter", f"http://alice:{MARK}@127.0.0.1:1/"], {}),
    "report-takes-the-url": (["--report", f"http://alice:{MARK}@127.0.0.1:1/", "127.0.0.1:1"], {}),
    "config-takes-the-url": (["--config", f"http://alice:{MARK}@127.0.0.1:1/"], {}),
    "token-as-user-bad-port": ([f"https://{MARK}@127.0.0.1:99999/"], {}),
}


@pytest.mark.parametrize(("args", "env"), CASES_11_2.values(), ids=CASES_11_2.keys())
def test_configuration_errors_found_leaking_in_issue_11_2(args: list[str], env: dict[str, str]) -> None:
    environ = {"TARGET_ADDRESS": "http://127.0.0.1:1/", **env} if env else {}
    result = run_portpatrol(environ, ["validate", *args], timeout=20)
    assert result.code == 2, result.lines
    assert all(line.startswith("portpatrol: ") for line in result.lines), result.lines
    assert_no_secret(result)


@pytest.mark.parametrize(
    "address",
    [f"https://{MARK}@127.0.0.1/", f"https://{MARK}:@127.0.0.1/", f"https://{MARK}:x-oauth-basic@127.0.0.1/"],
    ids=["token-as-user", "token-with-empty-password", "token-with-a-fixed-password"],
)
def test_validate_shows_no_user_info_at_all(address: str) -> None:
    """A token is often written as the user (`https://TOKEN@host`, GitHub's `TOKEN:x-oauth-basic`):
    validate's ADDRESS column shows `***@` for the whole user info."""
    result = run_portpatrol({}, ["validate", address], timeout=20)
    assert result.code == 0, result.stderr
    assert "https://***@127.0.0.1/" in result.stdout, result.stdout
    assert_no_secret(Result(0, result.stdout, result.stdout + result.stderr, 0.0))


# --------------------------------------------------------------------------- issue 11.4


def test_a_secret_echoed_lower_cased_is_masked_in_logs_and_report(
    log: dict[str, str], tmp_path: Path
) -> None:
    """A peer that quotes a secret back in another case: here a command's last line of output."""
    report, config = tmp_path / "report.json", tmp_path / "pp.yaml"
    script = 'echo "login refused for $(echo ${API_TOKEN} | tr A-Z a-z)"; exit 1'
    config.write_text(f"targets: [{{name: login, command: [sh, -c, {json.dumps(script)}]}}]\n")
    result = run(
        {"API_TOKEN": f"{MARK}-Api-Key"}, ["--config", str(config), "--report", str(report)], log=log
    )
    assert result.code == 124, result.lines
    assert "login refused for ***" in result.stderr, result.stderr  # the peer's words, the secret masked
    assert_no_secret(result, f"{MARK}-api-key".lower())
    assert f"{MARK}-api-key".lower() not in report.read_text()
    [entry] = json.loads(report.read_text())["targets"]
    assert "login refused for ***" in entry["last_error"], entry


def test_a_short_secret_corrupts_no_field(log: dict[str, str], tmp_path: Path) -> None:
    """HTTP_HEADERS=X-Debug=1 turned the time field into 2026-***2-02...; now the fields we write,
    the address and the report are as they are."""
    report = tmp_path / "report.json"
    with HttpPeer() as peer:
        url = f"http://127.0.0.1:{peer.port}/flaky/1/200"
        env = {"TARGET_ADDRESS": url, "HTTP_HEADERS": "X-Debug=1", "PORTPATROL_TIMEOUT": "10s"}
        result = run(env, ["--report", str(report)], log=log)
        seen = peer.requests
    assert result.code == 0, result.lines
    assert seen[0].header_values("X-Debug") == ["1"]
    assert "***" not in result.stderr + report.read_text(), result.stderr
    records = result.records
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records), records
    assert records[0]["msg"] == "Waiting for 127.0.0.1 to become ready..."
    assert records[0]["target_address"] == url
    assert records[1]["error"] == "status 503, expected 200", records[1]
    assert records[-1]["msg"] == "127.0.0.1 is ready ✓"
    [entry] = json.loads(report.read_text())["targets"]
    assert (entry["name"], entry["address"]) == ("127.0.0.1", url)
