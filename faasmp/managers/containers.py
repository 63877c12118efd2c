"""Native containers: dict, list, Namespace and Value proxies on Redis structures (hash, list, key)."""

from __future__ import annotations

import operator
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSequence
from typing import Any, ClassVar

from ..backends.redis.manager_objects import EMPTY, RedisDict, RedisList, RedisNamespace, RedisValue
from ..runtime.call import dumps_plain, loads
from .codec import decode_key, encode_key
from .common import ManagerShutdownError, Namespace, Value
from .proxy import NativeProxy


class DictProxy(NativeProxy, MutableMapping):  # type: ignore[type-arg]
    """A dict in a Redis hash; ``keys()``/``values()``/``items()`` return lists.

    Iteration walks a snapshot of the keys (no ``RuntimeError`` if the dict
    changes meanwhile).  ``d == other`` compares contents (the stdlib proxy
    compares identity).  See the module docstring for which keys work.
    """

    _kind = "mdict"
    _store_type = RedisDict
    _key_suffixes = RedisDict.SUFFIXES
    _exposed_ = (
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__iter__",
        "__len__",
        "__setitem__",
        "clear",
        "copy",
        "get",
        "items",
        "keys",
        "pop",
        "popitem",
        "setdefault",
        "update",
        "values",
    )

    def _adopt(self, value: Any) -> None:
        if value:
            self.update(value)

    def _rdict(self) -> RedisDict:
        store: RedisDict = self._conn().store
        return store

    def _field(self, key: Any) -> bytes:
        return encode_key(key, self._conn().authkey)

    def __getitem__(self, key: Any) -> Any:
        conn = self._conn()
        blob = conn.store.dict_get(encode_key(key, conn.authkey))
        if blob is None:
            raise KeyError(key)
        return loads(blob, conn.authkey)

    def get(self, key: Any, default: Any = None) -> Any:
        conn = self._conn()
        blob = conn.store.dict_get(encode_key(key, conn.authkey))
        if blob is None:
            return default
        return loads(blob, conn.authkey)

    def __setitem__(self, key: Any, value: Any) -> None:
        conn = self._conn()
        # Plain data first, here: _dump's message names the key, and
        # formatting it on every set cost ~0.3 us of a ~15 us call's CPU.
        blob = dumps_plain(value, conn.authkey)
        if blob is None:
            blob = self._dump(value, f"the value for key {key!r}")
        conn.store.dict_set(encode_key(key, conn.authkey), blob)

    def __delitem__(self, key: Any) -> None:
        if self._rdict().dict_pop(self._field(key)) is None:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return self._rdict().dict_contains(self._field(key))

    def __len__(self) -> int:
        return self._rdict().dict_len()

    def __iter__(self) -> Iterator[Any]:
        """An iterator over the keys, like the stdlib proxy's (an iterator in the server).

        The keys are read when the iterator is made; as with a dict, ``next``
        raises ``RuntimeError`` if the dict's size changed since then (checked
        on the first ``next``, every 256 keys and at the end).
        """
        return _DictKeyIterator(self, self.keys())

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self.keys())

    def keys(self) -> list[Any]:  # type: ignore[override]
        """The keys in insertion order (a list, like the stdlib proxy)."""
        ak = self._conn().authkey
        return [decode_key(f, ak) for f in self._rdict().dict_keys()]

    def _items_raw(self) -> tuple[list[bytes], list[bytes]]:
        return self._rdict().dict_items()

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self._load(b) for b in self._items_raw()[1]]

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        ak = self._conn().authkey
        fields, blobs = self._items_raw()
        return [(decode_key(f, ak), self._load(b)) for f, b in zip(fields, blobs, strict=True)]

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Atomic: of several concurrent callers exactly one inserts."""
        stored = self._rdict().dict_setdefault(
            self._field(key), self._dump(default, f"the value for key {key!r}")
        )
        if stored is None:  # inserted
            return default
        return self._load(stored)

    _MISSING: ClassVar[Any] = object()

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        blob = self._rdict().dict_pop(self._field(key))
        if blob is None:
            if default is DictProxy._MISSING:
                raise KeyError(key)
            return default
        return self._load(blob)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last inserted item (LIFO, like dict)."""
        result = self._rdict().dict_popitem()
        if result is None:
            raise KeyError("popitem(): dictionary is empty")
        return decode_key(result[0], self._conn().authkey), self._load(result[1])

    def update(self, other: Any = (), /, **kwds: Any) -> None:
        """Set several items in one atomic step."""
        ak = self._conn().authkey
        args: list[bytes] = []
        if isinstance(other, Mapping) or hasattr(other, "keys"):
            pairs: Iterable[Any] = ((k, other[k]) for k in other.keys())
        else:
            pairs = other
        for i, item in enumerate(pairs):
            try:
                pair = tuple(item)
            except TypeError:
                raise TypeError(
                    f"cannot convert dictionary update sequence element #{i} to a sequence"
                ) from None
            if len(pair) != 2:
                raise ValueError(
                    f"dictionary update sequence element #{i} has length {len(pair)}; 2 is required"
                )
            k, v = pair
            args += (encode_key(k, ak), self._dump(v, f"the value for key {k!r}"))
        for k, v in kwds.items():
            args += (encode_key(k, ak), self._dump(v, f"the value for key {k!r}"))
        if args:
            self._rdict().dict_update(args)

    def clear(self) -> None:
        self._rdict().dict_clear()

    def copy(self) -> dict[Any, Any]:
        """A plain dict with the current contents (one round trip)."""
        return dict(self.items())

    _getvalue = copy


class _DictKeyIterator(Iterator[Any]):
    """What ``iter(dict_proxy)`` returns (see :meth:`DictProxy.__iter__`)."""

    _CHECK_EVERY = 256

    def __init__(self, proxy: DictProxy, keys: list[Any]) -> None:
        self._proxy: DictProxy | None = proxy
        self._keys = keys
        self._pos = 0

    def __next__(self) -> Any:
        proxy = self._proxy
        if proxy is None:
            raise StopIteration
        pos = self._pos
        if pos % self._CHECK_EVERY == 0 or pos == len(self._keys):
            if proxy._rdict().dict_size() != len(self._keys):
                self._proxy = None
                raise RuntimeError("dictionary changed size during iteration")
        if pos == len(self._keys):
            self._proxy = None
            raise StopIteration
        self._pos = pos + 1
        return self._keys[pos]


class _ListIterator(Iterator[Any]):
    """What ``iter(list_proxy)`` returns (see :meth:`ListProxy.__iter__`)."""

    _CHUNK = 256

    def __init__(self, proxy: ListProxy) -> None:
        self._proxy: ListProxy | None = proxy
        self._index = 0
        self._buffer: list[bytes] = []
        self._chunk = 16

    def __next__(self) -> Any:
        proxy = self._proxy
        if proxy is None:
            raise StopIteration
        if not self._buffer:
            start = self._index
            self._buffer = list(proxy._rlist().list_range(start, start + self._chunk))[::-1]
            self._chunk = min(self._chunk * 2, self._CHUNK)
            if not self._buffer:
                self._proxy = None
                raise StopIteration
        self._index += 1
        return proxy._load(self._buffer.pop())


def _list_error(code: int, message: str) -> IndexError:
    return IndexError("pop from empty list" if code == EMPTY else message)


class ListProxy(NativeProxy, MutableSequence):  # type: ignore[type-arg]
    """A list in a Redis list.  Slices, ``+`` and ``*`` return plain lists.

    ``sort``, ``remove`` and slice assignment/deletion are read-compute-write
    with a version check (retried if another process changed the list
    meanwhile); everything else is one atomic Lua script.  ``sort``'s key
    function runs in this process.  Iteration walks a snapshot.
    """

    _kind = "mlist"
    _store_type = RedisList
    _key_suffixes = RedisList.SUFFIXES
    _exposed_ = (
        "__add__",
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__len__",
        "__mul__",
        "__reversed__",
        "__rmul__",
        "__setitem__",
        "append",
        "count",
        "extend",
        "index",
        "insert",
        "pop",
        "remove",
        "reverse",
        "sort",
        "__imul__",
        "__iadd__",
        "__iter__",
        "clear",
        "copy",
    )
    _MAX_RETRIES: ClassVar[int] = 1000

    def _adopt(self, value: Any) -> None:
        self.extend(value)

    # -- reading ---------------------------------------------------------------
    def _rlist(self) -> RedisList:
        store: RedisList = self._conn().store
        return store

    def _raw(self) -> tuple[bytes, list[bytes]]:
        return self._rlist().list_snapshot()

    def _getvalue(self) -> list[Any]:
        return [self._load(b) for b in self._raw()[1]]

    copy = _getvalue

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            if index.step is None or index.step == 1:
                start = "" if index.start is None else _clamp(index.start)
                stop = "" if index.stop is None else _clamp(index.stop)
                return [self._load(b) for b in self._rlist().list_range(start, stop)]
            return [self._load(b) for b in self._raw()[1][index]]
        conn = self._conn()
        blob = conn.store.list_get(_clamp(index, True))
        if blob is None:
            raise IndexError("list index out of range")
        return loads(blob, conn.authkey)

    def __len__(self) -> int:
        return self._rlist().list_len()

    def __iter__(self) -> Iterator[Any]:
        """A live iterator, like the stdlib proxy's (a list iterator in the server).

        Items are read as the iteration reaches them (in chunks of up to 256),
        so changes to items not yet read are seen; once exhausted it stays
        exhausted.
        """
        return _ListIterator(self)

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._getvalue())

    def __contains__(self, value: object) -> bool:
        return value in self._getvalue()

    def index(self, value: Any, start: int = 0, stop: int = sys.maxsize) -> int:
        return self._getvalue().index(value, start, stop)

    def count(self, value: Any) -> int:
        return self._getvalue().count(value)

    def __add__(self, other: Any) -> list[Any]:
        if isinstance(other, ListProxy):
            other = other._getvalue()
        return self._getvalue() + other

    def __radd__(self, other: Any) -> list[Any]:
        if not isinstance(other, list):
            return NotImplemented
        return other + self._getvalue()

    def __mul__(self, n: Any) -> list[Any]:
        return self._getvalue() * n

    __rmul__ = __mul__

    # -- writing ---------------------------------------------------------------
    def append(self, value: Any) -> None:
        self._rlist().list_append(self._dump(value, "an item"))

    def extend(self, values: Iterable[Any]) -> None:
        """Append every item of *values* in one atomic step."""
        if isinstance(values, ListProxy):
            values = values._getvalue()
        blobs = [self._dump(v, "an item") for v in values]
        if blobs:
            self._rlist().list_append(*blobs)

    def __iadd__(self, values: Iterable[Any]) -> ListProxy:  # type: ignore[misc]
        self.extend(values)
        return self

    def __imul__(self, n: Any) -> ListProxy:
        self._rlist().list_repeat(operator.index(n))
        return self

    def insert(self, index: Any, value: Any) -> None:
        self._rlist().list_insert(_clamp(index), self._dump(value, "an item"))

    def pop(self, index: Any = -1) -> Any:
        result = self._rlist().list_pop(_clamp(index))
        if isinstance(result, int):
            raise _list_error(result, "pop index out of range")
        return self._load(result)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            if isinstance(value, ListProxy):
                value = value._getvalue()
            try:
                items = list(value)
            except TypeError:
                raise TypeError("must assign iterable to extended slice") from None
            blobs = [self._dump(v, "an item") for v in items]

            def assign(raw: list[bytes]) -> None:
                raw[index] = blobs

            self._rewrite(assign)
            return
        if not self._rlist().list_set(_clamp(index, True), self._dump(value, "an item")):
            raise IndexError("list assignment index out of range")

    def __delitem__(self, index: Any) -> None:
        if isinstance(index, slice):

            def delete(raw: list[bytes]) -> None:
                del raw[index]

            self._rewrite(delete)
            return
        if isinstance(self._rlist().list_pop(_clamp(index, True)), int):
            raise IndexError("list assignment index out of range")

    def remove(self, value: Any) -> None:
        def remove(raw: list[bytes]) -> None:
            for i, blob in enumerate(raw):
                item = self._load(blob)
                if item is value or item == value:
                    del raw[i]
                    return
            raise ValueError("list.remove(x): x not in list")

        self._rewrite(remove)

    def reverse(self) -> None:
        self._rlist().list_reverse()

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Sort in place (stable); *key* runs in this process."""

        def sort(raw: list[bytes]) -> None:
            values = [self._load(b) for b in raw]
            keys = values if key is None else [key(v) for v in values]
            order = sorted(range(len(raw)), key=keys.__getitem__, reverse=reverse)
            raw[:] = [raw[i] for i in order]

        self._rewrite(sort)

    def clear(self) -> None:
        self._rlist().list_clear()

    def _rewrite(self, change: Callable[[list[bytes]], None]) -> None:
        """Apply *change* to a snapshot and store it if the list did not change meanwhile."""
        for _ in range(self._MAX_RETRIES):
            version, raw = self._raw()
            raw = list(raw)
            change(raw)
            if self._rlist().list_replace(version, raw):
                return
        raise RuntimeError(
            f"{self._describe()}: gave up after {self._MAX_RETRIES} attempts because other "
            "processes kept changing the list; guard it with a manager Lock"
        )


def _clamp(index: Any, subscript: bool = False) -> int:
    """A Python index as an int Lua can hold (beyond the list either way)."""
    try:
        i = operator.index(index)
    except TypeError:
        if not subscript:
            raise
        raise TypeError(f"list indices must be integers or slices, not {type(index).__name__}") from None
    return max(min(i, 1 << 50), -(1 << 50))


class NamespaceProxy(NativeProxy):
    """Attributes stored in a Redis hash; names starting with ``_`` stay local.

    ``repr()`` shows the contents, like ``Namespace(a=1, b=2)``.
    """

    _kind = "mns"
    _store_type = RedisNamespace
    _key_suffixes = RedisNamespace.SUFFIXES
    _exposed_ = ("__getattribute__", "__setattr__", "__delattr__")

    def _adopt(self, value: Any) -> None:
        for name, v in (value if isinstance(value, Mapping) else vars(value)).items():
            if not name.startswith("_"):
                setattr(self, name, v)

    # Public names are the shared attributes, counted like a method call
    # (operation "__getattribute__", ...).  The count is made here, after the
    # "_" test: the counting itself reads only "_" names, which never come
    # back into this branch (wrapping these hooks, as NativeProxy does other
    # methods, recursed through the wrapper's own attribute lookups).
    def __getattribute__(self, name: str) -> Any:
        if name[0] == "_":
            return object.__getattribute__(self, name)
        t0 = time.perf_counter()
        try:
            blob = self._rns().ns_get(name.encode("utf-8", "surrogatepass"))
        finally:
            self._count("__getattribute__", t0)
        if blob is None:
            raise AttributeError(f"'Namespace' object has no attribute {name!r}")
        return self._load(blob)

    def __setattr__(self, name: str, value: Any) -> None:
        if name[0] == "_":
            object.__setattr__(self, name, value)
            return
        t0 = time.perf_counter()
        try:
            blob = self._dump(value, f"attribute {name!r}")
            self._rns().ns_set(name.encode("utf-8", "surrogatepass"), blob)
        finally:
            self._count("__setattr__", t0)

    def __delattr__(self, name: str) -> None:
        if name[0] == "_":
            object.__delattr__(self, name)
            return
        t0 = time.perf_counter()
        try:
            deleted = self._rns().ns_del(name.encode("utf-8", "surrogatepass"))
        finally:
            self._count("__delattr__", t0)
        if not deleted:
            raise AttributeError(f"'Namespace' object has no attribute {name!r}")

    def _rns(self) -> RedisNamespace:
        store: RedisNamespace = self._conn().store
        return store

    def _getvalue(self) -> Namespace:
        items = self._rns().ns_items()
        return Namespace(**{f.decode("utf-8", "surrogatepass"): self._load(b) for f, b in items})

    def __repr__(self) -> str:
        return repr(self._getvalue())

    __str__ = __repr__

    def __dir__(self) -> list[str]:
        return sorted(set(object.__dir__(self)) | set(vars(self._getvalue())))


class ValueProxy(NativeProxy):
    """A manager ``Value``: ``get()``, ``set()`` and ``.value`` on one Redis key.

    As with the stdlib, ``v.value += 1`` is a read then a write (not atomic);
    use a manager ``Lock`` around it, or a :func:`faasmp.Value` with its lock.
    """

    _kind = "mval"
    _store_type = RedisValue
    _key_suffixes = RedisValue.SUFFIXES
    _exposed_ = ("get", "set")
    _typecode: Any = None

    def _adopt(self, value: Any) -> None:
        if isinstance(value, Value):
            self.__dict__["_typecode"] = value._typecode
            value = value._value
        self.set(value)

    def _getstate_extra(self) -> dict[str, Any]:
        extra = super()._getstate_extra()
        extra["_typecode"] = self._typecode
        return extra

    def get(self) -> Any:
        conn = self._conn()
        blob = conn.store.value_get()
        if blob is None:
            raise ManagerShutdownError(f"{self._describe()}: its value no longer exists in Redis")
        return loads(blob, conn.authkey)

    def set(self, value: Any) -> None:
        self._conn().store.value_set(self._dump(value, "the value"))

    value = property(get, set)

    def _getvalue(self) -> Value:
        return Value(self._typecode, self.get())

    __class_getitem__: ClassVar[Any] = classmethod(types.GenericAlias)
