"""Events, conditions and barriers in Redis.

Key layout (``faasmp.synchronize`` names them; ``prefix`` is the object's
wake-key prefix, one wake list per waiter id under it):

* Event -- ``meta`` (a hash, the object's existence) and ``flag``, a list
  holding one element exactly while the event is set: ``wait`` blocks in a
  non-destructive ``BLMOVE flag flag``, so one ``set`` wakes every waiter.
* Condition -- ``meta`` and ``queue``, the ids of waiters not yet notified;
  each waiter blocks on ``prefix + id``.  ``wait`` registers the waiter *and*
  releases the lock (its keys, see ``semaphores.py``) in one script, so a
  notify can never slip in between.
* Barrier -- ``meta`` (``parties``, ``count``, ``broken``) and ``queue``, the
  waiter ids of the current generation; each blocks on ``prefix + id`` for
  the generation's outcome (``ok`` or ``broken``).

Round-trip budget (benchmarks/bench_counts.py): Event set, clear, is_set 1;
wait on a set event 1 (plus one blocking read otherwise).  Condition wait 1
script + 1 blocking pop + the lock's re-acquire; notify 1.  Barrier wait: 1
arrival, then 1 blocking pop (the first parties) or 1 wake script (the last).
Every call runs on the calling thread's own connection (``StateBackend.direct``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .semaphores import hand_over

if TYPE_CHECKING:
    from ..state import ScriptCall, StateBackend

# Register a waiter and release the lock completely, atomically.
# KEYS: cond meta, cond queue, lock meta, lock wake list.  ARGV: me, wid, ttl
# -> the lock's recursion count, -1 gone, -2 lock not owned
COND_WAIT = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('HGET', KEYS[3], 'id') ~= ARGV[1] then return -2 end
local count = tonumber(redis.call('HGET', KEYS[3], 'count'))
redis.call('HDEL', KEYS[3], 'id', 'name', 'count')
"""
    + hand_over("KEYS[3]", "KEYS[4]", "ARGV[3]")
    + """
redis.call('RPUSH', KEYS[2], ARGV[2])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return count
"""
)

# A waiter that timed out.  KEYS: queue, wake.  ARGV: wid -> 1 if notified meanwhile
COND_CANCEL = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: cond meta, cond queue, lock meta.  ARGV: me, n (-1 = all), ttl, wake prefix
COND_NOTIFY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[3], 'id') ~= ARGV[1] then return -2 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local n = tonumber(ARGV[2])
local woken = 0
while n < 0 or woken < n do
  local wid = redis.call('LPOP', KEYS[2])
  if not wid then break end
  local k = ARGV[4] .. wid
  redis.call('RPUSH', k, 1)
  redis.call('PEXPIRE', k, ARGV[3])
  woken = woken + 1
end
return woken
"""

# KEYS: meta, flag.  ARGV: ttl, op ('set' | 'clear' | 'get') -> flag after op, -1 gone
EVENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if ARGV[2] == 'set' then
  if redis.call('LLEN', KEYS[2]) == 0 then redis.call('RPUSH', KEYS[2], 1) end
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  return 1
elseif ARGV[2] == 'clear' then
  redis.call('DEL', KEYS[2])
  return 0
end
if redis.call('LLEN', KEYS[2]) > 0 then return 1 end
return 0
"""

# KEYS: meta, queue.  ARGV: wid, ttl, wake prefix ('' = the caller wakes the others)
# -> {-2} gone, {-1} broken, {index, 0} wait, {index, 1, wids of the generation...} last,
# {index, 2} last, and the others were released with 'ok' (a barrier without an action:
# one script where arrive + wake were two)
BARRIER_ARRIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[1], 'broken') == '1' then return {-1} end
local idx = redis.call('HINCRBY', KEYS[1], 'count', 1) - 1
if idx + 1 < tonumber(redis.call('HGET', KEYS[1], 'parties')) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {idx, 0}
end
local out = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'count', 0)
if ARGV[3] ~= '' then
  for _, w in ipairs(out) do
    local k = ARGV[3] .. w
    redis.call('RPUSH', k, 'ok')
    redis.call('PEXPIRE', k, ARGV[2])
  end
  return {idx, 2}
end
table.insert(out, 1, 1)
table.insert(out, 1, idx)
return out
"""

# Wake waiters with an outcome.  ARGV: ttl, outcome, wake prefix, wids...
BARRIER_WAKE = """
for i = 4, #ARGV do
  local k = ARGV[3] .. ARGV[i]
  redis.call('RPUSH', k, ARGV[2])
  redis.call('PEXPIRE', k, ARGV[1])
end
return #ARGV - 3
"""

# Break (op 'break': also when a waiter with id ARGV[3] is still queued, if given)
# or reset (op 'reset').  KEYS: meta, queue.  ARGV: ttl, wake prefix, wid or '', op, extra wids...
# -> 1 done, 0 the waiter was no longer queued, -1 gone
BARRIER_BREAK = """
if ARGV[3] ~= '' and redis.call('LREM', KEYS[2], 1, ARGV[3]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local broken = 1
if ARGV[4] == 'reset' then broken = 0 end
redis.call('HSET', KEYS[1], 'broken', broken, 'count', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local ws = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 5, #ARGV do table.insert(ws, ARGV[i]) end
redis.call('DEL', KEYS[2])
for _, w in ipairs(ws) do
  local k = ARGV[2] .. w
  redis.call('RPUSH', k, 'broken')
  redis.call('PEXPIRE', k, ARGV[1])
end
return 1
"""


class RedisEvent:
    """One Event's state in Redis (see the module docstring)."""

    def __init__(self, state: StateBackend, meta: str, flag: str, ttl_ms: int) -> None:
        self._state, self.meta, self.flag, self._ttl = state, meta, flag, ttl_ms
        self._event: ScriptCall = state.direct.script(EVENT)

    def create(self) -> None:
        pipe = self._state.pipeline(transaction=True)
        pipe.hset(self.meta, {"kind": "Event"})
        pipe.pexpire(self.meta, self._ttl)
        pipe.execute()

    def event_op(self, op: str) -> int:
        """``set``, ``clear`` or ``get``: the flag after it (1/0), or -1 if the state is gone."""
        return int(self._event(keys=[self.meta, self.flag], args=[self._ttl, op]))

    def event_wait(self, timeout: float) -> bool:
        """Block up to *timeout* s (0 = forever) until the flag is set; False on timeout."""
        return self._state.direct.blmove_rotate(self.flag, timeout) is not None


class RedisCondition:
    """One Condition's state in Redis (see the module docstring)."""

    def __init__(self, state: StateBackend, meta: str, queue: str, prefix: str, ttl_ms: int) -> None:
        self._state, self.meta, self.queue, self.prefix, self._ttl = state, meta, queue, prefix, ttl_ms
        direct = state.direct
        self._wait: ScriptCall = direct.script(COND_WAIT)
        self._cancel: ScriptCall = direct.script(COND_CANCEL)
        self._notify: ScriptCall = direct.script(COND_NOTIFY)

    def create(self) -> None:
        pipe = self._state.pipeline(transaction=True)
        pipe.hset(self.meta, {"kind": "Condition"})
        pipe.pexpire(self.meta, self._ttl)
        pipe.execute()

    def cond_wait(self, lock_meta: str, lock_wake: str, me: str, wid: str) -> int:
        """Register waiter *wid* and release the lock: its recursion count, -1 gone, -2 not owned."""
        keys = [self.meta, self.queue, lock_meta, lock_wake]
        return int(self._wait(keys=keys, args=[me, wid, self._ttl]))

    def cond_block(self, wid: str, timeout: float) -> bool:
        """Block up to *timeout* s (0 = forever) until notified; False on timeout."""
        return self._state.direct.blpop([self.prefix + wid], timeout) is not None

    def cond_cancel(self, wid: str) -> bool:
        """Stop waiting; True if a notify took this waiter meanwhile (it counts as notified)."""
        return int(self._cancel(keys=[self.queue, self.prefix + wid], args=[wid])) == 1

    def cond_notify(self, lock_meta: str, me: str, n: int) -> int:
        """Wake up to *n* waiters (-1 all): how many, -1 gone, -2 the lock is not owned by *me*."""
        keys = [self.meta, self.queue, lock_meta]
        return int(self._notify(keys=keys, args=[me, n, self._ttl, self.prefix]))

    def waiters(self) -> int:
        return int(self._state.llen(self.queue))


class RedisBarrier:
    """One Barrier's state in Redis (see the module docstring)."""

    def __init__(self, state: StateBackend, meta: str, queue: str, prefix: str, ttl_ms: int) -> None:
        self._state, self.meta, self.queue, self.prefix, self._ttl = state, meta, queue, prefix, ttl_ms
        direct = state.direct
        self._arrive: ScriptCall = direct.script(BARRIER_ARRIVE)
        self._wake: ScriptCall = direct.script(BARRIER_WAKE)
        self._break: ScriptCall = direct.script(BARRIER_BREAK)

    def create(self, parties: int) -> None:
        pipe = self._state.pipeline(transaction=True)
        pipe.hset(self.meta, {"kind": "Barrier", "parties": parties, "count": 0, "broken": 0})
        pipe.pexpire(self.meta, self._ttl)
        pipe.execute()

    def barrier_arrive(self, wid: str, *, wake: bool = False) -> list[Any]:
        """{-2} gone, {-1} broken, {index, 0} wait, {index, 1, waiter ids...} last to arrive.

        *wake*: the last to arrive releases the others in the same script
        (``{index, 2}``): for a barrier without an action, one round trip.
        """
        args = [wid, self._ttl, self.prefix if wake else ""]
        return list(self._arrive(keys=[self.meta, self.queue], args=args))

    def barrier_wake(self, waiters: list[str]) -> None:
        """Release *waiters* with the outcome ``ok``."""
        self._wake(keys=[self.meta], args=[self._ttl, "ok", self.prefix, *waiters])

    def barrier_break(self, op: str, wid: str = "", extra: list[str] | None = None) -> int:
        """``break`` or ``reset`` (if *wid*, only while it is still queued): 1 done, 0 not queued, -1 gone."""
        args = [self._ttl, self.prefix, wid, op, *(extra or [])]
        return int(self._break(keys=[self.meta, self.queue], args=args))

    def barrier_block(self, wid: str, timeout: float) -> bytes | None:
        """Block up to *timeout* s (0 = forever) for this waiter's outcome; None on timeout."""
        got = self._state.direct.blpop([self.prefix + wid], timeout)
        return None if got is None else got[1]

    def barrier_fields(self) -> dict[bytes, bytes]:
        return dict(self._state.hgetall(self.meta))
