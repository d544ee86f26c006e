"""Benchmark: `fedictl check`'s web checks of 50 instances take at most 1.5 x one instance's time.

Target (issue #7): 50 instances behind a local server that adds 200 ms to every HTTP answer;
wall time for all 50 <= 1.5 x the wall time for one. The instances are the stand-ins of
tests/test_check_fixtures.py (throwaway CA, saved Mastodon answers, routing by name), each on its
own domain, served by one HTTPS and one HTTP server on 127.0.0.1 in a separate process (so its
Python work does not share the checker's interpreter lock). An inventory holds at most one
instance per app, so this times the core (`fedictl.check.run`: every web check, no host checks)
rather than the CLI, which adds loading the inventory once. The server speaks HTTP/2 as nginx
with `http2 on` does (`--http1`: a server without it). It also reports the CPU time the checker
and the server spent in each 50-instance run, which is what limits that figure on a small machine,
and how many TLS connections each instance cost.

Run from the repository root:
  .venv/bin/python bench/check_latency.py [--runs 5] [--count 50] [--latency 0.2] [--http1]
Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_check_fixtures import CA, FakeInstances

from fedictl import check
from fedictl.check_http import Network


def domains(count: int) -> list[str]:
    return [f"m{n:02d}.bench.test" for n in range(count)]


def serve(directory: Path, count: int, latency: float, http2: bool) -> None:
    """The server process: print the two ports, serve until stdin closes, report CPU time."""
    fake = FakeInstances(CA(directory), http2=http2)
    for domain in domains(count):
        fake.add("mastodon", domain)
    fake.latency = latency
    fake.start()
    print(json.dumps([fake.https_port, fake.http_port]), flush=True)
    sys.stdin.read()
    fake.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "cpu": usage.ru_utime + usage.ru_stime,
                "requests": len(fake.requests),
                "tls_connections": fake.connections[True],
            }
        )
    )


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to each answer")
    parser.add_argument(
        "--http1", action="store_true", help="a server without HTTP/2 (nginx without http2 on)"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.count, args.latency, http2=not args.http1)
        return 0

    directory = Path(tempfile.mkdtemp(prefix="fedictl-bench-"))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(directory), "--count", str(args.count),
         "--latency", str(args.latency), *(["--http1"] if args.http1 else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    https_port, http_port = json.loads(server.stdout.readline())
    names = domains(args.count)
    network = Network(
        resolve=dict.fromkeys(names, "127.0.0.1"),
        connect_to={
            **{(n, 443): ("127.0.0.1", https_port) for n in names},
            **{(n, 80): ("127.0.0.1", http_port) for n in names},
        },
    )
    every = [check.Instance("mastodon", n, n, "v4.6.5", (), "admin") for n in names]
    options = check.Options(
        checks=check.selected_checks([], ["host"]),
        ca_file=directory / "ca.pem",
        network=network,
        timeout=10,
    )
    one: list[float] = []
    many: list[float] = []
    many_cpu: list[float] = []
    server_cpu: list[float] = []
    try:
        for _ in range(args.runs):
            for chosen, times in ((every[:1], one), (every, many)):
                started, used, served_cpu = time.monotonic(), cpu(), cpu_of(server.pid)
                report = check.run(chosen, options, None)
                times.append(time.monotonic() - started)
                if len(chosen) > 1:
                    many_cpu.append(cpu() - used)
                    server_cpu.append(cpu_of(server.pid) - served_cpu)
                bad = [r for r in report.results if r.status is not check.Status.OK]
                assert not bad, "\n".join(check.table(report))
    finally:
        server.stdin.close()
        served = json.loads(server.stdout.readline() or "{}")
        server.wait()

    ratio = statistics.median(many) / statistics.median(one)
    runs = args.runs * (1 + args.count)
    per_instance = served.get("requests", 0) / runs
    handshakes = served.get("tls_connections", 0) / runs
    print(
        f"{args.count} instances, {per_instance:.0f} HTTP requests and {handshakes:.1f} TLS "
        f"connections each ({'HTTP/1.1' if args.http1 else 'HTTP/2'} server), "
        f"{args.latency * 1000:.0f} ms added to every answer"
    )
    print(f"1 instance:   median {statistics.median(one):.2f} s  (runs: {_list(one)})")
    print(f"{args.count} instances: median {statistics.median(many):.2f} s  (runs: {_list(many)})")
    print(
        f"CPU per {args.count}-instance run (median): checker {statistics.median(many_cpu):.2f} s, "
        f"server {statistics.median(server_cpu):.2f} s; load average {os.getloadavg()[0]:.2f}"
    )
    verdict = "met" if ratio <= 1.5 else "MISSED"
    print(f"ratio {ratio:.2f} (target <= 1.5): {verdict}")
    return 0 if ratio <= 1.5 else 1


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
