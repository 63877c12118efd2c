"""One unit of remote work, and the one way faasmp serializes anything.

Every payload stored in Redis is ``tag || body`` where body is a cloudpickle
and tag is a 32-byte MAC keyed by the run's authkey (see :class:`Signer`:
HMAC-SHA256 for small bodies, a one-time-keyed Poly1305 for large ones).
:func:`loads` checks the tag in constant time *before* unpickling, so data
written by anyone without the run's authkey is refused, never unpickled.

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
import os
import pickle
import sys
import traceback
import types
from typing import Any

import cloudpickle
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

from .. import deps
from . import main_module, pickling

_MAC_SIZE = 32


class AuthenticationError(multiprocessing.AuthenticationError, pickle.UnpicklingError):
    """A payload's signature did not match the run's authkey; it was not unpickled.

    A :class:`multiprocessing.AuthenticationError`, and a
    :class:`pickle.UnpicklingError` because it is raised where unpickling failed.
    """


class PicklingFailed(TypeError):
    """An object sent to remote code (or stored in Redis) could not be pickled.

    The exception raised is made with :func:`pickling_failed`: it is *also* an
    instance of the original pickling error's type (``pickle.PicklingError``,
    ``AttributeError``, whatever a ``__reduce__`` raised...), as the stdlib
    lets the original error through, so ``except <original type>``,
    ``except TypeError`` and ``except PicklingFailed`` all catch it.  The
    message names what could not be pickled; the original error is its
    ``__cause__``.
    """

    def __reduce__(self) -> Any:
        return (pickling_failed, (str(self), _PICKLING_ORIGINAL.get(type(self), TypeError)))


#: The original error type of each combined PicklingFailed class.
_PICKLING_ORIGINAL: dict[type, type[BaseException]] = {}


@functools.lru_cache(maxsize=128)
def _pickling_failed_type(original: type) -> type[PicklingFailed]:
    """PicklingFailed combined with *original* (PicklingFailed itself if they cannot combine)."""
    if issubclass(PicklingFailed, original) or not issubclass(original, Exception):
        return PicklingFailed
    try:
        combined = type(
            "PicklingFailed",
            (PicklingFailed, original),
            {"__module__": __name__, "__doc__": PicklingFailed.__doc__},
        )
    except TypeError:  # incompatible layouts (e.g. OSError subclasses)
        return PicklingFailed
    _PICKLING_ORIGINAL[combined] = original
    return combined


def pickling_failed(message: str, original: BaseException | type[BaseException]) -> PicklingFailed:
    """A :class:`PicklingFailed` with *message* that is also of *original*'s type (if possible).

    Raise it ``from`` the original error.
    """
    tp: type = original if isinstance(original, type) else type(original)
    cls = _pickling_failed_type(tp)
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - an error type with a special constructor
        return PicklingFailed(message)


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


#: Bodies of at least this many bytes are authenticated with Poly1305, smaller
#: ones with HMAC-SHA256.  Poly1305 costs ~0.09 ms per MiB on an x86-64 server
#: core against ~0.64 ms for HMAC-SHA256, but its one-time key costs one
#: HMAC of a nonce (~2-3 us): the two meet at a few KiB.
POLY1305_MIN = 8192

#: Separates the key that derives Poly1305 keys from the authkey itself, so
#: no HMAC tag a run ever publishes (HMAC(authkey, body)) is a Poly1305 key.
_POLY_KEY_LABEL = b"faasmp poly1305 one-time keys v1\0"


class Signer:
    """The MAC of one authkey: ``tag(body)`` is 32 bytes whatever the body's size.

    * bodies under :data:`POLY1305_MIN` bytes: ``HMAC-SHA256(authkey, body)``
      (RFC 2104), with the key schedule computed once: each message only
      copies two prepared SHA-256 states, ~2-3.5 us for a small message
      whatever the cache state, where ``hmac.new`` costs 7-13 us right after
      a context switch (every message of a ping-pong);
    * larger bodies: ``nonce || Poly1305(k, body)`` with a fresh random
      16-byte nonce and the one-time key ``k = HMAC-SHA256(k', nonce)``, where
      ``k' = SHA-256(label || authkey)`` (the construction of RFC 8439, with
      HMAC as the key generator).  Poly1305 is ~7x faster than HMAC-SHA256
      on a MiB, and the MAC was the largest CPU cost of moving large
      messages; it is as unforgeable without the authkey.

    The scheme is chosen by the body's length, which both sides know, so the
    wire format stays ``tag || body`` with no scheme byte to downgrade.
    """

    def __init__(self, key: bytes) -> None:
        self._inner, self._outer = self._hmac_states(key)
        poly_root = hashlib.sha256(_POLY_KEY_LABEL + key).digest()
        self._poly_inner, self._poly_outer = self._hmac_states(poly_root)

    @staticmethod
    def _hmac_states(key: bytes) -> tuple[Any, Any]:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))

    @staticmethod
    def _hmac(inner_state: Any, outer_state: Any, data: bytes | bytearray | memoryview) -> bytes:
        inner = inner_state.copy()
        inner.update(data)
        outer = outer_state.copy()
        outer.update(inner.digest())
        return outer.digest()

    def _poly_key(self, nonce: bytes | memoryview) -> bytes:
        return self._hmac(self._poly_inner, self._poly_outer, nonce)

    def mac(self, data: bytes | bytearray | memoryview) -> bytes:
        """The 32-byte tag of *data* (any bytes-like object; not copied)."""
        if _nbytes(data) < POLY1305_MIN:
            return self._hmac(self._inner, self._outer, data)
        nonce = os.urandom(16)
        return nonce + Poly1305.generate_tag(self._poly_key(nonce), data)

    def mac_parts(self, parts: tuple[Any, ...]) -> bytes:
        """The tag of the concatenation of *parts* (bytes-like objects), none of them copied."""
        n = sum(_nbytes(p) for p in parts)
        if n < POLY1305_MIN:
            return self._hmac(self._inner, self._outer, b"".join(parts))
        nonce = os.urandom(16)
        poly = Poly1305(self._poly_key(nonce))
        for part in parts:
            poly.update(part)
        return nonce + poly.finalize()

    def check(self, tag: bytes | memoryview, body: bytes | bytearray | memoryview) -> bool:
        """Whether *tag* is this key's tag of *body* (constant time)."""
        if len(tag) != _MAC_SIZE:
            return False
        if _nbytes(body) < POLY1305_MIN:
            return hmac.compare_digest(tag, self._hmac(self._inner, self._outer, body))
        tag = memoryview(tag)
        try:
            Poly1305.verify_tag(self._poly_key(tag[:16]), body, tag[16:].tobytes())
        except InvalidSignature:
            return False
        return True

    def sign(self, body: bytes | memoryview) -> bytes:
        """``tag || body``, the payload format of :func:`dumps`."""
        return b"".join((self.mac(body), body))

    def verify(self, data: bytes | bytearray | memoryview) -> memoryview:
        """Check a signed payload; return its body, uncopied.

        Raises :class:`AuthenticationError` if the signature does not match,
        before anything looks at the body.
        """
        if len(data) < _MAC_SIZE:
            raise AuthenticationError("payload too short to carry a signature; refused")
        view = memoryview(data)
        body = view[_MAC_SIZE:]
        if not self.check(view[:_MAC_SIZE], body):
            raise AuthenticationError(
                "payload signature does not match this run's authkey; refused without unpickling"
            )
        return body


def _nbytes(data: bytes | bytearray | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def payload_size(body: Any) -> int:
    """Bytes in a message body: a bytes-like object or a tuple of them (:func:`pickle_parts`)."""
    if type(body) is tuple:
        return sum(_nbytes(part) for part in body)
    return _nbytes(body)


@functools.lru_cache(maxsize=16)
def signer(authkey: bytes) -> Signer:
    """The (cached) :class:`Signer` of *authkey*."""
    return Signer(authkey)


def dumps(obj: Any, authkey: bytes) -> bytes:
    """Serialize and sign *obj* (project modules its functions use are shipped by value)."""
    return sign_parts(authkey, _cloudpickle_parts(obj)[0])


def _cloudpickle_parts(obj: Any) -> tuple[list[bytes | memoryview], list[deps.Requirement]]:
    """*obj* cloudpickled as parts (see :class:`PickleParts`), and the installed modules it needs."""
    _register_local_modules()
    out = PickleParts()
    needs = deps.dumps_tracking_to(out, obj)
    return out.parts, needs


def _joined(parts: list[bytes | memoryview]) -> bytes:
    """The pickle whose parts these are, as one ``bytes`` (copied only if it has several)."""
    return parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)


def sign_parts(authkey: bytes, parts: list[bytes | memoryview]) -> bytes:
    """``tag || body`` for the body made of *parts* (see :class:`PickleParts`): one join, no other copy."""
    if len(parts) == 1:
        return signer(authkey).sign(parts[0])
    return b"".join((signer(authkey).mac_parts(tuple(parts)), *parts))


#: Types whose pickle is the same with pickle and cloudpickle (no code, no classes).
_PLAIN_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})
_PLAIN_CONTAINERS = frozenset({tuple, list})


def _is_plain(obj: Any, budget: int = 64) -> bool:
    """True if *obj* is atoms in (nested) tuples/lists, with at most *budget* items looked at."""
    t = type(obj)
    if t in _PLAIN_ATOMS:
        return True
    if t not in _PLAIN_CONTAINERS or len(obj) > budget:
        return False
    for x in obj:
        tx = type(x)
        if tx in _PLAIN_ATOMS:
            continue
        if tx not in _PLAIN_CONTAINERS or not _is_plain(x, budget // 2):
            return False
    return True


def dumps_plain(obj: Any, authkey: bytes) -> bytes | None:
    """:func:`dumps` for plain data (numbers, strings, bytes, None in small tuples/lists), else None.

    Such data pickles to the same bytes with the C pickler, which costs a
    fraction of a cloudpickle Pickler's set-up (the hot path of tiny Pool tasks).
    """
    body = pickle_plain(obj)
    return None if body is None else signer(authkey).sign(body)


#: Top-level bytes/bytearray items of at least this size are pickled as parts
#: (see :func:`pickle_parts`).
PARTS_MIN = 1 << 16


def pickle_parts(obj: Any) -> tuple[bytes, Any, bytes] | None:
    """The pickle of a large ``bytes``/``bytearray`` as (head, the object itself, tail); else None.

    Their concatenation is byte for byte a valid protocol-5 pickle that
    :func:`pickle.loads` reads back as the same type.  Written as parts, a
    large item is never copied into a pickle buffer: that copy (with the page
    faults of a fresh 1 MiB allocation) was half the CPU a 1 MiB
    ``Queue.put`` cost its sender.
    """
    tp = type(obj)
    if tp is bytes:
        n = len(obj)
        if PARTS_MIN <= n < 1 << 32:
            return b"\x80\x05B" + n.to_bytes(4, "little"), obj, b"."
    elif tp is bytearray:
        n = len(obj)
        if n >= PARTS_MIN:
            return b"\x80\x05\x96" + n.to_bytes(8, "little"), obj, b"."
    return None


def pickle_plain(obj: Any) -> bytes | None:
    """The pickle of plain data (see :func:`dumps_plain`) with the C pickler, unsigned; else None."""
    if not _is_plain(obj):
        return None
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


class PickleParts:
    """A file for a (C) pickler that keeps what it is given: the pickle as a list of parts.

    The C pickler writes a ``bytes``, ``bytearray`` or in-band
    ``PickleBuffer`` (a contiguous numpy array, at protocol 5) of 64 KiB or
    more straight to its file, not through its frame buffer.  Kept here as a
    part, such a value is not copied until the message holding it is joined
    (:func:`dumps_payload_message`, :func:`sign_parts`): one copy of a 1 MiB argument instead of
    three (its pickle, the message's pickle, the signed message), each into
    fresh memory.  The parts refer to the pickled objects' memory: join them
    before those objects can change.
    """

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []

    def write(self, data: Any) -> int:
        if type(data) is not bytes:
            view = memoryview(data)
            try:
                data = view.cast("B")
            except TypeError:  # a Fortran-ordered buffer: its bytes in memory order
                data = view.tobytes(order="A")
        self.parts.append(data)
        return len(data)


def pickle_plain_parts(obj: Any) -> list[bytes | memoryview] | None:
    """:func:`pickle_plain` as parts (see :class:`PickleParts`); None if *obj* is not plain data."""
    if not _is_plain(obj):
        return None
    out = PickleParts()
    pickle.Pickler(out, pickle.HIGHEST_PROTOCOL).dump(obj)
    return out.parts


def dumps_named(obj: Any, authkey: bytes, what: str, config: Any = None) -> bytes:
    """:func:`dumps`, failing with an error that names *what* could not be pickled.

    Also checks, before anything runs, that the worker runtime (of *config*'s
    backend; default: the default context's) can import the installed packages
    the functions in *obj* need (:class:`faasmp.deps.MissingDependencyError`
    otherwise).
    """
    return sign_parts(authkey, pickle_named_parts(obj, what, config))


def pickle_named_parts(obj: Any, what: str, config: Any = None) -> list[bytes | memoryview]:
    """The unsigned pickle of :func:`dumps_named` as parts (see :class:`PickleParts`).

    For data carried inside a signed message (a Pool task's arguments).
    """
    try:
        parts, needs = _cloudpickle_parts(obj)
    except Exception as exc:  # noqa: BLE001 - any pickling failure becomes one clear error
        raise pickling_failed(
            f"cannot send {what} to a faasmp worker: it is not picklable "
            f"({type(exc).__name__}: {exc}). Objects such as open files, sockets, "
            "threading locks and generators cannot cross to another machine; "
            "create them inside the function instead.",
            exc,
        ) from exc
    deps.check(needs, what, config)
    return parts


def pickle_value(obj: Any) -> bytes:
    """The unsigned pickle of *obj* (plain data with the C pickler), for a signed message's field."""
    return _joined(pickle_value_parts(obj))


def pickle_value_parts(obj: Any) -> list[bytes | memoryview]:
    """:func:`pickle_value` as parts (see :class:`PickleParts`)."""
    parts = pickle_plain_parts(obj)
    return _cloudpickle_parts(obj)[0] if parts is None else parts


def dumps_message(msg: Any, authkey: bytes) -> bytes:
    """Sign a :mod:`faasmp.runtime.protocol` message, pickled with the C pickler.

    Messages hold only plain fields, faasmp's own records and user data as
    bytes, so the C pickler takes them (a fraction of a cloudpickle Pickler's
    set-up: the hot path of tiny Pool tasks).
    """
    return signer(authkey).sign(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))


#: The first byte of a split message's body (a pickle's is PROTO, 0x80).
_SPLIT = b"\x00"


def dumps_payload_message(make: Any, payload: list[bytes | memoryview], authkey: bytes) -> bytes:
    """Sign the message ``make(field)`` whose payload field is the pickle in *payload* (its parts).

    A pickle in one part is an ordinary message (:func:`dumps_message`).
    One in several parts (large values: see :class:`PickleParts`) makes a
    *split* message, whose body is the record's pickle with the field empty,
    then the payload's bytes::

        b"\\x00" || len(header) (4, little endian) || header || payload

    MAC'd over its parts and joined once.  :func:`loads` puts the payload
    back into the record's ``payload_field``, as a memoryview of the body.
    """
    if len(payload) == 1 and type(payload[0]) is bytes:
        return dumps_message(make(payload[0]), authkey)
    return sign_parts(authkey, _split_body(make, payload))


def _split_body(make: Any, payload: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """The parts of a split message's body: marker and header length, ``make(b"")``'s pickle, *payload*."""
    header = pickle.dumps(make(b""), pickle.HIGHEST_PROTOCOL)
    return [_SPLIT + len(header).to_bytes(4, "little"), header, *payload]


def dumps_payload_parts(
    make: Any, payload: list[bytes | memoryview], authkey: bytes
) -> bytes | tuple[bytes, ...]:
    """:func:`dumps_payload_message`, left as its parts when every one is ``bytes``.

    The parts of such a split message (the tag, its header and a payload of
    immutable ``bytes``, which the pickler kept uncopied) can be written as
    they are, and resent as they are: nothing can change them.  A payload
    with a mutable buffer (a bytearray, a numpy array) is joined: the join
    is the snapshot a later resend (a retried task) must send.
    """
    if (len(payload) == 1 and type(payload[0]) is bytes) or any(type(p) is not bytes for p in payload):
        return dumps_payload_message(make, payload, authkey)
    body = tuple(_split_body(make, payload))
    return (signer(authkey).mac_parts(body), *body)  # type: ignore[arg-type]  # all bytes: checked above


def _load_split(body: memoryview) -> Any:
    """The record of a split message's verified body, its payload field a view of the body."""
    n = int.from_bytes(body[1:5], "little")
    msg = pickling.loads(body[5 : 5 + n])
    field = getattr(type(msg), "payload_field", None)
    if field is None:
        raise pickle.UnpicklingError(
            f"a split message holds a {type(msg).__name__}, which has no payload field"
        )
    object.__setattr__(msg, field, body[5 + n :])
    return msg


def loads(data: bytes | bytearray | memoryview, authkey: bytes) -> Any:
    """Verify and deserialize a payload made by :func:`dumps` (the MAC is checked first).

    Classes that came from this process by value keep their own definition
    (see :func:`faasmp.runtime.pickling.loads`).  A split message (see
    :func:`dumps_payload_message`) comes back as its record.
    """
    body = signer(authkey).verify(data)
    if body[:1] == _SPLIT:
        return _load_split(body)
    return pickling.loads(body)


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
    #: The client's main module (a ``main_module.MainModule`` or None), which
    #: the worker installs as ``__mp_main__``/``__main__`` as spawn does.  Made
    #: with the call: once per Process and once per Pool worker, never per task.
    main: Any = dataclasses.field(default_factory=lambda: main_module.describe())


def _storage_routes() -> Any:
    storage = sys.modules.get("faasmp.storage")  # not imported: nothing is routed
    return None if storage is None else storage.current_routes()


# --- remote errors ----------------------------------------------------------


def _type_name(tp: type) -> str:
    if tp.__module__ in ("builtins", "__main__"):
        return tp.__qualname__
    return f"{tp.__module__}.{tp.__qualname__}"


#: The traceback of an exception raised in a worker, as text: attached as
#: ``__cause__`` of the re-raised exception, so the normal traceback display
#: shows it.  The stdlib's own class (``.tb`` and ``str()`` give the text):
#: code that checks ``type(exc.__cause__) is multiprocessing.pool.RemoteTraceback``
#: (CPython's own tests do) holds on faasmp.
RemoteTraceback = multiprocessing.pool.RemoteTraceback  # type: ignore[attr-defined]


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
