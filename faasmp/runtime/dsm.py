"""Distributed shared memory: local buffers kept coherent at synchronisation points.

Every faasmp ``RawArray``/``RawValue``/``SharedMemory`` is a *segment*: bytes
in Redis (:mod:`faasmp.backends.redis.shared_memory`) plus, in each process
that uses it, a real local buffer (a ``bytearray``) that ctypes objects,
memoryviews and numpy arrays point into, so they run at local speed.

Coherence is lazy release consistency (TreadMarks, Munin), multiple-writer:

* at a **release** (lock release, event set, send/put, end of a task or
  process, ...) the process compares each local buffer with its *twin* (a
  copy taken at its last synchronisation) and ships exactly the bytes that
  changed, with a new version (:meth:`Registry.release`);
* at an **acquire** (lock acquire, event wait, recv/get, start of a task,
  join, ...) it asks Redis for the ranges other processes changed since its
  version and copies them in (:meth:`Registry.acquire`), *except* the bytes
  it changed itself and has not released yet: two processes writing
  different bytes of the same page between the same synchronisations both
  keep their writes.

A correctly synchronised program (every conflicting access ordered by a
release/acquire pair) reads what it would read on the stdlib; a program with
data races gets no guarantee, as on the stdlib.

When the run's segments are in host shared memory (every process on the
client's host, see ``Config.shared_memory_mode``), a segment is a
:class:`HostSegment` instead: one file every process maps, coherent by the
hardware, so it has no twin, no version and nothing to push or pull; the
synchronisation hooks skip it.  Redis still records which segments exist
(:mod:`faasmp.backends.redis.host_memory`).

There is one :class:`Registry` per process (like the stdlib's heap of shared
blocks, which is per process too): the synchronisation hooks in locks,
queues, pipes, processes and pools call :func:`release` / :func:`acquire`,
which cost nothing while the process holds no segment.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import mmap
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..backends import host_memory as hostmem
from ..backends.redis.host_memory import HostSegmentStore
from ..backends.redis.shared_memory import SUFFIXES, Diff, Pulled, SharedMemoryStore, pack_ranges
from .shared import SharedObject

T = TypeVar("T")

if TYPE_CHECKING:
    from ..context import FaasContext

logger = logging.getLogger(__name__)

#: Region size for choosing how to ship a diff (exact runs or a byte mask).
CHUNK = 64 * 1024
#: Runs closer than this are logged as one range (pullers fetch the gap too:
#: fewer, larger ranges; their own unreleased bytes are kept anyway).  Each
#: range costs about 1.5 us of Lua and parsing, each byte a few ns.
LOG_GAP = 256
#: Cost, in bytes, of one exact run in a push compared with a masked region,
#: which ships two bytes per byte but is merged by BITOP in C: a run costs
#: about 1.5 us of Lua, a masked byte about 4 ns (measured, embedded server).
RUN_COST = 256


@functools.lru_cache(maxsize=1)
def _numpy() -> Any:
    """numpy if importable (diffs and merges are vectorised), else None."""
    try:
        import numpy  # noqa: PLC0415 - optional, and slow to import

        return numpy
    except ImportError:
        return None


class SegmentHandle(SharedObject):
    """The Redis keys of one segment; the creating process owns (and deletes) them."""

    _kind = "mem"
    _key_suffixes = SUFFIXES


class NamedSegmentHandle(SegmentHandle):
    """A segment named by the user (``SharedMemory(name)``): deleted by ``unlink()`` only."""

    _kind = "shm"

    def __init__(self, name: str, *, ctx: FaasContext | None = None, owner: bool = False) -> None:
        self._init_shared(ctx)
        self._oid = name
        self._owner = owner
        # Not deleted when this object is garbage collected (the stdlib's
        # segments outlive their creator until unlink()); the keys are still
        # renewed while the creator holds it, and deleted with the run.
        self._finalizer.detach()
        token = id(self)
        keys = [self.key(s) for s in self._key_suffixes]
        self._session.live_keys[token] = keys
        weakref.finalize(self, self._session.live_keys.pop, token, None)


@dataclass(eq=False)
class Segment:
    """This process's copy of one segment (shared by every local object attached to it)."""

    handle: SegmentHandle
    store: SharedMemoryStore
    #: The local buffer users read and write.
    mem: bytearray
    #: ``mem`` as of the last synchronisation (what Redis had, plus this process's released writes).
    twin: bytearray
    #: The newest version whose changes ``mem`` holds.
    version: int
    gone: bool = False
    # Fixed at attach time: the handle's context may later start a new
    # session (a new run), whose Redis does not hold this segment.
    session: Any = None
    key: str = ""
    ttl_ms: int = 0
    #: Element size: changes are shipped in whole elements (see :func:`make_diff`).
    grain: int = 1

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = self.handle._session
            self.key = self.handle.key()
            self.ttl_ms = self.handle._ttl_ms

    @property
    def synced(self) -> bool:
        """Whether this copy still takes part in synchronisation (its run is alive)."""
        return not self.gone and not self.session.closed

    def unlinker(self) -> Callable[[], bool]:
        """A call that deletes the segment for every process (False if it was gone already)."""
        return functools.partial(_unlink_dsm, self.store, self.key)


def _unlink_dsm(store: SharedMemoryStore, key: str) -> bool:
    existed = store.delete(key)
    REGISTRY.forget(key)
    return existed


class HostSegment:
    """This process's mapping of a segment in host shared memory (see the module doc).

    ``mem`` maps the segment's file (``MAP_SHARED``): ctypes objects, numpy
    views and memoryviews over it read and write the one copy every process
    of the host maps.  (A plain class: each dataclass costs a cold worker
    about 0.45 ms to define.)
    """

    __slots__ = ("__weakref__", "grain", "handle", "ino", "key", "mem", "path", "session", "store")

    def __init__(
        self, handle: SegmentHandle, store: HostSegmentStore, mem: mmap.mmap | bytearray, path: str, ino: int
    ) -> None:
        self.handle = handle
        self.store = store
        #: The mapping users read and write (a bytearray for an empty segment: nothing to map).
        self.mem = mem
        #: The segment's file and its inode (the file Redis describes).
        self.path = path
        self.ino = ino
        self.key = handle.key()
        self.session = handle._session
        #: Unused (nothing is shipped); kept so both kinds of segment take the same settings.
        self.grain = 1

    def unlinker(self) -> Callable[[], bool]:
        """A call that deletes the segment for every process (False if it was gone already)."""
        return functools.partial(_unlink_host, self.store, self.key, self.path)


def _unlink_host(store: HostSegmentStore, key: str, path: str) -> bool:
    existed = store.delete(key)
    # The file goes with the keys (processes that mapped it keep their mapping, as on the stdlib).
    hostmem.remove_file(path)
    REGISTRY.forget(key)
    return existed


def _delete_then_remove(delete: Callable[[], object], path: str) -> None:
    """An owner's finalizer in host mode: delete the segment's keys, then its file."""
    delete()
    hostmem.remove_file(path)


#: Either kind of segment: what ``sharedctypes`` and ``shared_memory`` objects point into.
AnySegment = Segment | HostSegment


class Registry:
    """This process's segments, their twins and versions (see the module doc)."""

    def __init__(self) -> None:
        self._segments: weakref.WeakValueDictionary[str, Segment] = weakref.WeakValueDictionary()
        self._stores: dict[int, SharedMemoryStore] = {}
        # Host shared memory: this process's mappings (one per segment), their stores.
        self._host: weakref.WeakValueDictionary[str, HostSegment] = weakref.WeakValueDictionary()
        self._host_stores: dict[int, HostSegmentStore] = {}
        # Buffers whose last local object died with unreleased writes: shipped at the next release.
        # (A deque: the garbage collector may append from any thread while a release drains it.)
        self._dead: collections.deque[Segment] = collections.deque()
        self._lock = threading.RLock()
        self.writer = secrets.token_hex(6)
        #: Counters for tests and the docs' cost figures.
        self.pushes = 0
        self.pulls = 0
        self.bytes_pushed = 0
        self.bytes_pulled = 0

    def after_fork(self) -> None:
        """In a forked child: a writer id of its own, a fresh lock and no segments.

        faasmp forks a worker slot to run a Process; the child attaches the
        segments its Process needs afresh (over its own Redis connection)
        instead of inheriting the slot's copies and their connections.
        """
        self.writer = secrets.token_hex(6)
        self._lock = threading.RLock()
        for seg in list(self._segments.values()):
            seg.gone = True
        self._segments = weakref.WeakValueDictionary()
        self._stores = {}
        self._dead = collections.deque()
        # Inherited mappings stay valid (MAP_SHARED), but their stores hold the
        # parent's connections: attach afresh.
        self._host = weakref.WeakValueDictionary()
        self._host_stores = {}

    def _store(self, handle: SharedObject) -> SharedMemoryStore:
        state = handle._session.state
        store = self._stores.get(id(state))
        if store is None or store._state is not state:
            store = self._stores[id(state)] = SharedMemoryStore(state)
        return store

    def _host_store(self, handle: SharedObject) -> HostSegmentStore:
        state = handle._session.state
        store = self._host_stores.get(id(state))
        if store is None or store._state is not state:
            store = self._host_stores[id(state)] = HostSegmentStore(state)
        return store

    # -- segments ---------------------------------------------------------------
    def create(
        self, handle: SegmentHandle, data: bytes | int, *, exclusive: bool = False
    ) -> Segment | HostSegment | None:
        """Store a new segment holding *data* (an int: that many zeros) and attach to it.

        None if *exclusive* and it exists.  In host shared memory when the
        run's segments are (see the module doc), else in Redis.
        """
        identity = handle._session.host_memory
        if identity is not None:
            return self._create_host(handle, data, identity, exclusive)
        store = self._store(handle)
        if not store.create(handle.key(), data, handle._ttl_ms, exclusive=exclusive):
            return None
        return self._add(Segment(handle, store, bytearray(data), bytearray(data), 0))

    def attach(self, handle: SegmentHandle) -> Segment | HostSegment | None:
        """This process's copy of the segment of *handle* (None if it does not exist).

        One round trip the first time (the whole segment; in host shared
        memory, only its record); later calls share the copy.
        """
        identity = handle._session.host_memory
        if identity is not None:
            return self._attach_host(handle, identity)
        key = handle.key()
        with self._lock:
            seg = self._segments.get(key)
            if seg is not None and seg.synced:
                return seg
            self._flush_dead()
            store = self._store(handle)
            snap = store.snapshot(key)
            if snap is None:
                return None
            version, data = snap
            # The received buffer becomes the local copy; the twin is the one copy made here.
            return self._add(Segment(handle, store, data, bytearray(data), version))

    def _create_host(
        self, handle: SegmentHandle, data: bytes | int, identity: hostmem.HostIdentity, exclusive: bool
    ) -> HostSegment | None:
        """:meth:`create` in host shared memory: a new file, then its record in Redis."""
        hostmem.check(identity, handle._oid)
        key = handle.key()
        size = data if isinstance(data, int) else len(data)
        mem, ino, tmp = hostmem.create_file(identity, handle._oid, size)
        store = self._host_store(handle)
        try:
            if not isinstance(data, int):
                mem[:size] = data
            # Redis decides whether the name is free (exclusive); the file
            # gets its name only then, replacing any file left by a segment
            # of that name whose record expired.
            created = store.create(key, size, ino, handle._ttl_ms, exclusive=exclusive)
        except BaseException:
            hostmem.remove_file(tmp)
            raise
        if not created:
            hostmem.remove_file(tmp)
            return None
        path = identity.file(key)
        hostmem.publish(tmp, path)
        finalizer = handle._finalizer
        if finalizer.alive and not handle._session.remote_mode:
            # The owner's release (garbage collection, a manager's shutdown)
            # deletes the file with the keys.  (A named segment's finalizer
            # is detached: it goes at unlink(); in a worker, keys and files
            # live until the run ends, as for segments in Redis.)
            _, func, args, kwargs = finalizer.detach()  # type: ignore[misc]
            delete = functools.partial(func, *args, **kwargs)
            handle._finalizer = weakref.finalize(handle, _delete_then_remove, delete, path)  # type: ignore[call-arg,arg-type]
        seg = HostSegment(handle, store, mem, path, ino)
        with self._lock:
            self._host[key] = seg
        return seg

    def _attach_host(self, handle: SegmentHandle, identity: hostmem.HostIdentity) -> HostSegment | None:
        """:meth:`attach` in host shared memory: map the file Redis describes."""
        key = handle.key()
        seg = self._host.get(key)
        if seg is not None and hostmem.linked(seg.path, seg.ino):
            return seg  # mapped already, and not deleted since
        hostmem.check(identity, handle._oid)
        store = self._host_store(handle)
        described = store.describe(key)
        if described is None:
            return None
        size, ino = described
        path = identity.file(key)
        mem = hostmem.open_file(path, size, ino)
        if mem is None:
            return None  # deleted meanwhile
        seg = HostSegment(handle, store, mem, path, ino)
        with self._lock:
            self._host[key] = seg
        return seg

    def _add(self, seg: Segment) -> Segment:
        with self._lock:
            self._segments[seg.key] = seg
        fields = (seg.handle, seg.store, seg.mem, seg.twin, seg.session, seg.key, seg.ttl_ms)
        weakref.finalize(seg, self._bury, *fields).atexit = False
        return seg

    def _bury(self, handle: SegmentHandle, store: SharedMemoryStore, mem: bytearray, *rest: Any) -> None:
        # Runs when the last local object of a segment is garbage collected,
        # maybe in the middle of a Redis call: only queue its unreleased
        # writes.  The owner's data is deleted with it: nothing to ship then.
        twin, session, key, ttl_ms = rest
        if mem != twin and not getattr(handle, "_owner", False):
            self._dead.append(Segment(handle, store, mem, twin, -1, False, session, key, ttl_ms))

    def forget(self, key: str) -> None:
        """Stop synchronising the segment *key* (it was deleted)."""
        with self._lock:
            seg = self._segments.pop(key, None)
            self._host.pop(key, None)
        if seg is not None:
            seg.gone = True

    def only_on(self, state: Any) -> bool:
        """Whether every segment this process holds lives in *state*.

        A lock's combined round trips (pull behind its try, pushes before its
        release) rely on one connection ordering the commands: with a segment
        in another store (another context's Redis), a pull sent behind a held
        try would run before the try, and a push need not land before the
        release.
        """
        return all(seg.store._state is state for seg in (*self._segments.values(), *self._dead))

    def live(self) -> list[Segment]:
        """The segments this process holds."""
        return [s for s in self._segments.values() if s.synced]

    # -- synchronisation --------------------------------------------------------
    def release(self, then: Callable[[], T] | None = None, *, later: bool = False) -> T | None:
        """Ship every local change made since the last synchronisation (a release).

        One round trip per segment that changed; nothing when nothing changed.
        With *then* (a lock's own release, on this thread's connection) the
        pushes are sent without waiting and *then* collects their replies:
        pushing one segment and releasing the lock is one round trip, not two.
        Returns what *then* returns.  *later*: *then* leaves its reply to the
        thread's next command (a lock release that cannot fail): the pushes'
        replies are read there too, their errors raised there.
        """
        if not self._segments and not self._dead:
            return then() if then is not None else None
        with self._lock:
            self._flush_dead()
            if then is None:
                for seg in self.live():
                    self._push(seg)
                return None
            failed: list[BaseException] = []
            for seg in self.live():
                self._push(seg, failed)
            if later:
                return then()
            try:
                return then()
            finally:
                # A push lost with the connection or refused by Redis: as
                # loud as a waited-for push would have been.
                self._direct_flush()
                if failed:
                    raise failed[0]

    def _direct_flush(self) -> None:
        for store in self._stores.values():
            store.flush()

    def _flush_dead(self) -> None:
        while self._dead:
            seg = self._dead.popleft()
            if seg.synced:
                self._push(seg)

    def _push(self, seg: Segment, failed: list[BaseException] | None = None) -> None:
        """Push *seg*'s changes; with *failed*, without waiting (its errors go there)."""
        if seg.mem == seg.twin:  # memcmp: the common case costs microseconds per MB
            return
        diff = make_diff(seg.mem, seg.twin, seg.grain)
        if diff is None:
            return
        self.pushes += 1
        self.bytes_pushed += diff.nbytes
        if failed is None:
            self._pushed(
                seg, seg.store.push(seg.key, diff, writer=self.writer, ttl_ms=seg.ttl_ms, size=len(seg.mem))
            )
            return

        def on_reply(reply: Any) -> BaseException | None:
            if isinstance(reply, BaseException):
                failed.append(reply)
                return reply  # raised by the command that reads it (release(later=True))
            self._pushed(seg, int(reply))
            return None

        seg.store.push_deferred(
            seg.key, diff, on_reply, writer=self.writer, ttl_ms=seg.ttl_ms, size=len(seg.mem)
        )

    def _pushed(self, seg: Segment, version: int) -> None:
        with self._lock:  # a deferred reply may be read by a command outside release()
            self._note_version(seg, version)

    @staticmethod
    def _note_version(seg: Segment, version: int) -> None:
        if version < 0:
            seg.gone = True
            logger.debug("shared memory %s is gone; local writes to it are not shared", seg.key)
        elif version == seg.version + 1:
            # Nobody else pushed since our version: we are up to date.
            seg.version = version

    def acquire(self) -> None:
        """Copy in what other processes released since this process's versions (an acquire).

        One round trip for all segments (two when more than a few hundred KB
        changed); nothing when the process holds no segment.
        """
        if not self._segments:
            return
        with self._lock:
            by_store: dict[int, list[Segment]] = {}
            for seg in self.live():
                by_store.setdefault(id(seg.store), []).append(seg)
            for segs in by_store.values():
                pulled = segs[0].store.pull([(s.key, s.version) for s in segs], writer=self.writer)
                self.pulls += 1
                for seg, got in zip(segs, pulled, strict=True):
                    self._apply(seg, got)

    def _apply(self, seg: Segment, got: Pulled) -> None:
        if got.version < 0:
            seg.gone = True
            return
        if got.spec is None:
            merge(seg.mem, seg.twin, [(0, len(got.data))], got.data)
        elif got.spec:
            merge(seg.mem, seg.twin, _parse_spec(got), got.data)
        self.bytes_pulled += len(got.data)
        seg.version = max(seg.version, got.version)


# --- diffs ---------------------------------------------------------------------------


#: Segments up to this many bytes (a Value, a small Array) are diffed in plain
#: Python: 6-16 us where numpy's calls cost ~58 us even for 4 bytes (issue 16:
#: a locked ``Value += 1`` pushed with the numpy diff spent more CPU on it than
#: on its two round trips).
SMALL_DIFF = 256


def make_diff(mem: bytearray, twin: bytearray, grain: int = 1) -> Diff | None:
    """The bytes of *mem* that differ from *twin*; *twin* is updated to match what is shipped.

    *grain* is the element size (2, 4 or 8 for arrays of such elements): a
    changed element is shipped whole, even the bytes that kept their value
    by chance (a sorted int32 array then changes in one run instead of one
    run per few bytes).  That is safe because another process writing the
    same element between the same synchronisations would be a data race.
    With numpy: exact runs where they are few, a byte mask over a region
    where they are many (shipping the region and a mask is cheaper than
    thousands of runs).
    """
    np = _numpy()
    if np is None or len(mem) <= SMALL_DIFF:
        return _diff_python(mem, twin)
    cur = np.frombuffer(mem, np.uint8)
    old_all = np.frombuffer(twin, np.uint8)
    span = _dirty_span(np, cur, old_all)
    if span is None:
        return None
    base, top = span
    if grain in (2, 4, 8) and len(mem) % grain == 0:
        base, top = base - base % grain, min(len(mem), top + (-top) % grain)
    else:
        grain = 1
    snap = np.array(cur[base:top])  # what we ship, even if another thread writes on
    old = old_all[base:top]
    starts, ends, ne = _changed_runs(np, snap, old, grain)
    exact: list[Any] = []  # per chunk: a (k, 2) array of (start, length)
    exact_data: list[bytes] = []
    masked: list[tuple[int, int]] = []
    masked_new: list[bytes] = []
    masked_mask: list[bytes] = []
    bounds = np.searchsorted(starts, np.arange(0, len(snap) + CHUNK, CHUNK))
    # Exact runs or a mask, chunk by chunk; decided for all chunks at once
    # (a Python loop over 16 chunks of a 1 MiB array cost 0.3 ms).
    firsts, tops = bounds[:-1], bounds[1:]
    used = tops > firsts
    firsts, tops = firsts[used], tops[used]
    lens_all = ends - starts
    sums = np.concatenate(([0], np.cumsum(lens_all)))
    spans = ends[tops - 1] - starts[firsts]
    mask_it = sums[tops] - sums[firsts] + RUN_COST * (tops - firsts) > 2 * spans + RUN_COST
    if not mask_it.any():
        # Every chunk ships exact runs: all of them in one go.
        total = int(sums[-1])
        old[:] = snap
        exact.append(np.column_stack((starts + base, lens_all)))
        if len(starts) == 1:
            # One run (a sorted slice): ship a view of the snapshot, which
            # nothing else holds, instead of copying megabytes once more.
            logged = np.column_stack((starts + base, lens_all))
            one = memoryview(snap)[int(starts[0]) : int(ends[0])]
            return Diff(_packed(np, exact), one, [], b"", b"", _packed(np, [logged]))
        if len(starts) <= 256:
            # Few long runs: slices joined (fancy indexing 5 MB costs ~15 ms).
            view = memoryview(snap)
            pieces = zip(starts.tolist(), ends.tolist(), strict=True)
            exact_data.append(b"".join(view[a:b] for a, b in pieces))
        else:
            exact_data.append(snap[_positions(np, starts, lens_all, total)].tobytes())
        bounds = bounds[:1]  # no chunk left for the loop below
    for i0, i1 in itertools.pairwise(bounds.tolist()):
        if i0 == i1:
            continue
        lo, hi = int(starts[i0]), int(ends[i1 - 1])
        lens = ends[i0:i1] - starts[i0:i1]
        changed = int(lens.sum())
        if changed + RUN_COST * (i1 - i0) <= 2 * (hi - lo) + RUN_COST:
            exact.append(np.column_stack((starts[i0:i1] + base, lens)))
            if i1 - i0 == 1:
                exact_data.append(snap[lo:hi].tobytes())
            else:
                exact_data.append(snap[_positions(np, starts[i0:i1], lens, changed)].tobytes())
        else:
            region = ne(lo, hi)
            masked.append((lo + base, hi - lo))
            masked_new.append(np.where(region, snap[lo:hi], 0).astype(np.uint8).tobytes())
            masked_mask.append((region.view(np.uint8) * 255).astype(np.uint8).tobytes())
        old[lo:hi] = snap[lo:hi]
    gaps = np.flatnonzero(starts[1:] - ends[:-1] > LOG_GAP)
    log_starts = starts[np.concatenate(([0], gaps + 1))]
    log_ends = ends[np.concatenate((gaps, [len(ends) - 1]))]
    logged = np.column_stack((log_starts + base, log_ends - log_starts))
    return Diff(
        _packed(np, exact),
        b"".join(exact_data),
        masked,
        b"".join(masked_new),
        b"".join(masked_mask),
        _packed(np, [logged]),
    )


def _packed(np: Any, pairs: list[Any]) -> bytes:
    """(k, 2) arrays of (start, length) as one packed range list (see ``RANGE`` in the store)."""
    if not pairs:
        return b""
    return np.concatenate(pairs).astype("<u8").tobytes()  # type: ignore[no-any-return]


def _dirty_span(np: Any, cur: Any, old: Any) -> tuple[int, int] | None:
    """[first, last + 1) of the bytes that differ, found by comparing 8-byte words; None if none."""
    nw = len(cur) // 8
    ne = cur[: nw * 8].view(np.uint64) != old[: nw * 8].view(np.uint64)
    tail = np.flatnonzero(cur[nw * 8 :] != old[nw * 8 :]) + nw * 8
    # argmax finds the first True without listing every changed word (a
    # sorted 20 MB array: 2.5 million indices).
    first = int(ne.argmax()) if nw else 0
    found = [first * 8, (nw - int(ne[::-1].argmax())) * 8] if nw and ne[first] else []
    found += [int(tail[0]), int(tail[-1]) + 1] if len(tail) else []
    return (min(found), max(found)) if found else None


def _positions(np: Any, starts: Any, lens: Any, total: int) -> Any:
    """The byte positions covered by runs (*starts*, *lens*), in order."""
    offsets = np.cumsum(lens) - lens
    return np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lens)


def _changed_runs(np: Any, snap: Any, old: Any, grain: int = 1) -> tuple[Any, Any, Any]:
    """(starts, ends, ne) of the runs of changed bytes; ``ne(lo, hi)`` is their mask there.

    Few changes: compare 8-byte words, then bytes only within changed words
    (work proportional to the changes).  Many: compare every byte.  With a
    *grain* > 1, compare elements of that size (whole elements are runs).
    """
    n = len(snap)
    if grain > 1:
        kind = {2: np.uint16, 4: np.uint32, 8: np.uint64}[grain]
        ne_el = snap.view(kind) != old.view(kind)
        edges = np.diff(ne_el.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts, ends = np.flatnonzero(edges > 0) * grain, np.flatnonzero(edges < 0) * grain
        return starts, ends, lambda lo, hi: np.repeat(ne_el[lo // grain : hi // grain], grain)
    nw = n // 8
    words = np.flatnonzero(snap[: nw * 8].view(np.uint64) != old[: nw * 8].view(np.uint64))
    if len(words) * 64 < n:
        tail = np.flatnonzero(snap[nw * 8 :] != old[nw * 8 :]) + nw * 8
        w8 = (words[:, None] * 8 + np.arange(8)).ravel()
        pos = np.concatenate((w8[snap[w8] != old[w8]], tail))
        breaks = np.flatnonzero(np.diff(pos) != 1)
        starts = pos[np.concatenate(([0], breaks + 1))]
        ends = pos[np.concatenate((breaks, [len(pos) - 1]))] + 1
        return starts, ends, lambda lo, hi: snap[lo:hi] != old[lo:hi]
    ne = snap != old
    edges = np.diff(ne.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(edges > 0), np.flatnonzero(edges < 0), lambda lo, hi: ne[lo:hi]


def _runs(new: bytes, old: bytes | bytearray, base: int) -> Iterator[tuple[int, int]]:
    start = -1
    for i, (a, b) in enumerate(zip(new, old, strict=True)):
        if a != b:
            if start < 0:
                start = i
        elif start >= 0:
            yield base + start, i - start
            start = -1
    if start >= 0:
        yield base + start, len(new) - start


def _diff_python(mem: bytearray, twin: bytearray, page: int = 4096) -> Diff | None:
    """:func:`make_diff` without numpy: compare pages, then bytes within changed pages."""
    exact: list[tuple[int, int]] = []
    data: list[bytes] = []
    for lo in range(0, len(mem), page):
        new = bytes(mem[lo : lo + page])
        if new == twin[lo : lo + page]:
            continue
        for start, length in _runs(new, twin[lo : lo + page], lo):
            exact.append((start, length))
            data.append(new[start - lo : start - lo + length])
        twin[lo : lo + page] = new
    if not exact:
        return None
    logged: list[tuple[int, int]] = []
    for start, length in exact:
        if logged and start - sum(logged[-1]) <= LOG_GAP:
            logged[-1] = (logged[-1][0], start + length - logged[-1][0])
        else:
            logged.append((start, length))
    return Diff(pack_ranges(exact), b"".join(data), [], b"", b"", pack_ranges(logged))


def _parse_spec(got: Pulled) -> Any:
    """The pulled ranges as (start, length) pairs (a numpy array of them when numpy is there)."""
    np = _numpy()
    if np is None or got.spec is None:
        return got.ranges()
    return np.frombuffer(got.spec, dtype="<u8").astype(np.int64).reshape(-1, 2)


def merge(mem: bytearray, twin: bytearray, ranges: Any, data: bytes | bytearray) -> None:
    """Copy pulled *data* (the *ranges*' bytes, concatenated) into *mem* and *twin*.

    Bytes this process changed since its last synchronisation (``mem != twin``)
    keep their local value in *mem*: they are newer than anything it could
    pull, or a data race.
    """
    np = _numpy()
    if np is None:
        pos = 0
        for start, length in ranges:
            end = start + length
            piece = data[pos : pos + length]
            pos += length
            if mem[start:end] == twin[start:end]:
                mem[start:end] = piece
            else:
                for i in range(length):
                    if mem[start + i] == twin[start + i]:
                        mem[start + i] = piece[i]
            twin[start:end] = piece
        return
    cur = np.frombuffer(mem, np.uint8)
    old = np.frombuffer(twin, np.uint8)
    new = np.frombuffer(data, np.uint8)
    if len(ranges) <= 16:
        pos = 0
        for start, length in ranges:
            end = start + length
            piece = new[pos : pos + length]
            pos += length
            dirty = cur[start:end] != old[start:end]
            cur[start:end] = np.where(dirty, cur[start:end], piece) if dirty.any() else piece
            old[start:end] = piece
        return
    pairs = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    starts, lens = pairs[:, 0], pairs[:, 1]
    idx = _positions(np, starts, lens, int(lens.sum()))
    here, before = cur[idx], old[idx]
    cur[idx] = np.where(here != before, here, new)
    old[idx] = new


# --- the process's registry and the hooks ---------------------------------------------

REGISTRY = Registry()
os.register_at_fork(after_in_child=REGISTRY.after_fork)


#: Per thread: how many times it holds each faasmp lock (by object id), see :func:`holds`.
_HELD = threading.local()


def _held() -> dict[str, int]:
    held: dict[str, int] | None = getattr(_HELD, "locks", None)
    if held is None:
        held = _HELD.locks = {}
    return held


def release(lock: Any = None, then: Callable[[], T] | None = None, *, later: bool = False) -> T | None:
    """Synchronisation hook: this process releases (see :meth:`Registry.release`).

    *lock*: the faasmp lock being released by this thread (see :func:`holds`).
    *then*: the lock's own release, run after the pushes are sent and
    collecting their replies (one round trip for both); its result is returned.
    *later*: *then* reads no reply (see :meth:`Registry.release`).
    """
    if lock is not None:
        held = _held()
        count = held.get(lock._oid, 0)
        if count > 1:
            held[lock._oid] = count - 1
        else:
            held.pop(lock._oid, None)
    if REGISTRY._segments or REGISTRY._dead:
        if then is not None and lock is not None and not REGISTRY.only_on(lock._redis._state):
            REGISTRY.release()  # pushes waited for first: they go to another connection
            return then()
        return REGISTRY.release(then, later=later)
    return then() if then is not None else None


def acquire(lock: Any = None, *, pull: bool = True) -> None:
    """Synchronisation hook: this process acquires (see :meth:`Registry.acquire`).

    *lock*: the faasmp lock this thread just acquired (see :func:`holds`).
    *pull* False: the lock's acquire already pulled (in its own round trip).
    """
    if lock is not None:
        held = _held()
        held[lock._oid] = held.get(lock._oid, 0) + 1
    if pull and REGISTRY._segments:
        REGISTRY.acquire()


def active(state: Any = None) -> bool:
    """Whether this process holds shared segments (an acquire would pull), all in *state* if given.

    A lock sends its pull behind its own script only then: the deferred
    path costs ~10 us of CPU more than a plain call when nothing is pulled,
    and it orders the two only on one connection (see :meth:`Registry.only_on`).
    """
    return bool(REGISTRY._segments) and (state is None or REGISTRY.only_on(state))


def holds(lock: Any) -> bool:
    """Whether this thread holds the faasmp *lock* (acquired and not yet released here).

    A ``Value``/``Array`` wrapper whose lock the thread already holds reads
    and writes its local buffer directly: the acquire already pulled, the
    release will push, and no other party can hold the lock meanwhile.
    """
    return _held().get(lock._oid, 0) > 0
