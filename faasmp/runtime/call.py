"""One unit of remote work, and the one way faasmp serializes anything.

Every payload stored in Redis is ``HMAC-SHA256(authkey, body) || body`` where
body is a cloudpickle.  :func:`loads` checks the MAC with
:func:`hmac.compare_digest` *before* unpickling, so data written by anyone
without the run's authkey is refused, never unpickled.

Functions, classes, lambdas and closures defined in ``__main__`` (scripts,
notebooks) are pickled by value by cloudpickle; importable ones by reference.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import functools
import hashlib
import hmac
import io
import linecache
import multiprocessing
import multiprocessing.pool
import pickle
import sys
import traceback
import types
from typing import Any

import cloudpickle

from .. import deps

_MAC_SIZE = 32


class AuthenticationError(multiprocessing.AuthenticationError, pickle.UnpicklingError):
    """A payload's signature did not match the run's authkey; it was not unpickled.

    A :class:`multiprocessing.AuthenticationError`, and a
    :class:`pickle.UnpicklingError` because it is raised where unpickling failed.
    """


class PicklingFailed(TypeError):
    """An object sent to remote code could not be pickled."""


_local_roots: list[str] = []
_seen_modules = 0


def ship_modules_under(path: str) -> None:
    """Pickle modules whose files live under *path* by value from now on.

    Workers elsewhere cannot import a user's own modules (helpers next to a
    script or notebook); shipped by value, they need not.  Installed packages
    (anything under ``sys.prefix``) and faasmp itself are never shipped.
    """
    import os  # noqa: PLC0415

    root = os.path.realpath(path)
    if not os.path.isdir(root):
        raise ValueError(f"ship_modules_under() needs a directory, got {path!r}")
    if root not in _local_roots:
        _local_roots.append(root)
        _register_local_modules(force=True)


def _register_local_modules(force: bool = False) -> None:
    global _seen_modules
    if not _local_roots or (not force and len(sys.modules) == _seen_modules):
        return
    import os  # noqa: PLC0415

    _seen_modules = len(sys.modules)
    prefixes = tuple(os.path.realpath(p) + os.sep for p in {sys.prefix, sys.base_prefix})
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or name == "__main__" or name.split(".")[0] == "faasmp":
            continue
        real = os.path.realpath(file)
        if real.startswith(prefixes) or not any(real.startswith(r + os.sep) for r in _local_roots):
            continue
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:  # not a module cloudpickle can ship
            continue


def dumps(obj: Any, authkey: bytes) -> bytes:
    """Serialize and sign *obj* (project modules its functions use are shipped by value)."""
    _register_local_modules()
    body, _ = deps.dumps_tracking(obj)
    return hmac.new(authkey, body, hashlib.sha256).digest() + body


def dumps_named(obj: Any, authkey: bytes, what: str) -> bytes:
    """:func:`dumps`, failing with an error that names *what* could not be pickled.

    Also checks, before anything runs, that the worker runtime can import the
    installed packages the functions in *obj* need
    (:class:`faasmp.deps.MissingDependencyError` otherwise).
    """
    try:
        _register_local_modules()
        body, needs = deps.dumps_tracking(obj)
    except Exception as exc:  # noqa: BLE001 - any pickling failure becomes one clear error
        raise PicklingFailed(
            f"cannot send {what} to a faasmp worker: it is not picklable "
            f"({type(exc).__name__}: {exc}). Objects such as open files, sockets, "
            "threading locks and generators cannot cross to another machine; "
            "create them inside the function instead."
        ) from exc
    deps.check(needs, what)
    return hmac.new(authkey, body, hashlib.sha256).digest() + body


def loads(data: bytes, authkey: bytes) -> Any:
    """Verify and deserialize a payload made by :func:`dumps`."""
    if len(data) < _MAC_SIZE:
        raise AuthenticationError("payload too short to carry a signature; refused")
    mac, body = data[:_MAC_SIZE], memoryview(data)[_MAC_SIZE:]
    expected = hmac.new(authkey, body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise AuthenticationError(
            "payload signature does not match this run's authkey; refused without unpickling"
        )
    return pickle.loads(body)


class CallKind(enum.Enum):
    """What a warm worker slot is asked to do."""

    #: Run a Process object (forked child, exit code reported).
    PROCESS = "process"
    #: Become a worker of a Pool until told to stop.
    POOL_WORKER = "pool_worker"
    #: Leave the warm pool (sent by WarmPool.stop()).
    STOP = "stop"


@dataclasses.dataclass
class RemoteCall:
    """One unit of remote work taken by a warm worker slot from the work queue."""

    kind: CallKind
    call_id: str
    #: Kind-specific payload (a Process object, a pool descriptor, ...).
    payload: Any = None
    #: Client-side submit time (seconds, client clock).
    submitted: float = 0.0
    #: Client's root logger level, so remote ``logging`` behaves like a fork.
    log_level: int = 30
    #: The client runs with multiprocessing patched to faasmp (faasmp run,
    #: %%faas): remote code sees the same ``multiprocessing``.
    patched: bool = False
    #: Paths the client routes to object storage (``faasmp.storage.patch``,
    #: ``faasmp run --storage``), a ``faasmp.storage.Routes`` or None.
    storage: Any = dataclasses.field(default_factory=lambda: _storage_routes())

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled = taken by a worker: route storage paths like the client
        # (the worker matches ``patched`` itself before running the call).
        self.__dict__.update(state)
        if "faasmp.storage" in sys.modules or self.storage is not None:
            from ..storage import match_routes  # noqa: PLC0415

            match_routes(self.storage)


def _storage_routes() -> Any:
    storage = sys.modules.get("faasmp.storage")  # not imported: nothing is routed
    return None if storage is None else storage.current_routes()


# --- remote errors ----------------------------------------------------------


def _type_name(tp: type) -> str:
    if tp.__module__ in ("builtins", "__main__"):
        return tp.__qualname__
    return f"{tp.__module__}.{tp.__qualname__}"


class RemoteTraceback(multiprocessing.pool.RemoteTraceback):  # type: ignore[name-defined,misc]
    """The traceback of an exception raised in a worker, as text.

    Attached as ``__cause__`` of the re-raised exception, like
    :mod:`concurrent.futures` does, so the normal traceback display shows it.
    A :class:`multiprocessing.pool.RemoteTraceback`, so stdlib checks hold.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class RemoteError(Exception):
    """Stands in for a remote exception that could not be pickled or imported."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


@dataclasses.dataclass
class ExceptionInfo:
    """A remote exception packed for the trip home."""

    exc: bytes | None  # cloudpickle of the exception, if it pickles
    type_name: str
    message: str
    frames: list[tuple[str, int, str, str | None]]
    chain: str  # formatted context/cause chain of the exception (text)
    chain_is_cause: bool = False

    @classmethod
    def capture(cls, exc: BaseException) -> ExceptionInfo:
        tb = exc.__traceback__
        frames = [(f.filename, f.lineno or 0, f.name, f.line) for f in traceback.extract_tb(tb)]
        try:
            blob: bytes | None = cloudpickle.dumps(exc)
            pickle.loads(blob)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - unpicklable exceptions travel as text
            blob = None
        chain = ""
        inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is not None:
            chain = "".join(traceback.format_exception(inner))
        return cls(
            exc=blob,
            type_name=_type_name(type(exc)),
            message=str(exc),
            frames=frames,
            chain=chain,
            chain_is_cause=exc.__cause__ is not None,
        )

    def format_traceback(self) -> str:
        """The remote traceback, with source lines filled from this side when missing.

        Workers on another machine have no copy of a notebook cell or script,
        so lines they could not read are looked up in the client's linecache.
        """
        summary = traceback.StackSummary.from_list(
            [
                traceback.FrameSummary(fn, ln, name, line=line or linecache.getline(fn, ln).strip())
                for fn, ln, name, line in self.frames
            ]
        )
        out = io.StringIO()
        if self.chain:
            out.write(self.chain)
            out.write(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if self.chain_is_cause
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
        out.write("Traceback (most recent call last):\n")
        out.write("".join(summary.format()))
        out.write(f"{self.type_name}: {self.message}")
        return '\n"""\n' + out.getvalue().rstrip() + '\n"""'

    def rebuild(self) -> BaseException:
        """The exception to raise on the caller's side, remote traceback as ``__cause__``."""
        exc: BaseException | None = None
        if self.exc is not None:
            try:
                exc = pickle.loads(self.exc)
            except Exception:  # noqa: BLE001 - fall back to a text stand-in
                exc = None
        if exc is None:
            exc = RemoteError(self.type_name, self.message)
        exc.__cause__ = RemoteTraceback(self.format_traceback())
        # An import failure on the worker names the package, function and remedy.
        return deps.explain_remote_import_error(exc, self.frames, self.chain)


# --- module globals of functions shipped by value ---------------------------


def share_globals(obj: Any, shared: dict[str, dict[str, Any]], memo: dict[int, Any] | None = None) -> Any:
    """Rebind functions pickled by value so they share one globals dict per module.

    cloudpickle gives every separately pickled ``__main__``/notebook function a
    private copy of its module's globals, so a Pool initializer that sets a
    global would not be seen by the tasks.  With ``fork`` the stdlib's workers
    share their module globals; rebinding the initializer and the task functions
    of one pool worker to one dict per module (*shared*) restores that.  Values
    first seen win, as in a forked worker that keeps its globals.
    """
    memo = {} if memo is None else memo
    if isinstance(obj, functools.partial):
        func = share_globals(obj.func, shared, memo)
        return functools.partial(func, *obj.args, **obj.keywords) if func is not obj.func else obj
    if not isinstance(obj, types.FunctionType):
        return obj
    module = sys.modules.get(obj.__module__)
    if module is not None and obj.__globals__ is module.__dict__:
        return obj  # pickled by reference: already the real module's globals
    if id(obj) in memo:
        return memo[id(obj)]
    g = shared.setdefault(obj.__module__, {"__builtins__": builtins, "__name__": obj.__module__})
    new = types.FunctionType(obj.__code__, g, obj.__name__, obj.__defaults__, obj.__closure__)
    new.__kwdefaults__ = obj.__kwdefaults__
    new.__qualname__ = obj.__qualname__
    new.__module__ = obj.__module__
    new.__dict__.update(obj.__dict__)
    memo[id(obj)] = new
    for name, value in obj.__globals__.items():
        if name not in g:
            g[name] = share_globals(value, shared, memo)
    return new
