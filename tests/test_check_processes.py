"""Many instances at once: `check.run` shares them out to one forked process per CPU core.

The stand-in instances of test_check_fixtures.py serve from threads of this (pytest) process;
the checker runs in a fresh interpreter, as `fedictl check` does, because a process with other
threads must not fork (and this one has the servers' threads — which the last test uses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from test_check_fixtures import CA, FakeInstances, ca_fixture

from fedictl import check
from fedictl.check_http import Deadline, Network, ProbeError, get, stop_watchdog

__all__ = ["ca_fixture"]

ROOT = Path(__file__).resolve().parent.parent
CORES = len(os.sched_getaffinity(0))

# Runs in a fresh interpreter: check.run over the instances given, then what it saw.
CHECKER = """
import json, resource, sys
from fedictl import check
from fedictl.check_http import Network
spec = json.loads(sys.argv[1])
names = spec["domains"]
network = Network(
    resolve=dict.fromkeys(names, "127.0.0.1"),
    connect_to={
        **{(n, 443): ("127.0.0.1", spec["https"]) for n in names},
        **{(n, 80): ("127.0.0.1", spec["http"]) for n in names},
    },
)
options = check.Options(
    checks=check.selected_checks([], ["host"]), ca_file=spec["ca"], network=network, timeout=10
)
every = [check.Instance("mastodon", n, n, "v4.7.6", (), "admin") for n in names]
report = check.run(every, options, None)
forked = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "processes": report.processes,
    "forked_cpu": forked.ru_utime + forked.ru_stime,
    "results": [[r.instance, r.check, r.target, r.status.name, r.value] for r in report.results],
}))
"""


def serve(ca: CA, count: int) -> tuple[FakeInstances, list[str]]:
    fake = FakeInstances(ca)
    names = [f"m{n:02d}.many.test" for n in range(count)]
    for name in names:
        fake.add("mastodon", name)
    fake.start()
    return fake, names


def check_in_fresh_process(ca: CA, fake: FakeInstances, names: list[str]) -> dict[str, Any]:
    spec = {
        "domains": names,
        "https": fake.https_port,
        "http": fake.http_port,
        "ca": str(ca.path),
    }
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", CHECKER, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning: nothing else ran when it forked
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen


def test_many_instances_are_checked_by_one_process_per_core(ca: CA) -> None:
    fake, names = serve(ca, check.SPLIT_AT)
    try:
        seen = check_in_fresh_process(ca, fake, names)
        one = check_in_fresh_process(ca, fake, names[:1])
    finally:
        fake.stop()
    assert seen["processes"] == min(CORES, check.SPLIT_AT // check.INSTANCES_PER_PROCESS)
    assert one["processes"] == 1
    if seen["processes"] > 1:  # a forked process did the real work of its share (~9 ms each)
        assert seen["forked_cpu"] > one["forked_cpu"] + 0.002 * len(names)
    # every instance got every web check, all OK, whichever process checked it
    checks_of_one = sorted(r[1:3] for r in one["results"])
    assert len(checks_of_one) >= 8
    for name in names:
        mine = [r for r in seen["results"] if r[0] == name]
        assert sorted([r[1], r[2].replace(name, names[0])] for r in mine) == checks_of_one
        assert {r[3] for r in mine} == {"OK"}, mine
    assert [r[0] for r in seen["results"]] == sorted(r[0] for r in seen["results"])  # in order
    assert {host for _, host, _ in fake.requests} == set(names)


# Runs in a fresh interpreter: a share whose process raises, then one whose process is killed.
FAILING = """
import json, os, signal
from fedictl import check
from fedictl.check import processes

def crash(instances, options):
    raise RuntimeError("boom")

def killed(instances, options):
    os.kill(os.getpid(), signal.SIGKILL)

share = [check.Instance("mastodon", f"d{n}.test", f"d{n}.test", "", (), "") for n in range(3)]
print(json.dumps([
    [[r.instance, r.check, r.status.name, r.value, r.hint] for r in
     processes._Child.start(share, check.Options(), work).results()]
    for work in (crash, killed)
]))
"""


def test_a_share_whose_process_fails_is_unknown_for_each_of_its_instances() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", FAILING],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    crashed, killed = json.loads(done.stdout)
    for results, why in ((crashed, "exited with 1"), (killed, "was killed by signal 9")):
        assert [r[:3] for r in results] == [[f"d{n}.test", "web", "UNKNOWN"] for n in range(3)]
        assert all(f"the process checking 3 instances {why}" in r[3] for r in results), results
        assert all("bug in fedictl check" in r[4] for r in results)


def test_a_process_with_other_threads_checks_everything_itself(ca: CA) -> None:
    fake, names = serve(ca, check.SPLIT_AT)  # its server threads run in this process
    try:
        options = check.Options(
            checks=check.selected_checks([], ["host"]), ca_file=ca.path, network=fake.network()
        )
        every = [check.Instance("mastodon", n, n, "v4.7.6", (), "admin") for n in names]
        report = check.run(every, options, None)
    finally:
        fake.stop()
    assert report.processes == 1
    assert {r.instance for r in report.results} == set(names)
    assert {r.status for r in report.results} == {check.Status.OK}


def _watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fedictl-check watchdog"]


def test_the_deadline_thread_ends_when_idle_and_returns_when_needed() -> None:
    """`run` ends it before forking; a later probe still gets its deadline enforced."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts, never answers
    network = Network(connect_to={("mute.test", 80): ("127.0.0.1", listener.getsockname()[1])})
    try:
        for _ in range(2):
            with_deadline = Deadline(0.5)
            try:
                get(network, "http://mute.test/", with_deadline, None)
            except ProbeError as exc:
                assert "0.5 s" in str(exc)
            else:
                raise AssertionError("a server that never answers was answered")
            assert time.monotonic() >= with_deadline.end - 0.05
            assert len(_watchdogs()) == 1  # started (again) for the probe's deadline, now idle
            stop_watchdog()
            assert _watchdogs() == []
    finally:
        listener.close()
