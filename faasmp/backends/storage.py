"""Object storage backend: where :mod:`faasmp.storage` keeps its files.

With :mod:`faasmp.backends.compute`, the only module that imports ``lithops``.
:mod:`faasmp.storage` needs five operations on a flat key space per bucket —
get (optionally a byte range), put, size, list by prefix, delete — which is
:class:`ObjectStore`; :class:`LithopsStore` implements it over a Lithops
``Storage`` for every Lithops storage backend (``localhost`` by default: files
under Lithops' temp folder; S3, GCS, Azure Blob, IBM COS, Redis, ... through
the Lithops configuration).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, BinaryIO, Protocol

from ..config import Config


class ObjectNotFound(LookupError):
    """The object (or bucket) does not exist."""


class StorageBackendError(RuntimeError):
    """The storage backend could not be set up or failed an operation."""


class ObjectStore(Protocol):
    """A flat key space per bucket, the way object storage is."""

    name: str
    #: Bucket of the storage configuration (Lithops ``storage_bucket``).
    default_bucket: str | None

    def get(self, bucket: str, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """The object's bytes (``start``..``end`` inclusive when given); raises ObjectNotFound."""
        ...

    def put(self, bucket: str, key: str, data: bytes | BinaryIO) -> None: ...

    def size(self, bucket: str, key: str) -> int | None:
        """The object's size, or None when there is no such object."""
        ...

    def list_prefix(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object whose key starts with *prefix*."""
        ...

    def delete(self, bucket: str, key: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """Which storage to open; travels to workers, so it must name no secret.

    ``config`` is the full Lithops configuration for the localhost storage
    (nothing secret in it) and ``None`` for any other: a worker then uses the
    Lithops configuration of the function it runs in (the client's, shipped by
    Lithops), and the client its own Lithops configuration.
    """

    backend: str
    config: Mapping[str, Any] | None = None
    lithops_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.backend, repr(self.config), repr(self.lithops_overrides)))


def spec_for(config: Config) -> StoreSpec:
    """The storage a faasmp :class:`~faasmp.config.Config` implies."""
    if os.environ.get("FAASMP_ISOLATED"):
        # In isolation mode's sandbox the worker's own settings say "localhost",
        # yet its temp dir is private: use the storage of the job it runs
        # (Lithops' LITHOPS_CONFIG, which load_config reads), as a cloud
        # function does.
        return StoreSpec("")
    if config.isolate:
        # Isolated workers have a private temp dir: the localhost storage would
        # keep each worker's files where nobody else sees them.  They share
        # Lithops' Redis storage with the client instead (the one the jobs use);
        # its section carries the storage password, as the job's own Lithops
        # configuration does.
        from .isolation import storage_settings  # noqa: PLC0415

        return StoreSpec(
            "redis",
            {"lithops": {"backend": "localhost", "storage": "redis"}, "redis": storage_settings(config)},
        )
    if config.is_local and (config.storage or "localhost") == "localhost":
        return StoreSpec(
            "localhost",
            {"lithops": {"backend": "localhost", "storage": "localhost"}},
        )
    return StoreSpec(config.storage or "", None, dict(config.lithops_config))


class LithopsStore:
    """:class:`ObjectStore` over a Lithops ``Storage``."""

    def __init__(self, spec: StoreSpec) -> None:
        import lithops  # noqa: PLC0415 - 0.3 s to import; only when storage is used
        from lithops.config import load_config  # noqa: PLC0415

        if spec.backend == "localhost" and os.environ.get("FAASMP_ISOLATED"):
            # Set only in isolation mode's sandbox (backends/isolation.py): its
            # temp dir is private, so localhost storage would hold this worker's
            # files where the client and other workers never see them.
            raise StorageBackendError(
                "Lithops' localhost storage keeps files in the client's temp dir, which an isolated "
                "worker (like a cloud function) cannot reach: the client's faasmp configuration must "
                "name a storage both reach (in isolation mode, FAASMP_ISOLATE=1 on the client selects "
                "Lithops' Redis storage)"
            )
        try:
            if spec.config is not None:
                lconf: dict[str, Any] = _plain(spec.config)
            else:
                lconf = load_config()
                if spec.backend:
                    lconf.setdefault("lithops", {})["storage"] = spec.backend
            lconf = _merge(lconf, _plain(spec.lithops_overrides))
            self._storage = lithops.Storage(config=lconf)
        except Exception as exc:  # noqa: BLE001 - reported with the backend's name
            raise StorageBackendError(
                f"could not open Lithops storage {spec.backend or '(from the Lithops config)'!r}: {exc}"
            ) from exc
        self.name: str = str(self._storage.backend)
        self.default_bucket: str | None = self._storage.bucket

    def get(self, bucket: str, key: str, start: int | None = None, end: int | None = None) -> bytes:
        extra = {}
        if start is not None:
            if end is None:  # Lithops' localhost storage needs the last byte
                size = self.size(bucket, key)
                if size is None:
                    raise ObjectNotFound(f"{bucket}/{key}")
                end = size - 1
            if end < start:
                return b""
            extra["Range"] = f"bytes={start}-{end}"
        try:
            data = self._storage.get_object(bucket, key, extra_get_args=extra)
        except Exception as exc:  # noqa: BLE001 - Lithops raises its own or the SDK's type
            if _is_missing(exc):
                raise ObjectNotFound(f"{bucket}/{key}") from exc
            raise StorageBackendError(f"get {bucket}/{key} failed: {exc}") from exc
        return data if isinstance(data, bytes) else bytes(data)

    def put(self, bucket: str, key: str, data: bytes | BinaryIO) -> None:
        try:
            self._storage.put_object(bucket, key, data)
        except Exception as exc:  # noqa: BLE001
            raise StorageBackendError(f"put {bucket}/{key} failed: {exc}") from exc

    def size(self, bucket: str, key: str) -> int | None:
        try:
            meta = self._storage.head_object(bucket, key)
        except Exception as exc:  # noqa: BLE001
            if _is_missing(exc):
                return None
            raise StorageBackendError(f"head {bucket}/{key} failed: {exc}") from exc
        return int(meta.get("content-length", meta.get("ContentLength", 0)))

    def list_prefix(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        if self.name == "localhost":
            return self._list_local(bucket, prefix)
        try:
            objects = self._storage.list_objects(bucket, prefix=prefix or None)
        except Exception as exc:  # noqa: BLE001
            if _is_missing(exc):
                return []
            raise StorageBackendError(f"list {bucket}/{prefix} failed: {exc}") from exc
        return [(o["Key"], int(o.get("Size", 0))) for o in objects if o["Key"].startswith(prefix)]

    def _list_local(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """List Lithops' localhost storage (files under its temp folder) directly.

        Lithops lists it with ``glob``, which skips names starting with ``.``
        and walks the whole bucket for a prefix; walking only the prefix's
        directory lists every object and is faster.
        """
        from lithops.constants import LITHOPS_TEMP_DIR  # noqa: PLC0415

        base = os.path.join(LITHOPS_TEMP_DIR, bucket)
        start = os.path.join(base, *prefix.rpartition("/")[0].split("/"))
        out = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                full = os.path.join(dirpath, name)
                key = os.path.relpath(full, base).replace(os.sep, "/")
                if key.startswith(prefix):
                    try:
                        out.append((key, os.stat(full).st_size))
                    except FileNotFoundError:  # removed while listing
                        continue
        return out

    def delete(self, bucket: str, key: str) -> None:
        try:
            self._storage.delete_object(bucket, key)
        except Exception as exc:  # noqa: BLE001
            raise StorageBackendError(f"delete {bucket}/{key} failed: {exc}") from exc


def _is_missing(exc: BaseException) -> bool:
    from lithops.storage.utils import StorageNoSuchKeyError  # noqa: PLC0415

    if isinstance(exc, StorageNoSuchKeyError | FileNotFoundError):
        return True
    text = str(exc)
    return any(s in text for s in ("NoSuchKey", "NoSuchBucket", "404", "Not Found"))


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in mapping.items()}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
