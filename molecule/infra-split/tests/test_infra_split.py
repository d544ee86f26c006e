"""Split infrastructure: PostgreSQL and Redis on is-db serve is-app over the private network only.

Behaviour, not files: logins with the app's password over TCP, refusals for a wrong password,
another app's database, an unlisted address and an unlisted host, Redis's NOAUTH, and the running
servers' own view of the settings the scenario set away from the defaults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))
import lab_checks

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
VARS = RUNNER.get_variables("is-db")
APPS = VARS["fedictl_apps"]
SOCIAL, VIDEO, PHOTOS = APPS["mastodon"], APPS["peertube"], APPS["pixelfed"]
REDIS_PORT = int(VARS["redis_port"])
# The flavour molecule.yml chose (valkey here, redis-server in `infra`): Debian names its package,
# unit, configuration, user and command-line client after it.
FLAVOUR = VARS["redis_flavour"]
REDIS_UNIT = f"{FLAVOUR}-server"
PG_SERVICE = "postgresql@17-main"


def _host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


DB, APP, OTHER = _host("is-db"), _host("is-app"), _host("is-other")
DB_ADDRESS = RUNNER.get_variables("is-db")["ansible_host"]


def sql(query: str, database: str = "postgres") -> str:
    """Run a query on is-db as postgres (peer authentication over the socket)."""
    out = DB.check_output("runuser -u postgres -- psql -XAt -d %s -c %s", database, query)
    return str(out).strip()


def psql_as(host: testinfra.host.Host, address: str, user: str, password: str, database: str):
    return host.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -XAt -h %s -U %s -d %s -c %s",
        password,
        address,
        user,
        database,
        "SELECT current_user || ' ' || current_database()",
    )


def redis_cli(
    host: testinfra.host.Host, *args: str, password: str | None = None, address: str = "127.0.0.1"
):
    """The flavour's own client on is-db, Debian's redis-cli on the client hosts (prepare.yml)."""
    cli = f"{FLAVOUR}-cli" if host is DB else "redis-cli"
    auth = f"REDISCLI_AUTH={password} " if password else ""
    cmd = f"{auth}timeout 5 {cli} --no-auth-warning -h {address} -p {REDIS_PORT} " + " ".join(args)
    return host.run(cmd)


def test_services_run_and_start_at_boot() -> None:
    for unit in (PG_SERVICE, REDIS_UNIT):
        service = DB.service(unit)
        assert service.is_running, unit
        assert service.is_enabled, unit


def test_each_enabled_app_has_its_database_owner_and_extensions() -> None:
    owners = dict(
        line.split("|")
        for line in sql("SELECT datname, pg_get_userbyid(datdba) FROM pg_database").splitlines()
    )
    assert owners.get(SOCIAL["db_name"]) == SOCIAL["db_user"]
    assert owners.get(VIDEO["db_name"]) == VIDEO["db_user"]
    assert PHOTOS["db_name"] not in owners, "a disabled app got a database"
    extensions = set(sql("SELECT extname FROM pg_extension", VIDEO["db_name"]).split())
    assert {"pg_trgm", "unaccent"} <= extensions
    assert "pg_trgm" not in set(sql("SELECT extname FROM pg_extension", SOCIAL["db_name"]).split())


def test_owners_are_unprivileged_with_scram_verifiers() -> None:
    rows = {
        row.split("|")[0]: row.split("|")[1:]
        for row in sql(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, left(rolpassword, 14)"
            " FROM pg_authid"
        ).splitlines()
    }
    for owner in (SOCIAL["db_user"], VIDEO["db_user"]):
        assert rows[owner] == ["f", "f", "f", "SCRAM-SHA-256$"], owner


def test_tuning_reaches_the_running_server() -> None:
    assert sql("SHOW shared_buffers") == "96MB"  # needs a restart: proves the role restarted
    assert sql("SHOW work_mem") == "6MB"
    # max_connections = the apps' pools (30 + 12) + headroom 11; pixelfed is disabled.
    assert int(sql("SHOW max_connections")) == 30 + 12 + 11
    assert sql("SHOW password_encryption") == "scram-sha-256"
    memtotal_mb = int(DB.check_output("awk '/^MemTotal/ {print $2}' /proc/meminfo")) // 1024
    cache_mb = int(
        sql(
            "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'effective_cache_size'"
        )
    )
    assert cache_mb == memtotal_mb * 3 // 4
    assert set(sql("SHOW listen_addresses").split(",")) == {"localhost", DB_ADDRESS}


def test_app_host_logs_in_with_its_password_over_tcp() -> None:
    ok = psql_as(
        APP, DB_ADDRESS, SOCIAL["db_user"], VARS["vault_mastodon_db_password"], SOCIAL["db_name"]
    )
    assert ok.rc == 0, ok.stderr
    assert ok.stdout.strip() == f"{SOCIAL['db_user']} {SOCIAL['db_name']}"
    rules = sql("SELECT array_to_string(database, ','), auth_method FROM pg_hba_file_rules")
    methods = {
        line.split("|")[1] for line in rules.splitlines() if line.split("|")[0] == SOCIAL["db_name"]
    }
    assert methods == {"scram-sha-256"}


def test_wrong_password_is_refused() -> None:
    wrong = VARS["vault_mastodon_db_password"][::-1]
    bad = psql_as(APP, DB_ADDRESS, SOCIAL["db_user"], wrong, SOCIAL["db_name"])
    assert bad.rc != 0
    assert "password authentication failed" in bad.stderr


def test_app_host_cannot_reach_another_apps_database() -> None:
    # PeerTube runs on is-db itself: its owner may log in locally only, right password or not.
    other = psql_as(
        APP, DB_ADDRESS, VIDEO["db_user"], VARS["vault_peertube_db_password"], VIDEO["db_name"]
    )
    assert other.rc != 0
    assert "no pg_hba.conf entry" in other.stderr
    local = psql_as(
        DB, "127.0.0.1", VIDEO["db_user"], VARS["vault_peertube_db_password"], VIDEO["db_name"]
    )
    assert local.rc == 0, local.stderr


def test_unlisted_address_is_refused_by_pg_hba() -> None:
    # is-db connecting to its own private address: past the firewall (loopback), but not in pg_hba.
    res = psql_as(
        DB, DB_ADDRESS, SOCIAL["db_user"], VARS["vault_mastodon_db_password"], SOCIAL["db_name"]
    )
    assert res.rc != 0
    assert "no pg_hba.conf entry" in res.stderr


def _firewall_possible() -> bool:
    """nftables needs CAP_NET_ADMIN; lab hosts booted without it lack it (see converge.yml)."""
    capbnd = DB.check_output("grep CapBnd /proc/self/status").split()[1]
    return bool(int(capbnd, 16) >> 12 & 1)


FIREWALL = _firewall_possible()
NO_FIREWALL = "lab hosts lack CAP_NET_ADMIN, so the common role (nftables) was not applied"


def test_host_outside_the_allow_list_cannot_log_in() -> None:
    res = OTHER.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=4 psql -XAt -h %s -U %s -d %s -c 'SELECT 1'",
        VARS["vault_mastodon_db_password"],
        DB_ADDRESS,
        SOCIAL["db_user"],
        SOCIAL["db_name"],
    )
    assert res.rc != 0
    # Dropped by the firewall (timeout) where it runs, else refused by pg_hba despite the password.
    assert ("timeout expired" if FIREWALL else "no pg_hba.conf entry") in res.stderr, res.stderr
    anonymous = redis_cli(OTHER, "PING", address=DB_ADDRESS)
    assert "PONG" not in anonymous.stdout
    if not FIREWALL:
        assert "NOAUTH" in anonymous.stdout


@pytest.mark.skipif(not FIREWALL, reason=NO_FIREWALL)
@pytest.mark.parametrize("port", [5432, REDIS_PORT])
def test_firewall_opens_the_port_to_the_app_host_only(port: int) -> None:
    probe = "timeout 4 bash -c 'exec 3<>/dev/tcp/%s/%s'"
    assert OTHER.run(probe, DB_ADDRESS, str(port)).rc != 0
    assert APP.run(probe, DB_ADDRESS, str(port)).rc == 0


def test_redis_requires_the_password() -> None:
    anonymous = redis_cli(DB, "PING")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    wrong = VARS["vault_redis_password"][::-1]
    assert redis_cli(DB, "PING", password=wrong).stdout.strip() != "PONG"
    assert redis_cli(DB, "PING", password=VARS["vault_redis_password"]).stdout.strip() == "PONG"


def test_app_host_uses_its_redis_database_over_the_network() -> None:
    password = VARS["vault_redis_password"]
    db = str(SOCIAL["redis_db"])
    assert (
        redis_cli(
            APP, "-n", db, "SET", "infra-split", "ok", password=password, address=DB_ADDRESS
        ).rc
        == 0
    )
    got = redis_cli(APP, "-n", db, "GET", "infra-split", password=password, address=DB_ADDRESS)
    assert got.stdout.strip() == "ok"
    # The key is in that database only.
    assert (
        redis_cli(DB, "-n", "0", "EXISTS", "infra-split", password=password).stdout.strip() == "0"
    )
    assert "NOAUTH" in redis_cli(APP, "PING", address=DB_ADDRESS).stdout


def test_redis_runs_with_the_configured_settings() -> None:
    password = VARS["vault_redis_password"]

    def config(name: str) -> str:
        return redis_cli(DB, "CONFIG", "GET", name, password=password).stdout.splitlines()[-1]

    assert config("maxmemory-policy") == "noeviction"
    assert config("databases") == "12"
    assert config("maxmemory") == str(64 * 1024 * 1024)
    assert config("save") == "600 5"
    assert config("appendonly") == "no"
    assert config("protected-mode") == "yes"
    assert set(config("bind").split()) == {"127.0.0.1", "-::1", DB_ADDRESS}
    conf = DB.file(f"/etc/{FLAVOUR}/{FLAVOUR}.conf")
    assert (conf.user, conf.group, conf.mode) == (FLAVOUR, FLAVOUR, 0o640)


def test_the_chosen_flavour_is_the_one_installed_and_answering() -> None:
    other = {"redis": "valkey", "valkey": "redis"}[FLAVOUR]
    assert DB.package(f"{FLAVOUR}-server").is_installed
    assert not DB.package(f"{other}-server").is_installed
    info = redis_cli(DB, "INFO", "server", password=VARS["vault_redis_password"]).stdout
    assert f"{FLAVOUR}_version:" in info, info


def test_colliding_redis_databases_are_refused_naming_the_apps() -> None:
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    env.pop("ANSIBLE_CALLBACK_RESULT_FORMAT", None)
    playbook = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"
    extra = {"fedictl_apps": {**APPS, "pixelfed": {**PHOTOS, "enabled": True}}}
    proc = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, "--limit", "is-db", "--tags", "redis_validate",
         "-e", json.dumps(extra), str(playbook)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    messages = [
        result.get("msg", "")
        for play in json.loads(proc.stdout)["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    assert any("mastodon and pixelfed share database 7" in m for m in messages), messages


def test_check_mode_reports_no_change() -> None:
    stats = lab_checks.check_mode_changes()
    assert stats, "the --check run reported no hosts"
    assert {host: s["changed"] for host, s in stats.items()} == dict.fromkeys(stats, 0)
    assert "is-db" in stats


def test_idempotent_with_the_gates_open() -> None:
    stats = lab_checks.gates_open_changes()
    assert "is-db" in stats
    assert {host: s["changed"] for host, s in stats.items()} == dict.fromkeys(stats, 0), stats
    assert all(s["failures"] == 0 for s in stats.values()), stats


def test_reload_not_restart_for_a_reloadable_setting() -> None:
    started = sql("SELECT pg_postmaster_start_time()")
    try:
        stats = lab_checks.run_converge(
            "--limit", "is-db", "--tags", "postgresql", "-e", "postgresql_work_mem_mb=9"
        )
        assert stats["is-db"]["failures"] == 0
        assert sql("SHOW work_mem") == "9MB"
        assert sql("SELECT pg_postmaster_start_time()") == started, "work_mem needs no restart"
    finally:
        lab_checks.run_converge("--limit", "is-db", "--tags", "postgresql")
    assert sql("SHOW work_mem") == "6MB"
