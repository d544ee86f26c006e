"""Running every instance's checks at once: threads per instance, one process per core for many.

Every instance runs in its own thread, so one slow or unreachable instance delays nobody else.
Many instances at once are shared out to one forked process per CPU core, because the checks'
Python work (TLS, HTTP/2 framing) is what limits a large run.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from fedictl.check.model import CHECKS, Instance, Report, Result, internal_error
from fedictl.check.options import Options
from fedictl.check.web import INSTANCE_WORKERS, check_instance
from fedictl.check_http import stop_watchdog

MAX_INSTANCES_AT_ONCE = 64
# From this many instances on, the web checks are shared out to one process per CPU core (forked
# before any thread starts), each with at least INSTANCES_PER_PROCESS of them: one interpreter
# lock spends ~9 ms of CPU per instance, so 50 instances on one core add ~0.25 s to the run, while
# a fork costs a few ms. Below it one process is as quick (bench/README.md).
SPLIT_AT = 16
INSTANCES_PER_PROCESS = 8


HostChecks = Callable[[], list[Result]]


def run(instances: list[Instance], options: Options, host_checks: HostChecks | None) -> Report:
    """Run the web checks of every instance at once, and the host checks beside them."""
    started, clock = datetime.now(UTC), time.monotonic()
    options.tls_context  # noqa: B018 - built here once, before the threads share it
    shares = _shares(instances)
    children = [_Child.start(share, options) for share in shares[1:]]  # before any thread
    with ThreadPoolExecutor(1, thread_name_prefix="check-host") as pool:
        hosts = pool.submit(host_checks) if host_checks is not None else None
        results = _web_checks(shares[0], options)
        for child in children:
            results += child.results()
        if hosts is not None:
            try:
                results += hosts.result()
            except Exception as exc:  # a bug must not cost the web checks their report
                results += [internal_error(i, "host", exc) for i in instances]
    order = {i.domain: n for n, i in enumerate(instances)}
    rank = {c: n for n, c in enumerate(CHECKS)}
    results.sort(key=lambda r: (order.get(r.instance, 0), rank.get(r.check, 99), r.target))
    return Report(instances, results, started, time.monotonic() - clock, len(shares))


def _shares(instances: list[Instance]) -> list[list[Instance]]:
    """The instances split into one share per process; the first is this process's own.

    Only a process with no other thread forks: a thread holding a lock at the fork would leave
    that lock held forever in the child.
    """
    if len(instances) < SPLIT_AT or not hasattr(os, "fork"):
        return [instances]
    stop_watchdog()  # an earlier run's, idle
    if threading.active_count() > 1:
        return [instances]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = max(1, min(cores or 1, len(instances) // INSTANCES_PER_PROCESS))
    return [instances[n::count] for n in range(count)]


@dataclass
class _Child:
    """A forked process running the web checks of its share, sending the results back pickled."""

    pid: int
    pipe: int  # read end
    instances: list[Instance]

    @classmethod
    def start(
        cls, instances: list[Instance], options: Options, work: WebChecks | None = None
    ) -> _Child:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns, never runs the parent's exit handlers
            code = 1
            try:
                os.close(read)
                results = (work or _web_checks)(instances, options)
                with os.fdopen(write, "wb") as pipe:
                    pickle.dump(results, pipe)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        return cls(pid, read, instances)

    def results(self) -> list[Result]:
        """The child's results; if it failed, an UNKNOWN for each of its instances, not a crash."""
        with os.fdopen(self.pipe, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        try:
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                raise ChildProcessError(
                    f"the process checking {len(self.instances)} instances "
                    + (f"exited with {code}" if code > 0 else f"was killed by signal {-code}")
                )
            results: list[Result] = pickle.loads(data)  # noqa: S301 - our own child wrote it
        except Exception as exc:
            return [internal_error(i, "web", exc) for i in self.instances]
        return results


WebChecks = Callable[[list[Instance], Options], list[Result]]


def _web_checks(instances: list[Instance], options: Options) -> list[Result]:
    """Every web check of ``instances``, all at once, in this process."""
    at_once = max(1, min(MAX_INSTANCES_AT_ONCE, len(instances)))
    with (
        ThreadPoolExecutor(at_once, thread_name_prefix="check-instance") as pool,
        ThreadPoolExecutor(at_once * INSTANCE_WORKERS, thread_name_prefix="check") as checks,
    ):
        webs = [pool.submit(check_instance, i, options, checks) for i in instances]
        return [r for web in webs for r in web.result()]
