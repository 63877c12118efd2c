"""The wire under the direct path: RESP commands packed once, replies read off the socket.

redis-py packs every command anew and reads every reply through its parser
and reply layers; a pipe message, a lock script or a shared-memory segment
pays for that on every call.  These helpers pack the project's few hot
commands with prepared parts, write them in one system call, and read the
replies the hot paths need (a popped element, bulk segment data) straight
into their own buffers.  Used by :mod:`faasmp.backends.direct`.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import errors as redis  # redis-py's exception types, without its package (see errors.py)


class Parts(tuple):  # type: ignore[type-arg]
    """One command argument written from several buffers, none of them copied.

    ``Parts((mac, body))`` is sent as the single bulk string ``mac + body``:
    a signed 1 MiB message goes out without being joined into a new buffer
    (for ``StateBackend.direct``'s ``execute_many`` and ``send_many_deferred``).
    """

    __slots__ = ()

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in self)


def signed_parts(mac: Any, body: Any) -> Parts:
    """``Parts`` of ``mac || body``, where *body* is a bytes-like object or a tuple of them."""
    return Parts((mac, *body)) if type(body) is tuple else Parts((mac, body))


class _LeanPacker:
    """RESP encoding for the direct path: ~1 us per small command, large arguments not copied.

    redis-py's packers cost ~13 us per small command here (generic type
    checks, encoder objects), and hiredis' one copies every argument into
    one buffer at ~2.5-7 ms per MB.  This one joins the small parts into one
    chunk (one ``sendall``) and hands arguments over 64 KiB on as they are.
    """

    _BIG = 1 << 16

    def pack(self, *args: Any) -> list[Any]:
        return self.pack_prefixed(b"", 0, args)

    def pack_prefixed(self, prefix: bytes, n_prefix: int, args: Sequence[Any]) -> list[Any]:
        """RESP of a command whose first *n_prefix* arguments are packed already, as *prefix*.

        A script call's EVALSHA, sha, key count and keys are the same on every
        call of one object: packed once (:meth:`_DirectRedis.script`), they
        cost nothing per call.  Small str/int/bytes arguments take a fast path
        (one formatting per argument: ~4 instead of ~7 us for a lock's script).
        """
        parts = [b"*%d\r\n" % (n_prefix + len(args)), prefix]
        for a in args:
            t = type(a)
            if t is str:
                a = a.encode()
            elif t is int:
                a = b"%d" % a
            elif t is float:
                a = repr(a).encode()
            elif t is not bytes or len(a) > self._BIG:
                break
            parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
        else:
            return [b"".join(parts)]
        return self._pack_general(prefix, n_prefix, args)

    @staticmethod
    def prefix(*args: str | bytes | int) -> bytes:
        """The arguments packed for :meth:`pack_prefixed` (no array header)."""
        parts = []
        for a in args:
            b = a.encode() if isinstance(a, str) else b"%d" % a if isinstance(a, int) else a
            parts.append(b"$%d\r\n%b\r\n" % (len(b), b))
        return b"".join(parts)

    def _pack_general(self, prefix: bytes, n_prefix: int, args: Sequence[Any]) -> list[Any]:
        """Any argument type; arguments over 64 KiB (and ``Parts``) are handed on uncopied."""
        out: list[Any] = []
        buf = [b"*%d\r\n" % (n_prefix + len(args)), prefix]
        big = self._BIG
        for a in args:
            if isinstance(a, Parts):
                buf.append(b"$%d\r\n" % a.nbytes)
                out.append(b"".join(buf))
                out.extend(a)
                buf = [b"\r\n"]
                continue
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, bool) or not isinstance(a, (bytes, bytearray, memoryview, int, float)):
                raise redis.exceptions.DataError(
                    f"invalid input of type {type(a).__name__!r}: send bytes, str, int or float"
                )
            elif isinstance(a, int):
                a = b"%d" % a
            elif isinstance(a, float):
                a = repr(a).encode()
            n = a.nbytes if isinstance(a, memoryview) else len(a)
            if n > big:
                buf.append(b"$%d\r\n" % n)
                out.append(b"".join(buf))
                out.append(a)
                buf = [b"\r\n"]
            else:
                buf.append(b"$%d\r\n" % n)
                buf.append(a)
                buf.append(b"\r\n")
        out.append(b"".join(buf))
        return out


#: Popped elements at most this large are read by the parser (in C): reading
#: the reply in Python costs a few microseconds that only large ones repay.
_SMALL_REPLY = 1 << 16
#: The first read of a BLPOP reply: a small message's whole reply, in one recv.
_FIRST_READ = 1 << 13


def _pop_element(head: bytes) -> tuple[int, int] | None:
    """Start and length of the element in a BLPOP reply whose first bytes are *head*.

    *head* starts with the reply's array header (``*2\\r\\n$``); None when it
    does not reach the element's length yet.
    """
    end = head.find(b"\r\n", 4)
    if end < 0:
        return None
    start = end + 2 + int(head[5:end]) + 2  # past the key and its CRLF
    end = head.find(b"\r\n", start)
    if end < 0 or head[start : start + 1] != b"$":
        return None
    return end + 2, int(head[start + 1 : end])


def _small_reply(head: bytes) -> bool:
    """Whether the reply starting with *head* is not a large BLPOP element (the parser reads it).

    The array header, the key and the element's length arrive in one write.
    """
    if not head.startswith(b"*2\r\n$"):
        return True  # a timeout, an error or no data (closed): the parser handles it
    element = _pop_element(head)
    return element is not None and element[1] <= _SMALL_REPLY


def _whole_small_pop(head: bytes) -> bytes | None:
    """The element of a BLPOP reply when *head* is exactly that whole reply, else None (the parser reads it).

    A small message's reply comes in one read: taking the element out here
    skips feeding the parser and redis-py's reply layers (~3 us per recv).
    """
    element = _pop_element(head) if head.startswith(b"*2\r\n$") else None
    if element is None:
        return None
    at, n = element
    if len(head) != at + n + 2 or n > _SMALL_REPLY:
        return None
    return head[at : at + n]


class _RespReader:
    """RESP replies read from a socket, each string value straight into its own buffer.

    Lines (headers) are parsed from a buffer of received bytes; a value's
    bytes go from that buffer and then ``recv_into`` its own preallocated
    ``bytearray`` (no copy through the parser), followed by exactly the bytes
    of its CRLF still missing.
    """

    def __init__(self, sock: Any, head: bytearray | None = None) -> None:
        self.sock = sock
        self.head = bytearray() if head is None else head
        self.pos = 0

    def more(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        self.head.extend(chunk)

    def line(self) -> bytes:
        """The next header line, without its CRLF."""
        while True:
            end = self.head.find(b"\r\n", self.pos)
            if end >= 0:
                out = bytes(self.head[self.pos : end])
                self.pos = end + 2
                return out
            self.more()

    def skip(self, n: int) -> None:
        """Pass over a value of *n* bytes and its CRLF."""
        while len(self.head) < self.pos + n + 2:
            self.more()
        self.pos += n + 2

    def value(self, n: int) -> bytearray:
        """The next *n*-byte string value (its header already read), received into a buffer of its own."""
        out = bytearray(n)
        self.value_into(memoryview(out))
        return out

    def value_into(self, view: memoryview) -> None:
        """Receive the next string value (its header already read) into *view*, which is exactly its size."""
        n = len(view)
        head = self.head
        have = min(len(head) - self.pos, n)
        view[:have] = head[self.pos : self.pos + have]
        self.pos += have
        while have < n:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            have += got
        while len(head) < self.pos + 2:
            chunk = self.sock.recv(self.pos + 2 - len(head))
            if not chunk:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            head.extend(chunk)
        if head[self.pos : self.pos + 2] != b"\r\n":
            raise redis.exceptions.InvalidResponse("a string reply without its CRLF")
        # The bytes before the value are done with: drop them, so that a long
        # run of small replies does not keep re-scanning them.
        del head[: self.pos + 2]
        self.pos = 0

    def leftover(self) -> bool:
        """Whether bytes past the replies read so far were received."""
        return len(self.head) > self.pos


def _read_pop_reply(
    sock: Any, head: bytearray, take: Callable[[int], memoryview] | None = None
) -> bytearray | memoryview | None:
    """Read a ``BLPOP key ...`` reply from *sock*, whose first bytes are *head*: the element, or None.

    The element is received straight into one preallocated buffer (its
    first bytes arrive with the header): a new ``bytearray``, or the
    memoryview *take(size)* returns.  RESP2 or RESP3; a Redis error raises
    :class:`redis.exceptions.ResponseError`.  None on timeout.
    """
    reader = _RespReader(sock, head)
    first = reader.line()
    if first in (b"_", b"*-1"):
        return None
    if first[:1] == b"-":
        raise redis.exceptions.ResponseError(first[1:].decode(errors="replace"))
    if first != b"*2":
        raise redis.exceptions.InvalidResponse(f"unexpected reply to BLPOP: {first[:40]!r}")
    header = reader.line()  # the key's length
    if header[:1] != b"$":
        raise redis.exceptions.InvalidResponse(f"unexpected reply to BLPOP: {header[:40]!r}")
    reader.skip(int(header[1:]))
    header = reader.line()  # the element's length
    if header[:1] != b"$":
        raise redis.exceptions.InvalidResponse(f"unexpected reply to BLPOP: {header[:40]!r}")
    n = int(header[1:])
    out: bytearray | memoryview
    if take is None:
        out = reader.value(n)
    else:
        out = take(n)
        reader.value_into(out)
    if reader.leftover():
        raise redis.exceptions.InvalidResponse("data after the reply to BLPOP")
    return out


def _read_bulk_replies(sock: Any, count: int) -> list[bytearray | None]:
    """Read *count* bulk-string replies from *sock*, each value straight into its own buffer.

    RESP2 or RESP3.  A null reply is None; after reading them all, the first
    error reply raises :class:`redis.exceptions.ResponseError`.
    """
    reader = _RespReader(sock)
    out: list[bytearray | None] = []
    error: redis.exceptions.ResponseError | None = None
    for _ in range(count):
        header = reader.line()
        if header in (b"_", b"$-1"):
            out.append(None)
            continue
        if header[:1] == b"-":
            error = error or redis.exceptions.ResponseError(header[1:].decode(errors="replace"))
            out.append(None)
            continue
        if header[:1] != b"$":
            raise redis.exceptions.InvalidResponse(f"unexpected reply to a string read: {header[:40]!r}")
        out.append(reader.value(int(header[1:])))
    if reader.leftover():
        raise redis.exceptions.InvalidResponse("data after the replies to a string read")
    if error is not None:
        raise error
    return out


def _write_raw(conn: Any, sock: socket.socket, data: bytes) -> None:
    """Write *data* on a plain (non-TLS) socket: one ``write`` system call in the usual case.

    ``sock.sendall`` on a socket with a timeout polls before each send (two
    system calls); the socket is non-blocking underneath, so a direct write
    either takes the bytes at once or says how many it took, and only the
    rest waits in ``sendall``.  Errors drop the connection, as redis-py does.
    """
    try:
        try:
            sent = os.write(sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])
    except TimeoutError as exc:
        conn.disconnect()
        raise redis.exceptions.TimeoutError("Timeout writing to socket") from exc
    except OSError as exc:
        conn.disconnect()
        raise redis.exceptions.ConnectionError(f"Error while writing to socket: {exc}") from exc


#: Drains that go straight to the parser after a non-blocking read found nothing.
_READ_FIRST_SKIP = 64

#: Seconds a thread busy-polls its connection for a reply before it sleeps in
#: ``poll()``.  On a virtual machine an idle core halts, and waking a thread
#: that sleeps there costs ~35 us more than the reply itself (a manager get on
#: an otherwise idle 2-core KVM guest: 65 us when client and server run on two
#: cores, 22 us on one; a PING on a raw socket: 50 us blocking, 18 us spinning;
#: see docs/performance.md, "The reply wait").  A loopback reply takes
#: 10-30 us of the server's time, so this window catches it; a reply that
#: takes longer (a cloud Redis, a blocking pop that really waits) misses, and
#: :class:`ReplySpin` then stops spinning for a while.
SPIN_WINDOW = 50e-6
#: After a spin that missed, at most this many waits block at once (no spin).
_SPIN_MAX_BACKOFF = 256


class SpinCounter:
    """Replies one state backend took while busy-polling, and spins that ran out (ints under the GIL)."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0  # replies read without sleeping in poll()
        self.misses = 0  # spins that found nothing within the window (then a sleep)


class ReplySpin:
    """An adaptive busy-poll for one connection's replies, like an adaptive mutex.

    Before a thread sleeps in ``poll()`` for a reply, it tries non-blocking
    reads for up to *window* seconds.  Each spin that runs out doubles the
    number of later waits that skip spinning (up to ``_SPIN_MAX_BACKOFF``);
    each spin that finds its reply halves it.  So a connection whose replies
    come fast (loopback, a server on the other core) never sleeps, and one
    whose waits are long (a pop that waits for a message, a remote server)
    spins on a few of its waits only: at most one window per doubling run.
    A connection keeps two of these: one for plain commands, one for
    blocking pops, whose waits depend on other processes.
    """

    __slots__ = ("backoff", "counter", "skip", "window")

    def __init__(self, window: float, counter: SpinCounter) -> None:
        self.window = window
        self.counter = counter
        self.skip = 0  # waits left that do not spin
        self.backoff = 1  # waits skipped after the next miss

    def read(self, fd: int, size: int) -> bytes | None:
        """Bytes read from *fd* (non-blocking) within the window, or None: block as usual.

        ``b""`` means the server closed the connection; other errors raise.
        """
        if self.skip:
            self.skip -= 1
            return None
        window = self.window
        if window <= 0:
            return None
        read, now = os.read, time.perf_counter
        deadline = now() + window
        while True:
            try:
                data = read(fd, size)
            except BlockingIOError:
                if now() < deadline:
                    continue
                self.counter.misses += 1
                self.skip = self.backoff
                self.backoff = min(self.backoff * 2, _SPIN_MAX_BACKOFF)
                return None
            self.counter.hits += 1
            if self.backoff > 1:
                self.backoff //= 2
            return data


def _take_ready_bytes(conn: Any, spin: ReplySpin | None = None) -> bytes | None:
    """Hand the parser the reply bytes already received, without the poll its own read makes first.

    A deferred reply read long after its command (the next recv of an
    echoing process) has arrived: one non-blocking ``read`` fetches it (a
    recv on the socket object would poll first).  Nothing there (or TLS, or
    another parser): the parser reads as usual.  A reply read right after
    its command (a send then a recv) is usually not there yet: *spin* (see
    :class:`ReplySpin`) then waits for it without sleeping; without a spin
    (or while it backs off), after a miss the next ``_READ_FIRST_SKIP``
    drains of this connection do not try, so that the miss does not cost a
    third system call every time.  Returns the bytes handed over, if any.
    """
    sock = conn._sock
    reader = getattr(conn._parser, "_reader", None)
    if reader is None or type(sock) is not socket.socket or reader.has_data():
        return None
    fd = sock.fileno()
    try:
        if spin is not None and not spin.skip and spin.window > 0:
            data = spin.read(fd, _FIRST_READ)
            if data is None:
                return None  # nothing within the window: the parser's read blocks
        else:
            if spin is not None and spin.skip:
                spin.skip -= 1  # this wait counts as one the spin sits out
            skip = getattr(conn, "_faasmp_skip_reads", 0)
            if skip:
                conn._faasmp_skip_reads = skip - 1
                return None
            try:
                data = os.read(fd, _FIRST_READ)
            except BlockingIOError:
                conn._faasmp_skip_reads = _READ_FIRST_SKIP
                return None
    except OSError as exc:
        conn.disconnect()
        raise redis.exceptions.ConnectionError(f"Error while reading from socket: {exc}") from exc
    if not data:
        conn.disconnect()
        raise redis.exceptions.ConnectionError("Connection closed by server.")
    reader.feed(data)
    return data


#: First bytes of replies that redis-py's own read must handle: an error (its
#: exception type, and faasmp's translation of ACL refusals) or a RESP3 push.
_PARSER_ONLY = (b"-", b"!", b">")


def not_enough_marker(parser: Any) -> object:
    """What *parser*'s hiredis reader returns for "no whole reply yet" (see :func:`_read_reply`).

    redis-py's hiredis parser sets its own marker object; a reader made with
    hiredis' defaults returns False.  Looked up without importing redis-py:
    a connection with redis-py's parser has loaded that module already.
    """
    module = sys.modules.get("redis._parsers.hiredis")
    parser_class = getattr(module, "_HiredisParser", None)
    if parser_class is not None and isinstance(parser, parser_class):
        return module.NOT_ENOUGH_DATA  # type: ignore[union-attr]
    return False


def _read_reply(conn: Any, spin: ReplySpin, **options: Any) -> Any:
    """Read the next reply on *conn*; taken from the parser at once when it is already here.

    When the reply's bytes came in by a non-blocking read (:func:`_take_ready_bytes`,
    usually within the spin window), the parser is asked for the reply
    directly: redis-py's read layers (timeout, error and push handling) cost
    ~0.75 us a reply, and a reply that is here needs none of them.  An
    error, a push or a reply not all here yet goes the usual way
    (``conn.read_response(**options)``), which goes on from what was fed.
    ``conn._faasmp_not_enough`` is its reader's marker (:func:`not_enough_marker`).
    """
    data = _take_ready_bytes(conn, spin)
    if data is not None and data[:1] not in _PARSER_ONLY:
        try:
            reply = conn._parser._reader.gets()
        except BaseException:
            conn.disconnect()  # a protocol error: the stream is out of step
            raise
        if reply is not conn._faasmp_not_enough:
            conn.note_wait()
            return reply
    return conn.read_response(**options)


def _wait_read(sock: socket.socket, timeout: float, spin: ReplySpin | None = None) -> bytes:
    """Up to ``_FIRST_READ`` bytes from *sock*, waiting up to *timeout* s for the first (TimeoutError).

    *spin*: busy-poll for them first (see :class:`ReplySpin`).
    """
    if spin is not None:
        data = spin.read(sock.fileno(), _FIRST_READ)
        if data is not None:
            return data
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + timeout
    left = timeout
    while True:
        if poller.poll(left * 1000):
            try:
                return os.read(sock.fileno(), _FIRST_READ)
            except BlockingIOError:
                pass  # a spurious wake-up: wait again
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply within the wait")
