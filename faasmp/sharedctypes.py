"""``faasmp.sharedctypes``: ctypes objects in distributed shared memory.

Same names and signatures as :mod:`multiprocessing.sharedctypes`
(``RawValue``, ``RawArray``, ``Value``, ``Array``, ``copy``, ``synchronized``),
with array typecodes (``'i'``, ``'d'``, ``'c'``, ...) or ctypes types (simple
types and ``ctypes.Structure``/``Union`` subclasses).

``RawValue``/``RawArray`` return **real ctypes objects** (instances of a
subclass of the requested ctypes type) over a local buffer of the process, so
``np.frombuffer``, ``np.ctypeslib.as_array``, ``memoryview``, indexing and
``isinstance(x, ctypes.Array)`` all work at local speed.  Pickling one (as a
Process or Pool argument, through a Queue or Pipe) sends only its name: the
receiving process attaches its own local copy of the same segment.

The copies are kept coherent by :mod:`faasmp.runtime.dsm` at synchronisation
points (release consistency): a write made before a release (lock release,
``Event.set``, ``Barrier.wait``, ``send``/``put``, the end of a process or
task, ``Process.start``, task submission) is visible to every process after
the matching acquire (lock acquire, ``Event.wait``, ``Barrier.wait``,
``recv``/``get``, the start of a child or task, ``join``, a task's result).
Only the bytes that changed travel.  ``Value``/``Array`` (``lock=True``)
wrap the object with a faasmp ``RLock`` like the stdlib's ``Synchronized``
wrappers, so every ``.value``/item access through the wrapper is a
synchronisation point and sees the newest value.

Differences from the stdlib, all forced by the memory not being one piece of
RAM:

* A write through a raw object (``RawArray``, ``get_obj()``, a numpy view)
  reaches other processes at this process's next release, and they see it
  after their next acquire.  A program that reads shared data without any
  synchronisation (a data race) may see an old value for as long as it does
  not synchronise; on the stdlib it would usually, though not by guarantee,
  see the new one.
* Writes refresh the data's TTL (``key_ttl``); the creating process deletes
  the data when its object is garbage collected (other processes keep their
  local copy, but their later writes are no longer shared).
* Pointer types (``c_char_p``, ``c_void_p``, ``POINTER(...)``) are refused:
  an address means nothing in another process.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .runtime import dsm
from .runtime.shared import context_or_default
from .synchronize import SemLock

if TYPE_CHECKING:
    from .context import FaasContext

__all__ = ["Array", "RawArray", "RawValue", "Value", "copy", "synchronized"]

typecode_to_type: dict[str, type] = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}

_POINTER_TYPES = (ctypes.c_char_p, ctypes.c_wchar_p, ctypes.c_void_p)

# --- ctypes types ------------------------------------------------------------------


def _resolve_type(typecode_or_type: Any) -> type:
    """The ctypes type for a typecode or ctypes type; TypeError like the stdlib otherwise."""
    try:
        tp = typecode_to_type.get(typecode_or_type, typecode_or_type)
    except TypeError:  # unhashable
        tp = typecode_or_type
    try:
        ctypes.sizeof(tp)
    except TypeError:
        raise TypeError(
            f"{typecode_or_type!r} is neither an array typecode ({''.join(typecode_to_type)}) "
            "nor a ctypes type: this type has no size"
        ) from None
    if isinstance(tp, type) and (issubclass(tp, ctypes._Pointer) or tp in _POINTER_TYPES):
        raise TypeError(f"{tp.__name__} is a pointer type: an address cannot be shared with other processes")
    return tp  # type: ignore[no-any-return]


def _type_spec(tp: Any) -> Any:
    """A picklable description of a ctypes type.

    Simple types pickle by reference; Structures and Unions are described by
    their fields (cloudpickle cannot pickle them by value), so a Structure
    defined in a notebook or script still works in a worker.
    """
    if issubclass(tp, (ctypes.Structure, ctypes.Union)):
        fields = tuple((f[0], _type_spec(f[1]), *f[2:]) for f in tp._fields_)  # type: ignore[misc]
        kind = "struct" if issubclass(tp, ctypes.Structure) else "union"
        return (kind, tp.__module__, tp.__qualname__, fields, getattr(tp, "_pack_", 0))
    if issubclass(tp, ctypes.Array):
        return ("array", _type_spec(tp._type_), tp._length_)
    return ("simple", tp)


@functools.lru_cache(maxsize=256)
def _build_type(spec: Any) -> type:
    """The type described by :func:`_type_spec` (the importable original if it matches)."""
    kind = spec[0]
    if kind == "simple":
        return spec[1]  # type: ignore[no-any-return]
    if kind == "array":
        return _build_type(spec[1]) * spec[2]  # type: ignore[no-any-return,operator]
    _, module, qualname, fields, pack = spec
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        if (
            isinstance(found, type)
            and issubclass(found, (ctypes.Structure, ctypes.Union))
            and _type_spec(found) == spec
        ):
            return found
    except Exception:  # noqa: BLE001 - not importable here: rebuild from the description
        pass
    real_fields = [(f[0], _build_type(f[1]), *f[2:]) for f in fields]
    base = ctypes.Structure if kind == "struct" else ctypes.Union
    attrs: dict[str, Any] = {"_fields_": real_fields, "__module__": module, "__qualname__": qualname}
    if pack:
        attrs["_pack_"] = pack
    return type(qualname.rsplit(".", 1)[-1], (base,), attrs)


def _as_bytes(obj: Any) -> bytes:
    return bytes(memoryview(obj).cast("B"))


# --- raw shared objects -------------------------------------------------------------

_SEGMENT = "_faasmp_segment"


def _simple_repr(self: Any) -> str:
    return f"{type(self).__mro__[1].__name__}({self.value!r})"


@functools.lru_cache(maxsize=512)
def _shared_class(tp: type) -> type:
    """The subclass of ctypes type *tp* whose instances live in a shared segment.

    It differs from *tp* only in pickling (the segment's name travels, not the
    bytes) and, for simple types, in ``repr`` (which ctypes would make
    ``<... object at 0x...>`` for a subclass).
    """
    attrs: dict[str, Any] = {
        "__reduce__": _reduce,
        "__module__": tp.__module__,
        "__qualname__": tp.__qualname__,
    }
    if issubclass(tp, ctypes._SimpleCData):
        attrs["__repr__"] = _simple_repr
    return type(tp.__name__, (tp,), attrs)


def _instance(tp: type, seg: dsm.AnySegment) -> Any:
    obj = _shared_class(tp).from_buffer(seg.mem)  # type: ignore[attr-defined]
    obj.__dict__[_SEGMENT] = seg  # keeps the segment (and its sync) alive with the object
    # Whoever collects the shared objects an object consists of (a Manager
    # deleting its objects at shutdown) finds the segment's keys here.
    obj.__dict__["_faasmp_handle"] = seg.handle
    return obj


def _reduce(self: Any) -> Any:
    seg: dsm.AnySegment = self.__dict__[_SEGMENT]
    return (_attach, (_type_spec(type(self).__mro__[1]), seg.handle))


def _set_grain(seg: dsm.AnySegment | None, tp: Any) -> None:
    """Ship an array of simple elements (int32, double, ...) in whole elements."""
    if seg is not None and issubclass(tp, ctypes.Array) and issubclass(tp._type_, ctypes._SimpleCData):
        seg.grain = ctypes.sizeof(tp._type_)


def _attach(spec: Any, handle: dsm.SegmentHandle) -> Any:
    """Rebuild a pickled shared ctypes object over this process's copy of its segment."""
    seg = dsm.REGISTRY.attach(handle)
    if seg is None:
        raise RuntimeError(
            f"faasmp shared memory {handle._oid}: its data is gone — released by the process "
            "that created it (garbage collected or the run shut down), or unused for longer than key_ttl"
        )
    tp = _build_type(spec)
    _set_grain(seg, tp)
    return _instance(tp, seg)


def _share(local: Any, ctx: FaasContext | None) -> Any:
    """A shared copy of the ctypes object *local* (a new segment)."""
    return _new_shared(type(local), _as_bytes(local), ctx)


def _new_shared(tp: Any, data: bytes | int, ctx: FaasContext | None) -> Any:
    """A new segment holding an object of ctypes type *tp*: its bytes, or *data* zero bytes."""
    handle = dsm.SegmentHandle()
    handle._init_shared(ctx)
    seg = dsm.REGISTRY.create(handle, data)
    _set_grain(seg, tp)
    assert seg is not None  # a fresh random name cannot exist
    return _instance(tp, seg)


def segment_of(obj: Any) -> dsm.AnySegment | None:
    """The segment a shared ctypes object (or a synchronized wrapper) lives in, if any."""
    if isinstance(obj, SynchronizedBase):
        obj = obj.get_obj()
    return getattr(obj, "__dict__", {}).get(_SEGMENT)


class BufferWrapper:
    """A block of *size* shared bytes, as :class:`multiprocessing.heap.BufferWrapper`.

    ``create_memoryview()`` returns a memoryview of this process's copy;
    pickling sends only the block's name (the receiver attaches its own copy).
    Code that keeps a counter in one under a lock (as CPython's own tests
    do) works across faasmp processes: the lock synchronises the copies.
    """

    def __init__(self, size: int, *, ctx: FaasContext | None = None) -> None:
        if not 0 <= size < sys.maxsize:
            raise OverflowError(f"Size {size:n} out of range")
        handle = dsm.SegmentHandle()
        handle._init_shared(ctx)
        seg = dsm.REGISTRY.create(handle, size)
        assert seg is not None  # a fresh random name cannot exist
        self._seg = seg

    def create_memoryview(self) -> memoryview:
        """A memoryview of the block (this process's copy)."""
        return memoryview(self._seg.mem)

    def __reduce__(self) -> Any:
        return (_attach_buffer, (self._seg.handle,))


def _attach_buffer(handle: dsm.SegmentHandle) -> BufferWrapper:
    seg = dsm.REGISTRY.attach(handle)
    if seg is None:
        raise RuntimeError(f"faasmp shared memory {handle._oid}: its data is gone")
    wrapper = BufferWrapper.__new__(BufferWrapper)
    wrapper._seg = seg
    return wrapper


# --- synchronized wrappers ------------------------------------------------------------


class SynchronizedBase:
    """A shared ctypes object plus the lock that guards it (as the stdlib's wrapper).

    Acquiring the wrapper (or its lock) is an acquire of the shared memory and
    releasing it a release; with a lock that is not a faasmp lock (a
    ``threading`` lock, a Manager's lock) the wrapper itself synchronises.
    """

    def __init__(self, obj: Any, lock: Any = None, ctx: FaasContext | None = None) -> None:
        self._obj = obj
        self._lock = lock if lock else context_or_default(ctx).RLock()
        # faasmp locks synchronise the shared memory themselves.
        self._syncs = not isinstance(self._lock, SemLock)
        seg = segment_of(obj)
        if seg is not None:
            self._handle = seg.handle  # the data's keys, for whoever releases the object's parts

    @property
    def _mine(self) -> bool:
        """Whether this thread holds the (faasmp) lock already: then access the buffer directly."""
        return not self._syncs and dsm.holds(self._lock)

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Acquire the lock (see the lock's ``acquire``); then see others' released writes."""
        got = bool(self._lock.acquire(block, timeout))
        if got and self._syncs:
            dsm.acquire()
        return got

    def release(self) -> None:
        """Release the lock after shipping this process's writes."""
        if self._syncs:
            dsm.release()
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def get_obj(self) -> Any:
        """The raw shared ctypes object (supports the buffer protocol)."""
        return self._obj

    def get_lock(self) -> Any:
        """The lock that guards it."""
        return self._lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} wrapper for {self._obj!r}>"


class Synchronized(SynchronizedBase):
    """A synchronized shared value: ``.value`` and Structure fields under the lock."""

    @property
    def value(self) -> Any:
        if self._mine:
            return self._obj.value
        with self:
            return self._obj.value

    @value.setter
    def value(self, value: Any) -> None:
        if self._mine:
            self._obj.value = value
            return
        with self:
            self._obj.value = value

    def _field(self, name: str) -> bool:
        obj = self.__dict__.get("_obj")
        fields = getattr(type(obj), "_fields_", None) or ()
        return not name.startswith("_") and any(f[0] == name for f in fields)

    def __getattr__(self, name: str) -> Any:
        if not self._field(name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if self._mine:
            return getattr(self._obj, name)
        with self:
            return getattr(self._obj, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not self._field(name):
            object.__setattr__(self, name, value)
            return
        if self._mine:
            setattr(self._obj, name, value)
            return
        with self:
            setattr(self._obj, name, value)


class SynchronizedArray(SynchronizedBase):
    """A synchronized shared array: every access happens under the lock."""

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i: Any) -> Any:
        if self._mine:
            return self._obj[i]
        with self:
            return self._obj[i]

    def __setitem__(self, i: Any, value: Any) -> None:
        if self._mine:
            self._obj[i] = value
            return
        with self:
            self._obj[i] = value

    def __iter__(self) -> Iterator[Any]:
        return iter(self[:])


class SynchronizedString(SynchronizedArray):
    """A synchronized ``c_char`` array: adds ``.value`` and ``.raw``."""

    @property
    def value(self) -> Any:
        with self:
            return self._obj.value

    @value.setter
    def value(self, value: Any) -> None:
        with self:
            self._obj.value = value

    @property
    def raw(self) -> bytes:
        with self:
            return bytes(self._obj.raw)

    @raw.setter
    def raw(self, value: bytes) -> None:
        with self:
            self._obj.raw = value


# --- the stdlib's functions -------------------------------------------------------------


def RawValue(typecode_or_type: Any, *args: Any, ctx: FaasContext | None = None) -> Any:
    """A shared ctypes value without a lock (``args`` initialise it, as the ctypes type).

    The result is a ctypes object of the requested type (a subclass of it).
    """
    tp = _resolve_type(typecode_or_type)
    return _share(tp(*args), ctx)


def RawArray(typecode_or_type: Any, size_or_initializer: Any, *, ctx: FaasContext | None = None) -> Any:
    """A shared ctypes array without a lock: a length (zero-filled) or initial values.

    The result is a ctypes array (a subclass of ``type * length``), usable
    with ``np.frombuffer`` and ``memoryview``.
    """
    tp: Any = _resolve_type(typecode_or_type)
    if isinstance(size_or_initializer, int):
        # Only the type: a zeroed local array first cost a 20 MB array ~9 ms.
        array_type = tp * size_or_initializer  # ValueError for negative sizes, like ctypes
        return _new_shared(array_type, ctypes.sizeof(array_type), ctx)
    init = list(size_or_initializer)
    return _share((tp * len(init))(*init), ctx)


def _pick_lock(lock: Any, ctx: FaasContext | None) -> Any:
    if lock is True or lock is None:
        return context_or_default(ctx).RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: FaasContext | None = None) -> Any:
    """A synchronized shared value (``lock=False``: the raw ctypes object).

    ``lock=True`` (or None) creates a faasmp RLock; any object with
    ``acquire``/``release`` is used as given; anything else raises
    AttributeError, as the stdlib.
    """
    obj = RawValue(typecode_or_type, *args, ctx=ctx)
    if lock is False:
        return obj
    return synchronized(obj, _pick_lock(lock, ctx), ctx=ctx)


def Array(
    typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True, ctx: FaasContext | None = None
) -> Any:
    """A synchronized shared array (``lock=False``: the raw ctypes array); see :func:`Value`."""
    obj = RawArray(typecode_or_type, size_or_initializer, ctx=ctx)
    if lock is False:
        return obj
    return synchronized(obj, _pick_lock(lock, ctx), ctx=ctx)


def copy(obj: Any, *, ctx: FaasContext | None = None) -> Any:
    """A new raw shared object with a copy of *obj*'s contents, as the stdlib's ``copy``.

    *obj* is any ctypes object (a faasmp shared one or a local one) or a
    synchronized wrapper; the copy is raw, in *ctx* (default: *obj*'s
    context, else the default context).
    """
    seg = segment_of(obj)
    if isinstance(obj, SynchronizedBase):
        obj = obj.get_obj()
    if not isinstance(obj, ctypes._SimpleCData | ctypes.Structure | ctypes.Union | ctypes.Array):
        raise TypeError(
            f"copy() expects a ctypes object or a faasmp shared value/array, got {type(obj).__name__}"
        )
    tp: type = type(obj).__mro__[1] if seg is not None else type(obj)
    local = tp.from_buffer_copy(_as_bytes(obj))  # type: ignore[attr-defined]
    if ctx is None and seg is not None:
        ctx = seg.handle._ctx
    return _share(local, ctx)


def synchronized(obj: Any, lock: Any = None, ctx: FaasContext | None = None) -> SynchronizedBase:
    """Wrap a ctypes object with *lock* (a new RLock if None), as the stdlib."""
    if isinstance(obj, SynchronizedBase):
        raise AssertionError("object already synchronized")
    seg = segment_of(obj)
    ctx = ctx or (seg.handle._ctx if seg is not None else None)
    if isinstance(obj, ctypes.Array):
        cls: type[SynchronizedBase] = SynchronizedString if obj._type_ is ctypes.c_char else SynchronizedArray
        return cls(obj, lock, ctx)
    if isinstance(obj, ctypes._SimpleCData | ctypes.Structure | ctypes.Union):
        return Synchronized(obj, lock, ctx)
    raise TypeError(f"synchronized() expects a ctypes object, got {type(obj).__name__}")
