"""Benchmark: requests that fail while Mastodon switches from one release to the next.

Target (issue: Mastodon): 0 failed requests during the v1 -> v2 switch under a steady request loop.
Run as root after scripts/setup, with no `mastodon` scenario hosts up:
    .venv/bin/python bench/mastodon_switch.py [--keep]
It boots the molecule scenario `mastodon` (pebble + one web host running the stand-in release
v4.5.13, tests/standin/), then upgrades it to v4.5.14 through site.yml with the new pin (the same
path `fedictl upgrade` takes) while client threads on this machine request, over TLS through nginx:
web (`/api/v2/instance` with a unique query, so nginx's cache cannot answer, and `/health`) and
streaming (`/api/v1/streaming/health`). Every answer other than 200, and every connection error,
counts as a failure. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
MOLECULE = str(VENV_BIN / "molecule")
ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "social.example.test"


def run(argv: list[str]) -> None:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{output[-6000:]}")


def ephemeral_dir() -> Path:
    found = sorted(
        glob.glob(os.path.expanduser("~/.ansible/tmp/molecule.*.mastodon")), key=os.path.getmtime
    )
    if not found:
        raise SystemExit("no molecule state for the mastodon scenario")
    return Path(found[-1])


class Loop:
    """Client threads requesting one path each, until stopped; outcomes counted per path."""

    def __init__(self, address: str, cafile: str) -> None:
        self.address = address
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: dict[str, Counter[str]] = {}
        self.versions: list[tuple[float, str]] = []

    def get(self, path: str) -> tuple[int, bytes]:
        raw = socket.create_connection((self.address, 443), timeout=10)
        sock = self.ctx.wrap_socket(raw, server_hostname=DOMAIN)
        conn = http.client.HTTPSConnection(self.address, 443, context=self.ctx, timeout=10)
        conn.sock = sock
        conn.request("GET", path, headers={"Host": DOMAIN})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body

    def worker(self, name: str, path: str) -> None:
        counter: Counter[str] = Counter()
        with self.lock:
            self.outcomes[name] = counter
        n = 0
        while not self.stop.is_set():
            n += 1
            target = f"{path}?bench={n}-{time.monotonic_ns()}" if "instance" in path else path
            try:
                status, body = self.get(target)
                outcome = "ok" if status == 200 else f"http {status}"
                if status == 200 and "instance" in path:
                    version = json.loads(body)["version"]
                    with self.lock:
                        if not self.versions or self.versions[-1][1] != version:
                            self.versions.append((time.monotonic(), version))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                outcome = type(exc).__name__
            with self.lock:
                counter[outcome] += 1
            time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab hosts up")
    args = parser.parse_args()
    run([MOLECULE, "destroy", "-s", "mastodon"])
    try:
        run([MOLECULE, "create", "-s", "mastodon"])  # create also runs prepare
        run([MOLECULE, "converge", "-s", "mastodon"])
        state = ephemeral_dir()
        inventory = (state / "inventory" / "ansible_inventory.yml").read_text()
        address = inventory.split("ms-web:", 1)[1].split("ansible_host:", 1)[1].split()[0]
        loop = Loop(address.strip("'\""), str(state / "acme" / "root.pem"))
        threads = [
            threading.Thread(target=loop.worker, args=(name, path), daemon=True)
            for name, path in (
                ("web /api/v2/instance", "/api/v2/instance"),
                ("web /health", "/health"),
                ("streaming health", "/api/v1/streaming/health"),
            )
        ]
        for t in threads:
            t.start()
        time.sleep(3)
        archive = state / "standin" / "mastodon-standin-v4.5.14.tar.gz"
        checksum = (state / "standin" / f"{archive.name}.sha256").read_text().split()[0]
        extra = {
            "mastodon_version": "v4.5.14",
            "mastodon_release_archive": str(archive),
            "mastodon_release_archive_checksum": f"sha256:{checksum}",
        }
        started = time.monotonic()
        run([MOLECULE, "converge", "-s", "mastodon", "--", "--extra-vars", json.dumps(extra)])
        upgrade_seconds = time.monotonic() - started
        time.sleep(3)
        loop.stop.set()
        for t in threads:
            t.join()
    finally:
        if not args.keep:
            run([MOLECULE, "destroy", "-s", "mastodon"])
    print(f"upgrade v4.5.13 -> v4.5.14 (site.yml with the new pin): {upgrade_seconds:.1f} s")
    print("versions seen by /api/v2/instance:", [v for _, v in loop.versions])
    for name, counter in loop.outcomes.items():
        total = sum(counter.values())
        failed = total - counter["ok"]
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counter.items()) if k != "ok")
        print(f"{name}: {total} requests, {failed} failed{' (' + detail + ')' if detail else ''}")


if __name__ == "__main__":
    main()
