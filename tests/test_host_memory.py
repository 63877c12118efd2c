"""Host shared memory: segments as files in /dev/shm when every process is on the client's host.

The localhost default (``FAASMP_SHARED_MEMORY=auto``) maps each segment's
file in every process, as the stdlib does; Redis keeps only which segments
exist.  Each test names the mechanism it depends on; the behaviour tests of
tests/test_shared_memory.py and tests/test_sharedctypes.py run in this mode
too.
"""

from __future__ import annotations

import gc
import os
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from faasmp import config as config_mod
from faasmp import sharedctypes
from faasmp.backends import host_memory
from faasmp.context import FaasContext
from faasmp.runtime import dsm
from faasmp.shared_memory import SharedMemory
from tests import helpers_shm
from tests.conftest import TEST_SETTINGS, skip_if_isolated


def _host_ctx(ctx: FaasContext) -> FaasContext:
    skip_if_isolated(ctx, "isolated workers have a /dev/shm of their own: auto is the DSM")
    assert ctx.session.host_memory is not None, "the localhost default should be host shared memory"
    return ctx


def test_a_childs_write_through_a_numpy_view_is_seen_by_the_parent_with_no_synchronisation(ctx):
    """Mechanism: one mapping of one file in every process (under the DSM the write waits for a release)."""
    ctx = _host_ctx(ctx)
    arr = ctx.RawArray("i", 16)
    view = np.frombuffer(arr, dtype=np.int32)
    event = ctx.Event()
    p = ctx.Process(target=helpers_shm.write_then_wait, args=(arr, 5, 42, event))
    p.start()
    try:
        # The child writes, then only acquires (Event.wait): nothing is released
        # until the parent sets the event.  Poll the view, touching nothing else.
        deadline = time.monotonic() + 60
        while view[5] != 42 and time.monotonic() < deadline:
            time.sleep(0.005)
        seen = int(view[5])
    finally:
        event.set()
        p.join(60)
    assert p.exitcode == 0
    assert seen == 42, "the child's write never reached the parent's view without a synchronisation"


def test_a_host_segment_keeps_no_bytes_in_redis_and_syncs_push_and_pull_nothing(ctx):
    """Mechanism: the bytes live in the file; Redis holds only the segment's record."""
    ctx = _host_ctx(ctx)
    size = 1 << 20
    arr = ctx.RawArray("B", size)
    view = np.frombuffer(arr, dtype=np.uint8)
    view[:] = 7
    seg = sharedctypes.segment_of(arr)
    r = ctx.session.state._r  # the test inspects Redis directly
    assert r.memory_usage(seg.key) < 1024, "the segment's bytes are in Redis"
    assert isinstance(seg, dsm.HostSegment)
    pushes, pulls = dsm.REGISTRY.pushes, dsm.REGISTRY.pulls
    lock = ctx.Lock()
    with lock:  # a release and an acquire
        view[:100] = 9
    p = ctx.Process(target=helpers_shm.fill_view, args=(arr, 0, 8, 0.0))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert (dsm.REGISTRY.pushes, dsm.REGISTRY.pulls) == (pushes, pulls)
    assert bytes(view[:64]) == bytes(64) and view[64:100].tolist() == [9] * 36
    assert sorted(r.scan_iter(match=f"{seg.key}*")) == [seg.key.encode()]
    assert r.get(seg.key).startswith(b"host ") and r.memory_usage(seg.key) < 1024
    assert os.stat(seg.path).st_size == size


def test_a_segments_file_goes_with_its_keys_and_the_runs_directory_with_the_session():
    """Mechanism: the owner's release and unlink() remove the file; the session's end the directory."""
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        run = ctx.session.host_memory
        assert run is not None
        st = os.lstat(run.path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
        arr = ctx.RawArray("d", 1000)
        seg = sharedctypes.segment_of(arr)
        path, key = seg.path, seg.key
        assert os.path.dirname(path) == run.path and os.stat(path).st_size == 8000
        r = ctx.session.state._r
        del arr, seg
        gc.collect()
        assert not os.path.exists(path) and not r.exists(key)
        shm = SharedMemory(create=True, size=4096, ctx=ctx)
        shm_path = shm._seg.path
        shm.close()
        assert os.path.exists(shm_path), "close() must not delete the block"
        assert SharedMemory(shm.name, ctx=ctx).size == 4096
        shm.unlink()
        assert not os.path.exists(shm_path)
        with pytest.raises(FileNotFoundError):
            SharedMemory(shm.name, ctx=ctx)
        kept = SharedMemory(create=True, size=10, ctx=ctx)  # lives until the run ends
        assert os.path.exists(kept._seg.path)
    finally:
        ctx.shutdown()
    assert not os.path.exists(run.path)


def test_directories_of_dead_runs_are_removed_at_the_next_session_start():
    """Mechanism: a new session removes run directories whose creator (pid + start time) is gone."""
    parent = host_memory.user_dir()
    gone = subprocess.Popen(["sleep", "60"])
    started = host_memory._start_time(gone.pid)
    gone.kill()
    gone.wait(10)
    dead = os.path.join(parent, f"0deadrun0000.{gone.pid}.{started or '1'}")
    live = os.path.join(parent, f"0liverun0000.{os.getpid()}.{host_memory._start_time(os.getpid()) or '0'}")
    for path in (dead, live):
        os.mkdir(path, 0o700)
    with open(os.path.join(dead, "segment"), "wb") as fh:
        fh.write(b"left by a killed client")
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        assert ctx.session.host_memory is not None
        assert not os.path.exists(dead), "the dead run's directory was not removed"
        assert os.path.isdir(live), "a live run's directory was removed"
    finally:
        ctx.shutdown()
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


def test_the_dsm_switch_keeps_segments_in_redis_and_makes_no_file(monkeypatch):
    """``FAASMP_SHARED_MEMORY=dsm``: the DSM's path, no directory and no file."""
    monkeypatch.setenv("FAASMP_SHARED_MEMORY", "dsm")
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        assert ctx.config.shared_memory_mode() == "dsm" and ctx.session.host_memory is None
        arr = ctx.RawArray("B", 4096)
        seg = sharedctypes.segment_of(arr)
        assert isinstance(seg, dsm.Segment)
        r = ctx.session.state._r
        assert r.strlen(seg.key) == 4096 and r.exists(f"{seg.key}:v")
        run_id = ctx.session.run_id
        assert not [name for name in os.listdir(host_memory.user_dir()) if name.startswith(run_id)]
    finally:
        ctx.shutdown()


def test_auto_is_host_only_when_every_process_is_certain_to_be_on_this_host():
    cfg = config_mod.Config
    assert cfg().shared_memory_mode() == "host"
    assert cfg(lithops_config={"localhost": {"runtime": sys.executable}}).shared_memory_mode() == "host"
    assert cfg(lithops_config={"localhost": {"runtime": "python:3.12-slim"}}).shared_memory_mode() == "dsm"
    assert cfg(lithops_config={"localhost": {"runtime": "/no/such/python"}}).shared_memory_mode() == "dsm"
    assert cfg(isolate=True).shared_memory_mode() == "dsm"
    assert cfg(lithops_config={"lithops": {"backend": "aws_lambda"}}).shared_memory_mode() == "dsm"
    assert cfg(backend="aws_lambda").shared_memory_mode() == "dsm"
    assert cfg(backend="aws_lambda", shared_memory="host").shared_memory_mode() == "host"
    assert cfg(shared_memory="dsm").shared_memory_mode() == "dsm"
    assert config_mod.load(environ={"FAASMP_SHARED_MEMORY": "dsm"}).shared_memory_mode() == "dsm"
    with pytest.raises(ValueError, match=r"'shared_memory'.*auto, host, dsm.*'mmap'"):
        config_mod.load(environ={"FAASMP_SHARED_MEMORY": "mmap"})


def test_a_process_on_another_host_gets_an_error_naming_the_segment_and_the_switch_fake_host_id():
    """Mechanism: a process compares the run's host id with its own before it maps a file.

    The fault is injected: the workers are told the run lives on a host
    with another boot id (as a worker on another machine would see it).
    """
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        arr = ctx.RawArray("i", 8)
        name = sharedctypes.segment_of(arr).handle._oid
        session = ctx.session
        run = session.host_memory
        session.host_memory = host_memory.HostIdentity("another-host", run.path, run.dev, run.ino)
        with ctx.Pool(1) as pool:
            # Raised where the task's arguments are unpickled (the attach), so
            # it arrives as the task's UnpicklingError naming it.
            with pytest.raises(Exception, match="HostMemoryError") as info:
                pool.apply(helpers_shm.read_int32, (arr, 0))
    finally:
        ctx.shutdown()
    message = str(info.value)
    assert name in message and "'host'" in message and "FAASMP_SHARED_MEMORY=dsm" in message
    assert "another-host" in message


def test_a_segment_larger_than_dev_shm_fails_at_creation_not_at_a_write(ctx):
    """Mechanism: the pages are reserved at creation (posix_fallocate): no SIGBUS later."""
    ctx = _host_ctx(ctx)
    run = ctx.session.host_memory
    too_big = shutil.disk_usage(run.path).total + (1 << 30)
    before = set(os.listdir(run.path))
    with pytest.raises(OSError, match=r"cannot reserve .* FAASMP_SHARED_MEMORY=dsm"):
        SharedMemory("faasmp_too_big", create=True, size=too_big, ctx=ctx)
    assert set(os.listdir(run.path)) == before
    with pytest.raises(FileNotFoundError):
        SharedMemory("faasmp_too_big", ctx=ctx)


@pytest.mark.isolated
def test_host_shared_memory_forced_on_isolated_workers_fails_loudly_in_the_sandbox(isolated_redis):
    """Mechanism: the same-host check, with a real misconfiguration (sandboxes have their own /dev/shm)."""
    ctx = FaasContext(**isolated_redis.settings(), **TEST_SETTINGS, shared_memory="host")
    try:
        assert ctx.config.shared_memory_mode() == "host"
        arr = ctx.RawArray("i", 8)
        name = sharedctypes.segment_of(arr).handle._oid
        with ctx.Pool(1) as pool:
            with pytest.raises(Exception, match="HostMemoryError") as info:
                pool.apply(helpers_shm.read_int32, (arr, 0))
    finally:
        ctx.shutdown()
    message = str(info.value)
    assert name in message and "cannot be opened here" in message and "FAASMP_SHARED_MEMORY=dsm" in message
