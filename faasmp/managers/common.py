"""What every part of the manager package shares.

Errors, manager addresses and state, and the stdlib's server-side types
(``Namespace``, ``Value``, ``Token``).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from multiprocessing import ProcessError
from typing import Any


class ManagerShutdownError(ProcessError):
    """A proxy was used after its manager shut down (its objects are deleted)."""


# ---------------------------------------------------------------------------
# Server-side types of the stdlib (kept for _getvalue() and registration)
# ---------------------------------------------------------------------------


class Namespace:
    """A plain namespace, what ``NamespaceProxy._getvalue()`` returns."""

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = sorted(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({', '.join(items)})"


class Value:
    """The stdlib manager's ``Value``: any object with a typecode label (no lock)."""

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    def get(self) -> Any:
        return self._value

    def set(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._typecode!r}, {self._value!r})"

    value = property(get, set)


def all_methods(obj: Any) -> list[str]:
    """Names of every callable attribute of *obj* (as the stdlib)."""
    return [name for name in dir(obj) if callable(getattr(obj, name, None))]


def public_methods(obj: Any) -> list[str]:
    """Names of the callable attributes of *obj* not starting with ``_``."""
    return [name for name in all_methods(obj) if name[0] != "_"]


@dataclass(frozen=True)
class Token:
    """What identifies a shared object (stdlib-compatible fields)."""

    typeid: str
    address: str
    id: str


@functools.lru_cache(maxsize=64)
def _remote_error_type(original: type) -> type[Exception]:
    """``multiprocessing.managers.RemoteError`` combined with *original* (if their layouts allow)."""
    from multiprocessing.managers import RemoteError  # noqa: PLC0415

    if not issubclass(original, Exception):
        return RemoteError
    try:
        return type("RemoteError", (RemoteError, original), {"__module__": __name__})
    except TypeError:
        return RemoteError


def remote_error(exc: BaseException) -> Exception:
    """The error a stdlib manager server reports as ``RemoteError`` for *exc*.

    The stdlib's server turns an error in creating an object or a call of an
    unexposed method into :class:`multiprocessing.managers.RemoteError`
    carrying the server's traceback; faasmp has no server, so the error is
    also an instance of *exc*'s type (``except ValueError`` keeps working).
    """
    import traceback  # noqa: PLC0415

    text = "".join(traceback.format_exception(exc)) if exc.__traceback__ else f"{type(exc).__name__}: {exc}\n"
    tp: type = type(exc)
    try:
        err = _remote_error_type(tp)(text)
    except Exception:  # noqa: BLE001 - an error type with a special constructor
        from multiprocessing.managers import RemoteError  # noqa: PLC0415

        err = RemoteError(text)
    return err


class State:
    """The manager's state (``manager._state.value``), as in the stdlib."""

    __slots__ = ("value",)
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2

    def __init__(self) -> None:
        self.value = State.INITIAL


ADDRESS_PREFIX = "faasmp:"


def address_of(run_id: str, mid: str) -> str:
    return f"{ADDRESS_PREFIX}{run_id}/{mid}"


class ManagerKind(enum.Enum):
    OWNER = "owner"
    CONNECTED = "connected"
