"""Large payloads on their way out: copied once at most, into the message that carries them.

A 1 MiB Pool argument used to be copied four times in the client, each time
into fresh memory: its pickle, the task message's pickle around it, the
signed message, and redis-py's hiredis packer joining the command.  Its
pickle now keeps large buffers as parts (``call.PickleParts``), the message
carries them after the record (``call.dumps_payload_message``), and the
client's connections use the lean packer, which hands large arguments on as
they are.  A worker's large result takes the same way back; in host mode
both go through host files instead (``bulk.stash_payload``).  ``call.dumps``
and a bounded queue's large put use the parts too.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import tracemalloc
from typing import Any

import numpy as np
import pytest
import redis

from faasmp.backends import host_memory as hostmem
from faasmp.runtime import call
from faasmp.runtime import protocol as msgs
from faasmp.runtime.call import AuthenticationError
from tests import helpers
from tests.conftest import skip_if_isolated

MIB = 1 << 20
KEY = os.urandom(32)


def _task(chunk: object) -> functools.partial[msgs.PoolTask]:
    return functools.partial(msgs.PoolTask, 3, 7, b"fn", msgs.TaskMode.MAP)


def test_a_large_payload_travels_after_the_record_and_comes_back_as_a_view() -> None:
    big = os.urandom(MIB)
    parts = call.pickle_plain_parts([(big,)])
    assert parts is not None and any(p is big for p in parts), "the large bytes were copied into the pickle"
    blob = call.dumps_payload_message(_task(None), parts, KEY)
    assert blob[32:33] == b"\x00"  # a split message
    task = call.loads(blob, KEY)
    assert isinstance(task, msgs.PoolTask) and (task.job, task.index, task.fn_key) == (3, 7, b"fn")
    assert type(task.chunk) is memoryview
    assert pickle.loads(task.chunk) == [(big,)]


def test_a_small_payload_is_an_ordinary_message() -> None:
    parts = call.pickle_plain_parts([(1, "a")])
    assert parts is not None and len(parts) == 1
    blob = call.dumps_payload_message(_task(None), parts, KEY)
    assert blob[32:34] == b"\x80\x05"  # the record's own pickle
    task = call.loads(blob, KEY)
    assert type(task.chunk) is bytes and pickle.loads(task.chunk) == [(1, "a")]


def test_numpy_arrays_are_parts_in_either_memory_order() -> None:
    c = np.arange(MIB // 8, dtype=np.float64)
    f = np.asfortranarray(np.arange(MIB // 8, dtype=np.int64).reshape(256, -1))
    parts = call.pickle_value_parts((c, f))
    assert sum(type(p) is memoryview for p in parts) >= 1, "no buffer was kept uncopied"
    done = call.dumps_payload_message(functools.partial(msgs.TaskDone, 1, 2, True, timing=None), parts, KEY)
    msg = call.loads(done, KEY)
    got_c, got_f = pickle.loads(msg.value)
    assert np.array_equal(got_c, c) and np.array_equal(got_f, f) and got_f.flags.f_contiguous


def test_a_split_message_is_authenticated_like_any_other() -> None:
    blob = bytearray(call.dumps_payload_message(_task(None), call.pickle_plain_parts([os.urandom(MIB)]), KEY))
    blob[-5] ^= 1  # a byte of the payload
    with pytest.raises(AuthenticationError):
        call.loads(bytes(blob), KEY)
    with pytest.raises(AuthenticationError):
        call.loads(call.dumps_payload_message(_task(None), [b"x" * 10, b"y" * 10], KEY), os.urandom(32))


def test_a_split_message_of_a_record_without_a_payload_field_is_refused() -> None:
    header = pickle.dumps(msgs.SENTINEL, pickle.HIGHEST_PROTOCOL)
    body = b"\x00" + len(header).to_bytes(4, "little") + header + b"tail"
    with pytest.raises(pickle.UnpicklingError, match="no payload field"):
        call.loads(call.signer(KEY).sign(body), KEY)


def _identity(x: object) -> object:
    return x


@pytest.mark.parametrize("size", [MIB, 3 * MIB + 5])
def test_large_arguments_and_results_round_trip(ctx, size: int) -> None:
    data = os.urandom(size)
    arr = np.frombuffer(os.urandom(size - size % 8), dtype=np.int64).reshape(-1, 2)
    with ctx.Pool(2) as pool:
        assert pool.map(_identity, [data, bytearray(data)], chunksize=1) == [data, bytearray(data)]
        got = pool.apply(_identity, (np.asfortranarray(arr),))
        assert np.array_equal(got, arr) and got.flags.f_contiguous
        assert pool.apply(len, (data,)) == size


def _submission_peak(ctx, arg: Any) -> int:
    """tracemalloc's peak while a ``Pool(1)`` of *ctx* takes ``len(arg)`` as a task (through Redis)."""
    with ctx.Pool(1) as pool:
        pool.apply(len, (b"warm",))
        tracemalloc.start()
        try:
            result = pool.apply_async(len, (arg,))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.get(60) == len(arg)
    return peak


def test_a_large_task_argument_is_copied_once_on_its_way_out(dsm_ctx) -> None:
    """A 4 MiB numpy argument (a mutable buffer: the signed message is its snapshot for a retry)."""
    arr = np.arange(MIB // 2, dtype=np.float64)
    peak = _submission_peak(dsm_ctx, arr)
    # One copy: the signed message.  Before: four.
    assert peak < 2 * arr.nbytes, f"submitting a {arr.nbytes:,}-byte array allocated {peak:,} bytes"


def test_the_clients_pooled_connections_hand_large_arguments_on_uncopied(ctx) -> None:
    """redis-py's hiredis packer joined every command into one new buffer (a copy of each argument)."""
    state = ctx.session.state
    key = ctx.session.keys.k("test", os.urandom(4).hex())
    # Large against what other threads of the test process allocate meanwhile (<1 MB).
    data = os.urandom(16 * MIB)
    try:
        state.rpush(key, b"warm")
        tracemalloc.start()
        try:
            pipe = state.pipeline()
            pipe.rpush(key, data)
            pipe.execute()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < len(data) // 4, f"a {len(data):,}-byte RPUSH allocated {peak:,} bytes"
        assert state.lindex(key, 1) == data
        # Commands whose name is two words go out as two arguments, as redis-py's packers send them.
        assert state._r.script_load("return 1") == state._r.script_load(
            "return 1"
        )  # test-only: redis-py's client
    finally:
        state.delete(key)


def _net_in(ctx) -> int:
    """Bytes the server has read from all clients (a separate connection's INFO)."""
    return int(redis.Redis.from_url(ctx.session.url).info("stats")["total_net_input_bytes"])


def _message_files(ctx) -> set[str]:
    host = ctx.session.host_memory
    return {n for n in os.listdir(host.path) if n.startswith(hostmem.MESSAGE_PREFIX)} if host else set()


def test_in_host_mode_large_arguments_and_results_go_through_host_files(shm_ctx) -> None:
    """Host mode: Redis carries the task and result messages, not their MiBs; no file is left after."""
    items = [os.urandom(MIB) for _ in range(4)]
    with shm_ctx.Pool(2) as pool:
        pool.map(_identity, [b"warm"] * 2)
        before = _net_in(shm_ctx)
        assert pool.map(_identity, items, chunksize=1) == items
        received = _net_in(shm_ctx) - before
    if shm_ctx.session.host_memory is None:  # the DSM: through Redis, both ways
        assert received >= 8 * MIB
    else:
        assert received < MIB // 2, f"Redis received {received:,} bytes for 8 MiB of arguments and results"
    assert not _message_files(shm_ctx), "host files of tasks or results were left behind"


def test_a_retried_task_reads_its_arguments_file_again(shm_ctx, tmp_path) -> None:
    skip_if_isolated(shm_ctx, "the test marks the first attempt with a file on the client's disk")
    data = os.urandom(2 * MIB)
    with shm_ctx.Pool(2) as pool:
        assert pool.apply(helpers.die_first_time_sized, (str(tmp_path / "marker"), data)) == len(data)
    assert (tmp_path / "marker").exists()
    assert not _message_files(shm_ctx)


def test_a_task_lost_for_good_leaves_no_arguments_file(tmp_path) -> None:
    from faasmp.context import FaasContext
    from faasmp.pool import WorkerLostError
    from tests.conftest import TEST_SETTINGS

    ctx = FaasContext(task_retries=0, **TEST_SETTINGS)
    try:
        with ctx.Pool(1) as p, pytest.raises(WorkerLostError):
            p.apply(helpers.die_first_time_sized, (str(tmp_path / "m"), os.urandom(2 * MIB)))
        assert ctx.session.host_memory is not None, "host shared memory is the localhost default"
        assert not _message_files(ctx), "the arguments file of a task no attempt is left for stayed"
    finally:
        ctx.shutdown()


@pytest.mark.parametrize("how", ["dumps", "dumps_named"])
def test_a_signed_pickle_of_a_large_array_is_one_copy_of_it(how: str) -> None:
    """``call.dumps`` (Process arguments, manager values) pickled into a BytesIO, took
    its value and joined the signature to it: two copies, now one."""
    arr = np.arange(MIB // 2, dtype=np.float64)  # 4 MiB
    dump = call.dumps if how == "dumps" else functools.partial(call.dumps_named, what="an array")
    dump(arr, KEY)
    tracemalloc.start()
    try:
        blob = dump(arr, KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(call.loads(blob, KEY), arr)
    assert peak < 1.5 * arr.nbytes, f"{how} of a {arr.nbytes:,}-byte array allocated {peak:,} bytes"


def test_a_large_put_on_a_bounded_queue_is_not_joined_first(dsm_ctx) -> None:
    """A bounded queue's put joined the signature and the pickle into one new buffer (DSM: through Redis)."""
    q = dsm_ctx.Queue(4)
    data = os.urandom(16 * MIB)  # large against what other threads allocate meanwhile (<1 MB)
    try:
        q.put(b"warm")
        assert q.get(timeout=30) == b"warm"
        tracemalloc.start()
        try:
            q.put(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert q.get(timeout=30) == data
        assert peak < len(data) // 4, f"a bounded put of {len(data):,} bytes allocated {peak:,} bytes"
    finally:
        q.close()


def test_in_host_mode_a_large_process_goes_through_a_host_file(shm_ctx) -> None:
    """A Process with 4 MiB of arguments: Redis carries its call, not the MiBs; its child removes the file."""
    from tests import helpers_ipc

    data = os.urandom(4 * MIB)
    r, w = shm_ctx.Pipe(duplex=False)
    try:
        before = _net_in(shm_ctx)
        p = shm_ctx.Process(target=helpers_ipc.send_len, args=(w, data))
        p.start()
        assert r.poll(60) and r.recv() == len(data)
        p.join(30)
        assert p.exitcode == 0
        received = _net_in(shm_ctx) - before
    finally:
        r.close()
        w.close()
    if shm_ctx.session.host_memory is None:
        assert received >= 4 * MIB
    else:
        assert received < MIB // 2, f"Redis received {received:,} bytes for a 4 MiB Process"
    assert not _message_files(shm_ctx), "the Process' host file was left behind"


def test_a_large_process_cancelled_while_queued_leaves_no_file() -> None:
    from faasmp.context import FaasContext
    from tests.conftest import TEST_SETTINGS

    ctx = FaasContext(max_workers=1, **TEST_SETTINGS)  # one slot: a second Process waits in the queue
    busy = ctx.Process(target=helpers.sleep_forever)
    try:
        busy.start()
        queued = ctx.Process(target=_identity, args=(os.urandom(2 * MIB),))
        queued.start()
        assert ctx.session.host_memory is not None, "host shared memory is the localhost default"
        assert _message_files(ctx), "the queued Process' file is not there"
        queued.terminate()  # still queued behind busy: cancelled, never run
        queued.join(30)
        assert queued.exitcode == -signal.SIGTERM
        assert not _message_files(ctx), "the cancelled Process' file stayed"
    finally:
        busy.kill()
        busy.join(30)
        ctx.shutdown()


def test_a_large_bytes_argument_is_not_copied_at_all_through_redis(dsm_ctx) -> None:
    """A payload of immutable bytes is sent (and kept for a retry) as its parts: no join."""
    size = 16 * MIB  # large against what other threads allocate meanwhile (<1 MB)
    peak = _submission_peak(dsm_ctx, os.urandom(size))
    assert peak < size // 4, f"submitting a {size:,}-byte bytes argument allocated {peak:,} bytes"
