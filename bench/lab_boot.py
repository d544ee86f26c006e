"""Benchmark: `fedictl lab up` to SSH-ready (cached base), and a first-ever base image build.

Targets (issue: foundation): one host <= 3 s, three in parallel <= 5 s, first base build <= 90 s.
Run as root after scripts/setup:  .venv/bin/python bench/lab_boot.py [--runs 5] [--build]
Each figure is the wall time of the whole CLI call, as a user sees it. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEDICTL = str(Path(sys.executable).with_name("fedictl"))


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return time.monotonic() - start


def boot(names: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        times.append(timed([FEDICTL, "lab", "up", *names]))
        subprocess.run([FEDICTL, "lab", "down", *names], check=True, capture_output=True)
    return times


def report(label: str, times: list[float], target: float) -> bool:
    worst = max(times)
    ok = worst <= target
    print(
        f"{label:<34} median {statistics.median(times):6.2f} s  max {worst:6.2f} s  "
        f"target <= {target:.0f} s  {'OK' if ok else 'MISSED'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--build", action="store_true", help="also time a first-ever base build")
    args = parser.parse_args()
    subprocess.run([FEDICTL, "lab", "build"], check=True, capture_output=True)  # warm the cache
    ok = report("lab up (1 host, cached base)", boot(["bench1"], args.runs), 3)
    ok &= report("lab up (3 hosts, parallel)", boot(["bench1", "bench2", "bench3"], args.runs), 5)
    if args.build:
        with tempfile.TemporaryDirectory(prefix="fedictl-bench-") as tmp:
            env = dict(os.environ, FEDICTL_LAB_DIR=tmp)
            ok &= report(
                "first base build (debootstrap)", [timed([FEDICTL, "lab", "build"], env)], 90
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
