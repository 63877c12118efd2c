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
takes up to :data:`DRAIN` results in 1, blocking when there are none
(``BLMPOP``; on Redis 6.2 a poll and a block, 2).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..resp import Parts
from ..state import CONNECTION_ERRORS, StatePermissionError

if TYPE_CHECKING:
    from ..state import StateBackend

logger = logging.getLogger(__name__)

DRAIN = 256  # results the handler takes per round trip


class PoolResultsQueue:
    """The result handler's end of one pool's results list."""

    def __init__(self, state: StateBackend, results_key: str) -> None:
        self._direct = state.direct
        self._key = results_key
        #: BLMPOP (Redis >= 7.0) blocks for the first result and takes up to
        #: DRAIN in one round trip; a server without it (Redis 6.2) or an ACL
        #: user not allowed it makes the handler poll, then block (2 round trips).
        self._blmpop = True

    def take(self, timeout: float) -> list[bytes]:
        """The next results, up to :data:`DRAIN`, blocking up to *timeout* seconds for the first.

        One round trip: while results flow the handler takes them in
        batches, and when none are there it blocks without a poll first.
        Returns ``[]`` on timeout.
        """
        if self._blmpop:
            try:
                reply = self._direct.execute("BLMPOP", timeout, 1, self._key, "LEFT", "COUNT", DRAIN)
            except StatePermissionError as exc:  # an ACL user made from an older ACL line
                self._no_blmpop(exc)
            except CONNECTION_ERRORS:
                raise  # the server is gone: not a reason to stop using BLMPOP
            except Exception as exc:  # noqa: BLE001 - an error reply: Redis < 7.0 has no BLMPOP
                self._no_blmpop(exc)
            else:
                return [] if reply is None else list(reply[1])
        blobs: list[bytes] = self._direct.execute("LPOP", self._key, DRAIN) or []
        if not blobs:
            item = self._direct.blpop([self._key], timeout=timeout)
            if item is not None:
                blobs = [item[1]]
        return blobs

    def _no_blmpop(self, exc: BaseException) -> None:
        logger.debug("faasmp pool: BLMPOP refused (%s); polling, then blocking instead", exc)
        self._blmpop = False


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


def _element(task: Any) -> Any:
    """A task as a list element: ``bytes`` as they are, a tuple of parts as one uncopied argument."""
    return Parts(task) if type(task) is tuple else task


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

    def upload(self, tasks: list[Any], function: tuple[bytes, bytes] | None = None) -> None:
        """Append *tasks* to the task list; store *function* (``(key, blob)``) first if given.

        A task is a signed message: ``bytes``, or a tuple of ``bytes`` parts
        written as one element without being joined.
        """
        pipe = self._state.pipeline()
        if function is not None:
            pipe.hset(self.funcs_key, {function[0]: function[1]})  # type: ignore[dict-item]
        if tasks:
            pipe.rpush(self.tasks_key, *[_element(t) for t in tasks])
        pipe.execute()

    def requeue(self, task: Any) -> None:
        """Put a task (as :meth:`upload` takes it) back at the front of the task list (a retry)."""
        self._state.lpush(self.tasks_key, _element(task))

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
