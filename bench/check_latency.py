"""Benchmark: `fedictl check`'s web checks of 50 instances take at most 1.5 x one instance's time.

Target (issue #7): 50 instances behind a local server that adds 200 ms to every HTTP answer;
wall time for all 50 <= 1.5 x the wall time for one. The instances are the stand-ins of
tests/test_check_fixtures.py (throwaway CA, saved Mastodon answers, routing by name), each on its
own domain with its own certificate. The server runs in a separate process:
- `--server nginx` (default): real nginx, configured as the nginx role does (workers, TLS 1.2/1.3,
  HTTP/2), one site per domain, proxying every request over keep-alive connections to a small
  asyncio backend that waits the latency and answers with the saved answers. nginx comes from
  PATH, or Debian's package is unpacked (not installed) into ~/.cache/fedictl-bench/nginx.
- `--server python`: the tests' own Python server (threads), which speaks HTTP/2 like nginx.
An inventory holds at most one instance per app, so this times the core (`fedictl.check.run`:
every web check, no host checks) rather than the CLI. `--http1` is a server without HTTP/2;
`--one-process` keeps the checker from sharing the instances out to a process per core. It also
reports the CPU time the checker (with its forks) and the server (nginx's workers and the backend)
spent in each 50-instance run, and how many TLS connections each instance cost.

Run from the repository root:
  .venv/bin/python bench/check_latency.py [--runs 5] [--count 50] [--latency 0.2]
      [--server nginx|python] [--http1] [--one-process]
Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http import HTTPStatus
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_check_fixtures import CA, FakeInstances

from fedictl import check
from fedictl.check import processes as check_processes
from fedictl.check_http import Network


def domains(count: int) -> list[str]:
    return [f"m{n:02d}.bench.test" for n in range(count)]


def serve(directory: Path, count: int, latency: float, http2: bool) -> None:
    """The server process: print the two ports, serve until stdin closes, report what it served."""
    fake = FakeInstances(CA(directory), http2=http2)
    for domain in domains(count):
        fake.add("mastodon", domain)
    fake.latency = latency
    fake.start()
    print(json.dumps([fake.https_port, fake.http_port]), flush=True)
    sys.stdin.read()
    fake.stop()
    print(json.dumps({"requests": len(fake.requests), "tls_connections": fake.connections[True]}))


def serve_nginx(directory: Path, count: int, latency: float, http2: bool, binary: Path) -> None:
    """The nginx server process: nginx in front of a backend that adds the latency.

    nginx terminates TLS for every domain with its own certificate (SNI) and speaks HTTP/2 as the
    nginx role configures it; it proxies every request, over keep-alive connections, to a small
    asyncio backend in this process that waits ``latency`` and answers with the same saved
    answers (by Host; port 80 answers with the redirect to HTTPS, as the role's port-80 site).
    """
    ca = CA(directory)
    fake = FakeInstances(ca, http2=http2)  # for its routes; its own servers are not started
    names = domains(count)
    for domain in names:
        fake.add("mastodon", domain)
    backend = _Backend(fake, latency)
    https_port, http_port = _free_port(), _free_port()
    conf = nginx_conf(directory, ca, names, https_port, http_port, backend.port, http2, binary)
    nginx = subprocess.Popen(
        [str(binary), "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
    )
    for port in (https_port, http_port):
        _wait_for(port, nginx)
    print(json.dumps([https_port, http_port]), flush=True)
    sys.stdin.read()
    nginx.terminate()
    nginx.wait()
    log = (directory / "access.log").read_text().split()
    connections = {c for scheme, c in zip(log[::2], log[1::2], strict=True) if scheme == "https"}
    print(json.dumps({"requests": backend.requests, "tls_connections": len(connections)}))


def nginx_version(binary: Path) -> tuple[int, ...]:
    out = subprocess.run([str(binary), "-v"], capture_output=True, text=True, check=True).stderr
    return tuple(int(n) for n in out.split("/", 1)[1].split()[0].split("."))


def nginx_conf(
    directory: Path,
    ca: CA,
    names: list[str],
    https_port: int,
    http_port: int,
    backend_port: int,
    http2: bool,
    binary: Path,
) -> Path:
    """An nginx.conf like the nginx role's (workers, TLS, HTTP/2, keep-alive), one site a domain."""
    modern = nginx_version(binary) >= (1, 25, 1)  # `http2 on;` replaced `listen ... http2`
    listen = f"listen 127.0.0.1:{https_port} ssl{' http2' if http2 and not modern else ''};"
    sites = []
    for name in names:
        cert, key = ca.issue([name])
        sites.append(
            f"""    server {{
        {listen}
        {"http2 on;" if http2 and modern else ""}
        server_name {name};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ proxy_pass http://backend; }}
    }}
"""
        )
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""{user}
worker_processes auto;
pid {directory}/nginx.pid;
daemon off;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    log_format bench '$scheme $connection';
    access_log {directory}/access.log bench;
    error_log {directory}/error.log;
    server_tokens off;
    keepalive_timeout 65s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 512; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-Proto $scheme;
    server {{
        listen 127.0.0.1:{http_port};
        server_name _;
        location / {{ proxy_pass http://backend; }}
    }}
{"".join(sites)}}}
"""
    )
    return conf


class _Backend:
    """HTTP/1.1 keep-alive behind nginx: waits the latency, answers by Host and scheme."""

    def __init__(self, fake: FakeInstances, latency: float) -> None:
        self.fake = fake
        self.latency = latency
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        )
        self.port: int = self.server.sockets[0].getsockname()[1]
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                )
                host = headers.get("host", "").rsplit(":", 1)[0].lower()
                tls = headers.get("x-forwarded-proto") == "https"
                route = self.fake.sites(tls).get(host, {}).get(path) or self.fake.fallback(
                    tls, host, path
                )
                self.requests += 1
                await asyncio.sleep(route.delay + self.latency)
                fields = {
                    "Content-Type": route.content_type,
                    "Content-Length": str(len(route.body)),
                    **route.headers,
                }
                status = f"HTTP/1.1 {route.status} {HTTPStatus(route.status).phrase}\r\n"
                writer.write(
                    (status + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode()
                    + route.body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise SystemExit(f"nginx exited with {process.returncode}: see its error.log")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nginx did not listen on {port}")


def find_nginx(cache: Path) -> Path:
    """nginx from PATH, else Debian's package unpacked (not installed) into ``cache``."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found:
        return Path(found)
    binary = cache / "usr" / "sbin" / "nginx"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"nginx is not installed: unpacking Debian's package into {cache}", file=sys.stderr)
        subprocess.run(["apt-get", "download", "-q", "nginx"], cwd=cache, check=True)
        deb = next(cache.glob("nginx_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(cache)], check=True)
    return binary


def cpu() -> float:
    """CPU seconds of the checker: this process and the processes it forked and waited for."""
    own, forked = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + forked.ru_utime + forked.ru_stime


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process and its children have used so far (Linux /proc)."""
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
    tree, grew = {pid}, True
    while grew:
        more = {p for p, fields in stats.items() if int(fields[1]) in tree} - tree
        tree |= more
        grew = bool(more)
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to each answer")
    parser.add_argument(
        "--http1", action="store_true", help="a server without HTTP/2 (nginx without http2 on)"
    )
    parser.add_argument(
        "--server",
        choices=["nginx", "python"],
        default="nginx",
        help="nginx in front of a latency-adding backend (default), or the tests' Python server",
    )
    parser.add_argument(
        "--nginx", type=Path, help="the nginx binary (default: PATH, else unpacked)"
    )
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="keep every instance in one process (no fork per core), for comparison",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        if args.server == "nginx":
            serve_nginx(args.serve, args.count, args.latency, not args.http1, args.nginx)
        else:
            serve(args.serve, args.count, args.latency, http2=not args.http1)
        return 0
    if args.server == "nginx":
        args.nginx = args.nginx or find_nginx(Path.home() / ".cache" / "fedictl-bench" / "nginx")

    directory = Path(tempfile.mkdtemp(prefix="fedictl-bench-"))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(directory), "--count", str(args.count),
         "--latency", str(args.latency), "--server", args.server,
         *(["--nginx", str(args.nginx)] if args.nginx else []),
         *(["--http1"] if args.http1 else [])],
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
    if args.one_process:
        check_processes.SPLIT_AT = args.count + 1
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
    processes = 1
    try:
        for _ in range(args.runs):
            for chosen, times in ((every[:1], one), (every, many)):
                started, used, served_cpu = time.monotonic(), cpu(), cpu_of(server.pid)
                report = check.run(chosen, options, None)
                times.append(time.monotonic() - started)
                if len(chosen) > 1:
                    many_cpu.append(cpu() - used)
                    server_cpu.append(cpu_of(server.pid) - served_cpu)
                    processes = report.processes
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
        f"{args.latency * 1000:.0f} ms added to every answer; {args.server} server"
    )
    print(f"1 instance:   median {statistics.median(one):.2f} s  (runs: {_list(one)})")
    print(
        f"{args.count} instances: median {statistics.median(many):.2f} s  (runs: {_list(many)}; "
        f"checked by {processes} process{'es' if processes > 1 else ''})"
    )
    print(
        f"CPU per {args.count}-instance run (median): checker {statistics.median(many_cpu):.2f} s "
        "(with its forks), "
        f"server {statistics.median(server_cpu):.2f} s; load average {os.getloadavg()[0]:.2f}"
    )
    verdict = "met" if ratio <= 1.5 else "MISSED"
    print(f"ratio {ratio:.2f} (target <= 1.5): {verdict}")
    return 0 if ratio <= 1.5 else 1


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
