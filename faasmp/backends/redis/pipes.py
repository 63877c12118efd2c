"""Pipes in Redis: one list per direction plus a hash of open handles per end.

Key layout (``faasmp.connection.Connection`` names them):

* ``d0``, ``d1`` -- the message lists; end 0 reads ``d0`` and writes ``d1``
  (a one-way pipe uses ``d0`` only).  An element is a signed message
  (``MAC || body``, 32 bytes at least) or ``b""``, a wake-up pushed by the
  last close of the other end (never a message).
* ``h0``, ``h1`` -- the open handles of each end: ``{holder id: process id}``;
  a holder bound to a process dies with it (its record says ``exited``).
* ``w0``, ``w1`` -- the :func:`faasmp.connection.wait` calls waiting on the
  reader of ``d0``/``d1``: a set of tokens with a short TTL that the waiter
  renews.  A send publishes on its list's channel only while this set
  exists; a waiter registers *before* it subscribes and checks the list
  *after*, so a message pushed before the registration is seen by that
  check and one pushed after it is published.

Round-trip budget (counted by benchmarks/bench_counts.py):

* send: 1 write.  Messages up to 64 KiB go as one Lua call (3 Redis calls
  inside: EXISTS, RPUSH, and PEXPIRE when the push creates the list) and do
  not wait: the reply is read with the thread's next request
  (``StateBackend.direct``).
  Larger ones go as one batch of plain commands, not waited for either,
  because a Lua call copies its arguments (~2 ms per MB); the signature and
  the body are written as separate buffers (no joined copy).  In host mode a body of
  32 KiB or more reaches this module as a 59-byte descriptor of a host file
  (``faasmp.runtime.bulk``): a small message here.
* recv: 1 ``BLPOP``; a wake-up or a quiet period costs one ``pipe_recv_now``.
* poll: 1 script (plus a non-destructive blocking ``BLMOVE`` when it waits).
* wait(): 1 write to register (``pipe_wait_register``, renewed every
  ``WAITER_RENEW`` s while it waits), 1 to unregister.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..resp import signed_parts

if TYPE_CHECKING:
    from ..state import ScriptCall, StateBackend

#: Messages above this many bytes skip Lua: a Lua call copies its arguments
#: (~2 ms per MB); a batch of plain commands hands them to Redis as they are.
BIG = 1 << 16

#: How long a wait() registration lives unless renewed, ms.  wait() wakes at
#: least once a second and renews it every WAITER_RENEW s; a waiter that
#: died leaves publishes (harmless) and a late BrokenPipeError for this long.
WAITER_TTL_MS = 10_000
#: How often a waiting wait() renews its registration, s.
WAITER_RENEW = 2.0

# Is any handle of the end whose holder hash is KEYS[n] still open?  Holders
# bound to a process (value = process id) die with it.
_PEER_ALIVE = """
local function peer_alive(hash, prefix)
  local fields = redis.call('HGETALL', hash)
  local alive = false
  for i = 1, #fields, 2 do
    local proc = fields[i + 1]
    if proc == '' then
      alive = true
    else
      local st = redis.call('HGET', prefix .. 'proc:' .. proc, 'state')
      if st == false or st == 'exited' then
        redis.call('HDEL', hash, fields[i])
      else
        alive = true
      end
    end
  end
  return alive
end
"""

# KEYS: list to push to, holders of the reading end, the reading end's
# waiters, own holders.  ARGV: blob, ttl, refresh ('1': renew every TTL).
# Returns the list's length, or -1 when the reading end is closed.
#
# 3 Redis calls for a message (was 5): one EXISTS answers both "is the reader
# open" and "does a wait() caller wait on it" (0 closed, 2 open and waited
# on, 1 open), so PUBLISH -- needed only by wait() -- runs only when a waiter
# has registered (``pipe_wait_register``), and the list's TTL is set when the
# push creates it or on the sender's periodic refresh (``refresh``, every
# key_ttl/10 s), not per message.  So a message stays at least 0.9 key_ttl
# after the last send.  A waiter registration outliving the reader's holders
# (its process died while waiting) counts as "open" until it expires
# (WAITER_TTL_MS): a send then reports the closed reader that much later.
SEND = """
local open = redis.call('EXISTS', KEYS[2], KEYS[3])
if open == 0 then return -1 end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
if n == 1 or ARGV[3] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if ARGV[3] == '1' then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
end
if open == 2 then redis.call('PUBLISH', KEYS[1], '') end
return n
"""

# Take the next message, or report EOF.  KEYS: own list, holders of the other
# end, the other end's waiter set.  ARGV: run key prefix, ttl.  Returns
# {1, msg} | {0} (empty) | {2} (EOF).  At EOF a wake-up is left in the list so
# later blocking reads return at once, and the other end's waiter set (left
# by a process that died in wait()) is deleted: a send must not read it as
# an open reader.
RECV_NOW = (
    _PEER_ALIVE
    + """
while true do
  local v = redis.call('LPOP', KEYS[1])
  if not v then break end
  if v ~= '' then return {1, v} end
end
if peer_alive(KEYS[2], ARGV[1]) then return {0} end
redis.call('DEL', KEYS[3])
redis.call('RPUSH', KEYS[1], '')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {2}
"""
)

# Like RECV_NOW without taking anything: 1 = a message waits, 2 = EOF, 0 = neither.
# Same KEYS and ARGV.
POLL = (
    _PEER_ALIVE
    + """
while true do
  local v = redis.call('LINDEX', KEYS[1], 0)
  if not v then break end
  if v ~= '' then return 1 end
  redis.call('LPOP', KEYS[1])
end
if peer_alive(KEYS[2], ARGV[1]) then return 0 end
redis.call('DEL', KEYS[3])
redis.call('RPUSH', KEYS[1], '')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 2
"""
)

# Release one handle.  KEYS: own holders, other end's holders, the list the
# other end reads, both lists, both waiter sets.  ARGV: holder id, wake the
# other end (0/1), ttl.  The last handle of an end takes that end's waiter
# registrations with it (a send must not read them as an open reader).
CLOSE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[1]) > 0 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
  return 2
end
redis.call('DEL', KEYS[6])
if ARGV[2] == '1' then
  redis.call('RPUSH', KEYS[3], '')
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  redis.call('PUBLISH', KEYS[3], '')
end
return 1
"""

# Tie a handle to the process that holds it (only while the handle is open).
BIND = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

#: What a send's reply handler gets: the Lua reply (the list's length, or -1
#: when the reading end is closed), or the exception that lost the message.
SendReply = Callable[[Any], None]


def _big_send_reply(on_reply: SendReply) -> SendReply:
    """A big send's batch replies, as the one reply SEND would have given (-1: reader closed)."""

    def handle(replies: Any) -> None:
        if isinstance(replies, Exception):
            on_reply(replies)
            return
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            on_reply(errors[0])
        else:
            on_reply(-1 if replies[1] == 0 else replies[0])

    return handle


class RedisPipeEnd:
    """One end of a pipe in Redis (the lists and holder hashes of the module docstring)."""

    def __init__(
        self,
        state: StateBackend,
        *,
        read_list: str,
        write_list: str,
        own_holders: str,
        peer_holders: str,
        own_waiters: str,
        peer_waiters: str,
        prefix: str,
        ttl_ms: int,
    ) -> None:
        self._state = state
        self._direct = direct = state.direct
        self.read_list, self.write_list = read_list, write_list
        self.own_holders, self.peer_holders = own_holders, peer_holders
        self.own_waiters, self.peer_waiters = own_waiters, peer_waiters
        self._prefix = prefix
        self._ttl = ttl_ms
        self._send = direct.deferred_script(SEND)
        # The same keys on every send: one tuple, whose packed form the script call caches.
        self._send_keys = (write_list, peer_holders, peer_waiters, own_holders)
        self._recv_now: ScriptCall = direct.script(RECV_NOW)
        self._poll: ScriptCall = direct.script(POLL)
        self._bind: ScriptCall = direct.script(BIND)

    # -- handles --------------------------------------------------------------
    def add_holder(self, holder: str, proc_id: str = "") -> None:
        """Register one more open handle of this end (one round trip)."""
        pipe = self._state.pipeline()
        pipe.hset(self.own_holders, {holder: proc_id})
        pipe.pexpire(self.own_holders, self._ttl)
        pipe.execute()

    def bind(self, holder: str, proc_id: str) -> None:
        """Tie *holder* to the process *proc_id*: it closes when that process exits."""
        self._bind(keys=[self.own_holders], args=[holder, proc_id, self._ttl])

    def closer(
        self, lists: tuple[str, str], holder: str, wake_peer: bool
    ) -> tuple[ScriptCall, list[str], list[Any]]:
        """The script call releasing *holder* (for a finalizer, on the pooled client).

        The finalizer may run from garbage collection in the middle of a
        command on this thread's direct connection, so it must not use it.
        """
        return (
            self._state.script(CLOSE),
            [
                self.own_holders,
                self.peer_holders,
                self.write_list,
                *lists,
                self.own_waiters,
                self.peer_waiters,
            ],
            [holder, "1" if wake_peer else "0", self._ttl],
        )

    # -- messages -------------------------------------------------------------
    def pipe_send(self, mac: bytes, body: Any, on_reply: SendReply, *, refresh: bool) -> None:
        """Send ``mac || body``; *on_reply* gets SEND's reply (later, for a small message).

        *body* is a bytes-like object or a tuple of them (written as one message, not joined).

        *refresh* also renews the TTL of the list and of both holder hashes
        (the caller asks for it every key_ttl/10 s; a big message always does).
        """
        if type(body) is not tuple and len(body) + len(mac) <= BIG:  # one buffer: the common case
            self._send(self._send_keys, (b"".join((mac, body)), self._ttl, 1 if refresh else 0), on_reply)
            return
        item = signed_parts(mac, body)
        wkey, peer_h, ttl = self.write_list, self.peer_holders, self._ttl
        if item.nbytes <= BIG:
            self._send(self._send_keys, (b"".join(item), ttl, 1 if refresh else 0), on_reply)
            return
        # SEND's steps as one batch of plain commands, not waited for (as a
        # small send): while Redis takes in this megabyte the sender signs the
        # next one.  The push comes before the PUBLISH, which is sent always
        # (no subscriber costs Redis next to nothing): a wait() registered
        # before it is woken, one registered after it finds the message in the
        # list.  A closed reader shows in the reply, on a later send; the
        # message then stays in its list until the pipe's keys go (last close)
        # or expire.
        self._direct.send_many_deferred(
            _big_send_reply(on_reply),
            [
                ("RPUSH", wkey, item),
                ("EXISTS", peer_h, self.peer_waiters),
                ("PEXPIRE", wkey, ttl),
                ("PEXPIRE", peer_h, ttl),
                ("PEXPIRE", self.own_holders, ttl),
                ("PUBLISH", wkey, ""),
            ],
        )

    def pipe_recv(self, timeout: float) -> bytes | bytearray | memoryview | None:
        """Block up to *timeout* s for the next element: a message, ``b""`` (wake-up) or None.

        A large message may be a view of the thread's receive buffer: pass it
        (or a view of it) to :meth:`recycle` once its bytes are consumed.
        """
        return self._direct.blpop_buffer(self.read_list, timeout)

    def take_buffer(self, n: int) -> memoryview:
        """A buffer of *n* bytes to read a large message into (see ``DirectOps.take_buffer``)."""
        return self._direct.take_buffer(n)

    def recycle(self, body: object) -> None:
        """Give a consumed message's receive buffer back to this thread (see ``DirectOps.recycle``)."""
        self._direct.recycle(body)

    def pipe_recv_now(self) -> tuple[int, bytes | None]:
        """Take a message now: (1, message), (0, None) if none, (2, None) at end of file."""
        keys = [self.read_list, self.peer_holders, self.peer_waiters]
        res = self._recv_now(keys=keys, args=[self._prefix, self._ttl])
        return (1, bytes(res[1])) if res[0] == 1 else (int(res[0]), None)

    def pipe_poll(self) -> int:
        """1 if a message waits, 2 at end of file, 0 if neither; takes nothing."""
        keys = [self.read_list, self.peer_holders, self.peer_waiters]
        return int(self._poll(keys=keys, args=[self._prefix, self._ttl]))

    def pipe_wait(self, timeout: float) -> None:
        """Block up to *timeout* s until the read list has an element (taking none)."""
        self._direct.blmove_rotate(self.read_list, timeout)


def pipe_wait_register(state: StateBackend, waiter_sets: list[str], token: str) -> None:
    """Register (or renew) the wait() call *token* on the pipe ends whose waiter sets are given.

    One round trip.  Sends to these ends publish on their lists' channels
    while the registration lives (``WAITER_TTL_MS``).  Call it before
    subscribing and check the lists after: see the module docstring.
    """
    pipe = state.pipeline()
    for key in waiter_sets:
        pipe.sadd(key, token)
        pipe.pexpire(key, WAITER_TTL_MS)
    pipe.execute()


def pipe_wait_unregister(state: StateBackend, waiter_sets: list[str], token: str) -> None:
    """Remove the wait() call *token* from the given waiter sets (one round trip)."""
    pipe = state.pipeline()
    for key in waiter_sets:
        pipe.srem(key, token)
    pipe.execute()


def create_pipe(state: StateBackend, holders: list[tuple[str, str, str]], ttl_ms: int) -> None:
    """Register the first handle of each end, ``(holders key, holder id, process id)``: one round trip."""
    pipe = state.pipeline()
    for key, holder, proc_id in holders:
        pipe.hset(key, {holder: proc_id})
        pipe.pexpire(key, ttl_ms)
    pipe.execute()
