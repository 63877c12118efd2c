"""Compute backend: where worker invocations run.

This is the only module that imports ``lithops``.  faasmp needs very little
from a function platform: start an invocation of one entry point with one
payload, tell later whether it ended (and with which error), and shut down.
That is :class:`ComputeBackend`; :class:`LithopsCompute` implements it over a
Lithops ``FunctionExecutor`` for every Lithops backend (``localhost`` by
default, AWS Lambda, Google Cloud, Azure, IBM Code Engine, Kubernetes, ...).
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..config import Config
from . import isolation
from .isolation import Isolation

logger = logging.getLogger(__name__)


class ComputeError(RuntimeError):
    """The compute backend could not start or run an invocation."""


class Invocation(Protocol):
    """Handle of one started function invocation."""

    def finished(self) -> bool:
        """True once the invocation has ended (without blocking)."""
        ...

    def error(self) -> str | None:
        """Why the invocation failed, or None (only meaningful once finished)."""
        ...


class ComputeBackend(Protocol):
    """Starts invocations of ``entry(payload)`` somewhere."""

    name: str
    #: Most invocations that can run at once (None: no known limit).
    max_concurrency: int | None

    def invoke(self, entry: Callable[[Any], Any], payload: Any) -> Invocation: ...

    def shutdown(self) -> None: ...


class _LithopsInvocation:
    def __init__(self, future: Any, isolation: Isolation | None = None) -> None:
        self._future = future
        self._isolation = isolation
        self._error: str | None = None
        self._finished = False

    def finished(self) -> bool:
        if self._finished:
            return True
        try:
            status = self._future.status(throw_except=False, check_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure of the platform ends it
            self._error = f"{type(exc).__name__}: {exc}"
            self._finished = True
            return True
        failed = bool(getattr(self._future, "error", False))
        if (status is None or status.get("type") == "__init__") and not (failed or self._future.done):
            # Lithops writes an "__init__" status when the call starts running.
            return self._sandbox_failed()
        # Once Lithops has seen a failed call, status() answers None: look at the future.
        self._finished = True
        if failed or (status is not None and status.get("exception")):
            try:
                self._future.status(throw_except=True)
                self._error = "the invocation failed"
            except BaseException as exc:  # noqa: BLE001 - Lithops re-raises the remote error
                self._error = f"{type(exc).__name__}: {exc}"
        return True

    def _sandbox_failed(self) -> bool:
        """True (and the error set) when an isolated call's sandbox exited without a status."""
        if self._isolation is None:
            return False
        # A sandbox that failed before Lithops' handler ran (bwrap could not
        # start, the job unreadable) leaves no status in storage: without
        # this the invocation would look alive forever.
        f = self._future
        failure = self._isolation.failure(f.executor_id, f.job_id, f.call_id)
        if failure is None:
            return False
        self._error, self._finished = failure, True
        return True

    def error(self) -> str | None:
        return self._error


def _fresh_lithops_session() -> None:
    """Give the next Lithops executor an ID no other process can also get.

    Lithops names executors ``<session>-<counter>`` and exports both into
    ``os.environ``, so every child process (a ``faasmp run`` program, a notebook
    kernel, a benchmark) inherits the parent's session and counter and names
    its first executor exactly like the parent's next one -- and like its
    siblings'.  With the same temp dir they then share job files, and one reads
    another's finished status: "the invocation ended before it started any
    worker".  A random session per executor removes the collision.
    """
    import os  # noqa: PLC0415
    import secrets  # noqa: PLC0415

    from lithops import constants  # noqa: PLC0415

    os.environ[constants.SESSION_ID_ENV] = "f" + secrets.token_hex(4)
    os.environ.pop(constants.TOTAL_EXECUTORS_ENV, None)


def _reuse_identical_lithops_copy() -> bool:
    """Let Lithops' localhost backend keep its package copy when it is already identical.

    Before each first executor of a process, that backend copies the whole
    ``lithops`` package into the shared temp dir (``copytree`` of ~260 files,
    ~80-95 ms here) and its invocations import it from there: it remembers
    what it copied only per process (``_COPIED_PACKAGES``), so every new
    program copies again, and the copy drops the bytecode earlier
    invocations wrote, so every program's first invocation also compiles
    Lithops from source.  When the copy in place has the fingerprint
    Lithops itself compares (file count and newest modification time of
    the sources; ``copytree`` keeps the times) it is the same package, and
    we tell Lithops so.  Returns whether the copy is reused; False, changing
    nothing, whenever Lithops' internals are not the ones this was written
    against (a newer Lithops then simply copies as before).
    """
    try:
        from lithops.constants import LITHOPS_TEMP_DIR  # noqa: PLC0415
        from lithops.localhost import utils  # noqa: PLC0415
        from lithops.localhost.v2 import localhost  # noqa: PLC0415
    except ImportError:
        return False
    copied = getattr(utils, "_COPIED_PACKAGES", None)
    fingerprint = getattr(utils, "_source_fingerprint", None)
    location = getattr(localhost, "LITHOPS_LOCATION", None)
    if not isinstance(copied, set) or not callable(fingerprint) or not isinstance(location, str):
        return False
    import os  # noqa: PLC0415

    dst = os.path.join(LITHOPS_TEMP_DIR, "lithops")
    try:
        source = fingerprint(location)
        if not os.path.isdir(dst) or fingerprint(dst) != source or not source[0]:
            return False
    except (OSError, TypeError, ValueError):
        return False
    copied.add((location, LITHOPS_TEMP_DIR, source))
    return True


_EXECUTOR_LOCK = threading.Lock()


class LithopsCompute:
    """:class:`ComputeBackend` over a Lithops ``FunctionExecutor``.

    The localhost backend needs no configuration on disk: the generated config
    runs invocations with this interpreter.  Any other backend honours the
    user's Lithops configuration (``~/.lithops/config`` or ``LITHOPS_CONFIG_FILE``),
    with ``Config.lithops_config`` merged over it.
    """

    def __init__(self, config: Config) -> None:
        import lithops  # noqa: PLC0415 - the import costs 0.2 s; only pay it when used

        self.name = config.backend
        self._lock = threading.Lock()
        lconf = self._lithops_config(config)
        self._isolation: Isolation | None = None
        if config.isolate:
            lconf = self._isolated(config, lconf)
        try:
            # One executor made at a time per process: Lithops' localhost
            # backend writes its runner script through a temp file named by
            # the pid, so two threads making executors at once (a session's
            # background set-up and `faasmp doctor`'s own) raced on it:
            # "No such file or directory: '.../localhost-runner-v2.py.<pid>.tmp'".
            with _EXECUTOR_LOCK:
                _fresh_lithops_session()
                if config.backend == "localhost":
                    _reuse_identical_lithops_copy()
                self._executor = lithops.FunctionExecutor(config=lconf, log_level=config.lithops_log_level)
        except Exception as exc:  # noqa: BLE001 - reported with the backend's name
            if self._isolation is not None:
                self._isolation.close()
            raise ComputeError(
                f"could not create a Lithops executor for backend {config.backend!r}: {exc}"
            ) from exc
        if config.is_local:
            self.max_concurrency: int | None = lconf["localhost"]["worker_processes"]
        else:
            self.max_concurrency = None

    @staticmethod
    def _lithops_config(config: Config) -> dict[str, Any]:
        from lithops.config import load_config  # noqa: PLC0415

        if config.is_local:
            lconf: dict[str, Any] = {
                "lithops": {"backend": "localhost", "storage": config.storage or "localhost"},
                # The interpreter running faasmp runs its invocations, so they
                # see the same installed packages.  Several invocations may
                # host worker slots at once.
                "localhost": {"runtime": sys.executable, "worker_processes": 4},
            }
        else:
            lconf = load_config()
            lconf.setdefault("lithops", {})["backend"] = config.backend
            if config.storage:
                lconf["lithops"]["storage"] = config.storage
        return _merge(lconf, dict(config.lithops_config))

    def _isolated(self, config: Config, lconf: dict[str, Any]) -> dict[str, Any]:
        """*lconf* with each invocation in a sandbox and the job data in Redis (isolation mode)."""
        assert config.redis_url is not None  # checked by Config (isolation.check_config)
        # The job (functions, arguments, statuses, results) goes through Lithops'
        # Redis storage, not the client's temp dir; a "redis" section of
        # lithops_config gives it other credentials (e.g. when faasmp's own user
        # may only touch fmp:* keys).
        storage = isolation.storage_settings(config)
        try:
            self._isolation = Isolation(config.redis_url, storage)
        except (isolation.IsolationError, OSError) as exc:
            raise ComputeError(f"isolation mode (FAASMP_ISOLATE) could not start: {exc}") from exc
        lconf["lithops"]["storage"] = "redis"
        lconf["redis"] = storage
        lconf["localhost"]["runtime"] = self._isolation.runtime
        return lconf

    def invoke(self, entry: Callable[[Any], Any], payload: Any) -> Invocation:
        with self._lock:  # FunctionExecutor is not safe for concurrent submits
            try:
                future = self._executor.call_async(entry, (payload,), include_modules=None)
            except Exception as exc:  # noqa: BLE001 - reported with the backend's name
                raise ComputeError(f"Lithops ({self.name}) could not invoke: {exc}") from exc
        return _LithopsInvocation(future, self._isolation)

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
        """Run ``func(*args)`` in one invocation and return its result (blocks up to *timeout*).

        For short administrative calls (the runtime manifest, ``faasmp doctor``),
        not for work: work goes through the warm pool.  Raises
        :class:`ComputeError` naming the backend when the call fails or times out.
        """
        with self._lock:
            try:
                future = self._executor.call_async(func, args, include_modules=None)
            except Exception as exc:  # noqa: BLE001 - reported with the backend's name
                raise ComputeError(f"Lithops ({self.name}) could not invoke: {exc}") from exc
        # Lithops' get_result() installs signal handlers (main thread only);
        # poll the call's status instead, like the warm pool's monitor does.
        invocation = _LithopsInvocation(future, self._isolation)
        deadline = time.monotonic() + timeout
        while not invocation.finished():
            if time.monotonic() > deadline:
                raise ComputeError(
                    f"a call on Lithops backend {self.name!r} did not finish within {timeout:g} s"
                )
            time.sleep(0.05)
        if invocation.error() is not None:
            raise ComputeError(f"a call on Lithops backend {self.name!r} failed: {invocation.error()}")
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - remote errors, lost results
            raise ComputeError(
                f"a call on Lithops backend {self.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def shutdown(self) -> None:
        with self._lock:
            try:
                self._executor.clean(force=True, on_exit=True)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                logger.debug("Lithops clean failed", exc_info=True)
        if self._isolation is not None:
            self._isolation.close()


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


ComputeFactory = Callable[[Config], ComputeBackend]
_COMPUTE_BACKENDS: dict[str, ComputeFactory] = {"lithops": LithopsCompute}


def register_compute_backend(name: str, factory: ComputeFactory) -> None:
    """Register a compute backend *factory* under *name*."""
    _COMPUTE_BACKENDS[name] = factory


def open_compute(config: Config, kind: str = "lithops") -> ComputeBackend:
    """Create the compute backend *kind*; unknown kinds list the known ones."""
    factory = _COMPUTE_BACKENDS.get(kind)
    if factory is None:
        raise ValueError(f"unknown compute backend {kind!r}; known: {sorted(_COMPUTE_BACKENDS)}")
    return factory(config)


def call_once(config: Config, func: Callable[..., Any], args: tuple[Any, ...], timeout: float = 120.0) -> Any:
    """Run ``func(*args)`` once on *config*'s compute backend, with its own executor."""
    compute = LithopsCompute(config)
    try:
        return compute.call(func, args, timeout)
    finally:
        compute.shutdown()
