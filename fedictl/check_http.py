"""Network probes for ``fedictl check``: name lookup, TCP, TLS and HTTP, each with a hard deadline.

Built on ``http.client`` over sockets this module connects itself, so that:

- a name can be sent to another address (``--resolve DOMAIN:ADDR``) and a port to another address
  and port (``--connect-to DOMAIN:PORT:ADDR:PORT``), as curl does, while SNI, certificate checks
  and the Host header keep using the real name;
- every probe has a wall-clock deadline: a watchdog shuts the socket down when it passes, so a
  server that trickles bytes cannot stretch a per-read timeout;
- a certificate that fails verification is still read, for its expiry date and names;
- HTTP/2 is spoken when the server offers it (ALPN; nginx does with ``http2 on``): all of an
  instance's requests then share one TLS connection, each on its own stream with its own deadline,
  instead of a handshake per concurrent request. Otherwise HTTP/1.1 with keep-alive.

Failures are raised as ``ProbeError`` whose message is a reason a person can read; nothing here
knows about check statuses.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import os
import selectors
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

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from cryptography import x509
from cryptography.x509.oid import NameOID

from fedictl import __version__

USER_AGENT = f"fedictl-check/{__version__}"
MAX_BODY = 1024 * 1024  # bytes read of any answer; health documents are far smaller
REDIRECTS = (301, 302, 303, 307, 308)
ALPN = ["h2", "http/1.1"]  # HTTP/2 when the server offers it, as browsers and curl ask

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
            sock = socket.create_connection((address, target_port), timeout=deadline.left())
        except TimeoutError:
            reasons.append(f"{_where(address, target_port)}: no answer (timed out)")
        except ConnectionRefusedError:
            reasons.append(f"{_where(address, target_port)}: connection refused")
        except OSError as exc:
            reasons.append(f"{_where(address, target_port)}: {exc.strerror or exc}")
        else:
            # Requests and HTTP/2 frames are small writes: send each at once (as curl does),
            # not after the peer's delayed ACK of the one before.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
    raise ProbeError(f"cannot connect to {name} port {port} ({'; '.join(reasons)})")


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class _Watchdog:
    """One thread that runs callbacks at their deadlines (a timer thread per probe costs more
    CPU than the probe itself when hundreds run at once)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._armed: set[int] = set()  # tokens neither fired nor disarmed
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def arm(self, at: float, callback: Callable[[], None]) -> int:
        with self._cond:
            token = next(self._ids)
            earliest = not self._heap or at < self._heap[0][0]
            heapq.heappush(self._heap, (at, token, callback))
            self._armed.add(token)
            self._stopping = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fedictl-check watchdog", daemon=True
                )
                self._thread.start()
            elif earliest:  # otherwise the thread wakes up early enough already
                self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.discard(token)

    def stop(self) -> None:
        """End the thread if nothing is armed (a process must have no thread left to fork)."""
        with self._cond:
            thread = self._thread
            if thread is None or self._armed:
                return
            self._stopping = True
            self._cond.notify()
        thread.join(1.0)  # at once, unless a deadline was armed meanwhile: then it stays

    def _next(self) -> Callable[[], None] | None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    if self._stopping:
                        self._stopping = False
                        self._thread = None
                        return None
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    _, token, callback = heapq.heappop(self._heap)
                    self._armed.discard(token)
                    return callback
                self._cond.wait(wait)

    def _run(self) -> None:
        while (callback := self._next()) is not None:
            with suppress(Exception):
                callback()


_WATCHDOG = _Watchdog()


def stop_watchdog() -> None:
    """End the deadline thread when no deadline is armed (before a fork; it restarts on use)."""
    _WATCHDOG.stop()


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

    token = _WATCHDOG.arm(deadline.end, fire)
    try:
        yield fired
    finally:
        _WATCHDOG.disarm(token)
        dup.close()


def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and name verification, against ``ca_file`` only when given (as curl --cacert)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.set_alpn_protocols(ALPN)
    return context


def reading_context() -> ssl.SSLContext:
    """A context that completes any handshake, to read a certificate that failed verification."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only ever used to read the certificate, never to trust
    context.set_alpn_protocols(ALPN)
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
    network: Network,
    name: str,
    port: int,
    context: ssl.SSLContext,
    deadline: Deadline,
    pool: Pool | None = None,
) -> TlsProbe:
    """Handshake as a peer would (verifying); on a verification failure, again to read the cert.

    A verified connection goes to ``pool``: shared by every request to that name when it speaks
    HTTP/2, else for the first request to use.
    """
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
    try:
        probe = TlsProbe(_peer_certificate(tls, name), "")
    except BaseException:
        tls.close()
        raise
    if pool is None:
        tls.close()
    elif tls.selected_alpn_protocol() == "h2":
        conn = H2Connection(tls, name)  # shared now, before the checks that use it start
        if not pool.share(_key(True, name, port, context), conn):
            conn.close()
    else:
        pool.give(_key(True, name, port, context), tls)
    return probe


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


class Pool:
    """Connections of one instance's checks, by scheme, name, port and context.

    An HTTP/2 connection is shared by every request to its origin at once; an idle HTTP/1.1
    keep-alive connection serves one request at a time. Either way, checks that follow a link
    (NodeInfo index → document, WebFinger → actor) and the request after the TLS probe reuse a
    connection instead of paying for another handshake.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int, int], list[socket.socket]] = {}
        self._shared: dict[tuple[str, str, int, int], H2Connection] = {}
        self._closed = False

    def take(self, key: tuple[str, str, int, int]) -> socket.socket | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: tuple[str, str, int, int], sock: socket.socket) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(key, []).append(sock)
                return
        sock.close()

    def shared(self, key: tuple[str, str, int, int]) -> H2Connection | None:
        """The live HTTP/2 connection to this origin, if there is one."""
        with self._lock:
            conn = self._shared.get(key)
            if conn is not None and not conn.usable():
                del self._shared[key]
                conn = None
            return conn

    def share(self, key: tuple[str, str, int, int], conn: H2Connection) -> bool:
        """Offer ``conn`` to the other checks; False when another is shared already."""
        with self._lock:
            current = self._shared.get(key)
            if self._closed or (current is not None and current.usable()):
                return False
            self._shared[key] = conn
            return True

    def forget(self, conn: H2Connection) -> None:
        with self._lock:
            for key, current in list(self._shared.items()):
                if current is conn:
                    del self._shared[key]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [sock for socks in self._idle.values() for sock in socks]
            shared = list(self._shared.values())
            self._idle.clear()
            self._shared.clear()
        for sock in idle:
            sock.close()
        for conn in shared:
            conn.close()


def _key(
    https: bool, name: str, port: int, context: ssl.SSLContext | None
) -> tuple[str, str, int, int]:
    return ("https" if https else "http", name.lower(), port, id(context) if https else 0)


@dataclass
class _Ask:
    """One request, as every transport needs it."""

    url: str
    netloc: str
    name: str
    port: int
    target: str  # path and query
    accept: str


def get(
    network: Network,
    url: str,
    deadline: Deadline,
    context: ssl.SSLContext | None,
    accept: str = "*/*",
    pool: Pool | None = None,
) -> Response:
    """One GET of ``url`` (redirects are not followed). ProbeError with the reason on failure.

    With a ``pool``, the origin's HTTP/2 connection or an idle keep-alive connection is used
    first (and, should the server have closed it meanwhile without answering, the request is
    sent once more on a new one); a new connection is offered to the pool after.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(f"not an http(s) URL: {url!r}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    name = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ask = _Ask(url, parts.netloc.rsplit("@", 1)[-1], name, port, target, accept)
    context = (context or verifying_context(None)) if https else None
    key = _key(https, name, port, context)
    if pool is not None:
        shared = pool.shared(key)
        if shared is not None:
            try:
                return shared.get(ask, deadline)
            except _Stale:
                pool.forget(shared)
        reused = pool.take(key)
        if reused is not None:
            try:
                return _send(reused, ask, deadline, pool, key)
            except _Stale:
                pass
    started = time.monotonic()
    sock: socket.socket = connect(network, name, port, deadline)
    try:
        if context is not None:
            try:
                sock = _handshake(sock, context, name, deadline)
            except ssl.SSLCertVerificationError as exc:
                reason = exc.verify_message or exc.reason or exc
                raise ProbeError(f"certificate of {name} is not valid ({reason})") from None
    except BaseException:
        sock.close()
        raise
    try:
        response = _send(sock, ask, deadline, pool, key)
    except _Stale as exc:
        raise ProbeError(f"{url}: {exc}") from None
    response.seconds = time.monotonic() - started
    return response


def _send(
    sock: socket.socket,
    ask: _Ask,
    deadline: Deadline,
    pool: Pool | None,
    key: tuple[str, str, int, int],
) -> Response:
    """The request on ``sock``: over HTTP/2 when the handshake chose it, else HTTP/1.1."""
    if not (isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() == "h2"):
        return _request(sock, ask, deadline, pool, key)
    conn = H2Connection(sock, ask.name)
    shared = pool is not None and pool.share(key, conn)
    try:
        return conn.get(ask, deadline)
    finally:
        if not shared:
            conn.close()


class _Stale(Exception):
    """A kept-alive connection was closed by the server before it answered."""


def _request(
    sock: socket.socket,
    ask: _Ask,
    deadline: Deadline,
    pool: Pool | None,
    key: tuple[str, str, int, int],
) -> Response:
    """HTTP/1.1: send the GET on ``sock`` and read the answer; the socket is closed or pooled
    after."""
    url = ask.url
    keep = False
    started = time.monotonic()
    try:
        with watchdog(sock, deadline) as fired:
            try:
                sock.settimeout(deadline.left())
                conn = http.client.HTTPConnection(ask.name, ask.port, timeout=deadline.left())
                conn.sock = sock
                try:
                    conn.request(
                        "GET",
                        ask.target,
                        headers={
                            "Host": ask.netloc,
                            "User-Agent": USER_AGENT,
                            "Accept": ask.accept,
                            "Connection": "keep-alive" if pool is not None else "close",
                        },
                    )
                    response = conn.getresponse()
                except (
                    http.client.RemoteDisconnected,
                    ConnectionResetError,
                    BrokenPipeError,
                ) as exc:
                    if fired.is_set():
                        raise ProbeError(f"{url}: {deadline.expired()}") from None
                    raise _Stale(_describe(exc)) from None
                body = _read_body(response, url, deadline)
            except (ProbeError, _Stale):
                raise
            except (OSError, http.client.HTTPException) as exc:
                if fired.is_set() or isinstance(exc, TimeoutError):
                    raise ProbeError(f"{url}: {deadline.expired()}") from None
                raise ProbeError(f"{url}: {_describe(exc)}") from None
            keep = pool is not None and not response.will_close and not fired.is_set()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Response(url, response.status, headers, body, time.monotonic() - started)
    finally:
        if keep and pool is not None:
            pool.give(key, sock)
        else:
            sock.close()


def _read_body(response: http.client.HTTPResponse, url: str, deadline: Deadline) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:  # the watchdog ends a read that outlives the deadline
        deadline.left()
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise ProbeError(f"{url}: answer larger than {MAX_BODY // 1024} KiB")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer ({type(exc).__name__}: {exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# --- HTTP/2 --------------------------------------------------------------------------------------


class _Stream:
    """One request's answer as it arrives; ``done`` is set when it ended or failed."""

    __slots__ = ("chunks", "done", "error", "headers", "retry", "size", "status")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.error = ""  # why it failed; '' when it ended normally
        self.retry = False  # the server never processed it: it may go on another connection


class H2Connection:
    """An HTTP/2 connection that the checks of one instance share, each request on its stream.

    Requests send their frames themselves; one thread per connection waits for what the server
    sends and hands each stream its answer. Every use of the TLS socket holds the lock (an SSL
    object must not be used by two threads at once) and none blocks: the socket is non-blocking,
    and only the reading thread waits, outside the lock, for it to become readable. A request
    waits for its own stream until its own deadline; one that times out is cancelled
    (RST_STREAM) and the others go on.
    """

    def __init__(self, tls: ssl.SSLSocket, name: str) -> None:
        self.name = name
        self._sock = tls
        self._lock = threading.Lock()
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self._h2 = h2.connection.H2Connection(config)
        self._h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.ENABLE_PUSH: 0}
        )
        self._streams: dict[int, _Stream] = {}
        self._closed = ""  # why the connection ended; '' while it is usable
        self._outbox = b""  # frames not yet handed to the socket
        self._writing = b""  # a TLS write that must be retried with the same bytes
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        tls.setblocking(False)
        with self._lock:
            self._h2.initiate_connection()
            self._flush()
        self._thread = threading.Thread(
            target=self._run, name=f"fedictl-check h2 {name}", daemon=True
        )
        self._thread.start()

    def usable(self) -> bool:
        return not self._closed

    def get(self, ask: _Ask, deadline: Deadline) -> Response:
        """GET on a new stream; ProbeError, or _Stale when another connection may answer it."""
        started = time.monotonic()
        stream = _Stream()
        headers = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", ask.netloc),
            (":path", ask.target),
            ("user-agent", USER_AGENT),
            ("accept", ask.accept),
        ]
        with self._lock:
            if self._closed:
                raise _Stale(self._closed)
            try:
                stream_id = self._h2.get_next_available_stream_id()
                self._h2.send_headers(stream_id, headers, end_stream=True)
            except h2.exceptions.H2Error as exc:  # no stream left, too many open: a new one
                raise _Stale(f"HTTP/2 connection cannot take another request ({exc})") from None
            self._streams[stream_id] = stream
            self._flush()
        if not stream.done.wait(max(0.0, deadline.end - time.monotonic())):
            self._cancel(stream_id)
            raise ProbeError(f"{ask.url}: {deadline.expired()}")
        if stream.error:
            if stream.retry:
                raise _Stale(stream.error)
            raise ProbeError(f"{ask.url}: {stream.error}")
        body = b"".join(stream.chunks)
        return Response(ask.url, stream.status, stream.headers, body, time.monotonic() - started)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = "the connection was closed by fedictl"
                with suppress(h2.exceptions.H2Error, OSError):
                    self._h2.close_connection()
                    self._flush()
        self._wake()

    def _cancel(self, stream_id: int) -> None:
        with self._lock:
            if self._streams.pop(stream_id, None) is not None and not self._closed:
                with suppress(h2.exceptions.H2Error):
                    self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                    self._flush()

    def _wake(self) -> None:
        with suppress(OSError):  # a full or closed pipe: the thread is awake or gone anyway
            self._wake_w.send(b"\0")

    def _flush(self) -> None:
        """Hand h2's frames to the socket (lock held); what it cannot take now, the reading
        thread sends when it can."""
        self._outbox += self._h2.data_to_send()
        if self._writing:
            self._write()
            if self._writing:
                return
        if self._outbox:
            self._writing, self._outbox = self._outbox, b""
            self._write()
            if self._writing:
                self._wake()  # to wait until the socket can take the rest

    def _write(self) -> None:
        try:
            self._writing = self._writing[self._sock.send(self._writing) :]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            pass  # the socket's buffer is full: the reading thread retries when it drains
        except OSError as exc:  # the server went away: every stream learns it now
            self._writing = b""
            self._fail(f"HTTP/2 connection failed ({_describe(exc)})")
            self._wake()

    def _fail(self, reason: str) -> None:
        """End every waiting request with ``reason`` (lock held); the connection is unusable."""
        self._closed = self._closed or reason
        for stream in self._streams.values():
            stream.error = reason
            stream.retry = not stream.status and not stream.size
            stream.done.set()
        self._streams.clear()

    # the reading thread --------------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        reason = ""
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._writing else 0)
                selector.modify(self._sock, events)
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        with suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                with self._lock:
                    if self._closed:
                        return
                    self._flush()
                    if not self._receive():
                        reason = "the server closed the connection"
                        return
                    self._flush()  # acknowledgements (SETTINGS, WINDOW_UPDATE, PING)
        except (OSError, ssl.SSLError, h2.exceptions.H2Error) as exc:
            reason = f"HTTP/2 connection failed ({_describe(exc)})"
        finally:
            self._end(reason)
            selector.close()

    def _receive(self) -> bool:
        """Read what the socket has (lock held); False at the end of the stream."""
        while True:
            try:
                data = self._sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return True
            if not data:
                return False
            for event in self._h2.receive_data(data):
                self._on(event)

    def _on(self, event: h2.events.Event) -> None:
        """One HTTP/2 event, with the lock held."""
        if isinstance(event, h2.events.ConnectionTerminated):
            last = event.last_stream_id or 0
            self._closed = f"the server ended the connection (GOAWAY {event.error_code!s})"
            for stream_id, waiting in self._streams.items():
                waiting.error, waiting.retry = self._closed, stream_id > last
                waiting.done.set()
            self._streams.clear()
            return
        stream = self._streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            size = event.flow_controlled_length or 0
            self._h2.acknowledge_received_data(size, event.stream_id)
        if stream is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            for name, value in event.headers or ():
                key, text = _text(name), _text(value)
                if key == ":status":
                    stream.status = int(text)
                elif not key.startswith(":"):
                    stream.headers[key] = text
        elif isinstance(event, h2.events.DataReceived):
            stream.chunks.append(event.data or b"")
            stream.size += len(event.data or b"")
            if stream.size > MAX_BODY:
                stream.error = f"answer larger than {MAX_BODY // 1024} KiB"
                with suppress(h2.exceptions.StreamClosedError):  # its last frame was this one
                    self._h2.reset_stream(event.stream_id, h2.errors.ErrorCodes.CANCEL)
                self._finish(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._finish(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
            stream.error = f"the server reset the request ({event.error_code!s})"
            stream.retry = refused and not stream.status
            self._finish(event.stream_id)

    def _finish(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream.done.set()

    def _end(self, reason: str) -> None:
        """The connection is gone: every request still waiting learns why."""
        with self._lock:
            self._fail(reason or self._closed or "the connection ended")
            self._sock.close()
        self._wake_r.close()
        self._wake_w.close()


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def get_following(
    network: Network,
    url: str,
    deadline: Deadline,
    context: ssl.SSLContext | None,
    accept: str = "*/*",
    allowed_hosts: frozenset[str] = frozenset(),
    limit: int = 3,
    pool: Pool | None = None,
) -> Response:
    """GET, following up to ``limit`` HTTPS redirects to ``allowed_hosts`` (the instance's own).

    A redirect anywhere else is a ProbeError naming where it pointed: an instance's health and
    federation documents are served by the instance itself.
    """
    for _ in range(limit + 1):
        response = get(network, url, deadline, context, accept, pool)
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
