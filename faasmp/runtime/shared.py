"""Base of every object whose state lives in Redis (pipes, queues, locks, ...).

A :class:`SharedObject` belongs to a context and has an object id; all its
keys are ``<run prefix><kind>:<id>:<suffix>`` (see :meth:`key`).  Pickling it
(as a Process/Pool argument, inside a Manager container) sends only the
context reference, the id and :meth:`_getstate_extra`; on the other side it is
rebuilt against the same Redis state.  The creating process *owns* it: when
the owner's object is garbage collected or the run ends, its keys are deleted
(:attr:`_key_suffixes` lists them); copies in workers never delete.  Every key
write should also refresh the key's TTL (``session.config.key_ttl``), the
safety net for a client that was killed.
"""

from __future__ import annotations

import contextlib
import secrets
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..context import FaasContext
    from .session import Session


def context_or_default(ctx: FaasContext | None) -> FaasContext:
    """*ctx*, or the default context when it is None (imported late: the context imports this module)."""
    if ctx is not None:
        return ctx
    from ..context import default_context  # noqa: PLC0415

    return default_context()


def _delete(session: Session, token: int, keys: list[str]) -> None:
    session.live_keys.pop(token, None)
    if session.closed or session.remote_mode or not keys:
        return
    with contextlib.suppress(Exception):
        session.state.delete(*keys)


class SharedObject:
    """State in Redis, usable from every process of the run."""

    #: Short name used in key names.
    _kind: ClassVar[str] = "obj"
    #: Suffixes of the keys the owner deletes on release ("" is the bare key).
    _key_suffixes: ClassVar[tuple[str, ...]] = ("",)

    _ctx: FaasContext
    _oid: str

    def _init_shared(self, ctx: FaasContext | None) -> None:
        """Call from ``__init__`` of subclasses (the owner's side)."""
        self._ctx = context_or_default(ctx)
        self._oid = secrets.token_hex(6)
        self._owner = True
        session = self._ctx.session
        keys = [self.key(s) for s in self._key_suffixes]
        # While the owner holds the object its keys are renewed by the
        # session's monitor, so an object idle for longer than key_ttl lives on.
        token = id(self)
        session.live_keys[token] = keys
        self._finalizer = weakref.finalize(self, _delete, session, token, keys)

    @property
    def _session(self) -> Session:
        session: Session = self._ctx.session
        return session

    def key(self, suffix: str = "") -> str:
        """The Redis key of this object for *suffix*."""
        base = self._session.keys.k(self._kind, self._oid)
        return f"{base}:{suffix}" if suffix else base

    @property
    def _ttl_ms(self) -> int:
        return int(self._session.config.key_ttl * 1000)

    def _release(self) -> None:
        """Delete the keys now (owner only); later use is an error of the caller."""
        if getattr(self, "_owner", False):
            self._finalizer()

    # -- pickling -------------------------------------------------------------
    def _getstate_extra(self) -> dict[str, Any]:
        """Extra attributes a copy needs (override; must be picklable)."""
        return {}

    def _setstate_extra(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_getstate_extra` returned (override)."""
        self.__dict__.update(state)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self._ctx, self._oid, self._getstate_extra()))


def _rebuild(cls: type[SharedObject], ctx: FaasContext, oid: str, extra: dict[str, Any]) -> SharedObject:
    obj = cls.__new__(cls)
    obj._ctx = ctx
    obj._oid = oid
    obj._owner = False
    obj._setstate_extra(extra)
    return obj
