"""Queues in Redis: a list of signed pickles, plus the tokens and counters of bounded and joinable queues.

Key layout (``faasmp.queues`` names them):

* ``items`` -- the list of items (``MAC || pickle`` each);
* ``space`` -- a bounded queue's "room was made" tokens: every get pushes one
  (trimmed to ``maxsize``), a put on a full queue blocks on it;
* ``unfinished`` / ``done`` -- a joinable queue's unfinished-task count and a
  flag list holding one element exactly while that count is 0.

Round-trip budget (counted by benchmarks/bench_counts.py):

* put on an unbounded queue: 1 write, no wait -- the reply is read with the
  thread's next request.  Items up to 64 KiB go as one Lua call (``PUSH``: one
  RPUSH, plus a PEXPIRE when it creates the list; TTLs are renewed every
  key_ttl/10 s, not per item, so an item lives at least 0.9 key_ttl); larger ones
  as a batch of plain commands (a Lua call copies its arguments, ~2 ms per
  MB), with the signature and the pickle written as separate buffers (in
  host mode an item of 32 KiB or more arrives here as a 59-byte descriptor
  of a host file, ``faasmp.runtime.bulk``: a small item);
* put on a bounded queue: 1 script (plus a blocking pop per wait for room);
* get: 1 ``BLPOP`` (plus one script on a bounded queue: the room token).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..resp import signed_parts

if TYPE_CHECKING:
    from ..state import StateBackend

#: Items above this many bytes are pushed without Lua where the queue allows
#: it (unbounded queues): a Lua call copies its arguments (~2 ms per MB).
BIG = 1 << 16

# Push if there is room.  KEYS: items, space tokens, unfinished count, "all done"
# flag list.  ARGV: blob, maxsize, ttl ms, joinable (0/1).  Returns 1, or 0 if full.
PUT = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  -- Full now: every space token left announces room someone already took.
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  if redis.call('INCR', KEYS[3]) == 1 then redis.call('DEL', KEYS[4]) end
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 1
"""

# Push onto an unbounded queue (no length check: its bound is only the
# stdlib's SEM_VALUE_MAX, 2**31 - 1 items, which no Redis holds in memory).
# KEYS: items, space tokens, unfinished count, "all done" flag list.
# ARGV: blob, ttl ms, joinable (0/1), refresh (renew every TTL: 0/1).  Returns 1.
# 2 Redis calls for a put (was 4: an LLEN and a PEXPIRE per item).
PUSH = """
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
if n == 1 or ARGV[4] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if ARGV[3] == '1' then
  local u = redis.call('INCR', KEYS[3])
  if u == 1 then redis.call('DEL', KEYS[4]) end
  if u == 1 or ARGV[4] == '1' then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
end
return 1
"""

# Take the first item without blocking.  KEYS: items, space tokens.
# ARGV: bounded (0/1), maxsize, ttl ms.
GET_NOW = """
local v = redis.call('LPOP', KEYS[1])
if v and ARGV[1] == '1' then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return v
"""

# An item was taken by a blocking get: wake one blocked put.  KEYS: space tokens.
SPACE_FREED = """
redis.call('RPUSH', KEYS[1], '1')
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: unfinished count, "all done" flag list.  ARGV: ttl ms.
# Returns the new count, or -1 if there was no unfinished task.
TASK_DONE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 0 then return -1 end
n = redis.call('DECR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if n == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return n
"""


def _batch_reply(on_reply: Callable[[Any], None]) -> Callable[[Any], None]:
    """A big put's batch replies, as the one reply (or error) PUT would have given."""

    def handle(replies: Any) -> None:
        if isinstance(replies, Exception):
            on_reply(replies)
            return
        errors = [r for r in replies if isinstance(r, Exception)]
        on_reply(errors[0] if errors else 1)

    return handle


class RedisQueue:
    """One queue's state in Redis (see the module docstring for its keys and budget)."""

    def __init__(self, state: StateBackend, keys: Sequence[str], ttl_ms: int) -> None:
        """*keys*: items, space, unfinished, done (the last three may be unused)."""
        self._state = state
        self._direct = direct = state.direct
        self.items, self.space, self.unfinished, self.done = keys
        self._keys = list(keys)
        self._ttl = ttl_ms
        self._push = direct.deferred_script(PUSH)
        self._fresh_until = 0.0  # PUSH renews every TTL from then on
        self._put = direct.script(PUT)
        self._get_now = direct.script(GET_NOW)
        self._freed = direct.script(SPACE_FREED)
        self._task_done = direct.script(TASK_DONE)

    def queue_push(self, mac: Any, body: Any, *, joinable: bool, on_reply: Callable[[Any], None]) -> None:
        """Append ``mac || body`` to an unbounded queue, not waiting; *on_reply* gets 1 or an error later.

        *body* is a bytes-like object or a tuple of them (written as one item, not joined).
        """
        item = signed_parts(mac, body)
        join = "1" if joinable else "0"
        if item.nbytes <= BIG:
            now = time.monotonic()
            refresh = 0
            if now >= self._fresh_until:
                self._fresh_until = now + self._ttl / 10_000  # a tenth of the TTL, in s
                refresh = 1
            self._push(self._keys, [b"".join(item), self._ttl, join, refresh], on_reply)
            return
        items, ttl = self.items, self._ttl
        if not joinable:
            commands: list[tuple[Any, ...]] = [("RPUSH", items, item), ("PEXPIRE", items, ttl)]
        else:
            # A transaction: a consumer must never see the item before it is counted.
            commands = [
                ("MULTI",),
                ("RPUSH", items, item),
                ("PEXPIRE", items, ttl),
                ("INCR", self.unfinished),
                ("PEXPIRE", self.unfinished, ttl),
                ("DEL", self.done),
                ("EXEC",),
            ]
        self._direct.send_many_deferred(_batch_reply(on_reply), commands)

    @staticmethod
    def bounded_item(mac: bytes, body: Any) -> Any:
        """The item :meth:`queue_put` sends for ``mac || body``: joined if small, else its parts uncopied.

        A bounded put may send it several times (waiting for room), so it is
        made once: a small item as one ``bytes`` (the script call's fast
        path), a large one as :class:`~faasmp.backends.resp.Parts`, whose
        buffers are written as they are.
        """
        item = signed_parts(mac, body)
        return b"".join(item) if item.nbytes <= BIG else item

    def queue_put(self, blob: Any, maxsize: int, *, joinable: bool) -> bool:
        """Append *blob* if the queue has fewer than *maxsize* items (True), else False.

        *blob*: ``bytes``, or the parts :meth:`bounded_item` makes of a large item.
        """
        args = [blob, maxsize, self._ttl, "1" if joinable else "0"]
        return bool(self._put(keys=self._keys, args=args))

    def queue_wait_space(self, timeout: float) -> bool:
        """Block up to *timeout* s (0 = forever) until a get made room; False on timeout."""
        return self._direct.blpop([self.space], timeout) is not None

    def queue_get_now(self, *, bounded: bool, maxsize: int) -> bytes | bytearray | None:
        """Take the first item without blocking (None if empty); a bounded queue gets a room token."""
        space = self.space if bounded else self.items
        reply: bytes | bytearray | None = self._get_now(
            keys=[self.items, space], args=[int(bounded), maxsize, self._ttl]
        )
        return reply

    def queue_get(self, timeout: float) -> bytes | bytearray | memoryview | None:
        """Block up to *timeout* s (0 = forever) for the first item; None on timeout.

        A large item may be a view of the thread's receive buffer: pass it
        (or a view of it) to :meth:`recycle` once its bytes are consumed.
        """
        return self._direct.blpop_buffer(self.items, timeout)

    def take_buffer(self, n: int) -> memoryview:
        """A buffer of *n* bytes to read a large item into (see ``DirectOps.take_buffer``)."""
        return self._direct.take_buffer(n)

    def recycle(self, body: object) -> None:
        """Give a consumed item's receive buffer back to this thread (see ``DirectOps.recycle``)."""
        self._direct.recycle(body)

    def queue_space_freed(self, maxsize: int) -> None:
        """After a blocking get on a bounded queue: wake one blocked put."""
        self._freed(keys=[self.space], args=[maxsize, self._ttl])

    def queue_size(self) -> int:
        return int(self._state.llen(self.items))

    def task_done(self) -> int:
        """Count one task done: the number still unfinished, or -1 if there was none."""
        return int(self._task_done(keys=[self.unfinished, self.done], args=[self._ttl]))

    def unfinished_tasks(self) -> int:
        raw = self._state.get(self.unfinished)
        return 0 if raw is None else int(raw)

    def wait_all_done(self, timeout: float) -> None:
        """Block up to *timeout* s (0 = forever) while the unfinished count is not 0."""
        # The "done" list holds one element exactly while the count is 0
        # (task_done fills it, put empties it): a non-destructive blocking
        # read that any number of joiners can share.
        self._direct.blmove_rotate(self.done, timeout)
