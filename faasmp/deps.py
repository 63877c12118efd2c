"""Which modules a function needs on a worker, and whether the worker has them.

Every function and class faasmp pickles for a worker passes through
:class:`DependencyPickler` (a ``cloudpickle.Pickler``).  Its
``reducer_override`` looks at each function/class *before* cloudpickle decides
how to pickle it, and:

* finds the modules it needs: globals naming modules (and ``mod.sub`` attribute
  chains), functions/classes it references that live in other modules,
  ``import`` statements in its code (nested code objects included), closure
  cells and default arguments;
* **ships project modules by value**: a module whose file lives under a
  project root (the current directory, the directory of ``__main__``, any
  ``ship_modules_under`` root) and is not an installed distribution is
  registered with :func:`cloudpickle.register_pickle_by_value`, so workers need
  no copy of it;
* records **installed packages** (and imports that resolve nowhere) as
  :class:`Requirement` s.  :func:`check` compares them with the worker
  runtime's :class:`RuntimeManifest` and raises :class:`MissingDependencyError`
  naming the package, the function that needs it and how to build a runtime
  that has it — before the job runs.

The manifest of a runtime (importable top-level modules and distribution
versions) is asked of the runtime once: for ``localhost`` the runtime is this
interpreter, so it is this environment (found lazily with
:func:`importlib.util.find_spec`); for a cloud backend a tiny Lithops call
collects it and it is cached in ``$XDG_CACHE_HOME/faasmp/runtimes``.

An import error raised on a worker anyway (a dynamic ``importlib`` import, a
runtime changed after the manifest was cached) is rewritten by
:func:`explain_remote_import_error` into the same kind of message.

Analysis is cached per code object and per function object; the cost is
measured in docs/scaling.md.
"""

from __future__ import annotations

import dataclasses
import dis
import hashlib
import importlib.util
import io
import json
import logging
import os
import platform
import re
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cloudpickle
from cloudpickle import cloudpickle as _cp

from .runtime import pickling

logger = logging.getLogger(__name__)

#: Names of stdlib modules (never reported, never shipped).
STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)
#: faasmp and the packages it depends on: in every faasmp runtime, never shipped.
_OWN = frozenset({"faasmp", "faasmp_magics", "cloudpickle", "lithops", "redis"})
#: Environment variable of the test fault that hides packages from a manifest.
FAULT_MANIFEST_WITHOUT = "FAASMP_FAULT_MANIFEST_WITHOUT"


# --- results -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Requirement:
    """A module some shipped function needs importable on the worker."""

    #: Full module name (``sklearn.linear_model``).
    module: str
    #: Qualified name of the function or class that needs it.
    needed_by: str

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


class MissingDependencyError(ModuleNotFoundError):
    """A function sent to workers needs a package the worker runtime lacks.

    A :class:`ModuleNotFoundError`, so ``except ImportError`` still catches
    it; the message names the package, the function and the remedy.
    """

    def __init__(self, message: str, *, name: str | None = None, needed_by: str = "") -> None:
        super().__init__(message, name=name)
        self.needed_by = needed_by


# --- classifying modules -----------------------------------------------------


def _realpath(path: str) -> str:
    return os.path.realpath(path)


@dataclasses.dataclass
class _Places:
    """Where installed code and the user's project live (computed once per process)."""

    installed: tuple[str, ...]
    stdlib: tuple[str, ...]

    @classmethod
    def here(cls) -> _Places:
        import site  # noqa: PLC0415
        import sysconfig  # noqa: PLC0415

        paths = sysconfig.get_paths()
        installed = {paths["purelib"], paths["platlib"], sys.prefix, sys.base_prefix, sys.exec_prefix}
        try:
            installed.update(site.getsitepackages())
        except AttributeError:  # virtualenv's old site module
            pass
        installed.add(site.getusersitepackages())
        stdlib = {paths["stdlib"], paths["platstdlib"]}
        norm = lambda ps: tuple(sorted({_realpath(p).rstrip(os.sep) + os.sep for p in ps if p}))  # noqa: E731
        return cls(installed=norm(installed), stdlib=norm(stdlib))


def project_roots() -> list[str]:
    """Directories whose modules are shipped by value.

    The current directory (unless it is ``/``), the directory of ``__main__``'s
    file, and every root given to :func:`faasmp.runtime.call.ship_modules_under`.
    """
    from .runtime import call  # noqa: PLC0415

    roots: list[str] = []
    cwd = _realpath(os.getcwd())
    if cwd != os.sep:
        roots.append(cwd)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        roots.append(os.path.dirname(_realpath(main_file)))
    roots.extend(call._local_roots)
    return [r.rstrip(os.sep) + os.sep for r in dict.fromkeys(roots)]


class ModuleKind:
    STDLIB = "stdlib"
    OWN = "faasmp"
    INSTALLED = "installed"  # in site-packages / an installed distribution
    PROJECT = "project"  # under a project root: shipped by value
    EXTERNAL = "external"  # a local file outside the project: the user must ship it
    ABSENT = "absent"  # not importable here either


class DependencyAnalyzer:
    """Finds and classifies the modules functions need; caches per object."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._places: _Places | None = None
        self._kinds: dict[str, str] = {}
        self._code: dict[int, tuple[types.CodeType, frozenset[str], frozenset[tuple[str, int]]]] = {}
        self._funcs: weakref.WeakKeyDictionary[Any, tuple[Requirement, ...]] = weakref.WeakKeyDictionary()
        self._warned: set[str] = set()
        self._roots_key: tuple[str, ...] = ()

    def clear(self) -> None:
        with self._lock:
            self._kinds.clear()
            self._code.clear()
            self._funcs = weakref.WeakKeyDictionary()

    # -- module kinds ------------------------------------------------------
    def kind(self, name: str) -> str:
        """Classify module *name* (see :class:`ModuleKind`); cached."""
        roots = tuple(project_roots())
        if roots != self._roots_key:  # ship_modules_under / chdir changed what "project" means
            self.clear()
            self._roots_key = roots
        found = self._kinds.get(name)
        if found is None:
            found = self._kinds[name] = self._classify(name, roots)
        return found

    def _classify(self, name: str, roots: tuple[str, ...]) -> str:
        top = name.split(".")[0]
        # The main module (in a worker also __mp_main__, its re-run copy that
        # the client aliases to its own __main__) resolves on both sides.
        if top in STDLIB or name in ("__main__", "__mp_main__"):
            return ModuleKind.STDLIB
        if top in _OWN:
            return ModuleKind.OWN
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) if module is not None else None
        if file is None:
            try:
                spec = importlib.util.find_spec(name) if module is None else getattr(module, "__spec__", None)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                return ModuleKind.ABSENT if module is None else ModuleKind.INSTALLED
            file = spec.origin
            if not file or file in ("built-in", "frozen"):
                return ModuleKind.STDLIB
        real = _realpath(file)
        if self._places is None:
            self._places = _Places.here()
        if real.startswith(self._places.stdlib) and "site-packages" not in real:
            return ModuleKind.STDLIB
        if real.startswith(self._places.installed) or "site-packages" in real or "dist-packages" in real:
            return ModuleKind.INSTALLED
        if any(real.startswith(r) for r in roots):
            return ModuleKind.PROJECT
        return ModuleKind.EXTERNAL

    # -- code analysis -----------------------------------------------------
    def _code_info(self, code: types.CodeType) -> tuple[frozenset[str], frozenset[tuple[str, int]]]:
        """All names and ``(module, level)`` imports of *code* and its nested code objects."""
        hit = self._code.get(id(code))
        if hit is not None and hit[0] is code:
            return hit[1], hit[2]
        names: set[str] = set()
        imports: set[tuple[str, int]] = set()
        stack = [code]
        while stack:
            c = stack.pop()
            names.update(c.co_names)
            level = 0
            for ins in dis.get_instructions(c):
                # ``import`` compiles to LOAD_CONST level, LOAD_CONST fromlist, IMPORT_NAME.
                if ins.opname in ("LOAD_CONST", "LOAD_SMALL_INT") and type(ins.argval) is int:
                    level = ins.argval
                elif ins.opname == "IMPORT_NAME":
                    imports.add((str(ins.argval), level))
                    level = 0
            stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        result = (frozenset(names), frozenset(imports))
        with self._lock:
            if len(self._code) > 8192:
                self._code.clear()
            self._code[id(code)] = (code, *result)  # keeps code alive, so the id stays valid
        return result

    def modules_of(self, func: types.FunctionType) -> set[str]:
        """Modules *func*'s own code needs (globals, attribute chains, imports, cells, defaults)."""
        names, imports = self._code_info(func.__code__)
        found: set[str] = set()
        g = func.__globals__
        values: list[Any] = [g[n] for n in names if n in g]
        values.extend(c.cell_contents for c in func.__closure__ or () if _cell_has_value(c))
        values.extend(func.__defaults__ or ())
        values.extend((func.__kwdefaults__ or {}).values())
        for value in values:
            if isinstance(value, types.ModuleType):
                found.add(value.__name__)
                for n in names:  # a.b.c used as an attribute chain of a global module
                    sub = f"{value.__name__}.{n}"
                    if sub in sys.modules:
                        found.add(sub)
            elif isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
                mod = getattr(value, "__module__", None)
                if isinstance(mod, str):
                    found.add(mod)
        package = g.get("__package__") or ""
        for name, level in imports:
            found.add(_resolve(name, level, package))
        found.discard("")
        return found

    # -- one function or class about to be pickled -------------------------
    def note(self, obj: Any) -> tuple[Requirement, ...]:
        """Ship *obj*'s project modules by value; return what it needs installed."""
        try:
            cached = self._funcs.get(obj)
        except TypeError:  # unhashable or not weak-referenceable
            cached = None
        if cached is not None:
            return cached
        reqs = self._note(obj)
        try:
            self._funcs[obj] = reqs
        except TypeError:
            pass
        return reqs

    def _note(self, obj: Any) -> tuple[Requirement, ...]:
        who = _qualname(obj)
        own_module = getattr(obj, "__module__", None)
        modules: set[str] = set()
        if isinstance(own_module, str):
            modules.add(own_module)
        self._ship_project(modules, who)
        by_value = isinstance(obj, types.FunctionType) and not _by_reference(obj)
        if by_value:
            modules |= self.modules_of(obj)
            self._ship_project(modules, who, imported_in_body=self._code_info(obj.__code__)[1])
        elif isinstance(own_module, str) and not _by_reference(obj):
            modules = set()  # a class pickled by value: its methods are noted one by one
        reqs = []
        for name in sorted(modules):
            kind = self.kind(name)
            if kind in (ModuleKind.INSTALLED, ModuleKind.ABSENT):
                reqs.append(Requirement(name, who))
        return tuple(reqs)

    def _ship_project(
        self, modules: Iterable[str], who: str, imported_in_body: Iterable[tuple[str, int]] = ()
    ) -> None:
        body_imports = {n for n, level in imported_in_body if level == 0}
        for name in modules:
            kind = self.kind(name)
            if kind == ModuleKind.PROJECT:
                module = sys.modules.get(name)
                if name in body_imports:
                    self._warn_once(
                        name,
                        f"{who} imports the project module {name!r} inside its body; a worker on "
                        "another machine cannot import it. Import it at module level so faasmp "
                        "ships it by value.",
                    )
                if module is not None and not _cp._is_registered_pickle_by_value(module):
                    try:
                        cloudpickle.register_pickle_by_value(module)
                    except ValueError:
                        continue
            elif kind == ModuleKind.EXTERNAL:
                self._warn_once(
                    name,
                    f"{who} needs module {name!r}, a local file outside the project "
                    f"({', '.join(project_roots())}): workers cannot import it unless it is shipped "
                    "(faasmp.runtime.call.ship_modules_under(its directory)).",
                )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s", message)


def _cell_has_value(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - probing an empty cell raises
    except ValueError:
        return False
    return True


def _resolve(name: str, level: int, package: str) -> str:
    if level <= 0:
        return name
    try:
        return importlib.util.resolve_name("." * level + name, package)
    except (ImportError, ValueError):
        return ""


def _qualname(obj: Any) -> str:
    mod = getattr(obj, "__module__", None) or "?"
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{qual}" if mod == "__main__" else f"{mod}.{qual}"


def _by_reference(obj: Any) -> bool:
    try:
        return bool(_cp._should_pickle_by_reference(obj))
    except Exception:  # noqa: BLE001 - private cloudpickle API; assume by value
        return False


ANALYZER = DependencyAnalyzer()


# --- the pickler -------------------------------------------------------------


class DependencyPickler(pickling.Pickler):
    """faasmp's Pickler, noting every function and class it pickles."""

    def __init__(self, file: io.BytesIO, analyzer: DependencyAnalyzer) -> None:
        super().__init__(file)
        self.analyzer = analyzer
        self.requirements: list[Requirement] = []
        #: Requirements of functions pickled after a whole module went by value
        #: (cloudpickle ships a by-value module object with all its functions,
        #: most of which the job may never call): not checked before the job.
        self.uncertain: list[Requirement] = []
        self._in_module = False

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if t is types.FunctionType or isinstance(obj, type):
            (self.uncertain if self._in_module else self.requirements).extend(self.analyzer.note(obj))
        elif t is types.ModuleType and not self._in_module and not _by_reference(obj):
            self._in_module = True
        return super().reducer_override(obj)


def dumps_tracking(obj: Any, analyzer: DependencyAnalyzer | None = None) -> tuple[bytes, list[Requirement]]:
    """cloudpickle *obj*; return the bytes and the installed modules its functions need."""
    with io.BytesIO() as file:
        needs = dumps_tracking_to(file, obj, analyzer)
        return file.getvalue(), needs


def dumps_tracking_to(file: Any, obj: Any, analyzer: DependencyAnalyzer | None = None) -> list[Requirement]:
    """cloudpickle *obj* into *file* (anything with ``write``); return the installed modules it needs."""
    p = DependencyPickler(file, analyzer or ANALYZER)
    p.dump(obj)
    return p.requirements


# --- runtime manifests -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RuntimeManifest:
    """What a worker runtime can import: top-level module names and distributions."""

    backend: str
    runtime: str
    python: str
    versions: Mapping[str, str]  # faasmp, cloudpickle, lithops (what the doctor compares)
    distributions: Mapping[str, str]  # distribution -> version
    modules: frozenset[str]  # importable top-level module names
    collected: float = 0.0
    #: Packages a test fault removed (``FAASMP_FAULT_MANIFEST_WITHOUT``).
    fault_removed: frozenset[str] = frozenset()
    #: True: the runtime is this interpreter; modules are looked up on demand.
    live: bool = False

    def has(self, top: str) -> bool:
        if top in self.fault_removed:
            return False
        if self.live:
            return _importable_here(top)
        return top in self.modules

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["modules"] = sorted(self.modules)
        d["fault_removed"] = sorted(self.fault_removed)
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RuntimeManifest:
        d = json.loads(text)
        d["modules"] = frozenset(d["modules"])
        d["fault_removed"] = frozenset(d.get("fault_removed", ()))
        return cls(**d)


_find_cache: dict[str, bool] = {}


def _importable_here(top: str) -> bool:
    hit = _find_cache.get(top)
    if hit is None:
        if top in sys.modules:
            hit = True
        else:
            try:
                hit = importlib.util.find_spec(top) is not None
            except (ImportError, ValueError):
                hit = False
        _find_cache[top] = hit
    return hit


def package_versions() -> dict[str, str]:
    """Versions of the packages client and workers must agree on."""
    from importlib import metadata  # noqa: PLC0415

    out = {"python": platform.python_version()}
    for dist in ("faasmp", "cloudpickle", "lithops"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def collect_manifest(backend: str = "localhost", runtime: str = "") -> RuntimeManifest:
    """The manifest of *this* interpreter (run on a worker to learn its runtime)."""
    import pkgutil  # noqa: PLC0415
    from importlib import metadata  # noqa: PLC0415

    dists: dict[str, str] = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name:
            dists[str(name)] = d.version
    cwd = os.path.realpath(os.getcwd())
    paths = [p for p in sys.path if p and os.path.realpath(p) != cwd]
    modules = {m.name for m in pkgutil.iter_modules(paths)} | set(sys.builtin_module_names)
    versions = package_versions()
    return RuntimeManifest(
        backend=backend,
        runtime=runtime or sys.executable,
        python=versions.pop("python"),
        versions=versions,
        distributions=dists,
        modules=frozenset(modules),
        collected=time.time(),
    )


def runtime_name(config: Any) -> str:
    """The Lithops runtime a config runs on (``sys.executable`` for localhost)."""
    if config.is_local:
        return sys.executable
    section = dict(config.lithops_config.get(config.backend, {}) or {})
    return str(section.get("runtime") or f"default {config.backend} runtime")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faasmp" / "runtimes"


def _cache_path(config: Any) -> Path:
    key = json.dumps(
        [config.backend, runtime_name(config), dict(config.lithops_config)], sort_keys=True, default=str
    )
    return cache_dir() / f"{config.backend}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _fault_removed() -> frozenset[str]:
    raw = os.environ.get(FAULT_MANIFEST_WITHOUT, "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


_manifests: dict[str, RuntimeManifest] = {}
_manifest_lock = threading.Lock()


def manifest_for(config: Any, *, refresh: bool = False, timeout: float = 120.0) -> RuntimeManifest:
    """The manifest of *config*'s worker runtime, collected once and cached.

    localhost: this interpreter (looked up lazily, nothing to collect).  Cloud:
    one Lithops invocation of :func:`collect_manifest`, cached in memory and in
    :func:`cache_dir` (``refresh=True`` asks the runtime again).
    """
    fault = _fault_removed()
    if fault:
        logger.warning(
            "fault injected: %s hides %s from the runtime manifest", FAULT_MANIFEST_WITHOUT, sorted(fault)
        )
    if config.is_local:
        with _manifest_lock:
            found = _manifests.get("localhost")
            if found is None:
                # The versions are this interpreter's (package_versions(); not
                # computed here: importlib.metadata scans take tens of ms).
                found = _manifests["localhost"] = RuntimeManifest(
                    backend=config.backend,
                    runtime=sys.executable,
                    python=platform.python_version(),
                    versions={},
                    distributions={},
                    modules=frozenset(),
                    collected=time.time(),
                    live=True,
                )
        return dataclasses.replace(found, fault_removed=fault) if fault else found
    path = _cache_path(config)
    with _manifest_lock:
        found = None if refresh else _manifests.get(str(path))
        if found is None and not refresh and path.is_file():
            try:
                found = RuntimeManifest.from_json(path.read_text())
            except (ValueError, TypeError, KeyError):
                found = None
        if found is None:
            from .backends.compute import call_once  # noqa: PLC0415

            found = call_once(
                config, collect_manifest, (config.backend, runtime_name(config)), timeout=timeout
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(found.to_json())
        _manifests[str(path)] = found
    return dataclasses.replace(found, fault_removed=fault) if fault else found


# --- the check and the messages ---------------------------------------------


def distribution_of(top: str) -> str | None:
    """The installed distribution providing import name *top* here, if any."""
    from importlib import metadata  # noqa: PLC0415

    try:
        names = metadata.packages_distributions().get(top)
    except Exception:  # noqa: BLE001 - broken metadata must not break a message
        names = None
    return names[0] if names else None


def _version(dist: str | None) -> str | None:
    from importlib import metadata  # noqa: PLC0415

    if dist is None:
        return None
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def remedy(backend: str, runtime: str, packages: Iterable[str]) -> str:
    """How to get *packages* into the worker runtime of *backend*."""
    pkgs = " ".join(sorted(set(packages)))
    if backend == "localhost":
        return (
            f"Install it into the interpreter that runs the workers ({runtime}): "
            f"{runtime} -m pip install {pkgs}"
        )
    return (
        "Build a worker runtime that has it: add `RUN pip install "
        f"{pkgs}` to a Dockerfile based on deploy/Dockerfile (faasmp preinstalled), then "
        f"`lithops runtime build -b {backend} -f Dockerfile my-runtime` and set "
        f'FAASMP_LITHOPS_CONFIG=\'{{"{backend}": {{"runtime": "my-runtime"}}}}\' '
        "(see docs/cloud.md). Then `python -m faasmp doctor --refresh` re-reads the runtime."
    )


def _describe(top: str) -> tuple[str, str]:
    """(package name, text about its version here) for import name *top*."""
    dist = distribution_of(top)
    version = _version(dist)
    if dist is None:
        return top, "not installed here either"
    return dist, f"{version} here" if version else "installed here"


def missing(requirements: Iterable[Requirement], manifest: RuntimeManifest) -> list[Requirement]:
    """The requirements the runtime of *manifest* cannot import (first per package)."""
    seen: dict[str, Requirement] = {}
    for req in requirements:
        top = req.top
        if top in seen or top in STDLIB or top in _OWN:
            continue
        if not manifest.has(top):
            seen[top] = req
    return list(seen.values())


def missing_message(lacking: list[Requirement], manifest: RuntimeManifest, what: str = "") -> str:
    lines = []
    packages = []
    for req in lacking:
        dist, here = _describe(req.top)
        packages.append(dist)
        lines.append(
            f"{req.needed_by} needs package {dist!r} (import {req.module!r}; {here}), which the "
            f"worker runtime of backend {manifest.backend!r} ({manifest.runtime}) does not have"
        )
    head = f"cannot send {what} to faasmp workers: " if what else ""
    tail = remedy(manifest.backend, manifest.runtime, packages)
    if manifest.fault_removed:
        tail += f" [fault injected: {FAULT_MANIFEST_WITHOUT} hides {sorted(manifest.fault_removed)}]"
    return head + "; ".join(lines) + ".\n" + tail


def _active_config() -> Any:
    from .context import default_context  # noqa: PLC0415

    return default_context().config


def check(requirements: list[Requirement], what: str = "", config: Any = None) -> None:
    """Raise :class:`MissingDependencyError` if the worker runtime lacks a required package.

    *config* defaults to the default context's (a worker's own environment
    when called on a worker).  A runtime whose manifest cannot be collected
    (no cloud credentials...) is logged and not checked: the worker would
    report the import error itself.
    """
    if not requirements:
        return
    config = _active_config() if config is None else config
    try:
        manifest = manifest_for(config)
    except Exception as exc:  # noqa: BLE001 - the check is advisory when the runtime is unreachable
        logger.warning("faasmp could not read the worker runtime's manifest (%s); not checking packages", exc)
        return
    lacking = missing(requirements, manifest)
    if lacking:
        first = lacking[0]
        raise MissingDependencyError(
            missing_message(lacking, manifest, what), name=first.module, needed_by=first.needed_by
        )


# --- import errors raised on a worker ---------------------------------------

_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_SKIP_FRAMES = ("importlib", "<frozen", os.sep + "faasmp" + os.sep, "cloudpickle", "lithops")


def _failing_function(frames: list[tuple[str, int, str, str | None]]) -> str | None:
    for filename, _lineno, name, _line in reversed(frames):
        if not any(s in filename for s in _SKIP_FRAMES):
            return name
    return None


def explain_remote_import_error(
    exc: BaseException, frames: list[tuple[str, int, str, str | None]], chain: str
) -> BaseException:
    """Turn an import failure that happened on a worker into a clear error.

    A :class:`ModuleNotFoundError` from user code becomes a
    :class:`MissingDependencyError` (same base class) naming the package, the
    function and the remedy; an error that only *wraps* one (the worker could
    not load a task's function) keeps its type and gets the same explanation
    appended to its message.  Anything else is returned unchanged.
    """
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not name:
        match = _NO_MODULE.search(str(exc)) or _NO_MODULE.search(chain)
        if match is None:
            return exc
        name = match.group(1)
    top = name.split(".")[0]
    func = _failing_function(frames)
    dist, here = _describe(top)
    try:
        config = _active_config()
        backend, runtime = config.backend, runtime_name(config)
    except Exception:  # noqa: BLE001
        backend, runtime = "localhost", sys.executable
    who = f"function {func!r}" if func else "the task's function (while the worker unpickled it)"
    kind = ANALYZER.kind(name)
    if kind in (ModuleKind.PROJECT, ModuleKind.EXTERNAL):
        fix = (
            f"{name!r} is a local module, not an installed package: ship it by value "
            "(cloudpickle.register_pickle_by_value(module) or "
            "faasmp.runtime.call.ship_modules_under(its directory)), or install it in the runtime."
        )
    else:
        fix = remedy(backend, runtime, [dist])
    detail = (
        f"on a worker, {who} could not import {name!r} (package {dist!r}; {here}): the worker "
        f"runtime of backend {backend!r} does not have it. {fix}"
    )
    if type(exc) in (ModuleNotFoundError, ImportError):
        new = MissingDependencyError(f"{exc}\n{detail}", name=name, needed_by=func or "")
        new.__cause__ = exc.__cause__
        new.__traceback__ = exc.__traceback__
        return new
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}\n{detail}",)
    elif hasattr(exc, "add_note"):
        exc.add_note(detail)
    return exc
