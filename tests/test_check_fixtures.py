"""Stand-in instances for the `fedictl check` tests and bench/check_latency.py.

A throwaway CA and server certificates made with `cryptography` in a temporary directory, and
one HTTPS and one plain-HTTP server on 127.0.0.1 (threads) that answer by Host header with the
saved answers in tests/data/check/ — shaped like real Mastodon, PeerTube and Pixelfed answers.
Like nginx with `http2 on` (the nginx role's default), the HTTPS server speaks HTTP/2 to a client
that offers it (ALPN) and HTTP/1.1 with keep-alive otherwise; `FakeInstances(http2=False)` is
a server without HTTP/2.
`fedictl check` reaches them through `--resolve` and `--connect-to`, exactly as a user would
point it at a server before DNS exists. Each test changes one route or certificate and looks at
what the real checks report.

The tests in this file prove the stand-in itself: the saved answers carry the fields the checks
read, and the servers route by name and present the certificate issued for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import http.server
import itertools
import json
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedictl import yamlio
from fedictl.check_http import Network
from fedictl.cli import cli

DATA = Path(__file__).resolve().parent / "data" / "check"
EXAMPLE = {
    "mastodon": "social.example.test",
    "peertube": "video.example.test",
    "pixelfed": "photos.example.test",
}
ACCOUNT = {"mastodon": "admin", "peertube": "root", "pixelfed": "admin"}
JSON = "application/json; charset=utf-8"
JRD = "application/jrd+json; charset=utf-8"
ACTIVITY = "application/activity+json; charset=utf-8"
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


# --- certificates --------------------------------------------------------------------------------


class CA:
    """A throwaway certificate authority (EC P-256) whose root is written to ``path``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedictl test CA")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._count = 0

    def issue(
        self, names: list[str], days_left: float = 90, valid_days: float = 90
    ) -> tuple[Path, Path]:
        """A server certificate for ``names`` expiring in ``days_left`` days (negative: expired)."""
        self._count += 1
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        not_after = now + dt.timedelta(days=days_left)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_after - dt.timedelta(days=valid_days))
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.directory / f"server{self._count}.pem"
        key_path = self.directory / f"server{self._count}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


# --- routes --------------------------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drop_after: bool = False  # close the connection after answering, without saying so

    @classmethod
    def json(cls, data: Any, content_type: str = JSON) -> Route:
        return cls(body=json.dumps(data).encode(), content_type=content_type)

    @classmethod
    def redirect(cls, location: str, status: int = 301) -> Route:
        return cls(status=status, headers={"Location": location}, content_type=HTML)


def saved(app: str, name: str, domain: str = "") -> Any:
    """A saved answer, with the example domain replaced by ``domain``."""
    text = (DATA / app / name).read_text()
    return json.loads(text.replace(EXAMPLE[app], domain or EXAMPLE[app]))


def app_routes(app: str, domain: str) -> dict[str, Route]:
    """Everything `fedictl check` asks an instance of ``app`` for, answered as the app does."""
    acct = f"acct:{ACCOUNT[app]}@{domain}"
    webfinger = f"/.well-known/webfinger?resource={acct}"
    routes = {
        "/": Route(body=b"<!DOCTYPE html><html><body>instance</body></html>", content_type=HTML),
        "/.well-known/nodeinfo": Route.json(saved(app, "nodeinfo-index.json", domain)),
        webfinger: Route.json(saved(app, f"webfinger-{ACCOUNT[app]}.json", domain), JRD),
    }
    actor = saved(app, f"actor-{ACCOUNT[app]}.json", domain)
    routes[_path(actor["id"])] = Route.json(actor, ACTIVITY)
    nodeinfo = saved(app, "nodeinfo-2.0.json", domain)
    if app == "mastodon":
        profile = 'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.0#"'
        routes |= {
            "/health": Route(body=b"OK"),
            "/api/v1/streaming/health": Route(body=b"OK"),
            "/api/v2/instance": Route.json(saved(app, "instance-v2.json", domain)),
            "/nodeinfo/2.0": Route.json(nodeinfo, profile),
        }
    elif app == "peertube":
        routes |= {
            "/api/v1/ping": Route(body=b"pong"),
            "/api/v1/config": Route.json(saved(app, "config.json", domain)),
            "/nodeinfo/2.0.json": Route.json(nodeinfo),
        }
    else:
        routes |= {
            "/api/service/health-check": Route(body=b"OK"),
            "/api/nodeinfo/2.0.json": Route.json(nodeinfo, "application/json"),
        }
    return routes


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


# --- servers -------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx
    disable_nagle_algorithm = True  # headers and body are two writes; no delayed-ACK stalls

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        site = self.server.fake.sites(self.server.tls).get(host, {})
        route = site.get(self.path) or self.server.fake.fallback(self.server.tls, host, self.path)
        self.server.fake.requests.append((self.server.tls, host, self.path))
        delay = route.delay + self.server.fake.latency
        if delay:
            time.sleep(delay)
        try:
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)
            self.close_connection = self.close_connection or route.drop_after
        except OSError:
            pass  # the client gave up (a timeout test); nothing to do

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, fake: FakeInstances, tls: bool) -> None:
        self.fake = fake
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.fake.connections[self.tls] += 1
        if self.tls:
            try:
                request = self.fake.context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return  # a client that refused our certificate
            if request.selected_alpn_protocol() == "h2":
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as nginx
                _serve_h2(self.fake, request)
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _serve_h2(fake: FakeInstances, sock: ssl.SSLSocket) -> None:
    """One HTTP/2 connection, as nginx serves it: every stream answered on its own schedule."""
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding="utf-8",
        # our own answers need no checking, and nginx's HTTP/2 in C costs far less than h2
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    due: list[tuple[float, int, int, Route]] = []  # (when, order, stream, route)
    order = itertools.count()
    cancelled: set[int] = set()  # streams the client reset: answered by nobody
    unsent: dict[int, bytes] = {}  # bodies waiting for the client's flow-control window
    try:
        sock.sendall(conn.data_to_send())
        while True:
            while due and due[0][0] <= time.monotonic():
                _, _, stream_id, route = heapq.heappop(due)
                if stream_id in cancelled:
                    continue
                with contextlib.suppress(h2.exceptions.StreamClosedError):  # closed meanwhile
                    _answer_h2(conn, stream_id, route, unsent)
                if route.drop_after:
                    sock.sendall(conn.data_to_send())
                    return  # close without GOAWAY, as a server that went away
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            sock.settimeout(max(0.001, due[0][0] - time.monotonic()) if due else None)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = dict(event.headers or ())
                    host = str(headers.get(":authority", "")).rsplit(":", 1)[0].lower()
                    path = str(headers.get(":path", "/"))
                    route = fake.sites(True).get(host, {}).get(path) or fake.fallback(
                        True, host, path
                    )
                    fake.requests.append((True, host, path))
                    when = time.monotonic() + route.delay + fake.latency
                    heapq.heappush(due, (when, next(order), event.stream_id or 0, route))
                elif isinstance(event, h2.events.StreamReset):
                    cancelled.add(event.stream_id or 0)
                    unsent.pop(event.stream_id or 0, None)
                elif isinstance(event, h2.events.WindowUpdated):
                    _pump(conn, unsent)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
    except (OSError, h2.exceptions.H2Error):
        pass  # the client went away
    finally:
        sock.close()


def _answer_h2(
    conn: h2.connection.H2Connection, stream_id: int, route: Route, unsent: dict[int, bytes]
) -> None:
    headers = [
        (":status", str(route.status)),
        ("content-type", route.content_type),
        ("content-length", str(len(route.body))),
        *((name.lower(), value) for name, value in route.headers.items()),
    ]
    conn.send_headers(stream_id, headers, end_stream=not route.body)
    if route.body:
        unsent[stream_id] = route.body
        _pump(conn, unsent)


def _pump(conn: h2.connection.H2Connection, unsent: dict[int, bytes]) -> None:
    """Send what the client's flow-control windows allow (it must acknowledge what it read)."""
    for stream_id, body in list(unsent.items()):
        try:
            while body:
                room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk, body = body[:room], body[room:]
                conn.send_data(stream_id, chunk, end_stream=not body)
        except h2.exceptions.StreamClosedError:
            body = b""
        if body:
            unsent[stream_id] = body
        else:
            del unsent[stream_id]


class FakeInstances:
    """Instances by domain on two local ports: 443's stand-in (TLS, SNI) and 80's (plain)."""

    def __init__(self, ca: CA, http2: bool = True) -> None:
        self.ca = ca
        self.http2 = http2  # offer HTTP/2 (ALPN h2), as nginx with `http2 on`
        self.https: dict[str, dict[str, Route]] = {}
        self.http: dict[str, dict[str, Route]] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.latency = 0.0  # added to every answer (the benchmark's network delay)
        self.requests: list[tuple[bool, str, str]] = []
        self.connections = {True: 0, False: 0}  # accepted, by TLS or not
        cert, key = ca.issue(["default.invalid"])
        self.context = self._context(cert, key)
        self.context.sni_callback = self._sni
        self._servers = [_Server(self, True), _Server(self, False)]
        self.https_port = self._servers[0].server_address[1]
        self.http_port = self._servers[1].server_address[1]
        self._threads: list[threading.Thread] = []

    def _context(self, cert: Path, key: Path) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["h2", "http/1.1"] if self.http2 else ["http/1.1"])
        return context

    def _sni(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        chosen = self.contexts.get((name or "").lower())
        if chosen is not None:
            sock.context = chosen

    def sites(self, tls: bool) -> dict[str, dict[str, Route]]:
        return self.https if tls else self.http

    def fallback(self, tls: bool, host: str, path: str) -> Route:
        if not tls and host in self.https:  # nginx's port-80 site: everything to HTTPS
            return Route.redirect(f"https://{host}{path}")
        return Route(status=404, body=b"Not Found")

    def add(
        self,
        app: str,
        domain: str = "",
        days_left: float = 90,
        cert_names: list[str] | None = None,
    ) -> dict[str, Route]:
        """Serve an instance of ``app`` on ``domain``; returns its HTTPS routes to change."""
        domain = domain or EXAMPLE[app]
        self.https[domain] = app_routes(app, domain)
        self.certify(domain, cert_names or [domain], days_left)
        return self.https[domain]

    def certify(self, domain: str, names: list[str], days_left: float = 90) -> None:
        cert, key = self.ca.issue(names, days_left)
        self.contexts[domain] = self._context(cert, key)

    def start(self) -> None:
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def cli_args(self, domains: list[str] | None = None) -> list[str]:
        """--resolve/--connect-to options that send ``domains`` (default: all) here."""
        args: list[str] = []
        for domain in domains or list(self.https):
            args += [
                "--resolve",
                f"{domain}:127.0.0.1",
                "--connect-to",
                f"{domain}:443:127.0.0.1:{self.https_port}",
                "--connect-to",
                f"{domain}:80:127.0.0.1:{self.http_port}",
            ]
        return args

    def network(self) -> Network:
        resolve = dict.fromkeys(self.https, "127.0.0.1")
        connect_to: dict[tuple[str, int], tuple[str, int]] = {}
        for domain in self.https:
            connect_to[(domain, 443)] = ("127.0.0.1", self.https_port)
            connect_to[(domain, 80)] = ("127.0.0.1", self.http_port)
        return Network(resolve=resolve, connect_to=connect_to)


@pytest.fixture(name="ca", scope="module")
def ca_fixture(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return CA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(name="fake")
def fake_fixture(ca: CA) -> Iterator[FakeInstances]:
    fake = FakeInstances(ca)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


# --- the stand-in itself -------------------------------------------------------------------------


@pytest.mark.parametrize("app", list(EXAMPLE))
def test_saved_answers_carry_what_the_checks_read(app: str) -> None:
    domain = EXAMPLE[app]
    index = saved(app, "nodeinfo-index.json")
    (link,) = index["links"]
    assert link["rel"] == "http://nodeinfo.diaspora.software/ns/schema/2.0"
    assert link["href"].startswith(f"https://{domain}/")
    nodeinfo = saved(app, "nodeinfo-2.0.json")
    assert nodeinfo["version"] == "2.0" and nodeinfo["software"]["name"] == app
    assert "activitypub" in nodeinfo["protocols"]
    finger = saved(app, f"webfinger-{ACCOUNT[app]}.json")
    assert finger["subject"] == f"acct:{ACCOUNT[app]}@{domain}"
    (self_link,) = [x for x in finger["links"] if x["rel"] == "self"]
    actor = saved(app, f"actor-{ACCOUNT[app]}.json")
    assert self_link["type"] == "application/activity+json" and self_link["href"] == actor["id"]
    assert actor["type"] == "Person" and actor["inbox"].startswith(actor["id"])
    pinned = {"mastodon": "4.7.6", "peertube": "8.3.2", "pixelfed": "0.14.4"}[app]
    assert nodeinfo["software"]["version"] == pinned
    if app == "mastodon":
        instance = saved(app, "instance-v2.json")
        assert instance["domain"] == domain and instance["version"] == pinned
    if app == "peertube":
        assert saved(app, "config.json")["serverVersion"] == pinned


def test_servers_route_by_name_and_present_its_certificate(fake: FakeInstances, ca: CA) -> None:
    fake.add("mastodon")
    fake.add("peertube", cert_names=["elsewhere.test"])
    context = ssl.create_default_context(cafile=str(ca.path))
    context.check_hostname = False
    for domain, names in (
        ("social.example.test", ["social.example.test"]),
        ("video.example.test", ["elsewhere.test"]),
    ):
        with (
            socket.create_connection(("127.0.0.1", fake.https_port)) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == names
            tls.sendall(f"GET /health HTTP/1.0\r\nHost: {domain}\r\n\r\n".encode())
            answer = tls.recv(4096).decode()
        expected = "200" if domain.startswith("social") else "404"
        assert answer.split()[1] == expected
    with socket.create_connection(("127.0.0.1", fake.http_port)) as plain:
        plain.sendall(b"GET /x?y HTTP/1.0\r\nHost: social.example.test\r\n\r\n")
        answer = plain.recv(4096).decode()
    assert answer.split()[1] == "301"
    assert "Location: https://social.example.test/x?y" in answer


# --- an inventory to check -----------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Inventory:
    """An inventory written by `fedictl init` from the example answers, and how to check it."""

    path: Path
    password: Path
    env: dict[str, str]

    def main_vars(self) -> dict[str, Any]:
        data: dict[str, Any] = yamlio.load_file(self.path / "group_vars/all/main.yml")
        return data

    def write_main_vars(self, data: dict[str, Any]) -> None:
        (self.path / "group_vars/all/main.yml").write_text(yaml.safe_dump(data, sort_keys=False))

    def copy(self, target: Path) -> Inventory:
        shutil.copytree(self.path, target)
        return Inventory(target, self.password, self.env)

    def check(self, *args: str) -> Result:
        """`fedictl check -i INV ARGS` through click's runner; stdout and stderr apart."""
        runner = CliRunner()
        argv = ["check", "-i", str(self.path), "--vault-password-file", str(self.password)]
        return runner.invoke(cli, [*argv, *args], env=self.env, catch_exceptions=False)


def write_inventory(base: Path, answers: dict[str, Any] | None = None) -> Inventory:
    root = base / "project"
    (root / "playbooks").mkdir(parents=True)
    (root / "playbooks" / "check-host.yml").symlink_to(REPO / "playbooks" / "check-host.yml")
    env = {"FEDICTL_ROOT": str(root), "XDG_CONFIG_HOME": str(base / "config")}
    data = answers or yaml.safe_load((REPO / "examples" / "answers.yml").read_text())
    answers_file = base / "answers.yml"
    answers_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(
        cli, ["init", "demo", "--answers", str(answers_file)], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    password = base / "config" / "fedictl" / "vault" / "demo.pass"
    return Inventory(root / "inventories" / "demo", password, env)


@pytest.fixture(name="example_inventory", scope="module")
def example_inventory_fixture(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    return write_inventory(tmp_path_factory.mktemp("inventory"))


def report(result: Result) -> dict[str, Any]:
    """The --json report of a check run (stdout only)."""
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def by_check(data: dict[str, Any], instance: str = "") -> dict[str, dict[str, Any]]:
    """Results keyed by check name (``check@target`` when the target is not the instance)."""
    out: dict[str, dict[str, Any]] = {}
    for r in data["results"]:
        if instance and r["instance"] != instance:
            continue
        key = r["check"] if r["target"] == r["instance"] else f"{r['check']}@{r['target']}"
        out[key] = r
    return out
