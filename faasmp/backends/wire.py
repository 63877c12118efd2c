"""A connection to Redis opened by faasmp itself: socket, TLS, AUTH, replies parsed by hiredis.

A cold worker's first task used to wait for redis-py's import (~50 ms of its
~90 ms on top of Lithops', ``python -X importtime``) although the worker
sends its commands through the direct path (:mod:`faasmp.backends.direct`),
which packs them itself and took from redis-py only the ``Connection``:
connect, AUTH, TLS and the reply parser.  :class:`RespConnection` does those
with the standard library (``socket``, ``ssl``) and hiredis' C parser, which
redis-py itself uses, and raises redis-py's exception types
(:mod:`faasmp.backends.errors`) with redis-py's messages, so the direct path
works and fails the same on either connection.

It offers exactly what :class:`~faasmp.backends.direct._DirectRedis` uses of a
redis-py connection (``pack_command``, ``send_packed_command``,
``read_response``, ``disconnect``, ``_sock``, ``_parser._reader``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from .errors import exceptions
from .resp import _LeanPacker

#: What a read returns when its timeout argument is not given: the connection's own timeout.
_DEFAULT = object()

#: Query arguments of a Redis URL that :class:`RespConnection` understands; a URL
#: with any other one is opened with redis-py instead (see :func:`parse_url`).
KNOWN_QUERY = frozenset(
    {
        "db",
        "socket_timeout",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    }
)

_TRUE = ("1", "true", "yes", "on", "y")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a Redis URL points and how to log in (the fields of redis-py's ``parse_url`` faasmp uses)."""

    scheme: str
    host: str = "localhost"
    port: int = 6379
    path: str = ""  # unix socket
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    db: int = 0
    ssl_ca_certs: str | None = None
    ssl_ca_path: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True


def parse_url(url: str) -> Endpoint | None:
    """The :class:`Endpoint` of a ``redis://``, ``rediss://`` or ``unix://`` URL, as redis-py reads it.

    None when the URL carries an option this module does not implement (a
    connection pool size, a retry policy, RESP3, ...): the caller then uses
    redis-py, which does.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        return None
    query = {name: values[0] for name, values in urllib.parse.parse_qs(parts.query).items() if values}
    if not set(query) <= KNOWN_QUERY:
        return None
    fields: dict[str, Any] = {"scheme": scheme}
    if parts.username:
        fields["username"] = urllib.parse.unquote(parts.username)
    if parts.password:
        fields["password"] = urllib.parse.unquote(parts.password)
    if scheme == "unix":
        fields["path"] = urllib.parse.unquote(parts.path)
    else:
        if parts.hostname:
            fields["host"] = urllib.parse.unquote(parts.hostname)
        if parts.port is not None:
            fields["port"] = parts.port
        db_path = urllib.parse.unquote(parts.path).replace("/", "")
        if db_path.isdigit():
            fields["db"] = int(db_path)
    if "db" in query:
        fields["db"] = int(query["db"])
    for name in ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
        if name in query:
            fields[name] = query[name]
    if "ssl_check_hostname" in query:
        fields["ssl_check_hostname"] = query["ssl_check_hostname"].lower() in _TRUE
    return Endpoint(**fields)


def _reply_error(text: str) -> Exception:
    """The redis-py exception for an error reply *text* (the table of redis-py's parsers, trimmed).

    The first word is the error code: ``NOSCRIPT`` is a NoScriptError,
    ``WRONGPASS``/``NOAUTH`` an AuthenticationError, ``NOPERM`` a
    NoPermissionError...; the code is cut from the message, as redis-py does.
    """
    code, _, rest = text.partition(" ")
    cls = _ERROR_CODES.get(code)
    if cls is None:
        if code == "ERR" and rest == "invalid password":
            cls = exceptions.AuthenticationError
        else:
            return exceptions.ResponseError(text)
    try:
        return cls(rest, status_code=code)  # type: ignore[call-arg]
    except TypeError:  # redis-py before 7: no status_code
        return cls(rest)


_ERROR_CODES: dict[str, type[Exception]] = {
    "NOSCRIPT": exceptions.NoScriptError,
    "WRONGPASS": exceptions.AuthenticationError,
    "NOAUTH": exceptions.AuthenticationError,
    "NOPERM": exceptions.NoPermissionError,
    "EXECABORT": exceptions.ExecAbortError,
    "LOADING": exceptions.BusyLoadingError,
    "OOM": exceptions.OutOfMemoryError,
    "READONLY": exceptions.ReadOnlyError,
}


class _Parser:
    """Holds the hiredis reader where the direct path looks for it (``conn._parser._reader``)."""

    __slots__ = ("_reader",)

    def __init__(self) -> None:
        self._reader: Any = None


def hiredis_available() -> bool:
    """Whether hiredis (the C reply parser :class:`RespConnection` needs) can be imported."""
    try:
        import hiredis  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


class RespConnection:
    """One Redis connection: connect (unix, TCP, TLS), log in, write packed commands, read replies.

    Connects on its first write.  *greeting* gives commands to write with the
    login, in the same round trip (the run's epoch check); *on_connect* then
    gets the connection and their replies, and may raise; *count_write* and
    *count_wait* count requests written and waits for a reply, as the state
    backend's statistics report them; *map_error*
    may replace an error reply's exception (an ACL refusal by one that says
    what to fix).  Errors are
    redis-py's types: ``ConnectionError`` (cannot connect, closed, reset),
    ``TimeoutError`` (no reply within the read timeout),
    ``AuthenticationError`` (a wrong password), ``ResponseError`` and its
    subclasses (an error reply).  Any error but an error reply drops the
    connection; the next write connects again.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        client_name: str | None,
        socket_timeout: float,
        connect_timeout: float = 5.0,
        greeting: Callable[[], Sequence[Sequence[Any]]] | None = None,
        on_connect: Callable[[RespConnection, list[Any]], None] | None = None,
        ready: Callable[[], None] | None = None,
        count_write: Callable[[], None] | None = None,
        count_wait: Callable[[], None] | None = None,
        map_error: Callable[[Any], BaseException] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client_name = client_name
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self._greeting = greeting
        self._on_connect = on_connect
        self._ready = ready
        self._count_write = count_write
        self._count_wait = count_wait
        self._map_error = map_error
        self._sock: Any = None
        self._pid = 0
        self._parser = _Parser()
        self._command_packer = _LeanPacker()
        self._unread = False  # written since the last read: the next read is a wait

    def __repr__(self) -> str:
        e = self.endpoint
        where = e.path if e.scheme == "unix" else f"{e.host}:{e.port}"
        return f"<RespConnection {e.scheme}://{where} name={self.client_name!r}>"

    @property
    def _where(self) -> str:
        e = self.endpoint
        return e.path if e.scheme == "unix" else f"{e.host}:{e.port}"

    # -- connect ------------------------------------------------------------
    def connect(self) -> None:
        """Open the socket; log in and send the *greeting* in one write; run *on_connect*."""
        if self._sock is not None:
            return
        if self._ready is not None:
            self._ready()
        try:
            sock = self._open_socket()
        except TimeoutError as exc:
            raise exceptions.TimeoutError("Timeout connecting to server") from exc
        except OSError as exc:
            raise exceptions.ConnectionError(self._connect_error(exc)) from exc
        import hiredis  # noqa: PLC0415 - C parser, imported with the first connection (~1 ms)

        self._sock = sock
        self._pid = os.getpid()
        self._parser._reader = hiredis.Reader(
            protocolError=exceptions.InvalidResponse, replyError=_reply_error
        )
        try:
            extra = list(self._greeting()) if self._greeting is not None else []
            replies = self._log_in(extra)
            if self._on_connect is not None:
                self._on_connect(self, replies)
        except BaseException:
            self.disconnect()
            raise

    def _open_socket(self) -> Any:
        e = self.endpoint
        if e.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.connect_timeout)
                sock.connect(e.path)
                sock.settimeout(self.socket_timeout)
            except BaseException:
                sock.close()
                raise
            return sock
        error: OSError | None = None
        for family, kind, proto, _, address in socket.getaddrinfo(e.host, e.port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.settimeout(self.connect_timeout)
                sock.connect(address)
                sock.settimeout(self.socket_timeout)
                if e.scheme == "rediss":
                    sock = self._wrap_tls(sock)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"no address for {e.host}:{e.port}")

    def _wrap_tls(self, sock: socket.socket) -> Any:
        """TLS as redis-py's ``SSLConnection`` sets it up (certificates required, host name checked)."""
        import ssl  # noqa: PLC0415 - only for rediss:// URLs

        e = self.endpoint
        modes = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
        if e.ssl_cert_reqs not in modes:
            raise exceptions.RedisError(f"Invalid SSL Certificate Requirements Flag: {e.ssl_cert_reqs}")
        context = ssl.create_default_context()
        mode = modes[e.ssl_cert_reqs]
        context.check_hostname = e.ssl_check_hostname and mode != ssl.CERT_NONE
        context.verify_mode = mode
        if e.ssl_certfile or e.ssl_keyfile:
            context.load_cert_chain(certfile=e.ssl_certfile or "", keyfile=e.ssl_keyfile)
        if e.ssl_ca_certs is not None or e.ssl_ca_path is not None:
            context.load_verify_locations(cafile=e.ssl_ca_certs, capath=e.ssl_ca_path)
        try:
            return context.wrap_socket(sock, server_hostname=e.host)
        except BaseException:
            sock.close()
            raise

    def _connect_error(self, exc: OSError) -> str:
        """redis-py's message for a failed connect (``Error 111 connecting to h:p. Connection refused.``)."""
        where = self._where
        if not exc.args:
            return f"Error connecting to {where}."
        if len(exc.args) == 1:
            return f"Error {exc.args[0]} connecting to {where}."
        return f"Error {exc.args[0]} connecting to {where}. {exc.args[1]}."

    def _log_in(self, extra: list[Sequence[Any]]) -> list[Any]:
        """``HELLO 2 AUTH user password SETNAME name`` (SELECT, then *extra*): one write, one round trip.

        One command where redis-py sends HELLO and CLIENT SETNAME (two round
        trips), and the epoch check rides along: a worker's connection is
        ready after one round trip instead of three.  A server without HELLO
        (before Redis 6) gets AUTH and CLIENT SETNAME instead.  Returns the
        replies to *extra*.
        """
        e = self.endpoint
        hello: list[Any] = ["HELLO", 2]
        if e.password is not None:
            hello += ["AUTH", e.username or "default", e.password]
        if self.client_name:
            hello += ["SETNAME", self.client_name]
        commands: list[Sequence[Any]] = [hello]
        if e.db:
            commands.append(("SELECT", e.db))
        try:
            return self._send_all_read_all([*commands, *extra])[len(commands) :]
        except exceptions.ResponseError as exc:
            if "HELLO" not in str(exc).upper() and "NOPROTO" not in str(exc).upper():
                raise
            old: list[Sequence[Any]] = []
            if e.password is not None:
                old.append(("AUTH", e.username, e.password) if e.username else ("AUTH", e.password))
            if self.client_name:
                old.append(("CLIENT", "SETNAME", self.client_name))
            if e.db:
                old.append(("SELECT", e.db))
            return self._send_all_read_all([*old, *extra])[len(old) :]

    def _send_all_read_all(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Write *commands* at once, read every reply, then raise the first error reply."""
        if not commands:
            return []
        self.send_packed_command(self.pack_commands(commands))
        replies: list[Any] = []
        first: BaseException | None = None
        for _ in commands:
            try:
                replies.append(self.read_response())
            except exceptions.ResponseError as exc:
                first = first or exc
                replies.append(exc)
        if first is not None:
            raise first
        return replies

    # -- write --------------------------------------------------------------
    def pack_command(self, *args: Any) -> list[Any]:
        return self._command_packer.pack(*args)

    def pack_commands(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """RESP of several commands: small ones joined into one chunk (one write), large arguments apart."""
        out: list[Any] = []
        small: list[bytes] = []
        size = 0
        for command in commands:
            for chunk in self._command_packer.pack(*command):
                if type(chunk) is bytes and len(chunk) <= _LeanPacker._BIG:
                    small.append(chunk)
                    size += len(chunk)
                    if size > _LeanPacker._BIG:
                        out.append(b"".join(small))
                        small, size = [], 0
                else:
                    if small:
                        out.append(b"".join(small))
                        small, size = [], 0
                    out.append(chunk)
        if small:
            out.append(b"".join(small))
        return out

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Write RESP chunks (connecting first if needed); an error drops the connection."""
        if self._sock is None:
            self.connect()
        if self._count_write is not None:
            self._count_write()
        self._unread = True
        chunks = [command] if isinstance(command, (bytes, bytearray, memoryview)) else command
        sock = self._sock
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except TimeoutError as exc:
            self.disconnect()
            raise exceptions.TimeoutError("Timeout writing to socket") from exc
        except OSError as exc:
            self.disconnect()
            if len(exc.args) == 1:
                errno, message = "UNKNOWN", exc.args[0]
            else:
                errno, message = exc.args[0], exc.args[1]
            raise exceptions.ConnectionError(f"Error {errno} while writing to socket. {message}.") from exc
        except BaseException:
            self.disconnect()  # interrupted inside a write: the stream is out of step
            raise

    # -- read ---------------------------------------------------------------
    def note_wait(self) -> None:
        """Count a wait for a reply (also called by the direct path's raw socket reads)."""
        if self._unread:
            self._unread = False
            if self._count_wait is not None:
                self._count_wait()

    def read_response(self, disable_decoding: bool = False, *, timeout: Any = _DEFAULT) -> Any:
        """The next reply; an error reply raises its redis-py type (the connection stays usable).

        *timeout*: seconds to wait for each chunk of the reply, None for ever;
        by default the connection's ``socket_timeout``.
        """
        self.note_wait()
        reader = self._parser._reader
        sock = self._sock
        if reader is None or sock is None:
            raise exceptions.ConnectionError("Connection closed by server.")
        reply = reader.gets()
        if reply is False:
            custom = timeout is not _DEFAULT
            try:
                if custom:
                    sock.settimeout(timeout)
                while reply is False:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        raise exceptions.ConnectionError("Connection closed by server.")
                    reader.feed(chunk)
                    reply = reader.gets()
            except TimeoutError as exc:
                self.disconnect()
                raise exceptions.TimeoutError(f"Timeout reading from {self._where}") from exc
            except OSError as exc:
                self.disconnect()
                raise exceptions.ConnectionError(
                    f"Error while reading from {self._where} : {exc.args}"
                ) from exc
            except BaseException:
                self.disconnect()  # interrupted inside a reply: the stream is out of step
                raise
            finally:
                if custom and self._sock is not None:
                    self._sock.settimeout(self.socket_timeout)
        if isinstance(reply, exceptions.ConnectionError) or (
            type(reply) is list and reply and isinstance(reply[0], exceptions.ConnectionError)
        ):
            # A refused login (WRONGPASS, NOAUTH): the connection is of no use.
            self.disconnect()
            raise reply if isinstance(reply, exceptions.ConnectionError) else reply[0]
        if isinstance(reply, exceptions.ResponseError):
            if self._map_error is not None:
                mapped = self._map_error(reply)
                if mapped is not reply:
                    raise mapped from reply
            raise reply
        return reply

    def disconnect(self, *args: Any) -> None:
        """Close the socket (the next write connects again)."""
        sock, self._sock = self._sock, None
        self._parser._reader = None
        self._unread = False
        if sock is not None:
            try:
                # Only in the process that opened it: a forked child holds a
                # copy of the descriptor, and a shutdown would cut the parent's.
                if self._pid == os.getpid():
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer: nothing to shut down
            sock.close()
