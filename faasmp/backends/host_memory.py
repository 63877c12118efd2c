"""Host shared memory: a run's segments as files in ``/dev/shm``, mapped by every process.

When every process of a run is certain to be on the client's host (see
``Config.shared_memory_mode``), a segment's bytes are not kept in Redis and
copied into each process: they live in one file, mapped ``MAP_SHARED`` by
every process that uses the segment, exactly as the stdlib's shared memory.
The hardware keeps the copies coherent (stronger than the DSM's release
consistency).  Redis still says which segments exist, their size and which
file holds them (:mod:`faasmp.backends.redis.host_memory`).

Layout: ``<root>/faasmp-<uid>/<run_id>.<pid>.<start>/<hash of the key>``,
where ``<root>`` is ``/dev/shm`` (memory-backed; the temp dir when there is
none), ``faasmp-<uid>`` is this user's private directory (mode 0700, checked
to be ours and not a symlink) and ``<pid>.<start>`` identify the process
that created the run, so a later run can tell that its creator is gone and
remove the directory (:func:`clean_dead_runs`).

Same host is verified, never assumed: the run records a :class:`HostIdentity`
(this boot's id, the run directory's path, device and inode) and every
process compares it with what it sees before it creates or maps a file
(:func:`check`).  A process on another machine, or in another mount
namespace (an isolated sandbox with its own ``/dev/shm``), fails loudly
instead of mapping a file nobody else sees.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import mmap
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Where run directories go when it exists (memory-backed on Linux).
SHM_ROOT = "/dev/shm"
#: The switch users are pointed to when host shared memory cannot be used.
SWITCH = "FAASMP_SHARED_MEMORY"


class HostMemoryError(RuntimeError):
    """A process cannot use the run's host shared memory (not on the run's host)."""


class HostIdentity:
    """Where a run's segment files are, and how a process checks that it sees the same place.

    An immutable value (compared, hashed and pickled by its fields).  A plain
    class, not a dataclass: workers import this module cold, and each
    dataclass costs every cold worker about 0.45 ms to define.
    """

    __slots__ = ("boot_id", "dev", "ino", "path")

    def __init__(self, boot_id: str, path: str, dev: int, ino: int) -> None:
        #: ``/proc/sys/kernel/random/boot_id`` of the run's host (the hostname where there is none).
        self.boot_id = boot_id
        #: The run's directory.
        self.path = path
        #: ``st_dev`` and ``st_ino`` of that directory on the run's host.
        self.dev = dev
        self.ino = ino

    def _fields(self) -> tuple[str, str, int, int]:
        return (self.boot_id, self.path, self.dev, self.ino)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostIdentity) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[type[HostIdentity], tuple[str, str, int, int]]:
        return (HostIdentity, self._fields())

    def __repr__(self) -> str:
        return f"HostIdentity(boot_id={self.boot_id!r}, path={self.path!r}, dev={self.dev}, ino={self.ino})"

    def file(self, key: str) -> str:
        """The file holding segment *key* (keys are hashed: they may hold any character)."""
        return os.path.join(self.path, hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest())


def root() -> str:
    """``/dev/shm`` when it is a writable directory, else the temp dir."""
    if os.path.isdir(SHM_ROOT) and os.access(SHM_ROOT, os.W_OK | os.X_OK):
        return SHM_ROOT
    return tempfile.gettempdir()


_BOOT_ID: list[str] = []


def boot_id() -> str:
    """This host's boot id (changes with the machine and with each boot); read once per process."""
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id") as fh:
                _BOOT_ID.append(fh.read().strip())
        except OSError:
            _BOOT_ID.append("host:" + os.uname().nodename)
    return _BOOT_ID[0]


def _private_dir(path: str) -> str:
    """Create *path* (mode 0700) if missing; refuse it unless it is our own private directory."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise HostMemoryError(
            f"faasmp host shared memory: {path} is not a private directory of this user "
            f"(a symlink, another owner or group/other access); remove it or set {SWITCH}=dsm"
        )
    return path


def user_dir(base: str | None = None) -> str:
    """This user's directory of run directories (created if missing)."""
    return _private_dir(os.path.join(base or root(), f"faasmp-{os.getuid()}"))


def _start_time(pid: int) -> str:
    """The start time of process *pid* (clock ticks since boot), or "" if unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # The command name (field 2) may hold spaces and parentheses: cut after the last ')'.
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    """Whether the process that created a run directory still runs (same pid and start time)."""
    if os.path.isdir("/proc/self"):
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_run_dir(run_id: str, base: str | None = None) -> HostIdentity:
    """Create this run's private directory; its identity goes to every process of the run."""
    pid = os.getpid()
    path = _private_dir(os.path.join(user_dir(base), f"{run_id}.{pid}.{_start_time(pid) or '0'}"))
    st = os.stat(path)
    return HostIdentity(boot_id(), path, st.st_dev, st.st_ino)


def clean_dead_runs(base: str | None = None) -> int:
    """Remove the directories of runs whose creating process is gone; returns how many.

    A client killed before its session ended (SIGKILL, a crashed kernel)
    leaves its run's files behind; the next run of the user removes them.
    """
    try:
        parent = user_dir(base)
        names = os.listdir(parent)
    except (OSError, HostMemoryError):
        return 0
    removed = 0
    for name in names:
        parts = name.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if _alive(int(parts[1]), parts[2]):
            continue
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        removed += 1
    if removed:
        logger.info("faasmp: removed %d host shared memory dir(s) of ended runs in %s", removed, parent)
    return removed


def remove_run_dir(identity: HostIdentity) -> None:
    """Remove the run's directory and every segment file in it (the run ended)."""
    try:
        st = os.lstat(identity.path)
    except OSError:
        return
    if (st.st_dev, st.st_ino) == (identity.dev, identity.ino):
        shutil.rmtree(identity.path, ignore_errors=True)


#: Identities this process has verified (a stat per check otherwise: cheap, but per attach).
_VERIFIED: set[HostIdentity] = set()


def check(identity: HostIdentity, segment: str) -> None:
    """Raise :class:`HostMemoryError` naming *segment* unless this process sees the run's directory."""
    if identity in _VERIFIED:
        return
    why = ""
    if boot_id() != identity.boot_id:
        why = f"this host's boot id is {boot_id()}, the run's {identity.boot_id}"
    else:
        try:
            st = os.stat(identity.path)
        except OSError as exc:
            why = f"{identity.path} cannot be opened here ({exc.strerror})"
        else:
            if (st.st_dev, st.st_ino) != (identity.dev, identity.ino):
                why = f"{identity.path} is another directory here (another mount namespace)"
    if why:
        raise HostMemoryError(
            f"faasmp shared memory {segment!r} is in host shared memory (shared_memory mode 'host') on "
            f"the client's host, and this process cannot map it: {why}. Host shared memory needs every "
            f"process of the run on the client's host; set {SWITCH}=dsm to keep segments in Redis instead."
        )
    _VERIFIED.add(identity)


def _full(exc: OSError, identity: HostIdentity, what: str, dsm_does: str) -> OSError:
    """The error for a full ``/dev/shm``: *what* failed, where, how much is free, and the way out."""
    free = shutil.disk_usage(identity.path).free
    where = os.path.dirname(os.path.dirname(identity.path))
    remedy = f"free space there, or set {SWITCH}=dsm {dsm_does}"
    return OSError(exc.errno, f"{what} in {where} ({free:,} bytes free); {remedy}")


#: Page-table entries made at creation in one go: the creator usually fills
#: the segment next (the stdlib's heap zero-fills it), and one populate of
#: 20 MB cost 7 ms where faulting its 5,000 pages one by one cost 8.7 ms.
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def _map(fd: int, size: int, populate: bool = False) -> mmap.mmap | bytearray:
    # mmap cannot map 0 bytes; an empty segment has nothing to share anyway.
    if not size:
        return bytearray()
    return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | (_POPULATE if populate else 0))


def create_file(identity: HostIdentity, segment: str, size: int) -> tuple[mmap.mmap | bytearray, int, str]:
    """A new segment file of *size* zero bytes, mapped: (mapping, inode, temporary path).

    The file is created under a temporary name; :func:`publish` gives it its
    segment's name once Redis has recorded it.  Its pages are reserved now
    (``posix_fallocate``, as the stdlib's heap does), so a full ``/dev/shm``
    is an error here, never a SIGBUS at a later write.
    """
    tmp = os.path.join(identity.path, f"new-{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if size and not hasattr(os, "posix_fallocate"):
            os.ftruncate(fd, size)  # no way to reserve the pages here (macOS): a sparse file
        elif size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
                    raise
                raise _full(
                    exc,
                    identity,
                    f"faasmp shared memory {segment!r}: cannot reserve {size:,} bytes",
                    "to keep segments in Redis",
                ) from exc
        mem = _map(fd, size, populate=True)
        ino = os.fstat(fd).st_ino
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    return mem, ino, tmp


def publish(tmp: str, path: str) -> None:
    """Give a file made by :func:`create_file` its segment's name (replacing a stale file, if any)."""
    os.replace(tmp, path)


def open_file(path: str, size: int, ino: int) -> mmap.mmap | bytearray | None:
    """Map the segment file *path*; None unless it is the file Redis describes (*size*, *ino*)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_ino != ino or st.st_size != size:
            return None  # an older segment of the same name, being replaced
        return _map(fd, size)
    finally:
        os.close(fd)


def linked(path: str, ino: int) -> bool:
    """Whether *path* still names the file with inode *ino* (the segment was not deleted)."""
    try:
        return os.stat(path).st_ino == ino
    except OSError:
        return False


def remove_file(path: str) -> None:
    """Remove a segment file (processes that mapped it keep their mapping until they drop it)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# -- messages ------------------------------------------------------------------
# A large Pipe or Queue message of a run in host mode is not pushed through
# Redis: its body goes into a file of the run's directory and Redis carries a
# small signed descriptor naming it (faasmp.runtime.bulk).  The file is read
# once, by the receiver, and removed then; files of messages nobody received
# go with the run's directory at the end of the run.

#: Names of message files: this prefix, then 32 hex digits (16 random bytes).
MESSAGE_PREFIX = "m-"

#: ``os.writev`` takes at most this many buffers per call (IOV_MAX on Linux).
_IOV_MAX = 1024


def message_path(identity: HostIdentity, token: bytes) -> str:
    """The file of the message whose random *token* (16 bytes) a descriptor carries."""
    return os.path.join(identity.path, MESSAGE_PREFIX + token.hex())


def write_message(identity: HostIdentity, parts: tuple[object, ...], where: str) -> bytes:
    """Write the concatenation of *parts* (bytes-like objects) to a new message file; return its token.

    One ``writev`` of the parts as they are (no joined copy).  A full
    ``/dev/shm`` is an ``OSError`` naming *where* (the pipe or queue), raised
    before anything is sent.
    """
    check(identity, where)
    token = secrets.token_bytes(16)
    path = message_path(identity, token)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        views = [memoryview(p).cast("B") for p in parts]  # type: ignore[arg-type]
        views = [v for v in views if v.nbytes]
        while views:
            n = os.writev(fd, views[:_IOV_MAX])
            # A short write (a signal, a nearly full file system): go on after what was written.
            while views and n >= views[0].nbytes:
                n -= views[0].nbytes
                views.pop(0)
            if n:
                views[0] = views[0][n:]
    except OSError as exc:
        os.close(fd)
        remove_file(path)
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
            raise _full(
                exc,
                identity,
                f"faasmp {where}: cannot write a message to host shared memory",
                "to send large messages through Redis",
            ) from exc
        raise
    except BaseException:
        os.close(fd)
        remove_file(path)
        raise
    os.close(fd)
    return token


def read_message(
    identity: HostIdentity,
    token: bytes,
    size: int,
    where: str,
    take: Callable[[int], memoryview] | None = None,
    *,
    remove: bool = True,
) -> bytes | memoryview:
    """Read (and with *remove*, remove) the message file of *token*; it must hold exactly *size* bytes.

    The bytes come back as a new ``bytes`` object, or read into the
    memoryview *take(size)* returns (a receive buffer the caller recycles:
    a consumer that unpickles the message makes its own copy, and a second
    fresh buffer per message cost ~0.5 ms of page faults).

    Raises :class:`HostMemoryError` naming *where* when the file is gone
    (the run's directory was removed, or another process took the message)
    or does not hold the message the descriptor describes.
    """
    check(identity, where)
    path = message_path(identity, token)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise HostMemoryError(
            f"faasmp {where}: a message of {size:,} bytes kept in host shared memory ({path}) "
            f"cannot be read: {exc.strerror}. The run's directory was removed while the message "
            f"was in flight (the run ended, or a program removed it)"
        ) from None
    try:
        st = os.fstat(fd)
        if take is not None and st.st_size == size:
            view = take(size)
            got = 0
            while got < size:
                n = os.readv(fd, [view[got:]])
                if not n:
                    break
                got += n
            if got == size:
                return view
            data = b""
        else:
            data = os.read(fd, size) if st.st_size == size else b""
        if st.st_size == size and 0 < len(data) < size:  # a short read: finish it
            rest = [data]
            got = len(data)
            while got < size:
                chunk = os.read(fd, size - got)
                if not chunk:
                    break
                rest.append(chunk)
                got += len(chunk)
            data = b"".join(rest)
    finally:
        os.close(fd)
        if remove:
            remove_file(path)
    if len(data) != size:
        raise HostMemoryError(
            f"faasmp {where}: the host shared memory file of a message ({path}) holds "
            f"{st.st_size:,} bytes, not the {size:,} its descriptor says; the message is lost"
        )
    return data
