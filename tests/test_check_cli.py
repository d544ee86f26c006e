"""`fedictl check` as a command: the table, --json, --prometheus, selection, and exit codes.

Bad input exits 3 (UNKNOWN, the Nagios convention for "could not check"), never 2, which a
monitoring system would read as CRITICAL; every such message names what to fix, with no
traceback. Instances are the stand-ins of test_check_fixtures.py.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from test_check_fixtures import (
    CA,
    FakeInstances,
    Inventory,
    Route,
    by_check,
    ca_fixture,
    example_inventory_fixture,
    fake_fixture,
    report,
)

from fedictl import check

__all__ = ["ca_fixture", "example_inventory_fixture", "fake_fixture"]

MASTODON = "social.example.test"


def test_help_documents_the_checks_and_the_exit_codes(example_inventory: Inventory) -> None:
    result = example_inventory.check("--help")
    assert result.exit_code == 0
    assert "0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN" in result.output
    assert "exits 3 UNKNOWN" in result.output
    for name in check.CHECKS:
        assert re.search(rf"^\s+{re.escape(name)}\s", result.output, re.MULTILINE), name


def test_the_table_for_people(example_inventory: Inventory, fake: FakeInstances, ca: CA) -> None:
    routes = fake.add("mastodon")
    routes["/health"] = Route(status=503, body=b"down")
    result = example_inventory.check(
        "--skip", "host", "--app", "mastodon", "--ca-file", str(ca.path), *fake.cli_args()
    )
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["INSTANCE", "CHECK", "STATUS", "VALUE", "HINT"]
    (health,) = [line for line in lines if " health " in line]
    assert health.split()[:3] == [MASTODON, "health", "CRIT"]
    assert "/health answered 503 'down'" in health and "journalctl -u" in health
    ok_rows = [line for line in lines[1:-1] if line.split()[2] == "OK"]
    assert len(ok_rows) == 11 and all("journalctl" not in row for row in ok_rows)
    assert re.fullmatch(
        r"12 checks of 1 instance\(s\) in \d+\.\d s: 11 OK, 1 CRIT → CRIT \(exit 2\)", lines[-1]
    )


def test_json_and_prometheus_agree(
    example_inventory: Inventory, fake: FakeInstances, ca: CA, tmp_path: Path
) -> None:
    fake.add("peertube", days_left=10)
    target = tmp_path / "textfile" / "fedictl.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    result = example_inventory.check(
        "--skip", "host", "--app", "peertube", "--json", "--prometheus", str(target),
        "--ca-file", str(ca.path), *fake.cli_args(),
    )  # fmt: skip
    assert result.exit_code == 1
    data = report(result)
    text = target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(target.parent)) == ["fedictl.prom"]  # no temporary file left
    samples = parse_prometheus(text)
    for r in data["results"]:
        labels = (
            ("app", r["app"]),
            ("domain", r["instance"]),
            ("target", r["target"]),
            ("check", r["check"]),
        )
        assert samples[("fedictl_check_status", labels)] == check.Status[r["status"]].value
    expiry = samples[
        (
            "fedictl_check_tls_cert_expiry_days",
            (
                ("app", "peertube"),
                ("domain", "video.example.test"),
                ("target", "video.example.test"),
            ),
        )
    ]
    assert expiry == pytest.approx(10, abs=0.01)
    assert samples[("fedictl_check_run_status", ())] == 1
    assert by_check(data)["tls-expiry"]["status"] == "WARN"


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A strict reader of the text exposition format: every family has HELP and TYPE first,
    every sample line parses, and no sample repeats."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    described: set[str] = set()
    sample_re = re.compile(
        r'([a-z_]+)(?:\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\})? (-?[0-9.e+]+|NaN)'
    )
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            described.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            assert line.split()[3] == "gauge" and line.split()[2] in described
            continue
        match = sample_re.fullmatch(line)
        assert match, line
        name, label_text, value = match.groups()
        assert name in described, name
        labels = tuple(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', label_text or ""))
        key = (name, labels)
        assert key not in samples, key
        samples[key] = float(value)
    return samples


def test_only_skip_app_and_instance_select(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    for app in ("mastodon", "peertube", "pixelfed"):
        fake.add(app)
    base = ["--json", "--ca-file", str(ca.path), *fake.cli_args()]
    data = report(example_inventory.check(*base, "--only", "federation", "--only", "dns"))
    assert {r["check"] for r in data["results"]} == {"dns", "nodeinfo", "webfinger", "actor"}
    assert len(data["results"]) == 12
    data = report(
        example_inventory.check(*base, "--skip", "host,tls,tls-expiry", "--app", "pixelfed")
    )
    assert {r["instance"] for r in data["results"]} == {"photos.example.test"}
    assert "tls" not in {r["check"] for r in data["results"]}
    data = report(
        example_inventory.check(
            *base, "--only", "streaming,health", "--instance", "VIDEO.example.test"
        )
    )
    assert [(r["instance"], r["check"]) for r in data["results"]] == [
        ("video.example.test", "health")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "dns,certs"], "--only certs: no such check"),
        (["--skip", "hosts"], "--skip hosts: no such check"),
        (["--resolve", "social.example.test"], "--resolve social.example.test: use DOMAIN:ADDRESS"),
        (["--connect-to", "a.test:443:127.0.0.1"], "use DOMAIN:PORT:ADDRESS:PORT"),
        (["--connect-to", "a.test:https:127.0.0.1:443"], "'https' is not a port"),
        (["--account", "friendica=bob"], "--account friendica=bob: use APP=USER"),
        (["--timeout", "0"], "--timeout 0: use 0 < seconds <= 300"),
        (["--timeout", "soon"], "'soon' is not a valid float"),
        (["--tls-crit-days", "30"], "--tls-warn-days 21 is below --tls-crit-days 30"),
        (
            ["--instance", "nowhere.test"],
            "--instance nowhere.test: no enabled instance has this domain",
        ),
        (["--app", "friendica"], "'friendica' is not one of"),
        (["--frobnicate"], "No such option '--frobnicate'"),
        (["--ca-file", "/nonexistent/ca.pem"], "'/nonexistent/ca.pem' does not exist"),
        (["--prometheus", "/nonexistent/dir/x.prom"], "directory /nonexistent/dir does not exist"),
    ],
)
def test_bad_input_exits_3_unknown(
    example_inventory: Inventory, args: list[str], message: str
) -> None:
    result = example_inventory.check("--skip", "host", *args)
    assert result.exit_code == 3, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "INSTANCE" not in result.stdout  # nothing was checked


def test_bad_inventory_and_vault_exit_3(example_inventory: Inventory, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password\n")
    result = example_inventory.check("--skip", "host", "--vault-password-file", str(wrong))
    assert result.exit_code == 3
    assert "vault" in result.output and "nothing was checked" in result.output

    broken = example_inventory.copy(tmp_path / "broken")
    main = broken.main_vars()
    main["fedictl_apps"]["mastodon"]["local_domain"] = "not a domain"
    broken.write_main_vars(main)
    result = broken.check("--skip", "host")
    assert result.exit_code == 3
    assert "fedictl_apps.mastodon.local_domain" in result.output

    result = Inventory(tmp_path / "missing", broken.password, broken.env).check()
    assert result.exit_code == 3 and "not found" in result.output


def test_disabled_app_exits_3(example_inventory: Inventory, tmp_path: Path) -> None:
    inv = example_inventory.copy(tmp_path / "two-apps")
    main = inv.main_vars()
    main["fedictl_apps"]["pixelfed"]["enabled"] = False
    inv.write_main_vars(main)
    result = inv.check("--skip", "host", "--app", "pixelfed")
    assert result.exit_code == 3
    assert "--app pixelfed: pixelfed is not enabled" in result.output
    assert "enabled: mastodon, peertube" in result.output
