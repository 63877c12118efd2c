"""Make unmodified ``multiprocessing`` code run on faasmp, in-process.

:func:`patch` rebinds the public names of the :mod:`multiprocessing` package
(``Process``, ``Pool``, ``Queue``, ``Lock``, ``Value``, ``Manager``,
``get_context``, ``cpu_count``, ...), of its submodules
(``multiprocessing.pool.Pool``, ...) and
``concurrent.futures.ProcessPoolExecutor`` to faasmp's, so code that looks
them up at call time — ``import multiprocessing`` then
``multiprocessing.Pool(4)``, or ``from multiprocessing import Pool`` after
patching — runs on serverless workers.  :func:`unpatch` restores the
originals; :func:`patched` does both around a block.

Two libraries that bind such names at import time are adjusted while
patched: pandarallel's ``CONTEXT`` and joblib's default backend (``"faasmp"``,
so scikit-learn's ``n_jobs`` runs on faasmp).

Names bound *before* patching (``from multiprocessing import Pool`` executed
earlier) keep the stdlib object: patch first, as ``%%faas`` and
``faasmp run`` do.  ``multiprocessing.connection.Connection`` and the stdlib's
own modules stay importable for libraries (scikit-learn, joblib/loky) that
need real OS pipes.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
from collections.abc import Iterator
from typing import Any

#: (module, attribute) -> the faasmp object that replaces it, resolved lazily.
_TOP_LEVEL = (
    "Process", "Pool", "Pipe", "Queue", "JoinableQueue", "SimpleQueue",
    "Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier",
    "Value", "Array", "RawValue", "RawArray", "Manager",
    "cpu_count", "current_process", "parent_process", "active_children",
    "get_context", "get_start_method", "set_start_method", "get_all_start_methods",
    "set_executable", "set_forkserver_preload", "freeze_support",
)  # fmt: skip
_SUBMODULES = {
    "concurrent.futures": {"ProcessPoolExecutor": ("faasmp.futures", "ProcessPoolExecutor")},
    "concurrent.futures.process": {"ProcessPoolExecutor": ("faasmp.futures", "ProcessPoolExecutor")},
    "multiprocessing.pool": {"Pool": ("faasmp.pool", "Pool")},
    "multiprocessing.sharedctypes": {
        name: ("faasmp.sharedctypes", name)
        for name in ("Value", "Array", "RawValue", "RawArray", "copy", "synchronized")
    },
    "multiprocessing.managers": {
        "BaseManager": ("faasmp.managers", "BaseManager"),
        "SyncManager": ("faasmp.managers", "SyncManager"),
        "SharedMemoryManager": ("faasmp.managers", "SharedMemoryManager"),
    },
    "multiprocessing.heap": {"BufferWrapper": ("faasmp.sharedctypes", "BufferWrapper")},
    "multiprocessing.shared_memory": {
        "SharedMemory": ("faasmp.shared_memory", "SharedMemory"),
        "ShareableList": ("faasmp.shared_memory", "ShareableList"),
    },
    "multiprocessing.process": {
        "current_process": ("faasmp.process", "current_process"),
        "parent_process": ("faasmp.process", "parent_process"),
        "active_children": ("faasmp.process", "active_children"),
    },
}

#: Libraries that bind a multiprocessing object at import time: (module,
#: attribute, replacement) applied while patched if the module is imported.
#: pandarallel keeps ``CONTEXT = multiprocessing.get_context("fork")``; joblib's
#: default backend (loky) starts local processes, so ``faasmp`` becomes the
#: default and scikit-learn's ``n_jobs`` work runs on faasmp.
_LIBRARY_HOOKS: tuple[tuple[str, str, Any], ...] = (
    ("pandarallel.core", "CONTEXT", lambda: _faasmp_attr("get_context")("fork")),
    ("joblib.parallel", "DEFAULT_BACKEND", lambda: "faasmp"),
)

_lock = threading.RLock()


def _faasmp_attr(name: str) -> Any:
    import faasmp  # noqa: PLC0415

    return getattr(faasmp, name)


_saved: list[tuple[Any, str, Any]] = []


def is_patched() -> bool:
    """True between :func:`patch` and :func:`unpatch`."""
    return bool(_saved)


def _replacements() -> list[tuple[Any, str, Any]]:
    import multiprocessing  # noqa: PLC0415

    import faasmp  # noqa: PLC0415

    out: list[tuple[Any, str, Any]] = []
    for name in _TOP_LEVEL:
        out.append((multiprocessing, name, getattr(faasmp, name)))
    for modname, names in _SUBMODULES.items():
        module = importlib.import_module(modname)
        for attr, (src_mod, src_attr) in names.items():
            out.append((module, attr, getattr(importlib.import_module(src_mod), src_attr)))
    for modname, attr, make in _LIBRARY_HOOKS:
        lib = sys.modules.get(modname)
        if lib is not None and hasattr(lib, attr):
            out.append((lib, attr, make()))
    return out


def patch() -> None:
    """Route the ``multiprocessing`` API to faasmp (idempotent).

    Also registers the ``"faasmp"`` joblib backend when joblib is installed.
    """
    with _lock:
        if _saved:
            return
        if importlib.util.find_spec("joblib") is not None:
            importlib.import_module("faasmp.joblib")
        for module, attr, new in _replacements():
            _saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, new)


def unpatch() -> None:
    """Restore the stdlib's ``multiprocessing`` (idempotent)."""
    with _lock:
        while _saved:
            module, attr, old = _saved.pop()
            setattr(module, attr, old)


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """``with faasmp.patched(): ...`` runs the block with multiprocessing on faasmp.

    Nested use is allowed; only the outermost block unpatches.
    """
    with _lock:
        outer = not _saved
        patch()
    try:
        yield
    finally:
        if outer:
            unpatch()
