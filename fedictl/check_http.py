"""Network probes for ``fedictl check``: name lookup, TCP, TLS and HTTP, each with a hard deadline.

Built on ``http.client`` over sockets this module connects itself, so that:

- a name can be sent to another address (``--resolve DOMAIN:ADDR``) and a port to another address
  and port (``--connect-to DOMAIN:PORT:ADDR:PORT``), as curl does, while SNI, certificate checks
  and the Host header keep using the real name;
- every probe has a wall-clock deadline: a watchdog shuts the socket down when it passes, so a
  server that trickles bytes cannot stretch a per-read timeout;
- a certificate that fails verification is still read, for its expiry date and names.

Failures are raised as ``ProbeError`` whose message is a reason a person can read; nothing here
knows about check statuses.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from fedictl import __version__

USER_AGENT = f"fedictl-check/{__version__}"
MAX_BODY = 1024 * 1024  # bytes read of any answer; health documents are far smaller
REDIRECTS = (301, 302, 303, 307, 308)

Resolver = Callable[[str], list[str]]


class ProbeError(Exception):
    """A probe failed; the message says why, for people (no traceback, no exception name)."""


class RedirectedAway(ProbeError):
    """An answer redirected to a host outside the instance (or to plain HTTP)."""


class Deadline:
    """A wall-clock budget in seconds, shared by every step of one probe."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; ProbeError once the budget is spent."""
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise ProbeError(self.expired())
        return remaining

    def expired(self) -> str:
        return f"no complete answer within {self.seconds:g} s (--timeout)"


def system_resolver(name: str) -> list[str]:
    """Addresses of ``name`` from the system's resolver (getaddrinfo), in its order."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _call_within(func: Callable[[], list[str]], deadline: Deadline, what: str) -> list[str]:
    """``func()`` in a daemon thread, abandoned when the deadline passes (getaddrinfo has none)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func()
        except Exception as exc:  # reported below; never escapes the thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"fedictl-check {what}", daemon=True)
    thread.start()
    thread.join(deadline.left())
    if thread.is_alive():
        raise ProbeError(f"{what}: no answer within {deadline.seconds:g} s (--timeout)")
    if "error" in box:
        error = box["error"]
        if isinstance(error, socket.gaierror):
            raise ProbeError(f"{what}: {error.strerror or error}")
        raise ProbeError(f"{what}: {error}")
    value: list[str] = box["value"]
    return value


@dataclass
class Network:
    """How names and ports are reached: the system resolver, or the user's overrides."""

    resolve: dict[str, str] = field(default_factory=dict)  # name -> address
    connect_to: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    resolver: Resolver = system_resolver

    def overridden(self, name: str) -> str:
        """Which option decides where ``name`` goes ('' when DNS does)."""
        if name.lower() in self.resolve:
            return "--resolve"
        if any(host == name.lower() for host, _ in self.connect_to):
            return "--connect-to"
        return ""

    def lookup(self, name: str, deadline: Deadline) -> list[str]:
        """Addresses of ``name``: the --resolve override, else the resolver (ProbeError)."""
        if name.lower() in self.resolve:
            return [self.resolve[name.lower()]]
        addresses = _call_within(lambda: self.resolver(name), deadline, f"looking up {name}")
        if not addresses:
            raise ProbeError(f"looking up {name}: no address")
        return addresses

    def endpoints(self, name: str, port: int, deadline: Deadline) -> list[tuple[str, int]]:
        target = self.connect_to.get((name.lower(), port))
        if target is not None:
            return [target]
        return [(address, port) for address in self.lookup(name, deadline)]


def connect(network: Network, name: str, port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to ``name``:``port``, trying each address until one answers."""
    reasons: list[str] = []
    for address, target_port in network.endpoints(name, port, deadline):
        try:
            return socket.create_connection((address, target_port), timeout=deadline.left())
        except TimeoutError:
            reasons.append(f"{_where(address, target_port)}: no answer (timed out)")
        except ConnectionRefusedError:
            reasons.append(f"{_where(address, target_port)}: connection refused")
        except OSError as exc:
            reasons.append(f"{_where(address, target_port)}: {exc.strerror or exc}")
    raise ProbeError(f"cannot connect to {name} port {port} ({'; '.join(reasons)})")


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@contextmanager
def watchdog(sock: socket.socket, deadline: Deadline) -> Iterator[threading.Event]:
    """Shut ``sock`` down when the deadline passes; the event says whether that happened.

    A duplicate of the descriptor is shut down, not ``sock`` itself, so a TLS object reading in
    another thread sees a plain end of stream instead of a half-torn-down SSL state.
    """
    fired = threading.Event()
    dup = socket.socket(fileno=os.dup(sock.fileno()))

    def fire() -> None:
        fired.set()
        with suppress(OSError):
            dup.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline.end - time.monotonic()), fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
        dup.close()


def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and name verification, against ``ca_file`` only when given (as curl --cacert)."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def reading_context() -> ssl.SSLContext:
    """A context that completes any handshake, to read a certificate that failed verification."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only ever used to read the certificate, never to trust
    return context


def _handshake(
    sock: socket.socket, context: ssl.SSLContext, name: str, deadline: Deadline
) -> ssl.SSLSocket:
    with watchdog(sock, deadline) as fired:
        sock.settimeout(deadline.left())
        try:
            return context.wrap_socket(sock, server_hostname=name)
        except ssl.SSLCertVerificationError:
            raise
        except ssl.SSLError as exc:
            raise ProbeError(f"TLS handshake with {name} failed ({exc.reason or exc})") from None
        except OSError as exc:
            if fired.is_set() or isinstance(exc, TimeoutError):
                raise ProbeError(f"TLS handshake with {name}: {deadline.expired()}") from None
            raise ProbeError(f"TLS handshake with {name} failed ({exc.strerror or exc})") from None


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    subject: str  # common name, or the whole subject when it has none
    issuer: str
    names: tuple[str, ...]  # subjectAltName DNS names
    not_after: datetime  # UTC


def parse_certificate(der: bytes) -> Certificate:
    cert = x509.load_der_x509_certificate(der)

    def common_name(name: x509.Name) -> str:
        values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(values[0].value) if values else name.rfc4514_string()

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return Certificate(
        common_name(cert.subject), common_name(cert.issuer), names, cert.not_valid_after_utc
    )


@dataclass(frozen=True)
class TlsProbe:
    certificate: Certificate
    problem: str  # why verification failed; '' when the chain and name verified
    code: int = 0  # OpenSSL's verify code (10 expired, 62 name mismatch, ...); 0 when verified


def probe_tls(
    network: Network, name: str, port: int, context: ssl.SSLContext, deadline: Deadline
) -> TlsProbe:
    """Handshake as a peer would (verifying); on a verification failure, again to read the cert."""
    sock = connect(network, name, port, deadline)
    try:
        tls = _handshake(sock, context, name, deadline)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        problem = str(exc.verify_message or exc.reason or exc)
        code = int(exc.verify_code or 0)
        again = connect(network, name, port, deadline)
        try:
            tls = _handshake(again, reading_context(), name, deadline)
        except (
            ssl.SSLCertVerificationError
        ):  # pragma: no cover - the reading context verifies nothing
            again.close()
            raise ProbeError(f"certificate of {name} is not valid ({problem})") from None
        with tls:
            return TlsProbe(_peer_certificate(tls, name), problem, code)
    with tls:
        return TlsProbe(_peer_certificate(tls, name), "")


def _peer_certificate(tls: ssl.SSLSocket, name: str) -> Certificate:
    der = tls.getpeercert(binary_form=True)
    if not der:
        raise ProbeError(f"{name} sent no certificate")
    try:
        return parse_certificate(der)
    except ValueError as exc:
        raise ProbeError(f"certificate of {name} cannot be read ({exc})") from None


# --- HTTP --------------------------------------------------------------------------------------


@dataclass
class Response:
    url: str  # the URL that answered (after redirects)
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    seconds: float

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            sample = self.text().strip().replace("\n", " ")[:40]
            raise ProbeError(f"{self.url} answered with invalid JSON ({sample!r})") from None


def get(
    network: Network,
    url: str,
    deadline: Deadline,
    context: ssl.SSLContext | None,
    accept: str = "*/*",
) -> Response:
    """One GET of ``url`` (redirects are not followed). ProbeError with the reason on failure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(f"not an http(s) URL: {url!r}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    name = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    sock: socket.socket = connect(network, name, port, deadline)
    try:
        if https:
            try:
                sock = _handshake(sock, context or verifying_context(None), name, deadline)
            except ssl.SSLCertVerificationError as exc:
                reason = exc.verify_message or exc.reason or exc
                raise ProbeError(f"certificate of {name} is not valid ({reason})") from None
        with watchdog(sock, deadline) as fired:
            try:
                return _exchange(
                    sock, parts.netloc, name, port, target, accept, url, deadline, started
                )
            except ProbeError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                if fired.is_set() or isinstance(exc, TimeoutError):
                    raise ProbeError(f"{url}: {deadline.expired()}") from None
                raise ProbeError(f"{url}: {_describe(exc)}") from None
    finally:
        sock.close()


def _exchange(
    sock: socket.socket,
    netloc: str,
    name: str,
    port: int,
    target: str,
    accept: str,
    url: str,
    deadline: Deadline,
    started: float,
) -> Response:
    sock.settimeout(deadline.left())
    conn = http.client.HTTPConnection(name, port, timeout=deadline.left())
    conn.sock = sock
    host = netloc.rsplit("@", 1)[-1]
    conn.request(
        "GET",
        target,
        headers={"Host": host, "User-Agent": USER_AGENT, "Accept": accept, "Connection": "close"},
    )
    response = conn.getresponse()
    chunks: list[bytes] = []
    size = 0
    while True:  # the watchdog ends a read that outlives the deadline
        deadline.left()
        chunk = response.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise ProbeError(f"{url}: answer larger than {MAX_BODY // 1024} KiB")
    headers = {k.lower(): v for k, v in response.getheaders()}
    return Response(url, response.status, headers, b"".join(chunks), time.monotonic() - started)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer ({type(exc).__name__}: {exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def get_following(
    network: Network,
    url: str,
    deadline: Deadline,
    context: ssl.SSLContext | None,
    accept: str = "*/*",
    allowed_hosts: frozenset[str] = frozenset(),
    limit: int = 3,
) -> Response:
    """GET, following up to ``limit`` HTTPS redirects to ``allowed_hosts`` (the instance's own).

    A redirect anywhere else is a ProbeError naming where it pointed: an instance's health and
    federation documents are served by the instance itself.
    """
    for _ in range(limit + 1):
        response = get(network, url, deadline, context, accept)
        if response.status not in REDIRECTS:
            return response
        location = response.headers.get("location", "")
        if not location:
            raise ProbeError(f"{url} answered {response.status} without a Location")
        following = urljoin(url, location)
        parts = urlsplit(following)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or host not in allowed_hosts:
            raise RedirectedAway(f"{url} redirects to {following}, outside this instance")
        url = following
    raise ProbeError(f"{url}: more than {limit} redirects")
