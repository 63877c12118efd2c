"""redis-py's exception types, without importing redis-py.

The state backend raises redis-py's exceptions (``ResponseError``,
``NoScriptError``, ``ConnectionError``, ...) whether a command went through
redis-py's client or through faasmp's own connection
(:class:`faasmp.backends.wire.RespConnection`), so callers catch one set of
types.  ``import redis.exceptions`` would run redis-py's package first: its
asyncio client, cluster support and OpenTelemetry hooks, ~50 ms that a cold
worker pays before its first task (``python -X importtime``) for a client it
never uses.  redis-py's ``exceptions`` module itself imports nothing of
redis-py (only ``enum``), so it is loaded here on its own, under its own name:
when redis-py's package is imported later (by the client, or by a worker that
needs redis-py after all), it finds this very module in ``sys.modules`` and
every ``redis.exceptions.X`` is the class raised here (and
:class:`_BindWhenImported` sets the package's ``exceptions`` attribute,
which the import system leaves unset for a submodule it did not load).

``from . import errors as redis`` then gives a module its ``redis.exceptions``
without the package (the direct path's modules do this).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _BindWhenImported(importlib.abc.MetaPathFinder):
    """Gives redis-py's package its ``exceptions`` attribute as soon as the package module exists.

    The import system sets a package's attribute for a submodule only when it
    loads that submodule itself; this one was loaded here, before the package.
    Without the attribute, ``import redis`` then ``redis.exceptions.X`` would
    fail in any program that imported faasmp first.  Removes itself once used.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "redis":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)  # the finders that really find it
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            module.exceptions = sys.modules.get("redis.exceptions")  # type: ignore[attr-defined]
            run(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _load_exceptions() -> ModuleType:
    """redis-py's ``redis.exceptions``, loaded without running ``redis/__init__.py`` if not loaded yet."""
    loaded = sys.modules.get("redis.exceptions")
    if loaded is not None:
        return loaded
    # find_spec of a top-level name does not import it: it only locates the package.
    package = importlib.util.find_spec("redis")
    locations = list(package.submodule_search_locations or []) if package is not None else []
    for location in locations:
        spec = importlib.util.spec_from_file_location("redis.exceptions", f"{location}/exceptions.py")
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules["redis.exceptions"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["redis.exceptions"]
            break  # another layout of redis-py: import it the ordinary way
        sys.meta_path.insert(0, _BindWhenImported())
        return module
    import redis.exceptions  # noqa: PLC0415 - the fallback: the whole package

    return redis.exceptions


if TYPE_CHECKING:
    from redis import exceptions
else:
    exceptions = _load_exceptions()
