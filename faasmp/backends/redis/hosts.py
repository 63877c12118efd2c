"""The warm pool in Redis: hosts, their slots, and the capacity the client reserves.

Key layout (``faasmp.runtime.keys`` names them, per run):

* ``work`` -- the run's work queue (RemoteCalls); slots ``BLPOP`` it.
* ``slots`` / ``idle`` -- sets of slot ids: every registered slot, and those
  waiting for work.
* ``starting`` -- a counter of slots reserved (asked of a host or an
  invocation) but not registered yet; a registering slot takes one off.
* ``ready`` -- a short list of the latest registered slot ids (``wait_ready``
  blocks on it).
* ``hosts`` -- the set of live host ids; per host ``host_alive(id)`` (the
  heartbeat key, a TTL of a few beats), ``host:<id>`` (a hash: ``max_slots``,
  ``pid``, ``hostname``) and ``host_ctl(id)`` (its control list).
* ``client`` -- the client's heartbeat key; a host whose client is gone ends.

Capacity is reserved atomically (:data:`ENSURE_CAPACITY`), so two submitters
do not both start slots for the same queued work; a slot leaves only when no
work is queued (:data:`SLOT_IDLE_EXIT`) and a host only when nobody asked it
to grow meanwhile (:data:`HOST_EXIT`), so queued work always has a slot.

Round-trip budget: a run's start (its client and epoch keys, the server's
clock) 1; queuing work with its capacity check 1 (one script; with
a Process' queued record), from a worker 1 (one pipeline); a capacity check 1; a slot's registration 1,
its idle exit 1; a host's registration 1 (one pipeline), its beat 1, its exit
1 and a lost slot 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import StateBackend


# Reserve capacity for queued work atomically, so concurrent submitters do not
# both start slots for the same items.  KEYS[1..4]: work, idle, slots, starting;
# max_slots and ttl are Lua expressions.  Returns the number of slots to start.
def _reserve_lua(max_slots: str, ttl: str) -> str:
    return f"""
local queued = redis.call('LLEN', KEYS[1])
local idle = redis.call('SCARD', KEYS[2])
local total = redis.call('SCARD', KEYS[3])
local starting = tonumber(redis.call('GET', KEYS[4]) or '0')
local need = queued - idle - starting
local room = tonumber({max_slots}) - total - starting
if need > room then need = room end
if need > 0 then
  redis.call('INCRBY', KEYS[4], need)
  redis.call('PEXPIRE', KEYS[4], {ttl})
  return need
end
return 0
"""


# KEYS: work, idle, slots, starting.  ARGV: max slots, ttl -> slots to start
ENSURE_CAPACITY = _reserve_lua("ARGV[1]", "ARGV[2]")

# Queue work and reserve capacity for it in one round trip (a Process' start,
# a Pool's leases); with a record, also the queued process' hash.
# KEYS: work, idle, slots, starting, record hash.
# ARGV: max slots, ttl, front ('1': LPUSH), has record ('1'), record name, calls... -> slots to start
PUSH_AND_RESERVE = """
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[5], 'state', 'queued', 'name', ARGV[5])
  redis.call('PEXPIRE', KEYS[5], ARGV[2])
end
local push = 'RPUSH'
if ARGV[3] == '1' then push = 'LPUSH' end
for i = 6, #ARGV do redis.call(push, KEYS[1], ARGV[i]) end
""" + _reserve_lua("ARGV[1]", "ARGV[2]")

# Ask a live host to fork more slots; refused once it has decided to leave.
# KEYS: host_alive, host_ctl.  ARGV: the signed SpawnSlots message -> 1 asked, 0 host gone
HOST_SPAWN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS: slots, idle, starting, ready.  ARGV: slot id, ttl
SLOT_REGISTER = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
local s = tonumber(redis.call('GET', KEYS[3]) or '0')
if s > 0 then redis.call('DECR', KEYS[3]) end
redis.call('RPUSH', KEYS[4], ARGV[1])
redis.call('LTRIM', KEYS[4], -256, -1)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
"""

# A slot leaves only when no work is queued, so queued work always has a slot.
# KEYS: work, idle, slots.  ARGV: slot id
SLOT_IDLE_EXIT = """
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"""

# A host leaves only when nobody asked it to grow in the meantime.
# KEYS: host_ctl, host_alive, hosts.  ARGV: host id
HOST_EXIT = """
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"""


#: The counts :meth:`WarmPool.counts` reads.
COUNTS = ("hosts", "slots", "idle", "queued", "tasks_run", "starting")


class WarmPool:
    """The warm pool's records of one run (the keys come from the run's ``Keys``).

    *key_ttl_ms* is the TTL of the run's keys (a killed client's keys expire).
    """

    def __init__(self, state: StateBackend, keys: Any, key_ttl_ms: int) -> None:
        self._state = state
        self._keys = keys
        self._ttl_ms = key_ttl_ms

    # -- the client -----------------------------------------------------------
    def begin_run(self, client_ttl_ms: int) -> float:
        """Write the client's heartbeat key and the run's epoch; returns the server's clock in seconds.

        One round trip, on the calling thread's own connection (``direct``):
        the pooled connection a run's starter used could otherwise be taken by
        another thread before the run's keys exist.
        """
        k = self._keys
        replies = self._state.direct.execute_many(
            [
                ("SET", k.client, b"1", "PX", client_ttl_ms),
                ("SET", k.k("epoch"), b"1", "PX", self._ttl_ms),
                ("TIME",),
            ]
        )
        sec, usec = replies[-1]
        return int(sec) + int(usec) / 1e6

    def server_time(self) -> float:
        """The server's clock in seconds (on the calling thread's own connection, as :meth:`begin_run`)."""
        sec, usec = self._state.direct.execute("TIME")
        return int(sec) + int(usec) / 1e6

    def reserve_capacity(self, max_slots: int) -> int:
        """Reserve slots for queued work no idle or starting slot will take; returns how many to start."""
        k = self._keys
        script = self._state.script(ENSURE_CAPACITY)
        return int(script(keys=[k.work, k.idle, k.slots, k.starting], args=[max_slots, self._ttl_ms]))

    def push_and_reserve(
        self,
        calls: tuple[bytes, ...],
        max_slots: int,
        *,
        front: bool = False,
        record: tuple[str, str] | None = None,
    ) -> int:
        """Queue *calls* and reserve slots for them in one round trip; returns how many slots to start.

        *record* (``(hash key, name)``) is the hash of a queued Process,
        written in the same step (state ``queued``, with the run's key TTL).
        *front* queues the calls ahead of the others.
        """
        k = self._keys
        record_key, name = record if record is not None else (k.work, "")
        script = self._state.script(PUSH_AND_RESERVE)
        args: list[Any] = [max_slots, self._ttl_ms, int(front), int(record is not None), name, *calls]
        return int(script(keys=[k.work, k.idle, k.slots, k.starting, record_key], args=args))

    def push_from_worker(
        self, calls: tuple[bytes, ...], *, front: bool = False, record: tuple[str, str] | None = None
    ) -> None:
        """Queue *calls* from inside a worker and ask the client for capacity (the run's grow list).

        A worker has no executor: the client's monitor reads the grow list and
        reserves and starts the slots.  *record* and *front* as in
        :meth:`push_and_reserve`.  One round trip.
        """
        k = self._keys
        pipe = self._state.pipeline()
        if record is not None:
            pipe.hset(record[0], {"state": "queued", "name": record[1]})
            pipe.pexpire(record[0], self._ttl_ms)
        (pipe.lpush if front else pipe.rpush)(k.work, *calls)
        pipe.rpush(k.grow, b"1")
        pipe.execute()

    def ask_host_to_spawn(self, host_id: str, message: bytes) -> bool:
        """Push *message* (a signed ``SpawnSlots``) to a live host; False if the host is leaving."""
        k = self._keys
        script = self._state.script(HOST_SPAWN)
        return bool(script(keys=[k.host_alive(host_id), k.host_ctl(host_id)], args=[message]))

    # -- a host ---------------------------------------------------------------
    def register_host(self, host_id: str, alive_ttl_ms: int, info: dict[str, Any], event: bytes) -> None:
        """Record the live host *host_id* (heartbeat key, *info* hash); push *event* to the run's events."""
        k, ttl = self._keys, self._ttl_ms
        pipe = self._state.pipeline()
        pipe.sadd(k.hosts, host_id)
        pipe.pexpire(k.hosts, ttl)
        pipe.set(k.host_alive(host_id), b"1", px=alive_ttl_ms)
        pipe.hset(k.k("host", host_id), info)
        pipe.pexpire(k.k("host", host_id), ttl)
        pipe.rpush(k.events, event)
        pipe.execute()

    def host_beat(self, host_id: str, alive_ttl_ms: int) -> bool:
        """Renew the host's heartbeat and record; True while the run's client is alive."""
        k = self._keys
        pipe = self._state.pipeline()
        pipe.pexpire(k.host_alive(host_id), alive_ttl_ms)
        pipe.pexpire(k.k("host", host_id), self._ttl_ms)
        pipe.exists(k.client)
        return bool(pipe.execute()[-1])

    def host_try_exit(self, host_id: str) -> bool:
        """Leave the pool unless someone asked the host to grow; True if it left."""
        k = self._keys
        script = self._state.script(HOST_EXIT)
        return bool(script(keys=[k.host_ctl(host_id), k.host_alive(host_id), k.hosts], args=[host_id]))

    def host_leave(self, host_id: str) -> None:
        """Leave the pool at once (the client is gone or asked the host to stop)."""
        k = self._keys
        pipe = self._state.pipeline()
        pipe.srem(k.hosts, host_id)
        pipe.delete(k.host_alive(host_id), k.host_ctl(host_id))
        pipe.execute()

    def give_back(self, n: int) -> None:
        """Take *n* slots off the reserved count (a host refused to fork them)."""
        self._state.incrby(self._keys.starting, -n)

    def slot_lost(self, slot_id: str) -> None:
        """Forget the dead slot *slot_id*."""
        k = self._keys
        pipe = self._state.pipeline()
        pipe.srem(k.slots, slot_id)
        pipe.srem(k.idle, slot_id)
        pipe.execute()

    # -- a slot ---------------------------------------------------------------
    def register_slot(self, slot_id: str) -> None:
        """Record the new idle slot *slot_id* (takes one off the reserved count, wakes ``wait_ready``)."""
        k = self._keys
        script = self._state.script(SLOT_REGISTER)
        script(keys=[k.slots, k.idle, k.starting, k.ready], args=[slot_id, self._ttl_ms])

    def slot_try_exit(self, slot_id: str) -> bool:
        """Leave the pool if no work is queued; True if the slot left."""
        k = self._keys
        script = self._state.script(SLOT_IDLE_EXIT)
        return bool(script(keys=[k.work, k.idle, k.slots], args=[slot_id]))

    # -- the client's books ---------------------------------------------------
    def counts(self, *names: str) -> dict[str, int]:
        """The pool's counts *names* (all of :data:`COUNTS` if none) in one round trip."""
        k = self._keys
        pipe = self._state.pipeline()
        for name in names or COUNTS:
            match name:
                case "hosts" | "slots" | "idle":
                    pipe.scard(getattr(k, name))
                case "queued":
                    pipe.llen(k.work)
                case "tasks_run" | "starting":
                    pipe.get(getattr(k, name))
                case _:
                    raise ValueError(f"unknown warm pool count {name!r}; the counts are {', '.join(COUNTS)}")
        return {name: int(v or 0) for name, v in zip(names or COUNTS, pipe.execute(), strict=True)}

    def reserve(self, n: int) -> None:
        """Add *n* slots to the reserved (starting) count; a negative *n* gives them back."""
        self._state.incrby(self._keys.starting, n)

    def client_beat(
        self, client_ttl_ms: int, run_keys: tuple[str, ...], reads: list[str]
    ) -> tuple[int, bool, list[dict[bytes, bytes]]]:
        """Renew the client's heartbeat, the epoch and *run_keys*; read the hashes *reads*: one round trip.

        Returns the number of queued calls, whether the epoch key still
        existed (False: the server restarted or was flushed), and the hashes
        (``{}`` for one that is gone), for :mod:`faasmp.stats`.
        """
        k, ttl = self._keys, self._ttl_ms
        pipe = self._state.pipeline()
        pipe.pexpire(k.client, client_ttl_ms)
        pipe.llen(k.work)
        pipe.pexpire(k.k("epoch"), ttl)
        for key in run_keys:
            pipe.pexpire(key, ttl)
        for key in reads:
            pipe.hgetall(key)
        replies = pipe.execute()
        hashes = [reply or {} for reply in replies[len(replies) - len(reads) :]] if reads else []
        return int(replies[1]), bool(replies[2]), hashes

    def read_hashes(self, keys: list[str]) -> list[dict[bytes, bytes]]:
        """The hashes *keys* (``{}`` for one that is gone) in one round trip (process records, for stats)."""
        pipe = self._state.pipeline()
        for key in keys:
            pipe.hgetall(key)
        return [reply or {} for reply in pipe.execute()]

    def renew(self, keys: list[str], ttl_ms: int) -> None:
        """Renew the TTL of *keys* (batches of 1000 per round trip)."""
        for i in range(0, len(keys), 1000):
            pipe = self._state.pipeline()
            for key in keys[i : i + 1000]:
                pipe.pexpire(key, ttl_ms)
            pipe.execute()

    def forget_dead_hosts(self) -> list[str]:
        """Drop hosts whose heartbeat expired, and their slots; returns their ids."""
        k = self._keys
        hosts = [h.decode() for h in self._state.smembers(k.hosts)]
        if not hosts:
            return []
        pipe = self._state.pipeline()
        for host in hosts:
            pipe.exists(k.host_alive(host))
        dead = [h for h, alive in zip(hosts, pipe.execute(), strict=True) if not alive]
        if not dead:
            return []
        slots = [s for s in self._state.smembers(k.slots) if s.decode().split(".")[0] in dead]
        pipe = self._state.pipeline()
        pipe.srem(k.hosts, *dead)
        if slots:
            pipe.srem(k.slots, *slots)
            pipe.srem(k.idle, *slots)
        pipe.execute()
        return dead
