"""Semaphores and locks in Redis: a count in a hash plus a wake list.

Key layout (both keys of one object share its prefix):

* ``meta`` -- a hash: ``v`` the count, ``w`` the registered blocked waiters
  not yet served, ``max`` (-1 unbounded), ``kind``; for locks the owner:
  ``id`` (owner token), ``name`` (process name, for reprs) and the recursion
  ``count``.
* ``wake`` -- a list of tokens.  A release with registered waiters hands its
  unit over by pushing a token here (the count stays 0); Redis gives it to the
  longest-blocked ``BLPOP``, so waiters are served first come, first served
  and a wake-up cannot be lost: the token *is* the wake-up.  A token no
  blocked client took at once (its waiter is between registering and
  ``BLPOP``, timed out, or died) is taken by the next acquirer, which then
  counts that waiter as unserved again.

Round-trip budget (counted by benchmarks/bench_counts.py):

* uncontended acquire: 1 (``sem_try``), 3 Redis commands (EVALSHA, HMGET,
  HSET); with a pull of shared memory sent behind it (``sem_try_then``) still 1;
* release: 1 (``sem_release``), 3 commands for a lock (EVALSHA, HMGET, HSET);
  0 waits when the caller holds what it releases (``sem_release_later``: the
  reply is read by the thread's next command, in that command's round trip);
* contended acquire: 2 -- ``sem_try`` registers the waiter, ``sem_wait`` blocks
  in ``BLPOP``; for locks ``sem_wait_owned`` blocks in ``BLMOVE`` to a list
  of the waiter's own and records the new owner in a script sent in the same
  write (the releaser cannot: it does not know which waiter Redis will hand
  the token to).

Every script runs on the calling thread's own connection (``StateBackend.direct``):
redis-py's pooled path costs ~3x a bare send/receive on loopback.

TTL: ``sem_try`` and ``sem_release`` renew the meta hash's TTL only when the
caller's clock says so (``refresh``, every key_ttl/10 s per object), not on
every call: a semaphore in use never expires, and one left alone still
lives at least 0.9 key_ttl after its last use.  A lock's owner fields are
blanked (``''``), not deleted, by a release: one HSET instead of HDEL + HSET;
an empty ``id`` means "not held", which is also a lock's over-release check
(no LLEN of the wake list).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import ScriptCall, StateBackend


def hand_over(meta: str, wake: str, ttl: str) -> str:
    """Lua releasing one unit of the semaphore at *meta*/*wake*: hand it to a waiter, or count it.

    Also used by a Condition's ``wait``, which releases its lock atomically
    with registering the waiter.
    """
    return f"""
if tonumber(redis.call('HGET', {meta}, 'w') or '0') > 0 then
  redis.call('HINCRBY', {meta}, 'w', -1)
  redis.call('RPUSH', {wake}, 1)
  redis.call('PEXPIRE', {wake}, {ttl})
else
  redis.call('HINCRBY', {meta}, 'v', 1)
end
"""


# KEYS: meta, wake.  ARGV: me, name, ttl, recursive, track owner, count,
# register, refresh (renew the TTL)
# -> 1 acquired, 0 not (registered as a waiter if ARGV[7] = '1'), -1 gone.
# One HMGET and one HSET where a chain of HGET/HINCRBY/HSET did the same, and
# the TTL renewed only on refresh: 3 commands for an uncontended lock acquire
# (was 5, then 4).
SEM_TRY = """
local st = redis.call('HMGET', KEYS[1], 'v', 'id')
local v = st[1]
if not v then return -1 end
if ARGV[8] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if ARGV[4] == '1' and st[2] == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'count', 1)
  return 1
end
v = tonumber(v)
if v > 0 then
  v = v - 1
elseif redis.call('LPOP', KEYS[2]) then
  redis.call('HINCRBY', KEYS[1], 'w', 1)
else
  if ARGV[7] == '1' then
    redis.call('HINCRBY', KEYS[1], 'w', 1)
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return 0
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'v', v, 'id', ARGV[1], 'name', ARGV[2], 'count', ARGV[6])
else
  redis.call('HSET', KEYS[1], 'v', v)
end
return 1
"""

# After a blocking BLPOP got the token.  KEYS: meta.  ARGV: me, name, ttl, count
SEM_OWNED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'count', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# A blocked waiter's BLMOVE moved a token to its own list KEYS[2]: take it and
# record the owner, in the same write as the move.  KEYS: meta, own list.
# ARGV: me, name, ttl, count -> 1 owner recorded, 0 no token, -1 gone (the
# PEXPIRE that renews the meta hash is also its existence check).
SEM_CLAIM = """
if not redis.call('LPOP', KEYS[2]) then return 0 end
if redis.call('PEXPIRE', KEYS[1], ARGV[3]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'count', ARGV[4])
return 1
"""

# A registered waiter stops waiting (timeout, interrupt).  KEYS: meta, wake, own list
# -> 1 a token was there (the caller holds a unit after all), 0 unregistered
SEM_CANCEL = """
if redis.call('LPOP', KEYS[2]) then return 1 end
if redis.call('LPOP', KEYS[3]) then return 1 end
if tonumber(redis.call('HGET', KEYS[1], 'w') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'w', -1)
end
return 0
"""

# Give back a unit (an interrupted waiter got one).  KEYS: meta, wake.  ARGV: ttl
SEM_RETURN = hand_over("KEYS[1]", "KEYS[2]", "ARGV[1]")

# KEYS: meta, wake.  ARGV: me, ttl, recursive, track owner, refresh (renew the TTL)
# -> remaining recursion count (0 = released), -1 gone, -2 not owner, -3 over-release.
# One HMGET reads what the checks need; one HSET writes the count (or the
# waiters) and blanks the owner: 3 commands for a lock (was 8, then 6).
SEM_RELEASE = """
local st = redis.call('HMGET', KEYS[1], 'v', 'id', 'max', 'w')
local v = st[1]
if not v then return -1 end
if ARGV[5] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local owned = st[2] and st[2] ~= ''
if ARGV[3] == '1' then
  if st[2] ~= ARGV[1] then return -2 end
  local left = redis.call('HINCRBY', KEYS[1], 'count', -1)
  if left > 0 then return left end
elseif ARGV[4] == '1' then
  if not owned then return -3 end
else
  local maxv = tonumber(st[3])
  if maxv >= 0 and tonumber(v) + redis.call('LLEN', KEYS[2]) >= maxv then return -3 end
end
local waiting = tonumber(st[4] or '0')
local field, value = 'v', tonumber(v) + 1
if waiting > 0 then field, value = 'w', waiting - 1 end
if owned then
  redis.call('HSET', KEYS[1], field, value, 'id', '', 'name', '', 'count', '')
else
  redis.call('HSET', KEYS[1], field, value)
end
if waiting > 0 then
  redis.call('RPUSH', KEYS[2], 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 0
"""


class RedisSemaphore:
    """One semaphore's (or lock's) state in Redis; see the module docstring for its layout."""

    def __init__(self, state: StateBackend, meta: str, wake: str, ttl_ms: int) -> None:
        self._state = state
        self.meta = meta
        self.wake = wake
        self._ttl = ttl_ms
        direct = state.direct
        self._try: ScriptCall = direct.script(SEM_TRY)
        self._try_later = direct.deferred_script(SEM_TRY, hold=True)
        self._owned: ScriptCall = direct.script(SEM_OWNED)
        self._cancel: ScriptCall = direct.script(SEM_CANCEL)
        self._return: ScriptCall = direct.script(SEM_RETURN)
        self._release: ScriptCall = direct.script(SEM_RELEASE)
        self._release_later = direct.deferred_script(SEM_RELEASE, behind=True)
        self._fresh_until = 0.0  # sem_try / sem_release renew the meta's TTL from then on

    def _refresh(self) -> int:
        """1 when this call should renew the meta hash's TTL (every key_ttl/10 s), else 0."""
        now = time.monotonic()
        if now < self._fresh_until:
            return 0
        self._fresh_until = now + self._ttl / 10_000  # a tenth of the TTL, in s
        return 1

    def create(self, kind: str, value: int, maxvalue: int) -> None:
        """Write the initial state (one round trip)."""
        pipe = self._state.pipeline(transaction=True)
        pipe.hset(self.meta, {"kind": kind, "max": maxvalue, "v": value, "w": 0})
        pipe.pexpire(self.meta, self._ttl)
        pipe.execute()

    def sem_try(
        self, me: str, name: str, *, recursive: bool, track_owner: bool, count: int, register: bool
    ) -> int:
        """Take a unit if one is free (1); else 0, registered as a waiter if *register*; -1 gone."""
        args = [me, name, self._ttl, int(recursive), int(track_owner), count, int(register), self._refresh()]
        return int(self._try(keys=[self.meta, self.wake], args=args))

    def sem_try_then(
        self,
        me: str,
        name: str,
        then: Callable[[], object],
        *,
        recursive: bool,
        track_owner: bool,
        count: int,
        register: bool,
    ) -> int:
        """:meth:`sem_try`, then *then* (e.g. a pull of shared memory) in the same round trip.

        SEM_TRY is sent without waiting and *then*'s command collects its
        reply, so Redis runs *then* after the acquire: whatever it reads is at
        least as new as the last release of this lock.  *then* runs whether
        or not the unit was free; if it raises, a unit already taken is given
        back before the error propagates.
        """
        got: list[Any] = []
        args = [me, name, self._ttl, int(recursive), int(track_owner), count, int(register), self._refresh()]
        self._try_later([self.meta, self.wake], args, got.append)
        try:
            then()
        except BaseException:
            with contextlib.suppress(Exception):
                self._state.direct.flush()
                if got and got[0] == 1:
                    self.sem_release(me, recursive=recursive, track_owner=track_owner)
            raise
        self._state.direct.flush()  # *then* sent nothing: read the reply now
        if isinstance(got[0], BaseException):
            raise got[0]
        return int(got[0])

    def sem_wait(self, timeout: float) -> bool:
        """Block until a release hands a unit over (True) or *timeout* s pass (0 = forever)."""
        return self._state.direct.blpop([self.wake], timeout) is not None

    def sem_wait_owned(self, me: str, name: str, count: int, timeout: float) -> int:
        """:meth:`sem_wait` and :meth:`sem_owned` in one round trip per wait (for locks).

        The token is moved to a list of this waiter's own and taken from
        there, with the owner recorded, by a script sent in the same write:
        1 acquired and recorded, 0 *timeout* passed, -1 the lock is gone.
        """
        mine = self._mine(me)
        args = [me, name, self._ttl, count]
        return int(
            self._state.direct.pop_then_script(self.wake, mine, timeout, SEM_CLAIM, [self.meta, mine], args)
        )

    def sem_cancel(self, me: str) -> bool:
        """Stop waiting; True if a unit was handed over meanwhile (the caller holds it).

        Also looks in the list of *me*'s own (:meth:`sem_wait_owned`), where an
        interrupted wait may have left the token it was moving.
        """
        return int(self._cancel(keys=[self.meta, self.wake, self._mine(me)])) == 1

    def _mine(self, me: str) -> str:
        """The list a blocked waiter *me* moves its token to (same key prefix: same slot)."""
        return f"{self.wake}:{me}"

    def sem_return(self) -> None:
        """Give back a unit this caller got but does not want (an interrupted waiter)."""
        self._return(keys=[self.meta, self.wake], args=[self._ttl])

    def sem_owned(self, me: str, name: str, count: int) -> bool:
        """Record the owner after :meth:`sem_wait` got the unit; False if the state is gone."""
        return int(self._owned(keys=[self.meta], args=[me, name, self._ttl, count])) != -1

    def sem_release(self, me: str, *, recursive: bool, track_owner: bool) -> int:
        """Release: remaining recursion count (0 = released), -1 gone, -2 not owner, -3 over-release.

        *track_owner*: a lock (its owner is recorded); it is over-released
        when no owner is recorded.
        """
        args = [me, self._ttl, int(recursive), int(track_owner), self._refresh()]
        return int(self._release(keys=[self.meta, self.wake], args=args))

    def sem_release_later(
        self,
        me: str,
        on_reply: Callable[[int | BaseException], object],
        *,
        recursive: bool,
        track_owner: bool,
    ) -> None:
        """:meth:`sem_release` written now, its reply read by this thread's next command.

        *on_reply* gets the result :meth:`sem_release` would have returned
        (or the error that reading it raised); an exception it returns is
        raised by that next command.  The caller must know the release is
        valid (it holds the unit): only a lost state can make it fail then.
        """

        def reply(value: Any) -> object:
            return on_reply(value if isinstance(value, BaseException) else int(value))

        args = [me, self._ttl, int(recursive), int(track_owner), self._refresh()]
        self._release_later([self.meta, self.wake], args, reply)

    def snapshot(self) -> tuple[bool, int, dict[bytes, Any]]:
        """(exists, units available, meta hash with the owner), in one round trip.

        Available units are the count plus handed-over units no waiter has taken yet.
        """
        pipe = self._state.pipeline()
        pipe.hgetall(self.meta)
        pipe.llen(self.wake)
        own, pending = pipe.execute()
        return bool(own), int(own.get(b"v", 0)) + int(pending), own
