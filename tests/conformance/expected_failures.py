"""Tests of CPython's ``test._test_multiprocessing`` that faasmp is expected to fail, and why.

Keys are test ids as the runner prints them (``<class>.<method>``, the class
named by ``install_tests_in_module_dict``: ``WithProcesses*`` / ``WithManager*``).
Every entry is in one of three tables:

* :data:`NOT_APPLICABLE` -- the test checks something a serverless
  implementation cannot offer (file descriptors, memory shared by ``fork``,
  machine-local POSIX shared memory, socket servers) or inspects private
  attributes of CPython's implementation.
* :data:`DIFFERENCES` -- faasmp behaves differently on purpose (documented).
* :data:`FAASMP_BUGS` -- faasmp should pass; each line says what is wrong.
  Remove the entry when the bug is fixed (the runner lists expected failures
  that passed).

The opt-in test ``tests/conformance/test_cpython_multiprocessing.py`` fails
when a test outside these tables fails, so regressions are caught.
"""

from __future__ import annotations

_P = "WithProcesses"
_M = "WithManager"

NOT_APPLICABLE: dict[str, str] = {
    # _DummyList, the suite's counter for Barrier tests, is a multiprocessing.heap.BufferWrapper:
    # an anonymous mmap shared by fork, which cannot reach a worker on another machine.
    **{
        f"{_P}TestBarrier.{t}": "helper _DummyList is a heap.BufferWrapper (fork-shared mmap), unpicklable"
        for t in (
            "test_abort",
            "test_abort_and_reset",
            "test_action",
            "test_barrier",
            "test_barrier_10",
            "test_default_timeout",
            "test_reset",
            "test_timeout",
            "test_wait_return",
        )
    },
    # check_invariant() reads CPython's private SemLocks of Condition after the
    # notify checks themselves have passed.
    f"{_P}TestCondition.test_notify": (
        "reads CPython internals cond._sleeping_count/_woken_count/_wait_semaphore"
    ),
    f"{_P}TestCondition.test_notify_all": "reads CPython internals cond._sleeping_count/_woken_count",
    f"{_P}TestCondition.test_notify_n": "reads CPython internals cond._sleeping_count/_woken_count",
    # A faasmp Connection is a pair of Redis lists: no file descriptor to return or to pass.
    f"{_P}TestConnection.test_connection": (
        "asserts Connection.fileno() is an int; faasmp connections have no fd"
    ),
    f"{_P}TestConnection.test_fd_transfer": "passes an fd over the pipe (SCM_RIGHTS); no fd crosses machines",
    f"{_P}TestConnection.test_large_fd_transfer": "passes an fd over the pipe (SCM_RIGHTS)",
    f"{_P}TestConnection.test_missing_fd_transfer": "reduction.recv_handle needs the pipe's socket fd",
    f"{_P}TestProcess.test_sentinel": (
        "asserts Process.sentinel is an int fd; faasmp's is a Redis-backed object"
    ),
    f"{_P}TestPicklingConnections.test_pickling": (
        "sends stdlib socket Connections (fds) to the child process"
    ),
    # POSIX shared memory lives on one machine.
    f"{_P}TestSharedMemory.test_shared_memory_across_processes": (
        "the worker's own resource tracker unlinks the machine-local shm block when the worker exits"
    ),
    f"{_P}TestSharedMemory.test_shared_memory_SharedMemoryManager_basics": (
        "SharedMemoryManager: a stdlib socket server for machine-local shared memory"
    ),
    f"{_P}TestSharedMemory.test_shared_memory_SharedMemoryServer_ignores_sigint": (
        "SharedMemoryManager: a stdlib socket server for machine-local shared memory"
    ),
    # Managers listening on a TCP address with the xmlrpclib serializer, restarted on the same port.
    f"{_P}TestManagerRestart.test_rapid_restart": (
        "stdlib manager server on a (host, port) address; faasmp has no socket"
    ),
    f"{_M}TestManagerRestart.test_rapid_restart": (
        "stdlib manager server on a (host, port) address; faasmp has no socket"
    ),
    f"{_M}TestRemoteManager.test_remote": (
        "stdlib manager server on a (host, port) address, xmlrpclib serializer"
    ),
    # Pool internals.
    f"{_P}TestPoolWorkerLifetime.test_pool_worker_lifetime": (
        "inspects Pool._pool worker Process objects and pids"
    ),
    f"{_P}TestPoolWorkerErrors.test_unpickleable_result": (
        "the 'unpicklable' result is a lambda, which cloudpickle (faasmp's serializer) pickles"
    ),
}

DIFFERENCES: dict[str, str] = {
    f"{_P}TestQueue.test_queue_feeder_donot_stop_onexc": (
        "faasmp pickles in put() and raises PicklingFailed there; the stdlib pickles in a feeder thread"
    ),
    f"{_M}TestPool.test_make_pool": (
        "manager.Pool(0) raises ValueError in the caller; the stdlib's manager server raises RemoteError"
    ),
}

FAASMP_BUGS: dict[str, str] = {
    # faasmp.patch() leaves these stdlib names in place, so the suite gets the stdlib objects.
    f"{_P}TestSharedCTypes.test_sharedctypes": (
        "patch() does not rebind multiprocessing.sharedctypes.Value/Array/copy: "
        "a stdlib mmap Value is sent to a worker"
    ),
    f"{_P}TestSharedCTypes.test_synchronize": (
        "patch() does not rebind multiprocessing.sharedctypes.Value (lock=True): "
        "the stdlib Synchronized refuses to pickle"
    ),
    **{
        f"{_M}TestMyManager.{t}": (
            "patch() does not rebind multiprocessing.managers.BaseManager: a subclass starts a stdlib server "
            "on a faasmp Process (PicklingFailed: AuthenticationString); rebound, its generator-returning "
            "'baz' type still cannot be kept in Redis"
        )
        for t in ("test_mymanager", "test_mymanager_context", "test_mymanager_context_prestarted")
    },
    f"{_P}TestPool.test_traceback": (
        "exc.__cause__ is faasmp.RemoteTraceback, not multiprocessing.pool.RemoteTraceback"
    ),
    f"{_P}TestPool.test_map_unplicklable": (
        "PicklingFailed(TypeError) replaces the pickling error; the stdlib raises the original (RuntimeError)"
    ),
    f"{_M}TestPool.test_map_unplicklable": (
        "PicklingFailed(TypeError) replaces the pickling error; the stdlib raises the original (RuntimeError)"
    ),
    f"{_P}TestPool.test_release_task_refs": "the pool keeps the last result chunk alive after map() returns",
    f"{_M}TestPool.test_release_task_refs": "the pool keeps the last result chunk alive after map() returns",
    f"{_P}TestProcess.test_error_on_stdio_flush_2": (
        "a child that sets sys.stdout/stderr to None exits 1, not 0"
    ),
    f"{_P}TestProcess.test_wait_for_threads": "the child exits without joining its non-daemon threads",
    f"{_P}TestProcess.test_lose_target_ref": "Process.start() keeps _target/_args alive in the parent",
    f"{_P}TestProcess.test_many_processes": (
        "join() after terminate() waits 2 s per process for an output marker (100: 200 s, timeout); "
        "in the full class run some short processes end -9 (invocations 'stopped answering')"
    ),
    f"{_P}TestProcess.test_set_executable": (
        "set_executable() raises RuntimeError once the context is running"
    ),
    f"{_P}TestLogging.test_level": "the child does not inherit the level of multiprocessing.get_logger()",
    f"{_P}TestQueue.test_queue_feeder_on_queue_feeder_error": (
        "stdlib queues.Queue on a faasmp context makes BoundedSemaphore(2**31-1): "
        "2**31 Redis tokens, GBs of RAM"
    ),
    f"{_M}TestContainers.test_dict_iter": (
        "iter() of a manager dict is a snapshot: no RuntimeError when it changes"
    ),
    f"{_M}TestContainers.test_list_iter": (
        "iter() of a manager list is a snapshot: later item assignments unseen"
    ),
    f"{_M}TestEvent.test_repr": (
        "manager.Event() is not a proxy: repr is not <EventProxy object, typeid 'Event' ...>"
    ),
}

#: Every test faasmp is expected to fail, with the reason.
EXPECTED_FAILURES: dict[str, str] = {**NOT_APPLICABLE, **DIFFERENCES, **FAASMP_BUGS}


def category(test_id: str) -> str | None:
    """``"not applicable"``, ``"difference"``, ``"bug"`` or None for *test_id*."""
    tables = {"not applicable": NOT_APPLICABLE, "difference": DIFFERENCES, "bug": FAASMP_BUGS}
    for name, table in tables.items():
        if test_id in table:
            return name
    return None
