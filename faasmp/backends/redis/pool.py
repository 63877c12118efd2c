"""A Pool's queues in Redis: its tasks, its results, and the delivery of a result.

Key layout (``faasmp.runtime.keys`` names them, per pool id):

* ``pool_tasks`` -- the list of signed ``PoolTask`` messages (and sentinels,
  pushed to the front so idle workers leave before taking more work); every
  worker of the pool ``BLPOP`` s it.
* ``pool_results`` -- the list of the workers' messages (``WorkerStarted``,
  ``TaskDone``, ``WorkerExited``, ...); the pool's result handler reads it.
* ``tasks_run`` -- the run's count of tasks run (stats).

Both sides use the calling thread's own connection (``StateBackend.direct``):
redis-py's pooled path costs ~3x a bare send/receive on loopback.

Round-trip budget: a worker delivers a result and waits for its next task in
1 round trip (:meth:`PoolWorkerQueue.deliver_and_take`); the result handler
takes up to :data:`DRAIN` results in 1 while they flow, else blocks for one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import StateBackend

DRAIN = 256  # results the handler takes per round trip


class PoolResultsQueue:
    """The result handler's end of one pool's results list."""

    def __init__(self, state: StateBackend, results_key: str) -> None:
        self._direct = state.direct
        self._key = results_key

    def take(self, timeout: float, *, drain_first: bool) -> list[bytes]:
        """The next results: without blocking up to :data:`DRAIN` if *drain_first*, else (or if none) block.

        While results flow the handler takes them in batches; once one came
        back empty, it blocks up to *timeout* seconds for the next one.
        Returns ``[]`` on timeout.
        """
        blobs: list[bytes] = (self._direct.execute("LPOP", self._key, DRAIN) if drain_first else None) or []
        if not blobs:
            item = self._direct.blpop([self._key], timeout=timeout)
            if item is not None:
                blobs = [item[1]]
        return blobs


class PoolWorkerQueue:
    """A pool worker's end: takes tasks, delivers results (with the next take in one round trip)."""

    def __init__(self, state: StateBackend, keys: Any, pool_id: str) -> None:
        self._state = state
        self._direct = state.direct
        self._tasks = keys.pool_tasks(pool_id)
        self._results = keys.pool_results(pool_id)
        self._tasks_run = keys.tasks_run

    def _delivery(self, blob: bytes) -> list[tuple[Any, ...]]:
        return [("RPUSH", self._results, blob), ("INCRBY", self._tasks_run, 1)]

    def take(self, timeout: float) -> tuple[bytes, bytes] | None:
        """Block up to *timeout* seconds for the next task (``(key, blob)``, or None)."""
        return self._state.blpop([self._tasks], timeout=timeout)

    def deliver_and_take(self, blob: bytes, timeout: float) -> tuple[bytes, bytes] | None:
        """Push the result *blob*, count the task, and block for the next task: one round trip."""
        commands = self._delivery(blob)
        commands.append(("BLPOP", self._tasks, timeout))
        item: tuple[bytes, bytes] | None = self._direct.execute_many(commands)[-1]
        return item

    def deliver(self, blob: bytes) -> None:
        """Push the result *blob* and count the task (the worker's last one)."""
        self._direct.execute_many(self._delivery(blob))


class PoolQueues:
    """The client's end of one pool: uploads tasks, withdraws leases, dismisses workers.

    Round-trip budget: a batch of tasks (with its function, the first time)
    1; withdrawing the pool's queued leases 1; dismissing its workers 1; a
    health renewal 1.
    """

    def __init__(self, state: StateBackend, keys: Any, pool_id: str) -> None:
        self._state = state
        self._keys = keys
        self._pool_id = pool_id
        self.tasks_key = keys.pool_tasks(pool_id)
        self.results_key = keys.pool_results(pool_id)
        self.funcs_key = keys.pool_funcs(pool_id)
        self.alive_key = keys.pool_alive(pool_id)

    def upload(self, tasks: list[bytes], function: tuple[bytes, bytes] | None = None) -> None:
        """Append *tasks* to the task list; store *function* (``(key, blob)``) first if given."""
        pipe = self._state.pipeline()
        if function is not None:
            pipe.hset(self.funcs_key, {function[0]: function[1]})  # type: ignore[dict-item]
        if tasks:
            pipe.rpush(self.tasks_key, *tasks)
        pipe.execute()

    def withdraw_leases(self, leases: list[bytes]) -> list[bool]:
        """Take *leases* (queued POOL_WORKER calls) off the run's work queue; True for each still queued."""
        if not leases:
            return []
        pipe = self._state.pipeline()
        for blob in leases:
            pipe.lrem(self._keys.work, 1, blob)  # type: ignore[attr-defined]
        return [bool(n) for n in pipe.execute()]

    def dismiss(
        self, sentinels: list[bytes], kills: list[tuple[str, bytes]], wake: bytes, *, drop_tasks: bool
    ) -> None:
        """Send the workers their *sentinels* (ahead of queued tasks) and *kills* to their hosts.

        *drop_tasks* deletes the tasks not started yet first (``terminate()``);
        *wake* goes last to the results list, so the result handler learns that
        every sentinel is out.  One round trip.
        """
        pipe = self._state.pipeline()
        if drop_tasks:
            pipe.delete(self.tasks_key)
        if sentinels:
            pipe.lpush(self.tasks_key, *sentinels)
        for host, blob in kills:
            pipe.rpush(self._keys.host_ctl(host), blob)
        pipe.rpush(self.results_key, wake)
        pipe.execute()

    def renew(self, alive_ttl_ms: int, key_ttl_ms: int) -> None:
        """Renew the pool's liveness key and the TTL of its lists (the safety net for a killed client)."""
        pipe = self._state.pipeline()
        pipe.pexpire(self.alive_key, alive_ttl_ms)
        for key in (self.tasks_key, self.results_key, self.funcs_key):
            pipe.pexpire(key, key_ttl_ms)
        pipe.execute()
