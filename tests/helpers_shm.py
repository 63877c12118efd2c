"""Remote functions for the shared-memory tests (shipped by value)."""

from __future__ import annotations

from typing import Any

import numpy as np

_ARRAY: dict[str, Any] = {}


def fill_view(arr: Any, start: int, stop: int, value: float) -> None:
    """Write *value* into ``arr[start:stop]`` through a numpy view."""
    np.frombuffer(arr)[start:stop] = value


def fill_then_send(arr: Any, conn: Any, start: int, stop: int) -> None:
    """Write a slice through a view of ``get_obj()``, say so on *conn*, then wait to be told to exit."""
    view = np.frombuffer(arr.get_obj())
    view[start:stop] = np.arange(start, stop)
    conn.send("written")
    conn.recv()  # stay alive: the parent must see the data before anyone ends


def fill_at_barrier(arr: Any, barrier: Any, slot: int, out: Any) -> None:
    """Write slot, meet at the barrier, read everyone's slots, report their sum, then wait."""
    view = np.frombuffer(arr)
    view[slot] = slot + 1
    barrier.wait(60)
    out.put(float(view.sum()))
    barrier.wait(60)  # the parent reads before anyone ends


def keep_array(arr: Any) -> None:
    """Pool initializer: keep the shared array for the tasks."""
    _ARRAY["arr"] = arr


def square_into_array(i: int) -> int:
    """Write i*i at index i of the initializer's array through a numpy view."""
    np.frombuffer(_ARRAY["arr"], dtype=np.int64)[i] = i * i
    return i


def write_shm(name: str, i: int) -> int:
    """Attach a SharedMemory by name and write i+1 into its i-th int32 element."""
    from faasmp.shared_memory import SharedMemory  # noqa: PLC0415

    shm = SharedMemory(name)
    np.ndarray((64,), dtype=np.int32, buffer=shm.buf)[i] = i + 1
    del_view_and_close(shm)
    return i


def del_view_and_close(shm: Any) -> None:
    shm.close()


def sort_part(arr: Any, start: int, stop: int) -> None:
    """Sort ``arr[start:stop]`` in place through a numpy view (int32)."""
    view = np.frombuffer(arr, dtype=np.int32)
    view[start:stop].sort()


def write_every_other_byte(arr: Any, parity: int, barrier: Any) -> None:
    """After everyone holds a copy (barrier), write bytes of one parity; sync only at the end."""
    barrier.wait(60)
    view = np.frombuffer(arr, dtype=np.uint8)
    view[parity::2] = 100 + parity


def write_evens_then_wait(arr: Any, event: Any) -> None:
    """Write even bytes, then acquire (wait for the odd writer's release) before ending."""
    view = np.frombuffer(arr, dtype=np.uint8)
    view[0::2] = 100
    if not event.wait(60):
        raise TimeoutError("the odd writer never set the event")


def write_odds_then_set(arr: Any, event: Any) -> None:
    """Write odd bytes and release them with an event."""
    view = np.frombuffer(arr, dtype=np.uint8)
    view[1::2] = 101
    event.set()


def count_in_buffer(wrapper: Any, lock: Any, times: int) -> None:
    """Increment an int32 counter kept in a heap.BufferWrapper under *lock* (CPython's _DummyList)."""
    counter = wrapper.create_memoryview().cast("i")
    for _ in range(times):
        with lock:
            counter[0] += 1


def write_then_drop(payload: list[Any]) -> None:
    """Write through the only reference to a shared array, then drop it before the end."""
    import gc  # noqa: PLC0415

    arr = payload.pop()
    np.frombuffer(arr)[:] = 7.0
    del arr
    gc.collect()


def write_then_wait(arr: Any, index: int, value: int, event: Any) -> None:
    """Write ``arr[index] = value`` through a numpy view, then wait for *event* (an acquire only)."""
    np.frombuffer(arr, dtype=np.int32)[index] = value
    if not event.wait(60):
        raise TimeoutError("the parent never set the event")


def read_int32(arr: Any, index: int) -> int:
    """``arr[index]`` read through a numpy view (int32)."""
    return int(np.frombuffer(arr, dtype=np.int32)[index])


def create_shm(name: str) -> int:
    """Create the SharedMemory *name* here (a worker), write b"made here" into it, close it (no unlink)."""
    from faasmp.shared_memory import SharedMemory  # noqa: PLC0415

    shm = SharedMemory(name, create=True, size=16)
    shm.buf[:9] = b"made here"
    size = shm.size
    shm.close()
    return size
