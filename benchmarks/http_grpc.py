"""Issue 13's budgets: start-up of an HTTP target with a JSON expectation (<= 4.5x `python -c pass`),
of a gRPC target (<= 6x), and the CPU one 1 MiB JSON body costs to check (<= 20 ms).

    .venv/bin/python benchmarks/http_grpc.py [--runs 40]

Start-up: hyperfine (-N), every command in one run so the ratios come from the same minutes of a
noisy machine; the targets are real servers on loopback already up (an http.server answering JSON,
a grpcio server with the standard health servicer at SERVING). Also the CPU time (user + system) of
each command, which a loaded machine distorts less than wall time. The JSON check: read_body and
judge() on a 1 MiB document of ~12,000 nodes, process CPU time, median of 30.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

BIN = Path(sys.executable).parent
BODY = json.dumps({"status": "UP", "checks": [{"name": "db", "state": "pass"}]}).encode()


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # portpatrol closes once it has what it judges: a reset here is expected


class _Json(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def commands(http_port: int, grpc_port: int) -> list[tuple[str, list[str]]]:
    portpatrol = str(BIN / "portpatrol")
    url = f"http://127.0.0.1:{http_port}/health"
    env = "/usr/bin/env"
    return [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("HTTP, status only", [env, f"TARGET_ADDRESS={url}", portpatrol]),
        (
            "HTTP, JSON expectation (env)",
            [env, f"TARGET_ADDRESS={url}", 'HTTP_EXPECT_JSON={"$.status": "UP"}', portpatrol],
        ),
        ("HTTP, JSON expectation (--expect-json)", [portpatrol, "--expect-json", '{"$.status": "UP"}', url]),
        ("gRPC health check", [env, f"TARGET_ADDRESS=grpc://127.0.0.1:{grpc_port}", portpatrol]),
    ]


def hyperfine(rows: list[tuple[str, list[str]]], runs: int, folder: Path) -> list[dict[str, Any]]:
    export = folder / "hyperfine.json"
    argv = ["hyperfine", "-N", "--runs", str(runs), "--warmup", "3", "--style", "none"]
    argv += ["--export-json", str(export)]
    for name, command in rows:
        argv += ["--command-name", name, shlex.join(command)]
    subprocess.run(argv, check=True)
    return list(json.loads(export.read_text())["results"])


def cpu_ms(command: list[str], runs: int) -> float:
    """Median CPU time (user + system, ms) of one run of `command`."""
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(times)


def json_check_ms() -> tuple[int, int, float, float]:
    """(body bytes, JSON nodes, median CPU ms of read_body + judge, of json.loads alone)."""
    from portpatrol.kinds.httpanswer import parse, read_body

    checks = [{"name": f"check-{i}", "state": "pass", "latency_ms": i % 97} for i in range(2400)]
    document: dict[str, Any] = {"status": "UP", "checks": checks}
    raw = json.dumps(document).encode()
    document["padding"] = "x" * (1024 * 1024 - len(raw) - 16)
    raw = json.dumps(document).encode()
    nodes = 3 + len(checks) * 4 + 1
    expectations = parse(
        {
            "expect": {
                "json": [
                    {"path": "$.status", "equals": "UP"},
                    {"path": "$.checks[*].state", "matches": "^(pass|warn)$"},
                ]
            },
            "max_body": "2MiB",
        }
    )
    chunks = [raw[i : i + 65536] for i in range(0, len(raw), 65536)]

    def once() -> None:
        expectations.judge((), read_body(chunks, None, expectations.max_body), "application/json")

    def median_cpu(work: Any) -> float:
        work()
        times = []
        for _ in range(30):
            start = time.process_time()
            work()
            times.append((time.process_time() - start) * 1000)
        return statistics.median(times)

    return len(raw), nodes, median_cpu(once), median_cpu(lambda: json.loads(raw))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    web = _Quiet(("127.0.0.1", 0), _Json)
    web.daemon_threads = True
    threading.Thread(target=web.serve_forever, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        rows = commands(web.server_address[1], grpc_port)
        with tempfile.TemporaryDirectory() as folder:
            results = hyperfine(rows, args.runs, Path(folder))
        cpu = [cpu_ms(command, max(10, args.runs // 2)) for _, command in rows]
    finally:
        server.stop(grace=None)
        web.shutdown()
    floor, floor_cpu = results[0]["median"], cpu[0]
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'command':42} {'median ms':>10} {'x floor':>8} {'min x':>6} {'CPU ms':>7} {'CPU x':>6}")
    for (name, _), result, used in zip(rows, results, cpu, strict=True):
        ratio, low = result["median"] / floor, result["min"] / results[0]["min"]
        wall = result["median"] * 1000
        print(f"{name:42} {wall:10.1f} {ratio:8.2f} {low:6.2f} {used:7.1f} {used / floor_cpu:6.2f}")
    size, nodes, check, loads = json_check_ms()
    print(
        f"1 MiB JSON check: {size} bytes, {nodes} nodes: {check:.1f} ms CPU (json.loads alone {loads:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
