"""``faasmp.shared_memory``: :mod:`multiprocessing.shared_memory` for every faasmp process.

``SharedMemory(name=None, create=False, size=0)`` creates or attaches a
named block of shared memory, exactly as the stdlib's.  Any faasmp process
of the run attaches it by name.  Where the block lives depends on the run
(``FAASMP_SHARED_MEMORY``, see ``docs/shared_memory.md``):

* host shared memory (every process on the client's host): a file in
  ``/dev/shm`` every process maps, as the stdlib's; writes are seen at once;
* the DSM (any other run): the block lives in the run's Redis and each
  process works on its own local copy (``buf`` is a real ``memoryview`` of a
  local buffer, so numpy views run at local speed), kept coherent at
  synchronisation points (lock release/acquire, send/recv, put/get, events,
  barriers, the start and end of processes and tasks): see
  :mod:`faasmp.runtime.dsm`.

Semantics follow the stdlib's:

* ``create=True`` with an existing name raises ``FileExistsError``;
  attaching a name that does not exist raises ``FileNotFoundError``;
  ``size`` must be positive when creating (``ValueError``).
* ``close()`` ends this object's access; the block lives on.  Unlike the
  stdlib it does not raise ``BufferError`` while numpy arrays made from
  ``buf`` still exist: they keep working on this process's copy.
* ``unlink()`` deletes the block (``FileNotFoundError`` if already deleted).
  Processes still attached keep their local copy, but it is no longer
  shared (in host shared memory: they keep the mapping, and share it with
  every process still mapping it, as on the stdlib).  As on the stdlib, a
  block is not deleted when the object that created it is garbage
  collected; it lives until ``unlink()`` or the end of the run.

``ShareableList`` is the stdlib's class (same packing, same methods) over a
faasmp ``SharedMemory``.
"""

from __future__ import annotations

import errno
import multiprocessing.shared_memory as _std
import types
from typing import TYPE_CHECKING, Any

from .runtime import dsm
from .runtime.shared import context_or_default

if TYPE_CHECKING:
    from .context import FaasContext

__all__ = ["ShareableList", "SharedMemory"]


class SharedMemory:
    """A named block of shared memory, attachable by name from any faasmp process.

    Creating (``create=True``) or attaching costs one round trip; reading and
    writing ``buf`` are local.  *ctx* (a faasmp addition, keyword-only) is
    the context whose run holds the block (default: the default context).
    """

    _buf: memoryview | None = None
    _seg: dsm.AnySegment | None = None

    def __init__(
        self, name: str | None = None, create: bool = False, size: int = 0, *, ctx: FaasContext | None = None
    ) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        ctx = context_or_default(ctx)
        seg = self._create(name, size, ctx) if create else self._attach(name or "", ctx)
        self._seg = seg
        self._unlink = seg.unlinker()  # for unlink() after close()
        self._name = "/" + seg.handle._oid  # as the stdlib's POSIX names; .name drops the slash
        self._size = len(seg.mem)
        self._buf = memoryview(seg.mem)

    @staticmethod
    def _create(name: str | None, size: int, ctx: FaasContext) -> dsm.AnySegment:
        while True:
            # Generated names come from the stdlib's own generator ("psm_" + hex).
            block = (name if name is not None else _std._make_filename()).lstrip("/")  # type: ignore[attr-defined]
            seg = dsm.REGISTRY.create(
                dsm.NamedSegmentHandle(block, ctx=ctx, owner=True), size, exclusive=True
            )
            if seg is not None:
                return seg
            if name is not None:
                raise FileExistsError(errno.EEXIST, "File exists", block)

    @staticmethod
    def _attach(name: str, ctx: FaasContext) -> dsm.AnySegment:
        name = name.lstrip("/")
        seg = dsm.REGISTRY.attach(dsm.NamedSegmentHandle(name, ctx=ctx))
        if seg is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
        return seg

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, BufferError):
            pass  # as the stdlib: views still exported; the block lives on regardless

    def __reduce__(self) -> Any:
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self) -> memoryview:
        """A memoryview of this process's copy of the block (``None`` after ``close()``)."""
        return self._buf  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """Unique name that identifies the block."""
        return self._name[1:]

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    def close(self) -> None:
        """Stop using the block from this object (its last writes are shipped first)."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._seg is not None:
            dsm.release()
            self._seg = None

    def unlink(self) -> None:
        """Delete the block for every process (``FileNotFoundError`` if already deleted)."""
        if not self._unlink():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", self.name)


def _with_our_shared_memory(func: types.FunctionType) -> types.FunctionType:
    """*func* (a stdlib ``ShareableList`` method) resolving ``SharedMemory`` to faasmp's.

    The stdlib's ``ShareableList`` finds ``SharedMemory`` as a module global;
    everything else (the packing of values, formats and offsets) is reused as
    it is, so a list has exactly the stdlib's layout and behaviour.
    """
    namespace = dict(vars(_std))
    namespace["SharedMemory"] = SharedMemory
    new = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__doc__ = func.__doc__
    return new


class ShareableList(_std.ShareableList):
    """The stdlib's ``ShareableList`` stored in a faasmp :class:`SharedMemory`."""

    __init__ = _with_our_shared_memory(_std.ShareableList.__init__)  # type: ignore[arg-type]
