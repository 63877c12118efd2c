"""A cold worker imports and defines only what its first task needs.

Every Lithops invocation is a fresh interpreter that imports faasmp's worker
entry (``faasmp.runtime.worker``) before it can take its first task, so the
cost of that import is paid on every cold Process and every cold Pool.  Two
things are kept out of it:

* numpy (~36 ms to import): only a process that really holds shared memory
  diffs it with numpy, and imports it then;
* generated code: a frozen dataclass costs ~0.45 ms to define (its methods are
  compiled at class creation).  The protocol's 18 messages are plain slotted
  records instead; the number of dataclasses the import defines is recorded
  below and may only go down.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from faasmp.runtime import protocol as msgs
from tests.helpers_shm import fill_view

_ROOT = Path(__file__).resolve().parents[1]

#: Dataclasses defined by ``import faasmp.runtime.worker`` (2026-12-04: 27, the
#: package's own API with faasmp.stats' records included; 45 while the
#: protocol's messages were dataclasses).  Lower it when it drops.
WORKER_IMPORT_DATACLASSES = 27

_PROBE = """
import dataclasses, json, sys
import faasmp.runtime.worker  # what a Lithops invocation imports to run host_main
defined = sorted(
    f"{name}.{attr}"
    for name, module in list(sys.modules.items())
    if name.startswith("faasmp")
    for attr, value in vars(module).items()
    if isinstance(value, type) and value.__module__ == name and dataclasses.is_dataclass(value)
)
print(json.dumps({"numpy": "numpy" in sys.modules, "dataclasses": defined}))
"""


@pytest.fixture(scope="module")
def worker_import() -> dict[str, Any]:
    """What a fresh interpreter holds after importing the worker entry (this tree's faasmp)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"importing faasmp.runtime.worker failed:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(90)
def test_the_worker_entry_does_not_import_numpy(worker_import: dict[str, Any]) -> None:
    assert not worker_import["numpy"], "importing faasmp.runtime.worker imported numpy"


@pytest.mark.timeout(90)
def test_the_worker_entry_defines_no_more_dataclasses_than_recorded(worker_import: dict[str, Any]) -> None:
    defined = worker_import["dataclasses"]
    assert len(defined) <= WORKER_IMPORT_DATACLASSES, (
        f"importing faasmp.runtime.worker defines {len(defined)} dataclasses "
        f"(recorded {WORKER_IMPORT_DATACLASSES}; each costs every cold worker ~0.45 ms): {defined}"
    )


def test_protocol_messages_keep_the_frozen_dataclass_behaviour() -> None:
    timing = msgs.TaskTiming(1.0, 2.0, 3.0, 4096, 0.5, "h:1", False)
    done = msgs.TaskDone(7, 3, True, b"value", timing)
    # Equality and hashing by class and fields, as a frozen dataclass'.
    again = msgs.TaskDone(7, 3, True, b"value", msgs.TaskTiming(1.0, 2.0, 3.0, 4096, 0.5, "h:1", False))
    assert done == again and hash(done) == hash(again)
    assert done != msgs.TaskDone(7, 4, True, b"value", timing)
    assert msgs.WorkerExited("s", "r") != msgs.KillBusy("s", "r")  # same fields, another class
    assert repr(msgs.KillBusy("s1", "p1")) == "KillBusy(slot='s1', pool_id='p1')"
    # Frozen, with no instance dict to write around it.
    with pytest.raises(dataclasses.FrozenInstanceError, match="'job'"):
        done.job = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del done.ok  # type: ignore[misc]
    assert not hasattr(done, "__dict__")
    # Keyword arguments and defaults.
    serving = msgs.ServingPool("p", 1, 2, delivering=True)
    assert (serving.job, serving.index, serving.delivering, serving.busy) == (1, 2, True, False)
    assert msgs.ServingPool("p") == msgs.ServingPool(pool_id="p", job=None, index=None, delivering=False)
    # Pickle (generic and the hot messages' own reductions) and match patterns.
    for message in (
        done,
        msgs.TaskDone(1, 0, False, b"", None),
        serving,
        msgs.PoolTask(1, 0, b"k", msgs.TaskMode.STARMAP, b"c"),
        msgs.PoolLease("p", None, 2, 1, "PoolWorker-1"),
        msgs.SENTINEL,
        msgs.HostRegistered("h", 1.5, 2.5),
    ):
        assert pickle.loads(pickle.dumps(message, pickle.HIGHEST_PROTOCOL)) == message
    match msgs.KillBusy("s1", "p1"):
        case msgs.KillBusy(slot, pool_id="p1"):
            assert slot == "s1"
        case _:
            pytest.fail("KillBusy did not match its positional pattern")


@pytest.mark.timeout(120)
def test_a_process_given_a_raw_array_still_writes_it_through_numpy(default_ctx: Any) -> None:
    # numpy is imported where shared memory is diffed (and here by the target's module).
    arr = default_ctx.RawArray("d", 64)
    p = default_ctx.Process(target=fill_view, args=(arr, 8, 24, 2.5))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert arr[:] == [0.0] * 8 + [2.5] * 16 + [0.0] * 40


def test_every_public_name_still_resolves_from_the_package() -> None:
    import faasmp  # noqa: PLC0415

    missing = [name for name in faasmp.__all__ if not hasattr(faasmp, name)]
    assert missing == [], f"faasmp.__all__ names {missing}, which the package does not resolve"
    assert faasmp.Pool == faasmp.get_context().Pool  # bound to the default context, as in CPython
    assert callable(faasmp.patch) and faasmp.Process.__module__ == "faasmp.process"
    with pytest.raises(AttributeError, match="no attribute 'Poool'"):
        faasmp.Poool  # noqa: B018
