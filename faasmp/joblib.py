"""A joblib parallel backend named ``"faasmp"``.

``import faasmp.joblib`` (or ``import faasmp`` after joblib, or
``faasmp.patch()``) registers it; then ::

    with joblib.parallel_backend("faasmp", n_jobs=8):
        GridSearchCV(..., n_jobs=-1).fit(X, y)

runs joblib's batches (and so scikit-learn's ``n_jobs`` work) on a faasmp
Pool, with joblib's automatic batching.  ``n_jobs=-1`` means all CPUs of this
machine on the localhost backend and ``max_workers`` on a cloud backend.
"""

from __future__ import annotations

import os
from typing import Any

from joblib import register_parallel_backend
from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    PoolManagerMixin,
    SequentialBackend,
)

BACKEND_NAME = "faasmp"


class FaasmpBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib backend whose workers are faasmp workers (a :class:`faasmp.pool.Pool`)."""

    supports_retrieve_callback = True
    supports_return_generator = False
    supports_timeout = True

    def __init__(self, *args: Any, context: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._context = context

    def _ctx(self) -> Any:
        if self._context is not None:
            return self._context
        from .context import default_context  # noqa: PLC0415

        return default_context()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            cfg = self._ctx().config
            cpus = (os.cpu_count() or 1) if cfg.is_local else cfg.max_workers
            return max(cpus + 1 + n_jobs, 1)
        return int(n_jobs)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **_: Any) -> int:
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._pool = self._ctx().Pool(n_jobs)
        self.parallel = parallel
        return n_jobs

    def terminate(self) -> None:
        super().terminate()
        self.reset_batch_stats()


def register() -> None:
    """Register the ``"faasmp"`` joblib backend (idempotent)."""
    register_parallel_backend(BACKEND_NAME, FaasmpBackend)


register()
