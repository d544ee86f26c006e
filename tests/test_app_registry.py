"""A fourth app, declared through the registry alone, is known to every command.

The fixture registers "fakeapp" (``fedictl.apps.register``) and removes it afterwards; nothing
else in fedictl is told about it. Through the real CLI and real files under tmp_path: `init`
writes its inventory section and asks its own question, `validate` accepts it and names a wrong
field, `secrets` generates and lists its secrets, and `check` probes the endpoints it declares on
a local stand-in server (test_check_fixtures.py), trusted with `--ca-file`, and plans its units
and disks for the host checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _inventory_helpers import (
    Project,
    example_answers,
    project_fixture,
)
from test_check_fixtures import (
    ACTIVITY,
    CA,
    HTML,
    JRD,
    JSON,
    FakeInstances,
    Route,
    by_check,
    ca_fixture,
    fake_fixture,
    report,
)

from fedictl import apps, check, check_host, inventory, yamlio
from fedictl.check_host import HostPlan
from fedictl.secret_formats import SecretSpec, hex_token, matching, password_spec
from fedictl.validate import load_and_check

__all__ = ["ca_fixture", "fake_fixture", "project_fixture"]

DOMAIN = "fake.example.test"
TOKEN = "vault_fakeapp_token"


@dataclass
class FakeSettings:
    domain: str = ""
    version: str = "v1.2.3"
    db_name: str = "fakeapp"
    db_user: str = "fakeapp"
    redis_db: int = 7
    port: int = 7070


FAKEAPP = apps.App(
    name="fakeapp",
    settings=FakeSettings,
    software="fakesoft",
    health=apps.TextEndpoint("/fake/health", "alive"),
    api=apps.ApiEndpoint("/fake/api/about", version_key="release"),
    account="keeper",
    ports=("port",),
    secrets=(
        SecretSpec(
            TOKEN,
            "fakeapp",
            hex_token(16),
            matching(r"[0-9a-f]{32}", "32 lowercase hex characters"),
            "32 lowercase hex characters",
        ),
        password_spec("vault_fakeapp_db_password", "fakeapp"),
    ),
    units=("fakeapp.service",),
    disk_paths=("/", "/srv/fakeapp"),
    questions=(apps.Question("domain", "--fakeapp-domain", "FakeApp domain"),),
)


@pytest.fixture(name="fakeapp")
def fakeapp_fixture() -> Iterator[apps.App]:
    apps.register(FAKEAPP)
    try:
        yield FAKEAPP
    finally:
        apps.unregister(FAKEAPP.name)


def fake_answers() -> dict[str, Any]:
    """The example organisation with Mastodon and the fake app."""
    answers = example_answers()
    answers["apps"] = {"mastodon": answers["apps"]["mastodon"], "fakeapp": {"domain": DOMAIN}}
    return answers


@pytest.fixture(name="demo")
def demo_fixture(project: Project, fakeapp: apps.App) -> Project:
    result = project.init(fake_answers())
    assert result.exit_code == 0, result.output
    return project


# --- init ----------------------------------------------------------------------------------------


def test_init_writes_the_apps_inventory_section(demo: Project) -> None:
    assert demo.main_vars()["fedictl_apps"]["fakeapp"] == {
        "enabled": True,
        "domain": DOMAIN,
        "version": "v1.2.3",
        "db_name": "fakeapp",
        "db_user": "fakeapp",
        "redis_db": 7,
        "port": 7070,
    }
    hosts = yamlio.load_file(demo.inventory() / inventory.HOSTS)
    groups = hosts["all"]["children"]["fediverse"]["children"]
    assert groups["fakeapp"] == {"hosts": {"lab1": {}}}
    assert groups["peertube"] == {}  # not enabled: its group is empty
    vault = demo.vault_data()
    assert re.fullmatch(r"[0-9a-f]{32}", vault[TOKEN])
    assert re.fullmatch(r"[A-Za-z0-9]{32}", vault["vault_fakeapp_db_password"])
    assert "vault_peertube_secret" not in vault


def test_init_takes_the_apps_own_question_as_a_flag(project: Project, fakeapp: apps.App) -> None:
    help_text = project.invoke("init", "--help").output
    assert "--fakeapp-domain" in help_text and "apps.fakeapp.domain" in help_text
    answers = example_answers()
    del answers["apps"]
    path = project.write_answers(answers)
    result = project.invoke(
        "init", "demo", "--answers", str(path), "--app", "fakeapp", "--fakeapp-domain", DOMAIN
    )
    assert result.exit_code == 0, result.output
    apps_vars = project.main_vars()["fedictl_apps"]
    assert apps_vars["fakeapp"]["enabled"] is True and apps_vars["fakeapp"]["domain"] == DOMAIN
    assert apps_vars["mastodon"]["enabled"] is False


def test_init_refuses_a_bad_answer_for_the_app_naming_its_key(
    project: Project, fakeapp: apps.App
) -> None:
    answers = fake_answers()
    answers["apps"]["fakeapp"]["port"] = 80
    result = project.init(answers)
    assert result.exit_code == 2
    assert "apps.fakeapp.port: found 80; fix: set it to a whole number from 1024 to 65535" in (
        result.output
    )
    assert not project.inventory().exists()


# --- validate ------------------------------------------------------------------------------------


def test_validate_accepts_the_app(demo: Project) -> None:
    result = demo.invoke("validate", "-i", str(demo.inventory()))
    assert result.exit_code == 0, result.output


def test_validate_refuses_a_wrong_field_of_the_app_naming_it(demo: Project) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["fakeapp"].update(port=99999, version="main", colour="blue")
    main["fedictl_apps"]["fakeapp"]["redis_db"] = main["fedictl_apps"]["mastodon"]["redis_db"]
    demo.write_main_vars(main)
    result = demo.invoke("validate", "-i", str(demo.inventory()), "--json")
    assert result.exit_code == 2
    found = {p["key"]: p for p in json.loads(result.stdout)["problems"]}
    assert found["fedictl_apps.fakeapp.port"]["found"] == "99999"
    assert found["fedictl_apps.fakeapp.port"]["fix"] == (
        "set it to a whole number from 1024 to 65535"
    )
    assert "like v1.2.3" in found["fedictl_apps.fakeapp.version"]["fix"]
    assert found["fedictl_apps.fakeapp.colour"]["found"] == "an unknown key"
    assert found["fedictl_apps.mastodon.redis_db"]["found"] == (
        "Redis database 1 also used by fakeapp.redis_db"
    )
    assert set(found) == {
        "fedictl_apps.fakeapp.port",
        "fedictl_apps.fakeapp.version",
        "fedictl_apps.fakeapp.colour",
        "fedictl_apps.mastodon.redis_db",
    }


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_lists_and_generates_the_apps_secrets(demo: Project) -> None:
    inv = str(demo.inventory())
    listed = demo.invoke("secrets", "list", "-i", inv).stdout.splitlines()
    assert f"{TOKEN}\tset" in listed and "vault_fakeapp_db_password\tset" in listed
    data = demo.vault_data()
    old_password = data["vault_fakeapp_db_password"]
    del data[TOKEN]
    demo.write_vault_data(data)
    missing = demo.invoke("validate", "-i", inv)
    assert missing.exit_code == 2 and f"{TOKEN}: found nothing" in missing.output
    result = demo.invoke("secrets", "ensure", "-i", inv)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["added", TOKEN]
    after = demo.vault_data()
    assert re.fullmatch(r"[0-9a-f]{32}", after[TOKEN])
    assert after["vault_fakeapp_db_password"] == old_password
    assert demo.invoke("validate", "-i", inv).exit_code == 0


def test_validate_checks_the_apps_secret_format(demo: Project) -> None:
    data = demo.vault_data()
    data[TOKEN] = "not-hex"
    demo.write_vault_data(data)
    result = demo.invoke("validate", "-i", str(demo.inventory()))
    assert result.exit_code == 2
    assert f"{TOKEN}: found 7 characters, not 32 lowercase hex characters" in result.output
    assert "not-hex" not in result.output


# --- check ---------------------------------------------------------------------------------------


def fake_routes(domain: str) -> dict[str, Route]:
    """The stand-in fake app: answers exactly at the endpoints FAKEAPP declares."""
    actor = f"https://{domain}/users/keeper"
    finger = {
        "subject": f"acct:keeper@{domain}",
        "links": [{"rel": "self", "type": "application/activity+json", "href": actor}],
    }
    nodeinfo = {
        "version": "2.1",
        "software": {"name": "fakesoft", "version": "1.2.3"},
        "protocols": ["activitypub"],
    }
    index = {
        "links": [
            {
                "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                "href": f"https://{domain}/nodeinfo/2.1",
            }
        ]
    }
    return {
        "/": Route(body=b"<!DOCTYPE html><html><body>fake</body></html>", content_type=HTML),
        "/fake/health": Route(body=b"alive"),
        "/fake/api/about": Route.json({"release": "1.2.3"}),
        "/.well-known/nodeinfo": Route.json(index),
        "/nodeinfo/2.1": Route.json(nodeinfo, JSON),
        f"/.well-known/webfinger?resource=acct:keeper@{domain}": Route.json(finger, JRD),
        "/users/keeper": Route.json(
            {"id": actor, "type": "Person", "inbox": f"{actor}/inbox"}, ACTIVITY
        ),
    }


def serve_fakeapp(fake: FakeInstances) -> dict[str, Route]:
    fake.https[DOMAIN] = fake_routes(DOMAIN)
    fake.certify(DOMAIN, [DOMAIN])
    return fake.https[DOMAIN]


def run_check(demo: Project, fake: FakeInstances, ca: CA) -> tuple[int, dict[str, Any]]:
    inv = str(demo.inventory())
    args = ["--skip", "host", "--app", "fakeapp", "--json", "--ca-file", str(ca.path)]
    result = demo.invoke("check", "-i", inv, *args, *fake.cli_args())
    assert "Traceback" not in result.output
    return result.exit_code, report(result)


def test_check_probes_the_endpoints_the_app_declares(
    demo: Project, fake: FakeInstances, ca: CA
) -> None:
    serve_fakeapp(fake)
    code, data = run_check(demo, fake, ca)
    results = by_check(data)
    assert code == 0, results
    assert [i["app"] for i in data["instances"]] == ["fakeapp"]
    assert set(results) == {
        "dns", "http-redirect", "https", "tls", "tls-expiry",
        "health", "api", "nodeinfo", "webfinger", "actor",
    }  # fmt: skip
    assert all(r["status"] == "OK" for r in results.values()), results
    assert results["health"]["value"].startswith("/fake/health: alive")
    assert results["api"]["value"] == "/fake/api/about: version 1.2.3"
    assert results["nodeinfo"]["value"] == "NodeInfo 2.1 reports fakesoft: version 1.2.3"
    assert results["webfinger"]["value"].startswith(f"acct:keeper@{DOMAIN} → ")
    asked = {path for _, host, path in fake.requests if host == DOMAIN}
    assert {"/fake/health", "/fake/api/about", "/users/keeper"} <= asked


def test_check_reports_the_apps_own_endpoint_failing(
    demo: Project, fake: FakeInstances, ca: CA
) -> None:
    routes = serve_fakeapp(fake)
    routes["/fake/health"] = Route(body=b"dying")
    routes["/nodeinfo/2.1"] = Route.json(
        {"version": "2.1", "software": {"name": "mastodon", "version": "4.6.5"}}
    )
    code, data = run_check(demo, fake, ca)
    results = by_check(data)
    assert code == 2
    assert results["health"]["status"] == "CRIT"
    assert results["health"]["value"] == "/fake/health answered 'dying' instead of 'alive'"
    assert results["nodeinfo"]["status"] == "CRIT"
    assert "software mastodon, expected fakesoft" in results["nodeinfo"]["value"]


def test_check_plans_the_units_and_disks_the_app_declares(demo: Project) -> None:
    inv, problems = load_and_check(demo.inventory(), None)
    assert not problems
    chosen = check.instances(inv, ["fakeapp"])
    assert [(i.app, i.domain, i.account) for i in chosen] == [("fakeapp", DOMAIN, "keeper")]
    assert check_host.plan(inv, chosen, check.Options()) == {
        "lab1": HostPlan(
            units=["fakeapp.service", "nginx.service"],
            paths=["/", "/srv/fakeapp", "/var/lib/postgresql"],
            backup=True,
        )
    }


# --- the registry itself -------------------------------------------------------------------------


def test_a_declaration_naming_a_setting_it_lacks_is_refused() -> None:
    broken = apps.App(
        name="broken",
        settings=FakeSettings,
        software="broken",
        health=apps.TextEndpoint("/health", "OK"),
        api=apps.ApiEndpoint("/api"),
        account="admin",
        ports=("web_port",),
    )
    with pytest.raises(apps.RegistryError, match="broken: no setting 'web_port'"):
        apps.register(broken)
    assert "broken" not in apps.names()


def test_unregistered_the_app_is_unknown_again(project: Project) -> None:
    result = project.init(fake_answers())
    assert result.exit_code == 2
    assert "apps.fakeapp: found an unknown app; fix: use one of mastodon, peertube, pixelfed" in (
        result.output
    )
