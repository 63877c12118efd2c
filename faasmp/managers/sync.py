"""SyncManager: the manager behind ``faasmp.Manager()``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..synchronize import Event as Event_
from .common import Namespace, Value
from .containers import DictProxy, ListProxy, NamespaceProxy, ValueProxy
from .manager import BaseManager
from .objects import Direct

# -- SyncManager ------------------------------------------------------------------------


def _lock(*, ctx: Any) -> Any:
    return ctx.Lock()


def _rlock(*, ctx: Any) -> Any:
    return ctx.RLock()


def _semaphore(value: int = 1, *, ctx: Any) -> Any:
    return ctx.Semaphore(value)


def _bounded_semaphore(value: int = 1, *, ctx: Any) -> Any:
    return ctx.BoundedSemaphore(value)


def _condition(lock: Any = None, *, ctx: Any) -> Any:
    return ctx.Condition(lock)


class EventProxy(Event_):
    """What ``manager.Event()`` returns: a faasmp :class:`~faasmp.synchronize.Event`.

    It is the Redis-backed event itself (no server in between); only its
    ``repr`` names it like the stdlib's proxy.
    """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid 'Event' at {id(self):#x}>"


def _event(*, ctx: Any) -> Any:
    return EventProxy(ctx=ctx)


def _barrier(
    parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None, *, ctx: Any
) -> Any:
    return ctx.Barrier(parties, action, timeout)


def _queue(maxsize: int = 0, *, ctx: Any) -> Any:
    return ctx.Queue(maxsize)


def _joinable_queue(maxsize: int = 0, *, ctx: Any) -> Any:
    return ctx.JoinableQueue(maxsize)


def _array(typecode: Any, sequence: Any, lock: Any = True, *, ctx: Any) -> Any:
    return ctx.Array(typecode, sequence, lock=lock)


def _pool(
    processes: int | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] = (),
    maxtasksperchild: int | None = None,
    *,
    ctx: Any,
) -> Any:
    return ctx.Pool(processes, initializer, initargs, maxtasksperchild)


class SyncManager(BaseManager):
    """The manager behind ``faasmp.Manager()``: dict, list, Namespace, Value and sync objects.

    ``dict``/``list``/``Namespace``/``Value`` give proxies to Redis state;
    ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``,
    ``Event``, ``Barrier``, ``Queue``, ``JoinableQueue``, ``Array`` and
    ``Pool`` return the context's own objects (shareable already; a Pool
    cannot be passed to other processes).
    """


SyncManager.register("Queue", _queue, Direct)
SyncManager.register("JoinableQueue", _joinable_queue, Direct)
SyncManager.register("Event", _event, Direct)
SyncManager.register("Lock", _lock, Direct)
SyncManager.register("RLock", _rlock, Direct)
SyncManager.register("Semaphore", _semaphore, Direct)
SyncManager.register("BoundedSemaphore", _bounded_semaphore, Direct)
SyncManager.register("Condition", _condition, Direct)
SyncManager.register("Barrier", _barrier, Direct)
SyncManager.register("Pool", _pool, Direct)
SyncManager.register("list", list, ListProxy)
SyncManager.register("dict", dict, DictProxy)
SyncManager.register("Value", Value, ValueProxy)
SyncManager.register("Array", _array, Direct)
SyncManager.register("Namespace", Namespace, NamespaceProxy)
