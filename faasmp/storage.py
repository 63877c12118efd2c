"""Files on object storage, with the API of ``open()`` and ``os``.

Serverless functions share no disk.  This module gives them one, the way the
published design does: files live in object storage (Lithops storage — the
``localhost`` storage by default, S3/GCS/Azure/IBM COS/... through the Lithops
configuration) and are used with the functions programs already call::

    import faasmp.storage as fs
    fs.makedirs("/faas/data", exist_ok=True)
    with fs.open("/faas/data/x.csv", "w") as f:
        f.write("a,b\\n")
    fs.listdir("/faas/data")            # ['x.csv']

or, for unmodified programs, by routing the built-ins for one path prefix::

    with faasmp.storage.patched("/faas/"):     # or: faasmp run --storage /faas/ prog.py
        open("/faas/data/x.csv")                # object storage
        open("/tmp/y")                          # the local disk, untouched

**Path → object.**  ``scheme://bucket/a/b`` is key ``a/b`` of bucket
``bucket`` (the scheme is only a name: the storage is the configured Lithops
one); any other path is a key of the configured bucket (Lithops
``storage_bucket``) with its leading ``/`` dropped: ``/faas/a/b`` is key
``faas/a/b``.  Paths are normalized like ``os.path.normpath``.

**Directories.**  Object storage has none: a directory exists when keys lie
under it or it was made by :func:`makedirs`/:func:`mkdir`, which store an empty
marker object (``__faasmp_dir__``, never listed).  The root of a patched
prefix (and a bucket) always exists.

**Differences from a local disk**, each because of object storage:
writes reach storage at ``flush()``/``close()`` (whole-object puts; other
processes see a file from then on, and the last writer wins); append and
``r+`` download the object first; reads fetch byte ranges (8 MiB blocks);
there are no permissions, links, ``stat`` times or atomic renames.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import io
import os
import posixpath
import re
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from .backends.storage import LithopsStore, ObjectNotFound, ObjectStore, StoreSpec, spec_for

__all__ = [
    "Routes",
    "exists",
    "getsize",
    "isdir",
    "isfile",
    "listdir",
    "makedirs",
    "mkdir",
    "open",
    "patch",
    "patched",
    "patched_prefixes",
    "remove",
    "unpatch",
    "walk",
]

#: Key of the empty object that marks a directory made by makedirs/mkdir.
DIR_MARKER = "__faasmp_dir__"
#: Bytes a reader fetches per request.
READ_BLOCK = 8 << 20
#: Buffer of a reading file object (fewer Python-level calls than 8 KiB).
_BUFFER = 1 << 20

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]+)(.*)$")


# --- where a path lives -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Loc:
    """A storage path resolved to a bucket and a key (``""`` is the bucket root)."""

    path: str
    store: ObjectStore
    bucket: str
    key: str

    def child(self, name: str) -> _Loc:
        key = f"{self.key}/{name}" if self.key else name
        return _Loc(posixpath.join(self.path, name), self.store, self.bucket, key)

    @property
    def dir_prefix(self) -> str:
        return f"{self.key}/" if self.key else ""


def _split(path: str) -> tuple[str | None, str]:
    """(bucket or None for the configured one, normalized key) of a path."""
    m = _URL.match(path)
    if m:
        rest = posixpath.normpath("/" + m.group(3)).lstrip("/")
        return m.group(2), "" if rest == "." else rest
    key = posixpath.normpath("/" + path).lstrip("/")
    return None, "" if key == "." else key


def _normalize_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"a storage prefix must be a non-empty str, got {prefix!r}")
    m = _URL.match(prefix)
    if m:
        rest = posixpath.normpath("/" + m.group(3)).rstrip("/")
        return f"{m.group(1)}://{m.group(2)}{rest}"
    if not prefix.startswith("/"):
        raise ValueError(
            f"storage prefix {prefix!r} must be an absolute path such as '/faas/' or a URL "
            "such as 's3://bucket/': relative paths are the local disk's"
        )
    norm = posixpath.normpath(prefix)
    if norm in ("/", "//"):
        raise ValueError("storage prefix '/' would route every local file to object storage")
    return norm


def _under(path: str, prefix: str) -> bool:
    if _URL.match(prefix):
        m = _URL.match(path)
        if not m:
            return False
        scheme, bucket, rest = m.groups()
        path = f"{scheme}://{bucket}{posixpath.normpath('/' + rest).rstrip('/')}"
    else:
        if not path.startswith("/"):
            return False
        path = posixpath.normpath(path)
    return path == prefix or path.startswith(prefix + "/")


@dataclasses.dataclass(frozen=True)
class Routes:
    """The prefixes routed to object storage and the storage they use.

    Travels with every call to a worker, so remote code routes the same paths.
    """

    prefixes: tuple[str, ...]
    spec: StoreSpec


class _Router:
    """Process state: open stores, routed prefixes, the saved built-ins."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stores: dict[StoreSpec, ObjectStore] = {}
        self.routes: Routes | None = None
        self.saved: list[tuple[Any, str, Any]] = []

    def spec(self) -> StoreSpec:
        if self.routes is not None:
            return self.routes.spec
        from .context import default_context  # noqa: PLC0415

        return spec_for(default_context().config)

    def store(self, spec: StoreSpec) -> ObjectStore:
        with self.lock:
            store = self.stores.get(spec)
            if store is None:
                store = self.stores[spec] = LithopsStore(spec)
            return store

    def locate(self, path: Any) -> _Loc:
        """Resolve a path for the direct API (any path is a storage path)."""
        p = _as_str(path)
        if p is None:
            raise TypeError(f"expected a str or os.PathLike path, not {type(path).__name__}")
        bucket, key = _split(p)
        store = self.store(self.spec())
        bucket = bucket or store.default_bucket
        if not bucket:
            raise ValueError(
                f"no bucket for {p!r}: the Lithops storage configuration has no storage_bucket; "
                "use a 'scheme://bucket/key' path"
            )
        return _Loc(p, store, bucket, key)

    def routed(self, path: Any) -> _Loc | None:
        """The location of *path* if it is under a patched prefix, else None."""
        routes = self.routes
        if routes is None:
            return None
        p = _as_str(path)
        if p is None or not any(_under(p, prefix) for prefix in routes.prefixes):
            return None
        return self.locate(p)


_router = _Router()


def _as_str(path: Any) -> str | None:
    if isinstance(path, str):
        return path
    if isinstance(path, os.PathLike):
        p = os.fspath(path)
        return p if isinstance(p, str) else None
    return None


def _oserror(cls: type[OSError], code: int, path: str) -> OSError:
    return cls(code, os.strerror(code), path)


# --- metadata ------------------------------------------------------------------


def _kind(loc: _Loc) -> tuple[str, int] | None:
    """("file", size), ("dir", 0) or None."""
    if not loc.key:
        return ("dir", 0)
    size = loc.store.size(loc.bucket, loc.key)
    if size is not None:
        return ("file", size)
    if loc.store.size(loc.bucket, f"{loc.key}/{DIR_MARKER}") is not None:
        return ("dir", 0)
    if loc.store.list_prefix(loc.bucket, loc.dir_prefix):
        return ("dir", 0)
    return None


def _is_root(loc: _Loc) -> bool:
    routes = _router.routes
    return not loc.key or (routes is not None and any(_same(loc.path, p) for p in routes.prefixes))


def _same(path: str, prefix: str) -> bool:
    return _under(path, prefix) and _split(path) == _split(prefix)


def _parent(loc: _Loc) -> _Loc | None:
    if not loc.key:
        return None
    key = loc.key.rpartition("/")[0]
    m = _URL.match(loc.path)
    path = posixpath.dirname(loc.path.rstrip("/")) if not m else loc.path.rstrip("/").rpartition("/")[0]
    return _Loc(path, loc.store, loc.bucket, key)


def _require_dir(loc: _Loc) -> None:
    """Raise like the OS when *loc*'s parent directory is missing or a file."""
    parent = _parent(loc)
    if parent is None or _is_root(parent):
        return
    kind = _kind(parent)
    if kind is None:
        raise _oserror(FileNotFoundError, errno.ENOENT, loc.path)
    if kind[0] == "file":
        raise _oserror(NotADirectoryError, errno.ENOTDIR, loc.path)


def exists(path: Any) -> bool:
    """``os.path.exists`` for a storage path."""
    return _kind(_router.locate(path)) is not None


def isfile(path: Any) -> bool:
    """``os.path.isfile`` for a storage path."""
    kind = _kind(_router.locate(path))
    return kind is not None and kind[0] == "file"


def isdir(path: Any) -> bool:
    """``os.path.isdir`` for a storage path."""
    kind = _kind(_router.locate(path))
    return kind is not None and kind[0] == "dir"


def getsize(path: Any) -> int:
    """``os.path.getsize``: the object's size (0 for a directory); FileNotFoundError if missing."""
    loc = _router.locate(path)
    kind = _kind(loc)
    if kind is None:
        raise _oserror(FileNotFoundError, errno.ENOENT, loc.path)
    return kind[1]


def _entries(loc: _Loc) -> list[tuple[str, int]]:
    """(relative key, size) of every object under a directory, markers included."""
    prefix = loc.dir_prefix
    return [(key[len(prefix) :], size) for key, size in loc.store.list_prefix(loc.bucket, prefix)]


def _open_dir(path: Any) -> tuple[_Loc, list[tuple[str, int]]]:
    loc = _router.locate(path)
    entries = _entries(loc)
    if entries or _is_root(loc):
        return loc, entries
    kind = _kind(loc)
    if kind is None:
        raise _oserror(FileNotFoundError, errno.ENOENT, loc.path)
    if kind[0] == "file":
        raise _oserror(NotADirectoryError, errno.ENOTDIR, loc.path)
    return loc, entries


def listdir(path: Any) -> list[str]:
    """``os.listdir`` for a storage directory (sorted names).

    FileNotFoundError if missing, NotADirectoryError for a file.
    """
    _loc, entries = _open_dir(path)
    names = {rel.split("/", 1)[0] for rel, _ in entries}
    names.discard(DIR_MARKER)
    names.discard("")
    return sorted(names)


def mkdir(path: Any, mode: int = 0o777) -> None:
    """``os.mkdir``: FileExistsError if it exists, FileNotFoundError without a parent."""
    del mode  # object storage has no permissions
    loc = _router.locate(path)
    if _is_root(loc) or _kind(loc) is not None:
        raise _oserror(FileExistsError, errno.EEXIST, loc.path)
    _require_dir(loc)
    loc.store.put(loc.bucket, f"{loc.key}/{DIR_MARKER}", b"")


def makedirs(name: Any, mode: int = 0o777, exist_ok: bool = False) -> None:
    """``os.makedirs``: makes missing parents; FileExistsError unless *exist_ok* (always for a file)."""
    del mode
    loc = _router.locate(name)
    kind = None if _is_root(loc) else _kind(loc)
    if _is_root(loc) or kind is not None:
        if exist_ok and (kind is None or kind[0] == "dir"):
            return
        raise _oserror(FileExistsError, errno.EEXIST, loc.path)
    chain = []
    cur: _Loc | None = loc
    while cur is not None and not _is_root(cur):
        chain.append(cur)
        cur = _parent(cur)
    for level in reversed(chain):
        if level.store.size(level.bucket, level.key) is not None:  # a file on the way
            raise _oserror(NotADirectoryError, errno.ENOTDIR, loc.path)
        level.store.put(level.bucket, f"{level.key}/{DIR_MARKER}", b"")


def remove(path: Any) -> None:
    """``os.remove``/``os.unlink``: FileNotFoundError if missing, IsADirectoryError for a directory.

    The parent directory keeps existing (a marker is stored when it was only
    implied by this object), as on a disk.
    """
    loc = _router.locate(path)
    kind = _kind(loc)
    if kind is None:
        raise _oserror(FileNotFoundError, errno.ENOENT, loc.path)
    if kind[0] == "dir":
        raise _oserror(IsADirectoryError, errno.EISDIR, loc.path)
    parent = _parent(loc)
    if parent is not None and not _is_root(parent):
        marker = f"{parent.key}/{DIR_MARKER}"
        if loc.store.size(parent.bucket, marker) is None:
            loc.store.put(parent.bucket, marker, b"")
    loc.store.delete(loc.bucket, loc.key)


def walk(
    top: Any,
    topdown: bool = True,
    onerror: Callable[[OSError], Any] | None = None,
    followlinks: bool = False,
) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` over a storage directory, from one listing of everything under it.

    Like the stdlib, editing ``dirnames`` in place (top-down) prunes the walk,
    and a missing *top* is reported to *onerror* (if given) and yields nothing.
    """
    del followlinks  # no links in object storage
    try:
        _loc, entries = _open_dir(top)
    except OSError as exc:
        if onerror is not None:
            onerror(exc)
        return
    tree: dict[str, tuple[set[str], list[str]]] = {"": (set(), [])}
    for rel, _size in entries:
        parts = [p for p in rel.split("/") if p]
        is_marker = rel.endswith("/") or (parts and parts[-1] == DIR_MARKER)
        if parts and parts[-1] == DIR_MARKER:
            parts = parts[:-1]
        dirs = parts if is_marker else parts[:-1]
        for i in range(len(dirs)):
            parent, name = "/".join(dirs[:i]), dirs[i]
            tree.setdefault(parent, (set(), []))[0].add(name)
            tree.setdefault("/".join(dirs[: i + 1]), (set(), []))
        if not is_marker and parts:
            tree.setdefault("/".join(parts[:-1]), (set(), []))[1].append(parts[-1])
    root = os.fspath(top)
    yield from _walk_tree(tree, "", root, topdown)


def _walk_tree(
    tree: dict[str, tuple[set[str], list[str]]], rel: str, path: str, topdown: bool
) -> Iterator[tuple[str, list[str], list[str]]]:
    subdirs, files = tree.get(rel, (set(), []))
    dirnames = sorted(subdirs)
    filenames = sorted(files)
    if topdown:
        yield path, dirnames, filenames
    for name in dirnames:
        child_rel = f"{rel}/{name}" if rel else name
        yield from _walk_tree(tree, child_rel, posixpath.join(path, name), topdown)
    if not topdown:
        yield path, dirnames, filenames


# --- files ------------------------------------------------------------------------


class _RangeReader(io.RawIOBase):
    """Read-only raw file over an object: byte-range gets of READ_BLOCK bytes."""

    def __init__(self, loc: _Loc, size: int) -> None:
        super().__init__()
        self._loc = loc
        self._size = size
        self._pos = 0
        self._block_start = 0
        self._block = b""
        self.name = loc.path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _fetch(self, start: int, end: int | None) -> bytes:
        loc = self._loc
        try:
            if start == 0 and (end is None or end >= self._size - 1):
                return loc.store.get(loc.bucket, loc.key)
            return loc.store.get(loc.bucket, loc.key, start, end)
        except ObjectNotFound:
            raise _oserror(FileNotFoundError, errno.ENOENT, loc.path) from None

    def readinto(self, b: Any) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        want = min(len(b), self._size - self._pos)
        if want <= 0:
            return 0
        offset = self._pos - self._block_start
        if not (0 <= offset and offset + want <= len(self._block)):
            if want >= READ_BLOCK:  # large reads go straight through
                data = self._fetch(self._pos, self._pos + want - 1)
                n = len(data)
                memoryview(b)[:n] = data
                self._pos += n
                return n
            self._block_start = self._pos
            self._block = self._fetch(self._pos, min(self._pos + READ_BLOCK, self._size) - 1)
            offset = 0
            want = min(want, len(self._block))
        memoryview(b)[:want] = self._block[offset : offset + want]
        self._pos += want
        return want

    def readall(self) -> bytes:
        self._checkClosed()  # type: ignore[attr-defined]
        if self._pos >= self._size:
            return b""
        data = self._fetch(self._pos, self._size - 1)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        base = {0: 0, 1: self._pos, 2: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if base + offset < 0:
            raise _oserror(OSError, errno.EINVAL, self._loc.path)
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        return self._pos


class _WritableObject(io.BytesIO):
    """A writable binary file over an object: edited in memory, stored at flush/close."""

    def __init__(self, loc: _Loc, initial: bytes, *, readable: bool, append: bool, dirty: bool) -> None:
        super().__init__(initial)
        self._loc = loc
        self._can_read = readable
        self._append = append
        self._dirty = dirty
        self.name = loc.path
        if append:
            self.seek(0, io.SEEK_END)

    def readable(self) -> bool:
        self._checkClosed()  # type: ignore[attr-defined]
        return self._can_read

    def _check_read(self) -> None:
        if not self._can_read:
            raise io.UnsupportedOperation("read")

    def read(self, size: int | None = -1) -> bytes:
        self._check_read()
        return super().read(size)

    def read1(self, size: int | None = -1) -> bytes:
        self._check_read()
        return super().read1(size)

    def readinto(self, buffer: Any) -> int:
        self._check_read()
        return super().readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        self._check_read()
        return super().readline(size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        self._check_read()
        return super().readlines(hint)

    def __next__(self) -> bytes:
        self._check_read()
        return super().__next__()

    def write(self, data: Any) -> int:
        if self._append:
            self.seek(0, io.SEEK_END)
        n = super().write(data)
        self._dirty = True
        return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def truncate(self, size: int | None = None) -> int:
        n = super().truncate(size)
        self._dirty = True
        return n

    def flush(self) -> None:
        """Store the content in object storage (if changed since the last flush)."""
        super().flush()
        if self._dirty:
            self._loc.store.put(self._loc.bucket, self._loc.key, self.getvalue())
            self._dirty = False

    def close(self) -> None:
        if not self.closed:
            try:
                self.flush()
            finally:
                super().close()


_MODE_CHARS = frozenset("rwaxbt+")


def _check_mode(
    mode: str, buffering: int, encoding: str | None, errors: str | None, newline: str | None
) -> None:
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    modes = set(mode)
    if modes - _MODE_CHARS or len(mode) > len(modes):
        raise ValueError(f"invalid mode: {mode!r}")
    if sum(c in modes for c in "rwax") != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if "b" in modes and "t" in modes:
        raise ValueError("can't have text and binary mode at once")
    if "b" in modes:
        for arg, what in ((encoding, "an encoding"), (errors, "an errors"), (newline, "a newline")):
            if arg is not None:
                raise ValueError(f"binary mode doesn't take {what} argument")
    elif buffering == 0:
        raise ValueError("can't have unbuffered text I/O")
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline}")


def open(
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[..., int] | None = None,
) -> IO[Any]:
    """``open()`` for a storage path: text or binary, modes r/w/a/x with ``+``.

    Differs from the built-in where object storage does: writes are stored at
    ``flush()``/``close()``; ``a``/``r+`` download the object first; a file
    being written is not visible to others before its first flush.  Errors are
    the OS's: FileNotFoundError, IsADirectoryError, FileExistsError ('x'),
    NotADirectoryError.
    """
    _check_mode(mode, buffering, encoding, errors, newline)
    if not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    if opener is not None:
        raise ValueError("open(): an opener cannot be used with an object-storage path")
    loc = _router.locate(file)
    raw = _open_binary(loc, mode)
    if "b" in mode:
        if buffering == 0 or isinstance(raw, _WritableObject):
            return raw
        return io.BufferedReader(raw, buffer_size=buffering if buffering > 1 else _BUFFER)
    binary: IO[bytes] = raw if isinstance(raw, _WritableObject) else io.BufferedReader(raw, _BUFFER)
    text = io.TextIOWrapper(
        binary,  # type: ignore[arg-type]
        encoding=io.text_encoding(encoding),
        errors=errors,
        newline=newline,
        line_buffering=buffering == 1,
    )
    text.mode = mode  # type: ignore[misc]
    return text


def _open_binary(loc: _Loc, mode: str) -> Any:
    if _is_root(loc):
        raise _oserror(IsADirectoryError, errno.EISDIR, loc.path)
    size = loc.store.size(loc.bucket, loc.key)
    if size is None and _kind(loc) is not None:
        raise _oserror(IsADirectoryError, errno.EISDIR, loc.path)
    if mode.startswith("r") and "+" not in mode:
        if size is None:
            raise _oserror(FileNotFoundError, errno.ENOENT, loc.path)
        return _RangeReader(loc, size)
    if "x" in mode and size is not None:
        raise _oserror(FileExistsError, errno.EEXIST, loc.path)
    if mode.startswith("r") and size is None:
        raise _oserror(FileNotFoundError, errno.ENOENT, loc.path)
    if size is None:
        _require_dir(loc)
    initial = b""
    if size and (mode.startswith("r") or mode.startswith("a")):
        try:
            initial = loc.store.get(loc.bucket, loc.key)
        except ObjectNotFound:
            initial = b""
    readable = "+" in mode or mode.startswith("r")
    return _WritableObject(
        loc,
        initial,
        readable=readable,
        append=mode.startswith("a"),
        dirty=mode.startswith("w") or mode.startswith("x") or size is None,
    )


# --- routing the built-ins -----------------------------------------------------------

#: (module, attribute, storage function, index of the path argument)
_TARGETS: tuple[tuple[Any, str, Callable[..., Any]], ...] = (
    (builtins, "open", open),
    (io, "open", open),
    (os.path, "exists", exists),
    (os.path, "isfile", isfile),
    (os.path, "isdir", isdir),
    (os.path, "getsize", getsize),
    (os, "listdir", listdir),
    (os, "mkdir", mkdir),
    (os, "makedirs", makedirs),
    (os, "remove", remove),
    (os, "unlink", remove),
    (os, "walk", walk),
)


class _Routed:
    """A built-in that sends paths under a routed prefix to object storage.

    Pickles as a reference to the name it replaces (``os.path.isdir``...), so a
    worker resolves it to its own (routed) version: ``pool.map(os.path.isdir,
    paths)`` works as it does with the stdlib.
    """

    def __init__(
        self, module: Any, attr: str, original: Callable[..., Any], replacement: Callable[..., Any]
    ) -> None:
        self._module = module.__name__
        self._attr = attr
        self._path_kw = _PATH_KW.get(attr, "path")
        self.__wrapped__ = original
        self._replacement = replacement
        self.__name__ = getattr(original, "__name__", attr)
        self.__qualname__ = getattr(original, "__qualname__", attr)
        self.__doc__ = original.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        path = args[0] if args else kwargs.get(self._path_kw)
        if path is None or _router.routed(path) is None:
            return self.__wrapped__(*args, **kwargs)
        if not args:
            args = (kwargs.pop(self._path_kw),)
        for unsupported in ("dir_fd", "follow_symlinks"):
            if kwargs.pop(unsupported, None) not in (None, True):
                raise ValueError(f"{self._attr}(): {unsupported} is not supported for object-storage paths")
        return self._replacement(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return _resolve, (self._module, self._attr)

    def __repr__(self) -> str:
        return f"<{self._module}.{self._attr} routed to object storage for {patched_prefixes()}>"


def _resolve(module: str, attr: str) -> Any:
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), attr)


_PATH_KW = {"open": "file", "makedirs": "name", "walk": "top"}


def _install(routes: Routes | None) -> None:
    with _router.lock:
        _router.routes = routes
        if routes is not None and not _router.saved:
            for module, attr, replacement in _TARGETS:
                original = getattr(module, attr)
                _router.saved.append((module, attr, original))
                setattr(module, attr, _Routed(module, attr, original, replacement))
        elif routes is None:
            while _router.saved:
                module, attr, original = _router.saved.pop()
                setattr(module, attr, original)


def patch(*prefixes: str) -> None:
    """Route ``open`` and the ``os``/``os.path`` functions to object storage for *prefixes*.

    Adds to prefixes already routed.  Only paths under a prefix go to storage
    (``/faas/`` covers ``/faas`` and ``/faas/...``; ``s3://bucket/`` covers that
    bucket); every other path reaches the real built-in.  Routed:
    ``builtins.open``/``io.open``, ``os.path.exists/isfile/isdir/getsize``,
    ``os.listdir/mkdir/makedirs/remove/unlink/walk``.  Code that bound these
    names before patching (``from os.path import exists``) keeps the originals.
    Processes and Pool workers started while patched route the same prefixes.
    """
    if not prefixes:
        raise ValueError("patch() needs at least one prefix, such as '/faas/' or 's3://bucket/'")
    norm = tuple(_normalize_prefix(p) for p in prefixes)
    with _router.lock:
        current = _router.routes
        old = current.prefixes if current is not None else ()
        spec = current.spec if current is not None else _router.spec()
        _install(Routes(old + tuple(p for p in norm if p not in old), spec))


def unpatch() -> None:
    """Stop routing any prefix; the built-ins are the originals again."""
    _install(None)


def patched_prefixes() -> tuple[str, ...]:
    """The prefixes routed now (normalized)."""
    routes = _router.routes
    return routes.prefixes if routes is not None else ()


def current_routes() -> Routes | None:
    """What a worker must route to match this process (shipped with every remote call)."""
    return _router.routes


def match_routes(routes: Routes | None) -> None:
    """Route exactly *routes* (used by a worker to match its client)."""
    if routes != _router.routes:
        _install(routes)


@contextlib.contextmanager
def patched(*prefixes: str) -> Iterator[None]:
    """``with faasmp.storage.patched("/faas/"): ...`` routes *prefixes* inside the block.

    Nested blocks add prefixes; each block restores what was routed before it.
    """
    with _router.lock:
        before = _router.routes
        patch(*prefixes)
    try:
        yield
    finally:
        _install(before)
