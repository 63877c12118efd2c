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
    # The heap's allocator: multiprocessing.heap.BufferWrapper is faasmp's (a shared-memory
    # segment per buffer, so that CPython's Barrier tests can count across processes).
    **{
        f"{_P}TestHeap.{t}": (
            "inspects the stdlib heap allocator's arenas (BufferWrapper._heap); faasmp's BufferWrapper "
            "is a distributed shared-memory segment, not a block of a local mmap arena"
        )
        for t in ("test_heap", "test_free_from_gc")
    },
    f"{_P}TestSharedMemory.test_shared_memory_SharedMemoryServer_ignores_sigint": (
        "sends SIGINT to the manager's server process; a faasmp SharedMemoryManager has none "
        "(manager._process.pid is None, so the test's os.kill raises TypeError)"
    ),
    # A faasmp Connection is a pair of Redis lists: no file descriptor to pass.
    f"{_P}TestConnection.test_fd_transfer": "passes an fd over the pipe (SCM_RIGHTS); no fd crosses machines",
    f"{_P}TestConnection.test_large_fd_transfer": "passes an fd over the pipe (SCM_RIGHTS)",
    f"{_P}TestConnection.test_missing_fd_transfer": "reduction.recv_handle needs the pipe's socket fd",
    f"{_P}TestPicklingConnections.test_pickling": (
        "sends stdlib socket Connections (fds) between processes; faasmp refuses to pickle them "
        "(TypeError naming the fd) and the reader gets EOFError, where it used to hang"
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
}

DIFFERENCES: dict[str, str] = {
    # Choices faasmp made where it could have matched the stdlib: counted against it.
    f"{_P}TestConnection.test_connection": (
        "asserts Connection.fileno() is an int; a faasmp Connection is a pair of Redis lists and "
        "offers no fd (a pipe-backed stand-in fd would promise select() readiness it cannot keep)"
    ),
    f"{_P}TestPoolWorkerErrors.test_unpickleable_result": (
        "the 'unpicklable' result is a lambda, which faasmp's serializer (cloudpickle) pickles by value "
        "so that lambdas can be sent at all; the stdlib's pickle refuses it"
    ),
    f"{_P}TestQueue.test_queue_feeder_donot_stop_onexc": (
        "faasmp pickles in put() and raises PicklingFailed there; the stdlib pickles in a feeder thread"
    ),
}

FAASMP_BUGS: dict[str, str] = {
    # Fixed 2026-11-23 (stdlib-original pickling errors, logger level, set_executable, live manager
    # iterators, EventProxy, counted semaphores, released pool results, unpicklable manager
    # referents served by the owner, patch() of sharedctypes/managers, RemoteTraceback is the
    # stdlib's class): none left.
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
