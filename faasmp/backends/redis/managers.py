"""A manager in Redis: its lifecycle and the calls to objects its process serves.

Key layout (under ``mgr:<manager id>`` of the run):

* ``mgr:<id>`` -- a SET naming every key of the manager's objects (deleted at
  shutdown), plus an ``'@auth:<digest>'`` member a connecting manager must
  match.  Its existence *is* "the manager is running": every object script
  checks it first (:mod:`.manager_objects`).
* ``mgr:<id>:closed`` -- a list shutdown pushes to, waking ``join()``.
* ``mgr:<id>:srv`` / ``mgr:<id>:srv:alive`` / ``mgr:<id>:reply:<token>`` --
  requests to the objects served by the manager's process (those that cannot
  be pickled into Redis), that server's liveness key, one reply list per call.

Round trips: ``start``, ``connect``, ``shutdown`` and ``register_keys`` are
one script each; a served call is one round trip to send plus a ``BLPOP`` for
the reply (re-checking the server's liveness every two beats).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .manager_objects import GONE, REGISTER

if TYPE_CHECKING:
    from ...runtime.keys import Keys
    from ..state import StateBackend

MGR_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

MGR_CONNECT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Delete every key of the manager's objects, the manager key, and wake joiners.
MGR_SHUTDOWN = """
local members = redis.call('SMEMBERS', KEYS[1])
local ks = {}
for _, m in ipairs(members) do
  if string.sub(m, 1, 1) ~= '@' then ks[#ks + 1] = m end
end
for i = 1, #ks, 500 do redis.call('DEL', unpack(ks, i, math.min(i + 499, #ks))) end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[2], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return #ks
"""


class RedisManager:
    """One manager's record in Redis (see the module docstring for its keys)."""

    def __init__(self, state: StateBackend, keys: Keys, mid: str, ttl_ms: int) -> None:
        self._state = state
        self.key = keys.k("mgr", mid)
        self.closed_key = keys.k("mgr", mid, "closed")
        self._ttl = ttl_ms

    def start(self, auth_member: str) -> bool:
        """Claim the manager id; False if a manager already runs there."""
        result = self._state.script(MGR_START)(
            keys=[self.key, self.closed_key], args=[self._ttl, auth_member]
        )
        return bool(result)

    def connect(self, auth_member: str) -> int:
        """1 attached, 0 no manager runs there, -1 its authkey differs."""
        result = self._state.script(MGR_CONNECT)(
            keys=[self.key, self.closed_key], args=[self._ttl, auth_member]
        )
        return int(result)

    def shutdown(self) -> int:
        """Delete every key of the manager's objects and the manager, wake joiners; how many keys."""
        return int(self._state.script(MGR_SHUTDOWN)(keys=[self.key, self.closed_key], args=[60_000]))

    def register_keys(self, keys: Sequence[str]) -> bool:
        """Record *keys* as the manager's (deleted at its shutdown); False if it is gone."""
        return self._state.script(REGISTER)(keys=[self.key], args=[self._ttl, *keys]) != GONE

    def running(self) -> bool:
        return bool(self._state.exists(self.key))

    def wait_shutdown(self, timeout: float | None) -> None:
        """Block in Redis until the manager shuts down, at most *timeout* seconds (None: forever)."""
        if not self.running():
            return
        self._state.blmove_rotate(self.closed_key, 0 if timeout is None else timeout)


class RedisServedCalls:
    """Calls to the objects a manager's process serves: a request list and one reply list per call."""

    def __init__(self, state: StateBackend, keys: Keys, mid: str, ttl_ms: int) -> None:
        self._state = state
        self._keys = keys
        self._mid = mid
        self._ttl = ttl_ms
        self.manager_key = keys.k("mgr", mid)
        self.request_key = keys.k("mgr", mid, "srv")
        self.alive_key = keys.k("mgr", mid, "srv", "alive")

    # -- the serving side ---------------------------------------------------------
    def serve_renew(self, ttl_ms: int) -> None:
        """Say the server is alive for *ttl_ms* more."""
        self._state.set(self.alive_key, b"1", px=ttl_ms)

    def serve_next(self, timeout: float) -> bytes | None:
        """The next request, waiting at most *timeout* seconds."""
        item = self._state.blpop([self.request_key], timeout)
        return None if item is None else item[1]

    def serve_reply(self, reply_key: str, blob: bytes) -> None:
        """Send a reply (kept a minute if the caller is gone)."""
        pipe = self._state.pipeline()
        pipe.rpush(reply_key, blob)
        pipe.pexpire(reply_key, 60_000)
        pipe.execute()

    def serve_stop(self) -> None:
        self._state.delete(self.alive_key, self.request_key)

    # -- the calling side ---------------------------------------------------------
    def new_reply_key(self) -> str:
        return self._keys.k("mgr", self._mid, "reply", secrets.token_hex(8))

    def call_send(self, blob: bytes) -> bool:
        """Queue a request (one round trip); False if the manager is gone."""
        pipe = self._state.pipeline()
        pipe.exists(self.manager_key)
        pipe.rpush(self.request_key, blob)
        pipe.pexpire(self.request_key, self._ttl)
        if not pipe.execute()[0]:
            self._state.delete(self.request_key)
            return False
        return True

    def call_wait(self, reply_key: str, timeout: float) -> bytes | None:
        """The reply to a request, waiting at most *timeout* seconds."""
        item = self._state.blpop([reply_key], timeout)
        return None if item is None else item[1]

    def server_alive(self) -> bool:
        return bool(self._state.exists(self.alive_key))
