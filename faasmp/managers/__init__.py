"""Managers: shared dicts, lists, namespaces and custom objects, kept in Redis.

The API of :mod:`multiprocessing.managers` (``SyncManager``, ``BaseManager.register``,
proxies) with **no server process**: every proxy acts directly on the object's
state in Redis, so a proxy passed to a :class:`~faasmp.Process` or a
:class:`~faasmp.Pool` worker keeps working there, and every operation is one
round trip (a plain command for reads, an atomic Lua script for writes).

How each type is kept (and how it differs from the stdlib):

* ``dict`` -> :class:`DictProxy`: a Redis HASH (field = encoded key, value =
  signed pickle) plus a ZSET remembering insertion order, so ``keys()``,
  iteration and ``popitem()`` (LIFO) follow dict order.  Keys of type ``str``,
  ``int``, ``bytes``, ``float``, ``bool``, ``None`` and tuples/frozensets of
  them are encoded canonically; other hashable keys are encoded by (signed)
  pickle and must pickle identically when equal (true for enums, most frozen
  dataclasses; not for objects whose pickle depends on identity).  Keys are
  matched by type *and* value: ``1``, ``1.0`` and ``True`` are three
  different keys (in a dict they are one).
* ``list`` -> :class:`ListProxy`: a Redis LIST of signed pickles.  Append,
  extend, pop, insert, reverse, ``*=`` are Lua scripts; ``sort``, ``remove`` and slice
  assignment/deletion read the list, compute in Python and write it back only
  if nobody changed it meanwhile (a version counter; retried on conflict).
* ``Namespace`` -> :class:`NamespaceProxy`: a HASH of attribute -> value.
* ``Value`` -> :class:`ValueProxy`: one key holding a pickle, any object (as the
  stdlib's manager ``Value``, whose ``lock`` argument is ignored as well).
* Registered classes -> :class:`AutoProxy`: the instance is pickled in one key
  (a plain instance as its ``__dict__``, its class stored once beside it);
  each method call runs *in the calling process* as load -> call -> store
  while holding a per-object Redis lock (owner token, lease expiry, waiting in
  ``BLPOP``), so calls from any number of processes are serialized.  Side
  effects of a method (prints, files) happen in the caller, not in a server;
  a method that raises keeps the changes it made before (as a server object
  would).  ``method_to_typeid`` results become new shared objects.
* ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``,
  ``Event``, ``Barrier``, ``Queue``, ``JoinableQueue``, ``Array`` and ``Pool``
  are the context's own Redis-backed objects (already shareable), returned as
  they are; the manager releases them (and terminates pools) at shutdown,
  after which they raise their own "state is gone" ``RuntimeError``.  Objects
  passed in (``m.Condition(my_lock)``) are not the manager's to release.

Values fetched from a proxy are copies: ``d['k'].append(1)`` changes the copy
only, exactly as with the stdlib (assign it back: ``d['k'] = v``).  Values may
be proxies themselves (``l.append(m.dict())``): they round-trip as proxies to
the same Redis state.

Lifetime: objects are reference counted in Redis, as the stdlib's server
counts proxies (``faasmp.backends.redis.manager_refs``).  An object lives
while a proxy of it exists in some process, a pickled copy is on its way to
one, or it is stored inside another live object of the manager; a copy inside
a remote process counts until that process exits (even if it is killed).  When
the last reference goes its keys are deleted at once; objects that only refer
to each other (``b.append(b)``) are collected by ``_number_of_objects()``,
which traces what is reachable, and at shutdown.  A proxy stored in a
container keeps its object until the container goes, even after it is
removed from the container; a copy pickled but never unpickled (a queue item
nobody reads, a process terminated before it ran) and a copy in a pool worker
that is killed keep it until shutdown.  Directly shared objects (``m.Lock()``,
``m.Queue()``, ...) live as long as the object in the process that made them,
like any faasmp object.  ``shutdown()`` (or leaving a ``with`` block, or the
manager and every proxy made from it in this process being garbage
collected) deletes everything left at once; using a proxy afterwards raises
:class:`ManagerShutdownError`.  ``_number_of_objects()`` and ``_debug_info()``
report the live objects as the stdlib's do.  Every write refreshes the keys'
TTL (``key_ttl``), the safety net for a killed client: an object nobody
writes to for that long expires.

Speed: a read is one plain Redis command (``HGET``, ``LINDEX``, ...; only a
miss checks whether the manager is gone), a write one Lua script; there is no
server process in between, and proxies work the same from any machine that
reaches the Redis server.

Layout: :mod:`.proxy` (``BaseProxy`` and proxy types), :mod:`.containers`
(dict, list, Namespace, Value), :mod:`.served` (objects that cannot be
pickled), :mod:`.objects` (creating shared objects), :mod:`.manager`
(``BaseManager``), :mod:`.sync` (``SyncManager``), :mod:`.shared_memory`
(``SharedMemoryManager``), with :mod:`.refs`,
:mod:`.codec` and :mod:`.common`.  Every Redis command and Lua script they
need is a named method of ``faasmp.backends.redis.manager_objects`` and
``faasmp.backends.redis.managers``.
"""

from __future__ import annotations

from .common import ManagerShutdownError, Namespace, Token, Value, all_methods, public_methods
from .containers import DictProxy, ListProxy, NamespaceProxy, ValueProxy
from .manager import BaseManager
from .objects import Direct
from .proxy import AutoProxy, BaseProxy, MakeProxyType
from .served import LOCAL_SERVERS as _LOCAL_SERVERS  # noqa: F401 - its old name, read by tests
from .shared_memory import SharedMemoryManager
from .sync import EventProxy, SyncManager

__all__ = [
    "AutoProxy",
    "BaseManager",
    "BaseProxy",
    "DictProxy",
    "Direct",
    "EventProxy",
    "ListProxy",
    "MakeProxyType",
    "ManagerShutdownError",
    "Namespace",
    "NamespaceProxy",
    "SharedMemoryManager",
    "SyncManager",
    "Token",
    "Value",
    "ValueProxy",
    "all_methods",
    "public_methods",
]
