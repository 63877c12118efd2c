"""SharedMemoryManager: a manager of :mod:`faasmp.shared_memory` blocks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from .common import State
from .manager import BaseManager


class SharedMemoryManager(BaseManager):
    """A manager of :mod:`faasmp.shared_memory` blocks, as the stdlib's ``SharedMemoryManager``.

    ``SharedMemory(size)`` and ``ShareableList(sequence)`` create blocks in
    the manager's run; ``shutdown()`` (or leaving the ``with`` block) unlinks
    every block this manager object created.  Differences from the stdlib:
    there is no server process, and blocks created through a copy of the
    manager passed to another process are tracked by that copy, not by the
    original.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._segments: list[Any] = []  # SharedMemory objects to unlink at shutdown

    def _check_started(self) -> None:
        if self._state.value != State.STARTED:
            # ValueError, as the stdlib's (its client finds no address).
            raise ValueError(f"{type(self).__name__} is not started: call start() or use it in a with block")

    def SharedMemory(self, size: int) -> Any:
        """A new :class:`faasmp.shared_memory.SharedMemory` of *size* bytes, unlinked at shutdown."""
        from ..shared_memory import SharedMemory  # noqa: PLC0415 - shared_memory imports the managers' modules

        self._check_started()
        shm = SharedMemory(None, create=True, size=size, ctx=self._ctx)
        self._segments.append(shm)
        return shm

    def ShareableList(self, sequence: Iterable[Any] | None) -> Any:
        """A new :class:`faasmp.shared_memory.ShareableList` of *sequence*, unlinked at shutdown."""
        from ..context import default_context  # noqa: PLC0415 - late, as every user of the default context
        from ..shared_memory import ShareableList  # noqa: PLC0415

        self._check_started()
        if self._ctx is not default_context():
            raise ValueError("ShareableList lives in the default context (as the stdlib's, it takes no ctx)")
        sl = ShareableList(sequence)
        self._segments.append(sl.shm)
        return sl

    def shutdown(self) -> None:
        """Unlink every block this manager created, then shut the manager down."""
        segments, self._segments = self._segments, []
        for shm in segments:
            with contextlib.suppress(FileNotFoundError):  # unlinked by the program already
                shm.unlink()
        super().shutdown()
