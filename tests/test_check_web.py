"""`fedictl check` against stand-in instances: each failure gets its status, hint and exit code.

The inventory is the example organisation's, written by `fedictl init`; the instances are the
local HTTPS/HTTP servers of test_check_fixtures.py with certificates from a throwaway CA, reached
through `--resolve`/`--connect-to` and trusted with `--ca-file`. Host checks are skipped here
(`--skip host`; see test_check_host.py). Every run goes through the real CLI with `--json`.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_check_fixtures import (
    ACTIVITY,
    CA,
    HTML,
    JSON,
    FakeInstances,
    Inventory,
    Route,
    by_check,
    ca_fixture,
    example_inventory_fixture,
    fake_fixture,
    report,
    saved,
)

from fedictl import check
from fedictl.check_http import Network

__all__ = ["ca_fixture", "example_inventory_fixture", "fake_fixture"]

MASTODON = "social.example.test"
PEERTUBE = "video.example.test"
PIXELFED = "photos.example.test"


def run(
    inv: Inventory, fake: FakeInstances, ca: CA, *args: str
) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    result = inv.check(
        "--skip", "host", "--json", "--ca-file", str(ca.path), *fake.cli_args(), *args
    )
    assert "Traceback" not in result.output
    data = report(result)
    assert result.exit_code == data["exit_code"]
    return result.exit_code, data, by_check(data)


def only_mastodon(fake: FakeInstances) -> dict[str, Route]:
    return fake.add("mastodon")


def test_every_instance_healthy_is_ok_and_exits_0(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    for app in ("mastodon", "peertube", "pixelfed"):
        fake.add(app)
    code, data, _ = run(example_inventory, fake, ca)
    assert code == 0 and data["status"] == "OK"
    checks = {(r["instance"], r["check"]) for r in data["results"]}
    web = set(check.GROUPS["web"])
    assert checks == (
        {(MASTODON, c) for c in web}
        # Every app has release lines now, so each gets a "release" row.
        | {(PEERTUBE, c) for c in web - {"streaming"}}
        | {(PIXELFED, c) for c in web - {"streaming"}}
    )
    assert all(r["status"] == "OK" and r["hint"] == "" for r in data["results"])
    results = by_check(data, MASTODON)
    assert results["api"]["value"] == "/api/v2/instance: version 4.7.6"
    assert results["release"]["value"].startswith("mastodon 4.7.6: no known advisory on the 4.7")
    assert results["actor"]["value"] == f"Person https://{MASTODON}/users/admin"
    assert by_check(data, PEERTUBE)["webfinger"]["value"].startswith(f"acct:root@{PEERTUBE} → ")
    assert "pixelfed" in by_check(data, PIXELFED)["nodeinfo"]["value"]
    assert data["instances"][0] == {
        "app": "mastodon",
        "domain": MASTODON,
        "account_domain": MASTODON,
        "version": "v4.7.6",
        "hosts": ["lab1"],
    }


def test_malformed_json_is_crit_with_a_hint(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    routes["/api/v2/instance"] = Route(
        body=b'{"domain": "social.example.test", "vers', content_type=JSON
    )
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon")
    assert code == 2
    api = results["api"]
    assert api["status"] == "CRIT"
    assert "invalid JSON" in api["value"] and "/api/v2/instance" in api["value"]
    assert "not healthy" in api["hint"]
    assert results["health"]["status"] == "OK"  # nothing else is dragged down


def test_wrong_content_types_are_crit(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    routes["/.well-known/nodeinfo"] = Route(body=b"<html>maintenance</html>", content_type=HTML)
    actor = saved("mastodon", "actor-admin.json")
    routes["/users/admin"] = Route.json(actor, "text/html; charset=utf-8")
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon")
    assert code == 2
    assert results["nodeinfo"]["status"] == "CRIT"
    assert results["nodeinfo"]["value"] == "/.well-known/nodeinfo answered text/html, not JSON"
    assert results["actor"]["status"] == "CRIT"
    assert "answered text/html, not ActivityPub JSON" in results["actor"]["value"]
    assert results["webfinger"]["status"] == "OK"


def test_a_slow_answer_is_crit_after_its_own_timeout_only(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    routes["/health"].delay = 5
    started = time.monotonic()
    code, data, results = run(example_inventory, fake, ca, "--app", "mastodon", "--timeout", "1")
    elapsed = time.monotonic() - started
    assert code == 2
    assert results["health"]["status"] == "CRIT"
    assert "no complete answer within 1 s" in results["health"]["value"]
    assert 0.9 <= results["health"]["seconds"] < 2
    others = [r for r in data["results"] if r["check"] != "health"]
    assert all(r["status"] == "OK" for r in others), others
    assert elapsed < 4, f"the slow endpoint held the run for {elapsed:.1f} s"
    assert fake.connections[True] == 1  # the slow stream shared its HTTP/2 connection


def test_a_trickling_server_cannot_stretch_the_deadline(ca: CA) -> None:
    """A server sending a byte every 0.3 s never trips a per-read timeout; the watchdog ends it."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        try:
            for _ in range(40):
                conn.sendall(b"x")
                time.sleep(0.3)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    network = Network(connect_to={("slow.test", 80): ("127.0.0.1", listener.getsockname()[1])})
    from fedictl.check_http import Deadline, ProbeError, get

    started = time.monotonic()
    with pytest.raises(ProbeError, match="no complete answer within 1 s"):
        get(network, "http://slow.test/", Deadline(1), None)
    assert time.monotonic() - started < 1.5
    listener.close()


def test_redirect_to_another_host_is_crit(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = fake.add("peertube")
    routes["/api/v1/config"] = Route.redirect("https://elsewhere.example/api/v1/config", 302)
    routes["/api/v1/ping"] = Route.redirect(
        f"https://{PEERTUBE}/api/v1/ping/"
    )  # own host: followed
    routes["/api/v1/ping/"] = Route(body=b"pong")
    code, _, results = run(example_inventory, fake, ca, "--app", "peertube")
    assert code == 2
    assert results["api"]["status"] == "CRIT"
    assert "redirects to https://elsewhere.example/api/v1/config" in results["api"]["value"]
    assert "another host" in results["api"]["hint"]
    assert results["health"]["status"] == "OK"


def test_certificate_for_another_name_is_crit_and_the_app_is_still_checked(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    fake.add("pixelfed", cert_names=["other.example.test"])
    code, _, results = run(example_inventory, fake, ca, "--app", "pixelfed")
    assert code == 2
    tls = results["tls"]
    assert tls["status"] == "CRIT"
    assert "Hostname mismatch" in tls["value"] and "other.example.test" in tls["value"]
    assert "does not name photos.example.test" in tls["hint"]
    assert results["tls-expiry"]["status"] == "OK"
    for name in ("health", "api", "nodeinfo", "webfinger", "actor"):
        assert results[name]["status"] == "OK", results[name]


def test_an_untrusted_ca_is_crit_without_ca_file(
    example_inventory: Inventory, fake: FakeInstances
) -> None:
    only_mastodon(fake)
    result = example_inventory.check(
        "--skip", "host", "--json", *fake.cli_args(), "--only", "tls", "--app", "mastodon"
    )
    results = by_check(report(result))
    assert result.exit_code == 2
    assert results["tls"]["status"] == "CRIT"
    assert "--ca-file" in results["tls"]["hint"]


@pytest.mark.parametrize(
    ("days_left", "args", "tls_status", "expiry_status", "shown"),
    [
        (-2.5, [], "CRIT", "CRIT", "expired 2 day(s) ago"),
        (5.5, [], "OK", "CRIT", "5 day(s) left"),
        (15.5, [], "OK", "WARN", "15 day(s) left"),
        (45.5, [], "OK", "OK", "45 day(s) left"),
        (45.5, ["--tls-warn-days", "60", "--tls-crit-days", "30"], "OK", "WARN", "45 day(s) left"),
        (25.5, ["--tls-warn-days", "60", "--tls-crit-days", "30"], "OK", "CRIT", "25 day(s) left"),
    ],
)
def test_certificate_expiry_against_the_thresholds(
    example_inventory: Inventory,
    fake: FakeInstances,
    ca: CA,
    days_left: float,
    args: list[str],
    tls_status: str,
    expiry_status: str,
    shown: str,
) -> None:
    fake.add("mastodon", days_left=days_left)
    code, _, results = run(
        example_inventory, fake, ca, "--app", "mastodon", "--only", "tls,tls-expiry", *args
    )
    assert results["tls"]["status"] == tls_status
    assert results["tls-expiry"]["status"] == expiry_status
    assert results["tls-expiry"]["value"].startswith(shown)
    assert results["tls-expiry"]["metrics"]["tls_cert_expiry_days"] == pytest.approx(
        days_left, abs=0.01
    )
    assert (
        code
        == {"OK": 0, "WARN": 1, "CRIT": 2}[
            max(tls_status, expiry_status, key=["OK", "WARN", "CRIT"].index)
        ]
    )
    if days_left < 0:
        assert "certificate has expired" in results["tls"]["value"]
        assert "certbot renew" in results["tls"]["hint"]
    if expiry_status != "OK":
        assert "certbot" in results["tls-expiry"]["hint"]


@pytest.mark.parametrize(
    ("route", "status", "shown"),
    [
        (
            Route(body=b"<html>plain</html>", content_type=HTML),
            "WARN",
            "answers 200 over plain HTTP",
        ),
        (Route.redirect(f"https://{MASTODON}/", 302), "WARN", "temporary 302"),
        (Route.redirect("https://elsewhere.example/"), "CRIT", "301 → https://elsewhere.example/"),
        (Route.redirect(f"http://{MASTODON}/"), "CRIT", f"301 → http://{MASTODON}/"),
        (Route.redirect(f"https://{MASTODON}/", 308), "OK", f"308 → https://{MASTODON}/"),
    ],
)
def test_http_redirect(
    example_inventory: Inventory,
    fake: FakeInstances,
    ca: CA,
    route: Route,
    status: str,
    shown: str,
) -> None:
    only_mastodon(fake)
    fake.http[MASTODON] = {"/": route}
    code, _, results = run(
        example_inventory, fake, ca, "--app", "mastodon", "--only", "http-redirect"
    )
    assert results["http-redirect"]["status"] == status
    assert results["http-redirect"]["value"].startswith(shown)
    assert code == {"OK": 0, "WARN": 1, "CRIT": 2}[status]
    if status != "OK":
        assert "port 80 must answer 301" in results["http-redirect"]["hint"]


def test_version_mismatch_is_warn_with_the_deploy_hint(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    instance = saved("mastodon", "instance-v2.json")
    instance["version"] = "4.7.7"
    routes["/api/v2/instance"] = Route.json(instance)
    nodeinfo = saved("mastodon", "nodeinfo-2.0.json")
    nodeinfo["software"]["version"] = "4.7.7"
    routes["/nodeinfo/2.0"] = Route.json(nodeinfo)
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon")
    assert code == 1
    for name in ("api", "nodeinfo"):
        assert results[name]["status"] == "WARN"
        assert "version 4.7.7, but the inventory pins v4.7.6" in results[name]["value"]
        assert "fedictl deploy --app mastodon" in results[name]["hint"]


def test_build_metadata_after_the_version_is_accepted(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    instance = saved("mastodon", "instance-v2.json")
    instance["version"] = "4.7.6+fedictl"
    routes["/api/v2/instance"] = Route.json(instance)
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon", "--only", "api")
    assert code == 0 and results["api"]["status"] == "OK"


def test_another_app_on_the_domain_is_crit(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = fake.add("peertube")
    routes["/nodeinfo/2.0.json"] = Route.json(saved("pixelfed", "nodeinfo-2.0.json"))
    code, _, results = run(example_inventory, fake, ca, "--app", "peertube", "--only", "nodeinfo")
    assert code == 2
    assert results["nodeinfo"]["value"] == "NodeInfo 2.0: software pixelfed, expected peertube"


def test_health_endpoint_failures(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    routes["/health"] = Route(status=502, body=b"<html>502 Bad Gateway</html>", content_type=HTML)
    routes["/api/v1/streaming/health"] = Route(body=b"starting")
    code, _, results = run(
        example_inventory, fake, ca, "--app", "mastodon", "--only", "health,streaming"
    )
    assert code == 2
    assert results["health"]["value"] == "/health answered 502 '<html>502 Bad Gateway</html>'"
    assert (
        results["streaming"]["value"]
        == "/api/v1/streaming/health answered 'starting' instead of 'OK'"
    )
    assert "--only units" in results["health"]["hint"]


def test_webfinger_and_actor_failures(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    del routes[f"/.well-known/webfinger?resource=acct:admin@{MASTODON}"]
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon", "--only", "federation")
    assert code == 2
    assert results["webfinger"]["value"] == f"acct:admin@{MASTODON}: not found (404)"
    assert "--account mastodon=USER" in results["webfinger"]["hint"]
    assert results["actor"]["status"] == "CRIT"
    assert results["actor"]["value"].startswith("not looked up: the WebFinger lookup failed")

    # --account looks up another user; its actor answers with another id.
    finger = saved("mastodon", "webfinger-admin.json")
    finger["subject"] = f"acct:alice@{MASTODON}"
    finger["links"][1]["href"] = f"https://{MASTODON}/users/alice"
    routes[f"/.well-known/webfinger?resource=acct:alice@{MASTODON}"] = Route.json(finger, JSON)
    routes["/users/alice"] = Route.json(saved("mastodon", "actor-admin.json"), ACTIVITY)
    code, _, results = run(
        example_inventory,
        fake,
        ca,
        "--app",
        "mastodon",
        "--only",
        "federation",
        "--account",
        "mastodon=alice",
    )
    assert results["webfinger"]["status"] == "OK"
    assert results["actor"]["status"] == "CRIT"
    assert results["actor"]["value"] == (
        f"the actor's id is 'https://{MASTODON}/users/admin', not https://{MASTODON}/users/alice"
    )


def test_unreachable_instance_is_crit_with_a_reason_everywhere(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    fake.add("mastodon")
    args = [
        "--resolve",
        f"{MASTODON}:127.0.0.1",
        "--connect-to",
        f"{MASTODON}:443:127.0.0.1:{port}",
        "--connect-to",
        f"{MASTODON}:80:127.0.0.1:{port}",
    ]
    result = example_inventory.check(
        "--skip", "host", "--json", "--ca-file", str(fake.ca.path), "--app", "mastodon", *args
    )
    data = report(result)
    results = by_check(data)
    assert result.exit_code == 2
    assert results["dns"]["status"] == "OK"
    assert "connection refused" in results["tls"]["value"]
    for name in ("http-redirect", "tls", "tls-expiry"):
        assert results[name]["status"] == "CRIT" and "connection refused" in results[name]["value"]
    assert "port 80 must answer 301" in results["http-redirect"]["hint"]
    assert "nginx on the web host does not answer HTTPS" in results["tls"]["hint"]
    for name in ("https", "health", "streaming", "api", "nodeinfo", "webfinger", "actor"):
        assert results[name]["status"] == "CRIT"
        assert results[name]["value"].startswith("unreachable: cannot connect")
        assert "fix the failure of the tls check" in results[name]["hint"]


def test_a_name_that_does_not_resolve(ca: CA) -> None:
    """The resolver is injectable; a failing one makes dns CRIT and the rest unreachable."""
    import socket

    def resolver(name: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    instance = check.Instance(
        "peertube", "video.example.test", "video.example.test", "v8.3.2", (), "root"
    )
    options = check.Options(
        checks=check.selected_checks([], ["host"]),
        ca_file=ca.path,
        network=Network(resolver=resolver),
    )
    results = {r.check: r for r in check.run([instance], options, None).results}
    assert results["dns"].status is check.Status.CRIT
    assert results["dns"].value == "looking up video.example.test: Name or service not known"
    assert "A/AAAA record" in results["dns"].hint
    assert results["api"].value == "unreachable: video.example.test does not resolve"
    assert all(r.status is check.Status.CRIT for r in results.values())


def test_mastodon_with_a_separate_web_domain(
    tmp_path: Any, example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    """Handles on example.test, the app on social.example.test: WebFinger asks the handle domain,
    which redirects to the web domain (as the Mastodon role's vhost does)."""
    inv = example_inventory.copy(tmp_path / "webdomain")
    main = inv.main_vars()
    main["fedictl_apps"]["mastodon"]["local_domain"] = "example.test"
    main["fedictl_apps"]["mastodon"]["web_domain"] = MASTODON
    main["fedictl_apps"]["mastodon"]["owner_username"] = "boss"
    inv.write_main_vars(main)
    routes = fake.add("mastodon")
    instance = saved("mastodon", "instance-v2.json")
    instance["domain"] = "example.test"
    routes["/api/v2/instance"] = Route.json(instance)
    finger = saved("mastodon", "webfinger-admin.json")
    finger["subject"] = "acct:boss@example.test"
    finger["links"][1]["href"] = f"https://{MASTODON}/users/boss"
    routes["/.well-known/webfinger?resource=acct:boss@example.test"] = Route.json(finger, JSON)
    actor = saved("mastodon", "actor-admin.json")
    actor["id"] = f"https://{MASTODON}/users/boss"
    routes["/users/boss"] = Route.json(actor, ACTIVITY)
    fake.certify("example.test", ["example.test"])
    fake.https["example.test"] = {
        "/.well-known/webfinger?resource=acct:boss@example.test": Route.redirect(
            f"https://{MASTODON}/.well-known/webfinger?resource=acct:boss@example.test"
        )
    }
    result = inv.check(
        "--skip", "host", "--json", "--ca-file", str(ca.path), "--app", "mastodon", *fake.cli_args()
    )
    data = report(result)
    results = by_check(data)
    assert result.exit_code == 0, data
    assert results["webfinger@example.test"]["value"] == (
        f"acct:boss@example.test → https://{MASTODON}/users/boss"
    )
    assert results["dns@example.test"]["status"] == "OK"
    assert results["tls@example.test"]["status"] == "OK"
    assert "http-redirect@example.test" not in results  # only the served domain's port 80


def test_one_slow_instance_does_not_delay_the_others(ca: CA) -> None:
    fake = FakeInstances(ca)
    fake.add("mastodon")
    fake.add("peertube")
    for route in fake.https[PEERTUBE].values():
        route.delay = 3
    fake.start()
    try:
        instances = [
            check.Instance("mastodon", MASTODON, MASTODON, "v4.7.6", (), "admin"),
            check.Instance("peertube", PEERTUBE, PEERTUBE, "v8.3.2", (), "root"),
        ]
        options = check.Options(
            checks=check.selected_checks([], ["host"]),
            ca_file=ca.path,
            network=fake.network(),
            timeout=1.5,
        )
        started = time.monotonic()
        done = check.run(instances, options, None)
        elapsed = time.monotonic() - started
    finally:
        fake.stop()
    fast = [r for r in done.results if r.app == "mastodon"]
    slow = [r for r in done.results if r.app == "peertube"]
    assert all(r.status is check.Status.OK for r in fast)
    assert max(r.seconds for r in fast) < 1.0
    assert {r.check for r in slow if r.status is check.Status.CRIT} >= {"https", "health", "api"}
    # the slow instance costs about one timeout per stage it reaches, not one per check
    assert elapsed < 3 * 1.5 + 1, elapsed


def test_http1_connections_are_kept_alive_and_a_dropped_one_is_replaced(ca: CA) -> None:
    """A server without HTTP/2 (nginx without `http2 on`): HTTP/1.1 keep-alive connections."""
    from fedictl.check_http import Deadline, Pool, get, verifying_context

    fake = FakeInstances(ca, http2=False)
    routes = fake.add("mastodon")
    routes["/health"].drop_after = True  # as a server whose keep-alive timeout just passed
    fake.start()
    try:
        instance = check.Instance("mastodon", MASTODON, MASTODON, "v4.7.6", (), "admin")
        options = check.Options(
            checks=check.selected_checks([], ["host"]), ca_file=ca.path, network=fake.network()
        )
        results = check.run([instance], options, None).results
        assert all(r.status is check.Status.OK for r in results), results
        https_requests = sum(1 for tls, _, _ in fake.requests if tls)
        assert https_requests == 8
        assert 1 < fake.connections[True] < https_requests + 1  # +1: the TLS probe's own

        pool, context = Pool(), verifying_context(ca.path)
        url = f"https://{MASTODON}"
        before = fake.connections[True]
        assert get(fake.network(), f"{url}/health", Deadline(5), context, pool=pool).status == 200
        answer = get(
            fake.network(), f"{url}/api/v1/streaming/health", Deadline(5), context, pool=pool
        )
        assert answer.status == 200 and answer.body == b"OK"
        assert fake.connections[True] - before == 2  # the dropped one was replaced, once
        assert get(fake.network(), f"{url}/", Deadline(5), context, pool=pool).status == 200
        assert fake.connections[True] - before == 2  # ... and its replacement kept
        pool.close()
    finally:
        fake.stop()


def test_http2_one_connection_per_instance_for_every_check(ca: CA) -> None:
    """A server offering HTTP/2 (nginx with `http2 on`): the TLS probe's connection is the only
    one; every HTTPS check is a stream on it."""
    fake = FakeInstances(ca)
    fake.add("mastodon")
    fake.start()
    try:
        instance = check.Instance("mastodon", MASTODON, MASTODON, "v4.7.6", (), "admin")
        options = check.Options(
            checks=check.selected_checks([], ["host"]), ca_file=ca.path, network=fake.network()
        )
        results = check.run([instance], options, None).results
    finally:
        fake.stop()
    assert all(r.status is check.Status.OK for r in results), results
    assert sum(1 for tls, _, _ in fake.requests if tls) == 8
    assert fake.connections[True] == 1


def test_http2_streams_never_get_each_others_answers(ca: CA) -> None:
    """Concurrent requests on one shared connection, answered in another order than asked:
    each gets its own status, headers and body."""
    from concurrent.futures import ThreadPoolExecutor

    from fedictl.check_http import Deadline, Pool, get, verifying_context

    fake = FakeInstances(ca)
    routes = fake.add("mastodon")
    for n in range(12):
        routes[f"/n/{n}"] = Route(
            status=200 + n, body=f"answer {n}".encode() * (n + 1), delay=0.03 * (12 - n)
        )
    fake.start()
    pool, context = Pool(), verifying_context(ca.path)
    try:

        def ask(n: int) -> tuple[int, int, bytes, str]:
            url = f"https://{MASTODON}/n/{n}"
            answer = get(fake.network(), url, Deadline(5), context, pool=pool)
            return n, answer.status, answer.body, answer.headers["content-length"]

        ask(11)  # the connection exists before the others start, as after the TLS probe
        with ThreadPoolExecutor(12) as threads:
            answers = list(threads.map(ask, range(12)))
    finally:
        pool.close()
        fake.stop()
    for n, status, body, length in answers:
        assert status == 200 + n
        assert body == f"answer {n}".encode() * (n + 1)
        assert int(length) == len(body)
    assert fake.connections[True] == 1


def test_http2_a_timed_out_stream_leaves_the_connection_usable(ca: CA) -> None:
    """A request past its deadline is cancelled on its own; the shared connection serves the
    next request, and an answer arriving late for the cancelled one goes to nobody."""
    from fedictl.check_http import Deadline, Pool, ProbeError, get, verifying_context

    fake = FakeInstances(ca)
    routes = fake.add("mastodon")
    routes["/slow"] = Route(body=b"late", delay=0.8)
    fake.start()
    pool, context = Pool(), verifying_context(ca.path)
    url = f"https://{MASTODON}"
    try:
        assert get(fake.network(), f"{url}/health", Deadline(5), context, pool=pool).body == b"OK"
        started = time.monotonic()
        with pytest.raises(ProbeError, match=r"no complete answer within 0\.3 s"):
            get(fake.network(), f"{url}/slow", Deadline(0.3), context, pool=pool)
        assert time.monotonic() - started < 0.6
        answer = get(
            fake.network(), f"{url}/api/v1/streaming/health", Deadline(5), context, pool=pool
        )
        assert (answer.status, answer.body) == (200, b"OK")
        time.sleep(0.7)  # the slow answer arrives now, for a stream nobody waits on
        answer = get(fake.network(), f"{url}/health", Deadline(5), context, pool=pool)
        assert (answer.status, answer.body) == (200, b"OK")
    finally:
        pool.close()
        fake.stop()
    assert fake.connections[True] == 1


def test_http2_a_connection_the_server_drops_is_replaced(ca: CA) -> None:
    """The server closes the shared connection after an answer (no GOAWAY): the next request
    goes on a new connection, once."""
    from fedictl.check_http import Deadline, Pool, get, verifying_context

    fake = FakeInstances(ca)
    routes = fake.add("mastodon")
    routes["/health"].drop_after = True
    fake.start()
    pool, context = Pool(), verifying_context(ca.path)
    url = f"https://{MASTODON}"
    try:
        assert get(fake.network(), f"{url}/health", Deadline(5), context, pool=pool).body == b"OK"
        time.sleep(0.1)
        for path in ("/api/v1/streaming/health", "/"):
            assert (
                get(fake.network(), f"{url}{path}", Deadline(5), context, pool=pool).status == 200
            )
    finally:
        pool.close()
        fake.stop()
    assert fake.connections[True] == 2


def test_http2_large_answers_flow_and_too_large_ones_are_refused(ca: CA) -> None:
    """The checker acknowledges what it reads (else a server stops after 64 KiB, as HTTP/2's
    flow control says), and an answer over 1 MiB is refused without reading it all."""
    from fedictl.check_http import Deadline, Pool, ProbeError, get, verifying_context

    fake = FakeInstances(ca)
    routes = fake.add("mastodon")
    routes["/big"] = Route(body=bytes(range(256)) * 1200)  # 300 KiB
    routes["/huge"] = Route(body=b"x" * (1024 * 1024 + 1))  # over in its last frame
    routes["/huger"] = Route(body=b"x" * (3 * 1024 * 1024))  # over long before its end
    fake.start()
    pool, context = Pool(), verifying_context(ca.path)
    url = f"https://{MASTODON}"
    try:
        big = get(fake.network(), f"{url}/big", Deadline(5), context, pool=pool)
        assert big.body == bytes(range(256)) * 1200
        for path in ("/huge", "/huger"):
            with pytest.raises(ProbeError, match="answer larger than 1024 KiB"):
                get(fake.network(), f"{url}{path}", Deadline(5), context, pool=pool)
        assert get(fake.network(), f"{url}/health", Deadline(5), context, pool=pool).body == b"OK"
    finally:
        pool.close()
        fake.stop()
    assert fake.connections[True] == 1


@pytest.mark.parametrize(
    ("running", "status", "advisory"),
    [
        ("4.7.3", "CRIT", "v4.7.6-ruby-puma-rails"),  # 4.7.4 and 4.7.6 fix it; 4.7.6's is critical
        ("4.7.5", "CRIT", "v4.7.6-ruby-puma-rails"),
    ],
)
def test_a_release_with_known_advisories_names_the_release_to_move_to(
    example_inventory: Inventory, fake: FakeInstances, ca: CA, running: str, status: str,
    advisory: str,
) -> None:  # fmt: skip
    """fedictl ships the advisories each Mastodon release fixes (fedictl/apps/mastodon.py): an
    instance behind them is reported, with the release to move to and the command."""
    routes = only_mastodon(fake)
    instance = saved("mastodon", "instance-v2.json")
    instance["version"] = running
    routes["/api/v2/instance"] = Route.json(instance)
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon", "--only", "release")
    assert code == {"WARN": 1, "CRIT": 2}[status]
    assert results["release"]["status"] == status
    assert (
        advisory in results["release"]["value"] and "move to v4.7.6" in results["release"]["value"]
    )
    hint = results["release"]["hint"]
    assert "fedictl upgrade mastodon --to v4.7.6 -i INVENTORY" in hint


def test_a_release_on_a_patched_line_warns_and_an_unknown_line_asks_for_the_notes(
    example_inventory: Inventory, fake: FakeInstances, ca: CA
) -> None:
    routes = only_mastodon(fake)
    instance = saved("mastodon", "instance-v2.json")
    instance["version"] = "4.6.5"  # the three advisories 4.6.7 fixes (high)
    routes["/api/v2/instance"] = Route.json(instance)
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon", "--only", "release")
    assert (code, results["release"]["status"]) == (1, "WARN")
    assert "GHSA-vx32-x96w-qq65" in results["release"]["value"]
    assert "--to v4.6.9" in results["release"]["hint"], "the newest known patch of its own line"
    instance["version"] = "5.0.0"
    routes["/api/v2/instance"] = Route.json(instance)
    code, _, results = run(example_inventory, fake, ca, "--app", "mastodon", "--only", "release")
    assert (code, results["release"]["status"]) == (1, "WARN")
    assert "does not know" in results["release"]["value"]
    assert "upstream's notes" in results["release"]["hint"]
