"""Remote functions and registered classes of the manager tests (shipped by value)."""

from __future__ import annotations

import enum
import multiprocessing.managers
import time
from typing import Any

from faasmp.managers import BaseProxy, ManagerShutdownError, SyncManager


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Counter:
    """A plain class managed through an AutoProxy."""

    def __init__(self, start: int = 0) -> None:
        self.n = start
        self.log: list[str] = []

    def increment(self, k: int = 1) -> int:
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n

    def fail_after_change(self) -> None:
        self.n += 100
        raise ValueError("changed, then failed")

    def history(self) -> list[str]:
        self.log.append(f"n={self.n}")
        return list(self.log)

    def snapshot(self) -> dict[str, int]:
        return {"n": self.n}

    def _private(self) -> str:
        return "hidden"


class SlottedCounter:
    """Pickled whole (no __dict__): the generic path."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


class StatefulCounter:
    """Custom __getstate__/__setstate__ must be honoured (pickled whole)."""

    def __init__(self) -> None:
        self.n = 0
        self.cache = "fresh"

    def __getstate__(self) -> dict[str, int]:
        return {"n": self.n}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.n = state["n"]
        self.cache = "rebuilt"

    def increment(self) -> tuple[int, str]:
        self.n += 1
        return self.n, self.cache


class CounterProxy(BaseProxy):
    """A hand-written proxy type, like the stdlib's custom proxies."""

    _exposed_ = ("increment", "get")

    def increment(self, k: int = 1) -> int:
        return self._callmethod("increment", (k,))

    def get(self) -> int:
        return self._callmethod("get")


class ShortLeaseProxy(CounterProxy):
    _lease = 0.5


class Squares:
    """A picklable iterator (a stdlib-style IteratorProxy drives it)."""

    def __init__(self, n: int) -> None:
        self.i, self.n = 0, n

    def __next__(self) -> int:
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return (self.i - 1) ** 2


class StdlibIteratorProxy(multiprocessing.managers.BaseProxy):
    """A proxy class written for the stdlib (as in CPython's own tests)."""

    _exposed_ = ("__next__",)

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self._callmethod("__next__")


def squares_generator(n: int) -> Any:
    """An unpicklable referent: the manager's process keeps it and serves it."""
    for i in range(n):
        yield i * i


class FileLog:
    """Holds an open file: cannot be pickled into Redis."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "a")  # kept open on purpose

    def write(self, text: str) -> int:
        n = self.f.write(text)
        self.f.flush()
        return n


def failing_factory(x: int) -> Any:
    raise ValueError(f"bad x {x}")


class TestManager(SyncManager):
    """A manager subclass with custom types (registering on SyncManager itself would leak)."""

    __test__ = False  # not a pytest class


TestManager.register("Counter", Counter)
TestManager.register("ReadOnlyCounter", Counter, exposed=("get",))
TestManager.register("HistoryCounter", Counter, method_to_typeid={"history": "list", "snapshot": "dict"})
TestManager.register("ProxiedCounter", Counter, CounterProxy)
TestManager.register("SlottedCounter", SlottedCounter)
TestManager.register("StatefulCounter", StatefulCounter)
TestManager.register("ShortLeaseCounter", Counter, ShortLeaseProxy)
TestManager.register("Squares", Squares, StdlibIteratorProxy)
TestManager.register("Failing", failing_factory)
TestManager.register("SquaresGen", squares_generator, StdlibIteratorProxy)
TestManager.register("FileLog", FileLog)


def set_keys(d: Any, start: int, n: int) -> None:
    for i in range(start, start + n):
        d[f"k{i}"] = i


def append_items(lst: Any, tag: int, n: int) -> None:
    for i in range(n):
        lst.append((tag, i))


def increment_many(counter: Any, n: int) -> None:
    for _ in range(n):
        counter.increment()


def mutate_nested(outer: Any) -> None:
    inner = outer[0]
    inner["from_remote"] = True
    outer.append("remote-was-here")


def fill_namespace(ns: Any) -> None:
    ns.remote = "yes"
    ns.total = ns.total + 1


def sum_iterator(it: Any) -> int:
    return sum(it)


def sum_into(it: Any, out: Any) -> None:
    out.value = sum(it)


def write_log(log: Any, text: str) -> None:
    log.write(text)


def store_square(args: tuple[Any, int]) -> int:
    d, x = args
    d[x] = x * x
    return x


def use_after_shutdown(d: Any, out: Any) -> None:
    try:
        d["x"] = 1
    except ManagerShutdownError as exc:
        out.put(type(exc).__name__)


def create_with_manager(manager: Any, shared: Any) -> None:
    inner = manager.dict(made="remotely")
    shared.append(inner)


def history_remote(counter: Any, out: Any) -> None:
    hist = counter.history()
    hist.append("appended remotely")
    out.append(hist)


def lock_increment(lock: Any, ns: Any, n: int) -> None:
    for _ in range(n):
        with lock:
            ns.total = ns.total + 1


def queue_roundtrip(q: Any, out: Any) -> None:
    out.put(q.get(timeout=30) * 2)


def sleep_then_set_keys(d: Any, delay: float, n: int) -> None:
    """Use a proxy some time after the parent may have dropped its own."""
    time.sleep(delay)
    set_keys(d, 0, n)
