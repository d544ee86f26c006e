"""Checks every scenario's verifier shares (imported by the scenarios' testinfra tests).

``check_mode_changes`` runs the scenario's converge playbook again with ``--check`` against the
converged hosts, ``gates_open_changes`` runs it for real with every role's gate forced open; both
return Ansible's own per-host statistics, read from the ``json`` stdout callback (never by matching
text). A converged host must report ``changed == 0`` in both.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
from pathlib import Path


def run_converge(*extra: str) -> dict[str, dict[str, int]]:
    """Run converge.yml with extra ansible-playbook args; return the stats per host."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    env.pop("ANSIBLE_CALLBACK_RESULT_FORMAT", None)
    playbook = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    argv = [
        "ansible-playbook",
        "--inventory",
        os.environ["MOLECULE_INVENTORY_FILE"],
        *extra,
        str(playbook),
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"{argv} printed no JSON (rc={proc.returncode}): {proc.stderr}"
        ) from exc
    stats: dict[str, dict[str, int]] = report["stats"]
    return stats


def check_mode_changes() -> dict[str, dict[str, int]]:
    return run_converge("--check", "--diff")


def gates_open_changes() -> dict[str, dict[str, int]]:
    """The idempotence run once more with every role's gate forced open (fedictl_gates_open; see
    docs/roles.md): each task then checks its own part, so one that the declarations forgot, or
    that changes something on every run, shows up as a change."""
    return run_converge("--extra-vars", "fedictl_gates_open=true")


def run_playbook(playbook: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run a project playbook against the scenario's inventory, as `fedictl` would; output kept."""
    argv = [
        "ansible-playbook",
        "--inventory",
        os.environ["MOLECULE_INVENTORY_FILE"],
        *extra,
        str(playbook),
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def https_get(
    address: str, host: str, path: str, cafile: str, timeout: float = 15
) -> tuple[int, dict[str, str], bytes]:
    """GET https://host/path from the lab address, verifying the certificate against cafile."""
    ctx = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection(address, 443, context=ctx, timeout=timeout)
    # SNI and certificate name checks use the site's name, not the lab address.
    conn.sock = ctx.wrap_socket(
        socket.create_connection((address, 443), timeout=timeout), server_hostname=host
    )
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
