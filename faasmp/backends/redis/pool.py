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
