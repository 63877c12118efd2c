"""faasmp's pickler: cloudpickle, plus what faasmp needs of shipped code whatever cloudpickle does.

cloudpickle pickles functions defined in ``__main__``, a notebook or a shipped
project module *by value*: their code objects travel.  How it rebuilds those
code objects is its own choice, and it has changed under us: since 3.1.3 it
sets ``co_filename`` of every shipped code object to ``"<dynamic-code>"``
(deterministic payloads), which removed the file name and the source lines
from every remote traceback.

:class:`Pickler` therefore reduces code objects itself:

* with :mod:`marshal`, which keeps every field of the code object as the
  compiler made it (file name, line table, nested code objects).  Like
  cloudpickle's own code reduction it needs the same Python minor version on
  both sides, which faasmp's runtimes already require;
* with the source lines of the code (first line to last) attached, so a
  worker that cannot read the file (a notebook cell, a script on the client's
  machine only) still prints them in tracebacks: :func:`_load_code` adds them
  to the worker's :mod:`linecache` when the worker has no copy of the file.

It also refuses, with a :class:`TypeError` that names the object and says
why, objects that would pickle but be useless, or worse, on the other side:
:mod:`multiprocessing.connection`'s OS-level ``Connection`` would travel as a
bare file descriptor number (the receiver then reads an unrelated descriptor
of its own and blocks forever), and a ``Listener`` is a socket of this
process.  The stdlib pickles them only while spawning a child on the same
machine (duplicating the descriptor); faasmp's processes may run on another
machine, so they fail fast, as the stdlib does for other objects it cannot
pickle.
"""

from __future__ import annotations

import io
import linecache
import marshal
import multiprocessing.connection
import os
import pickle
import types
from collections import ChainMap
from typing import Any, NoReturn

import cloudpickle

#: Lines of one shipped code object: (file name, first line number, the lines).
_Source = tuple[str, int, tuple[str, ...]]


def _source_of(code: types.CodeType) -> _Source | None:
    """The lines *code* spans, from this process's linecache (None if it has none)."""
    numbers = [n for _, _, n in code.co_lines() if n is not None]
    if not numbers:
        return None
    first, last = min(code.co_firstlineno, *numbers), max(numbers)
    lines = linecache.getlines(code.co_filename)
    if not lines or last > len(lines):
        return None
    return code.co_filename, first, tuple(lines[first - 1 : last])


def _remember_source(source: _Source) -> None:
    """Put shipped lines into linecache unless this process can read the file itself."""
    filename, first, lines = source
    if linecache.getline(filename, first) or os.path.exists(filename):
        return
    entry: tuple[Any, ...] = linecache.cache.get(filename) or ()
    # Keep lines shipped earlier for other code of the same file (a 4-tuple
    # with mtime None); a lazy 1-tuple entry or a file's own entry is replaced.
    known: list[str] = list(entry[2]) if len(entry) == 4 and entry[1] is None else []
    if len(known) < first - 1 + len(lines):
        known.extend([""] * (first - 1 + len(lines) - len(known)))
    known[first - 1 : first - 1 + len(lines)] = lines
    # mtime None: linecache.checkcache() leaves such entries alone (as it does
    # for IPython's cells), so they survive until the process ends.
    linecache.cache[filename] = (sum(map(len, known)), None, known, filename)


def _load_code(blob: bytes, source: _Source | None) -> types.CodeType:
    """Rebuild a code object reduced by :class:`Pickler` (its source into linecache)."""
    if source is not None:
        _remember_source(source)
    code = marshal.loads(blob)
    if not isinstance(code, types.CodeType):
        raise pickle.UnpicklingError(f"expected a code object, got {type(code).__name__}")
    return code


def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    return _load_code, (marshal.dumps(code), _source_of(code))


_USE_INSTEAD = (
    "faasmp runs processes in serverless functions, possibly on another machine. "
    "Use faasmp's Pipe() or Queue() between processes, or send the listener's "
    "address and call multiprocessing.connection.Client(address) where the "
    "connection is needed"
)


def _refuse_os_connection(conn: multiprocessing.connection.Connection) -> NoReturn:
    fd = getattr(conn, "_handle", None)
    what = "a closed OS-level connection" if fd is None else f"an OS-level connection (file descriptor {fd})"
    raise TypeError(
        f"cannot pickle 'multiprocessing.connection.Connection' object: it is {what} of this "
        f"process (a socket or pipe), which no other process can use. {_USE_INSTEAD}."
    )


def _refuse_listener(listener: multiprocessing.connection.Listener) -> NoReturn:
    try:
        where = f" on {listener.address!r}"
    except Exception:  # noqa: BLE001 - a closed listener has no address; the error says the rest
        where = ""
    raise TypeError(
        f"cannot pickle 'multiprocessing.connection.Listener' object: it listens{where} with "
        f"a socket of this process, which no other process can accept on. {_USE_INSTEAD}."
    )


class Pickler(cloudpickle.Pickler):
    """cloudpickle's Pickler with faasmp's code-object reduction (see the module doc)."""

    dispatch_table = ChainMap(
        {
            types.CodeType: _reduce_code,
            multiprocessing.connection.Connection: _refuse_os_connection,
            multiprocessing.connection.Listener: _refuse_listener,
        },
        cloudpickle.Pickler.dispatch_table,
    )

    def __init__(self, file: io.BytesIO, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        super().__init__(file, protocol=protocol)


def dumps(obj: Any) -> bytes:
    """Pickle *obj* with :class:`Pickler` (the highest protocol)."""
    with io.BytesIO() as file:
        Pickler(file).dump(obj)
        return file.getvalue()


# --- unpickling: a class this process already has keeps its own definition ---
#
# cloudpickle pickles a class it cannot import by reference (one defined in
# ``__main__``, a notebook, a shipped module) by value, with a tracker id.
# When such a class comes back (a worker returns an instance of the client's
# own class), cloudpickle finds the class the id belongs to here, good, but
# then re-applies the shipped state to it: it replaces the methods of the
# client's class with the worker's copies, whose globals are a stale copy of
# the client's module (a later ``G = 2`` in the script is no longer seen by
# ``Box().get()``, and ``Box.get.__globals__ is globals()`` becomes False).
# :class:`_Unpickler` makes the skeleton step note a class that existed
# before this unpickling and the state step leave such a class alone.

_CLOUDPICKLE_MODULES = frozenset({"cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast", "cloudpickle"})
_SKELETONS = frozenset({"_make_skeleton_class", "_make_skeleton_enum"})


class _Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that never rewrites a by-value class this process already has."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self._existing: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if module not in _CLOUDPICKLE_MODULES:
            return found
        if name in _SKELETONS:
            return self._skeleton(found)
        if name == "_class_setstate":
            return self._class_setstate(found)
        return found

    def _skeleton(self, make: Any) -> Any:
        def make_skeleton(*args: Any) -> Any:
            # The tracker id is the second to last argument of both makers.
            # A cloudpickle without this private table falls back to its own
            # behaviour (the class is rewritten) instead of failing every load.
            tracker = getattr(cloudpickle.cloudpickle, "_DYNAMIC_CLASS_TRACKER_BY_ID", {})
            known = args[-2] is not None and args[-2] in tracker
            cls = make(*args)
            if known:
                self._existing.add(id(cls))
            return cls

        return make_skeleton

    def _class_setstate(self, setstate: Any) -> Any:
        def class_setstate(obj: Any, state: Any) -> Any:
            if id(obj) in self._existing:
                return obj  # this process' own class: its definition stays
            return setstate(obj, state)

        return class_setstate


class _Reader:
    """A file over a buffer for :class:`_Unpickler`, without copying it first.

    ``io.BytesIO`` copies a memoryview, and the unpickler's reads through a
    BytesIO made from one cost ~0.8 ms per MiB; this costs ~70 us per MiB
    (``pickle.loads`` alone ~23 us).
    """

    __slots__ = ("_pos", "_view")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        end = len(self._view) if n < 0 else min(start + n, len(self._view))
        self._pos = end
        return bytes(self._view[start:end])

    def readinto(self, buf: Any) -> int:
        start = self._pos
        n = min(len(buf), len(self._view) - start)
        memoryview(buf).cast("B")[:n] = self._view[start : start + n]
        self._pos = start + n
        return n

    def readline(self) -> bytes:  # text opcodes of protocol 0 only
        start = self._pos
        found = bytes(self._view[start:]).find(b"\n")
        end = len(self._view) if found < 0 else start + found + 1
        self._pos = end
        return bytes(self._view[start:end])


def loads(body: bytes | bytearray | memoryview) -> Any:
    """Unpickle *body* (already authenticated); by-value classes this process has stay untouched.

    A class shipped by value that this process already knows (same
    cloudpickle tracker id: it was pickled here, or arrived earlier) resolves
    to that class, whose methods and globals are left as they are.
    """
    tracker = cloudpickle.cloudpickle._DYNAMIC_CLASS_TRACKER_BY_ID  # type: ignore[attr-defined]
    if not tracker:  # no by-value class here: nothing to protect
        return pickle.loads(body)
    # Only a pickle that rebuilds a by-value class needs the checking
    # unpickler (~1 us more per small message than the C unpickler alone): a
    # small one is looked at, a large one (where the scan, ~200 us per MiB,
    # would cost more than the checking unpickler) always takes it.
    if len(body) <= _SCAN_LIMIT and _SKELETON_MARK not in bytes(body):  # a memoryview has no substring test
        return pickle.loads(body)
    return _Unpickler(_Reader(body)).load()


#: The name every by-value class's pickle calls (``_make_skeleton_class``/``_enum``).
_SKELETON_MARK = b"_make_skeleton_"
_SCAN_LIMIT = 16384
