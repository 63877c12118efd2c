"""Process semantics against the stdlib's, on real workers."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time

import pytest

import faasmp
from faasmp.connection import wait
from tests import helpers


def test_start_join_exitcode_zero(ctx):
    p = ctx.Process(target=helpers.noop)
    assert p.exitcode is None
    assert not p.is_alive()
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert not p.is_alive()


@pytest.mark.parametrize(("code", "expected"), [(3, 3), (None, 0), ("bye", 1)])
def test_sys_exit_codes(ctx, code, expected):
    p = ctx.Process(target=helpers.exit_with, args=(code,))
    p.start()
    p.join(30)
    assert p.exitcode == expected


def test_os_exit_code(ctx):
    p = ctx.Process(target=helpers.hard_exit, args=(7,))
    p.start()
    p.join(30)
    assert p.exitcode == 7


def test_exception_gives_exitcode_1_and_traceback_on_stderr(ctx, capsys):
    p = ctx.Process(target=helpers.raise_value_error, args=("boom-in-process",), name="Failing")
    p.start()
    p.join(30)
    assert p.exitcode == 1
    err = capsys.readouterr().err
    assert "Process Failing:" in err
    assert "ValueError: boom-in-process" in err
    assert "raise ValueError(msg)" in err  # the remote source line


def test_terminate_and_kill_give_negative_signals(ctx):
    p = ctx.Process(target=helpers.sleep_forever)
    p.start()
    assert p.pid is not None  # waits until it runs
    assert p.is_alive()
    p.terminate()
    p.join(30)
    assert p.exitcode == -signal.SIGTERM
    q = ctx.Process(target=helpers.sleep_forever)
    q.start()
    assert q.pid
    q.kill()
    q.join(30)
    assert q.exitcode == -signal.SIGKILL
    assert "exitcode=-SIGKILL" in repr(q)


def test_join_timeout_returns_while_running(ctx):
    p = ctx.Process(target=helpers.sleep_forever)
    p.start()
    t0 = time.monotonic()
    p.join(0.3)
    assert time.monotonic() - t0 < 5
    assert p.exitcode is None
    assert p.is_alive()
    with pytest.raises(ValueError, match="still running"):
        p.close()
    p.kill()
    p.join(30)
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.is_alive()


def test_start_twice_and_join_unstarted(ctx):
    p = ctx.Process(target=helpers.noop)
    with pytest.raises(AssertionError, match="started process"):
        p.join()
    p.start()
    with pytest.raises(AssertionError, match="twice"):
        p.start()
    p.join(30)


def test_print_is_forwarded(ctx, capsys):
    p = ctx.Process(target=helpers.print_lines, args=(3, "proc"))
    p.start()
    p.join(30)
    out, err = capsys.readouterr()
    assert out.splitlines()[-3:] == ["proc 0", "proc 1", "proc 2"]
    assert "proc to stderr" in err


def test_current_and_parent_process_remote(ctx, capsys):
    p = ctx.Process(target=helpers.report_identity, args=("ident",), name="Named-1")
    p.start()
    p.join(30)
    out = capsys.readouterr().out
    assert "ident: Named-1 parent=('MainProcess', True)" in out


def test_main_process_identity():
    assert faasmp.current_process().name == "MainProcess"
    assert faasmp.parent_process() is None


def test_active_children_and_daemon(ctx):
    p = ctx.Process(target=helpers.sleep_forever, daemon=True)
    assert p.daemon
    p.start()
    assert p in faasmp.active_children()
    with pytest.raises(AssertionError):
        p.daemon = False
    p.terminate()
    p.join(30)
    assert p not in faasmp.active_children()


def test_terminate_before_it_runs_cancels_it(ctx):
    p = ctx.Process(target=helpers.sleep_forever)
    p.start()
    p.terminate()  # most likely still queued: cancelled without running
    p.join(30)
    assert p.exitcode == -signal.SIGTERM


def test_sentinel_with_connection_wait(ctx):
    fast = ctx.Process(target=helpers.sleep_then, args=(0.2,))
    slow = ctx.Process(target=helpers.sleep_forever)
    fast.start()
    slow.start()
    ready = wait([fast.sentinel, slow.sentinel], timeout=30)
    assert [s.process for s in ready] == [fast]
    assert wait([slow.sentinel], timeout=0.2) == []
    slow.kill()
    slow.join(30)


def test_sentinel_is_a_file_descriptor_readable_at_exit(ctx):
    import multiprocessing.connection
    import select

    p = ctx.Process(target=helpers.sleep_then, args=(0.5,))
    with pytest.raises(ValueError, match="not started"):
        p.sentinel  # noqa: B018 - the property raises
    p.start()
    sentinel = p.sentinel
    assert isinstance(sentinel, int) and p.sentinel is sentinel
    assert select.select([sentinel], [], [], 0)[0] == []
    assert multiprocessing.connection.wait([sentinel], timeout=30) == [sentinel]  # the stdlib's wait
    assert p.exitcode == 0
    p.join()
    p.close()
    with pytest.raises(OSError):
        os.fstat(sentinel)  # close() closed the descriptor


def test_child_inherits_the_multiprocessing_logger_level(ctx):
    import logging
    import multiprocessing.util

    from tests import helpers_sync

    logger = multiprocessing.util.get_logger()
    old = logger.level
    try:
        logger.setLevel(32)  # as the stdlib's preparation data passes it on
        p = ctx.Process(target=helpers_sync.exit_with_mp_log_level)
        p.start()
        p.join(60)
        assert p.exitcode == 32
        logger.setLevel(logging.NOTSET)  # then the level comes from the root logger
        root = logging.getLogger()
        root_level = root.level
        root.setLevel(37)
        try:
            p = ctx.Process(target=helpers_sync.exit_with_mp_log_level)
            p.start()
            p.join(60)
        finally:
            root.setLevel(root_level)
        assert p.exitcode == 37
    finally:
        logger.setLevel(old)


def test_set_executable_is_accepted_while_running(ctx):
    import pathlib
    import sys

    for path in (sys.executable, sys.executable.encode(), pathlib.Path(sys.executable)):
        ctx.set_executable(path)  # the run is already going: stored, as the stdlib does
        assert ctx.get_executable() == sys.executable
        p = ctx.Process(target=helpers.sleep_then, args=(0,))
        p.start()
        p.join(60)
        assert p.exitcode == 0


def test_subclass_overriding_run(default_ctx, capsys):
    p = helpers.Counter(5)
    p.start()
    p.join(30)
    assert p.exitcode == 5
    assert "subclass run in Counter-sub" in capsys.readouterr().out


def test_unpicklable_target_fails_at_start_naming_it(ctx):
    import threading

    lock = threading.Lock()
    p = ctx.Process(target=helpers.noop, args=(lock,), name="HasLock")
    with pytest.raises(faasmp.PicklingFailed, match="HasLock"):
        p.start()


def test_name_and_repr(ctx):
    p = ctx.Process(target=helpers.noop)
    assert p.name.startswith("Process-")
    p.name = "renamed"
    assert "renamed" in repr(p) and "initial" in repr(p)
    with pytest.raises(AssertionError):
        p.name = 3  # type: ignore[assignment]


def test_join_of_a_silent_process_does_not_wait_for_output(ctx):
    p = ctx.Process(target=helpers.noop)
    p.start()
    p.join(30)
    t0 = time.monotonic()
    p.join(0.1)
    assert time.monotonic() - t0 < 1.0  # used to wait 2 s for output that never came


def test_process_from_unimportable_module_exits_1_with_cause(ctx, tmp_path, monkeypatch, capsys):
    (tmp_path / "clientonly_proc.py").write_text("def run():\n    print('never')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import clientonly_proc

    p = ctx.Process(target=clientonly_proc.run)
    p.start()
    p.join(30)
    assert p.exitcode == 1
    err = capsys.readouterr().err
    assert "ModuleNotFoundError" in err and "clientonly_proc" in err
    # The hint names the module and both remedies (ship by value / install).
    assert "cannot import 'clientonly_proc'" in err and "register_pickle_by_value" in err
    assert "pip install clientonly_proc" in err


def test_join_after_terminate_or_os_exit_does_not_wait_for_output(ctx):
    procs = [ctx.Process(target=helpers.sleep_forever) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        assert p.pid
        p.terminate()
    t0 = time.monotonic()
    for p in procs:
        p.join(30)
    quiet = ctx.Process(target=helpers.hard_exit, args=(0,))
    quiet.start()
    quiet.join(30)
    assert [p.exitcode for p in procs] == [-signal.SIGTERM] * 3 and quiet.exitcode == 0
    assert time.monotonic() - t0 < 5  # each join used to wait 2 s for output never sent


def test_a_child_waits_for_its_non_daemon_threads_on_every_slot(ctx):
    # As the stdlib's child, a faasmp Process ends only after its non-daemon
    # threads.  Slots that a host forks later (from its control thread, when
    # the pool grows) used to run processes whose main thread was marked
    # daemon, so their threads were daemons too and join() returned early
    # (CPython's test_wait_for_threads failed in 3 of 3 class runs).  Enough
    # processes at once make hosts grow, so slots of both kinds take part.
    q = ctx.Queue()
    procs = [ctx.Process(target=helpers.report_waited_thread, args=(q, 0.5)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    reports = []
    with contextlib.suppress(queue.Empty):  # a thread killed with its process never reports
        while len(reports) < 16:
            reports.append(q.get(timeout=5))
    assert sorted(reports) == [("main", False)] * 8 + [("thread", False)] * 8


def test_a_process_started_inside_a_worker_runs_and_reports_its_exit_code(ctx):
    # The worker's session queues the call and its record in one step and asks
    # the client for capacity (the run's grow list); the client starts the slot.
    p = ctx.Process(target=helpers.exit_with_a_grandchilds_code, args=(7,))
    p.start()
    p.join(90)
    assert p.exitcode == 7


def test_process_children_inherit_the_process_api_from_their_idle_slot(ctx):
    # A slot imports faasmp's shared-object modules once, when it is idle
    # with nothing queued; a Process forked from it afterwards does not
    # import them again (~2 ms of its start with one RawArray argument).
    from faasmp.runtime.worker import _PROCESS_API

    first = ctx.Process(target=helpers.noop)
    first.start()
    first.join(30)  # its slot is idle again, with an empty work queue, before the next start
    time.sleep(0.2)
    proc = ctx.Process(target=helpers.exit_unless_imported, args=(list(_PROCESS_API),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0, "a Process child imported faasmp's shared-object modules itself"


def test_the_pdeathsig_hook_resolves_prctl_without_running_the_loader_cache(monkeypatch):
    # ctypes.util.find_library runs ldconfig in a subprocess (~1.8 ms), which
    # every Process child, slot and server start paid.
    import ctypes.util

    from faasmp.backends import server

    def no_find_library(name: str) -> None:
        raise AssertionError(f"find_library({name!r}) was called")

    monkeypatch.setattr(ctypes.util, "find_library", no_find_library)
    monkeypatch.setattr(server, "_PRCTL", [])
    preexec = server._pdeathsig_preexec()
    assert callable(preexec)
