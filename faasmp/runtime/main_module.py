"""The client's main module in workers, as the stdlib's ``spawn`` start method gives it.

``spawn`` re-imports the parent's main script in each child as ``__mp_main__``
and makes ``sys.modules["__main__"]`` point to it, so a function pickled *by
reference* to ``__main__`` (plain :mod:`pickle`, dill, any library that does not
use cloudpickle) resolves in the child; ``if __name__ == "__main__":`` blocks do
not run there, because ``__name__`` is ``"__mp_main__"``.  faasmp ships its own
work by value (cloudpickle), but code that pickles for itself (pandarallel's
dill, a program's own ``pickle.dumps(f)``) needs the same in its workers.

Client side, :func:`describe` says what the main module is (a
:class:`MainModule`, carried by every :class:`~faasmp.runtime.call.RemoteCall`,
that is once per Process and once per Pool worker, never per task):

* a **script** (``python script.py``, ``faasmp run script.py``) or a **module**
  (``python -m module``, ``faasmp run -m module``): its path, name and source,
  so a worker without the client's files can run it;
* a **namespace** (a notebook or IPython kernel, the interactive interpreter:
  no file): the user's top-level functions, classes, modules and small plain
  values, each pickled on its own (a value that does not pickle is left out,
  not fatal) with the functions' globals being the namespace itself, so in the
  worker they share one module dict as they do in the kernel.

Worker side, :func:`install` builds the ``__mp_main__`` module from it, once
per description per worker (:class:`MainInstaller` caches by digest): the
script's top-level code runs with ``__name__ == "__mp_main__"``, or the
namespace's definitions are unpickled into it.  A failure is reported on the
worker's stderr (which reaches the client), naming the script and what is
missing, and the work goes on: faasmp's own by-value pickles do not need the
main module, as they did not before.

What differs from ``spawn`` (see docs/architecture.md): the main module runs
once per warm worker slot and run, not once per Process (a script's when the
slot starts, before its first call); modules a slot
imported for earlier work of the same run stay imported; and as with spawn,
starting a Process or Pool while the main module is being re-run raises
spawn's "bootstrapping phase" RuntimeError (an unguarded script would
otherwise start workers recursively).
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import linecache
import logging
import os
import pickle
import sys
import threading
import traceback
import types
from typing import Any

from .pickling import Pickler

logger = logging.getLogger(__name__)

#: The name spawn gives the re-run main module in a child.
MP_MAIN = "__mp_main__"

#: A namespace item whose pickle is larger is left out (it travels with every
#: Process and Pool worker); pass big data as arguments instead.
ITEM_LIMIT = 1 << 20
#: All items of a namespace together: items beyond this are left out.
TOTAL_LIMIT = 8 << 20

#: The project's module sources together (they travel with every Process and
#: Pool worker): modules beyond this are left out.
MODULES_LIMIT = 1 << 20
#: Never shipped as project modules: faasmp's own packages.
_OWN_PACKAGES = frozenset({"faasmp", "faasmp_magics"})

#: The persistent id standing for the namespace's own globals dict.
_MAIN_GLOBALS = "faasmp:main-globals"

#: Plain values shipped from a namespace: atoms in (nested) builtin containers.
_ATOMS = (int, float, complex, str, bytes, bool, type(None))
_CONTAINERS = (tuple, list, set, frozenset)


class MainKind(enum.Enum):
    """Where the client's ``__main__`` came from."""

    #: A script file (``python script.py``): re-run from its source.
    SCRIPT = "script"
    #: A module run with ``-m``: re-run from its source with its package.
    MODULE = "module"
    #: An interactive namespace (notebook, IPython, REPL): its definitions pickled.
    NAMESPACE = "namespace"


@dataclasses.dataclass(frozen=True)
class ModuleSource:
    """A module of the user's project the main module imports, shipped as source."""

    name: str
    path: str
    source: str
    is_package: bool


@dataclasses.dataclass(frozen=True)
class MainModule:
    """What a worker needs to rebuild the client's main module (see the module doc)."""

    kind: MainKind
    #: Script path, module name, or ``"__main__"`` for a namespace.
    name: str
    #: File of the script or module (None for a namespace).
    path: str | None = None
    #: Source text of the script or module.
    source: str | None = None
    #: Package of a module run with ``-m`` ("" for a script).
    package: str = ""
    #: Namespace items, loaded one by one: (name, pickle, defined in __main__).
    #: A definition that fails to load is reported; an imported name is skipped quietly.
    items: tuple[tuple[str, bytes, bool], ...] = ()
    #: Directory the client imports the main module's neighbours from (spawn
    #: gives its child the parent's ``sys.path``); added to the worker's path.
    search_dir: str | None = None
    #: The project's modules (files under ``search_dir``) the client has
    #: imported: a worker that cannot import them from its own disk (another
    #: machine) imports these sources, so the main module's imports work.
    modules: tuple[ModuleSource, ...] = ()
    #: Identifies the content: a worker re-installs only when it changes.
    digest: str = ""

    def describe(self) -> str:
        """How to name it in messages: the script's path, the module's name."""
        if self.kind is MainKind.NAMESPACE:
            return "the interactive namespace (__main__)"
        return f"{self.kind.value} {self.name!r}"

    def __repr__(self) -> str:  # the source can be long
        return f"<MainModule {self.kind.value} {self.name!r} digest={self.digest[:12]}>"


# --- client side ----------------------------------------------------------------


class _NamespacePickler(Pickler):
    """faasmp's Pickler that writes the namespace's own globals dict as a persistent id.

    cloudpickle gives functions pickled by value a fresh globals dict per
    pickler (``globals_ref``); naming the one that stands for *namespace*
    lets the worker substitute its ``__mp_main__`` module dict, so every
    shipped function's ``__globals__`` is that module's dict, as in the client.
    """

    def __init__(self, file: io.BytesIO, namespace: dict[str, Any]) -> None:
        super().__init__(file)
        self._namespace_id = id(namespace)

    def persistent_id(self, obj: Any) -> str | None:
        if type(obj) is dict and obj is self.globals_ref.get(self._namespace_id):
            return _MAIN_GLOBALS
        return None


def _is_plain(value: Any, budget: int = 256) -> bool:
    """True for atoms in (nested) tuples/lists/sets/dicts, at most *budget* items looked at."""
    if isinstance(value, _ATOMS):
        return type(value) in _ATOMS
    if type(value) is dict:
        items: list[Any] = [*value.keys(), *value.values()]
    elif type(value) in _CONTAINERS:
        items = list(value)
    else:
        return False
    if len(items) > budget:
        return False
    return all(_is_plain(x, budget // 2) for x in items)


def _shippable(value: Any) -> bool:
    """Definitions of a namespace that a worker's ``__mp_main__`` gets (not data objects)."""
    if isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)):
        return True
    return _is_plain(value)


def _hidden_names(namespace: dict[str, Any]) -> frozenset[str]:
    """IPython's own names in the user namespace (``In``, ``Out``, ``get_ipython``, ...)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    if shell is not None and getattr(shell, "user_ns", None) is namespace:
        return frozenset(shell.user_ns_hidden)
    return frozenset()


def _namespace_candidates(namespace: dict[str, Any]) -> list[tuple[str, Any]]:
    hidden = _hidden_names(namespace)
    return [
        (name, value)
        for name, value in list(namespace.items())
        if not name.startswith("_") and name not in hidden and _shippable(value)
    ]


def _pickle_namespace(
    namespace: dict[str, Any], candidates: list[tuple[str, Any]], search_dir: str
) -> MainModule:
    items: list[tuple[str, bytes, bool]] = []
    total = 0
    left_out: list[str] = []
    for name, value in candidates:
        try:
            with io.BytesIO() as file:
                _NamespacePickler(file, namespace).dump(value)
                blob = file.getvalue()
        except Exception as exc:  # noqa: BLE001 - an unpicklable name is only left out
            logger.debug("faasmp: __main__.%s is not shipped to workers: %r", name, exc)
            continue
        if len(blob) > ITEM_LIMIT or total + len(blob) > TOTAL_LIMIT:
            left_out.append(name)
            continue
        total += len(blob)
        items.append((name, blob, getattr(value, "__module__", None) == "__main__"))
    if left_out:
        logger.info(
            "faasmp: %s of __main__ not shipped to workers' __mp_main__ (over %d MiB pickled): "
            "pass such data as arguments",
            ", ".join(left_out),
            ITEM_LIMIT >> 20,
        )
    content = b"".join(n.encode() + b"\0" + b for n, b, _ in items)
    digest = hashlib.blake2b(content, digest_size=16).hexdigest()
    return MainModule(
        MainKind.NAMESPACE, "__main__", items=tuple(items), search_dir=search_dir, digest=digest
    )


def _read_source(path: str, cache: dict[str, tuple[float, str]] | None = None) -> str | None:
    """The text of *path*, read again only when its mtime changed.

    With *cache*, a file that has gone away gives the text last read (spawn
    reads the script at each child start; a deleted file still has code
    running in the client).
    """
    import tokenize  # noqa: PLC0415

    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = None
    known = cache.get(path) if cache is not None else None
    if known is not None and mtime in (None, known[0]):
        return known[1]
    try:
        with tokenize.open(path) as file:  # honours the file's coding declaration
            text = file.read()
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        logger.debug("faasmp: cannot read %s for the workers' main module: %r", path, exc)
        return None
    if cache is not None and mtime is not None:
        cache[path] = (mtime, text)
    return text


def _from_file(
    kind: MainKind, name: str, path: str, package: str, search_dir: str, cache: dict[str, tuple[float, str]]
) -> MainModule | None:
    source = _read_source(path, cache)
    if source is None:
        return None
    digest = hashlib.blake2b(f"{kind.value}\0{name}\0{path}\0{source}".encode(), digest_size=16).hexdigest()
    return MainModule(kind, name, path, source, package, search_dir=search_dir, digest=digest)


class MainDescriber:
    """Client side: the :class:`MainModule` of this process's ``__main__``, cached.

    A script or module is described again only when modules were imported
    since (one may be a project module to ship), and its files are read again
    only if their mtime changed.  A namespace is pickled again only when a
    name is bound to a different object or a plain value changes (a
    notebook's next cell).  In a worker, it is what the worker installed:
    nested work gets the client's main module, not the worker's entry script.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Any = None
        self._main: MainModule | None = None
        #: (mtime, source) of each file read: a file that goes away while the
        #: program runs still reaches the workers.
        self._sources: dict[str, tuple[float, str]] = {}
        #: Set while :meth:`MainInstaller.install` runs the main module (worker side).
        self.bootstrapping = False
        #: True in a worker slot (and its children): see :meth:`describe`.
        self.in_worker = False
        #: What this worker installed: its own children get the same.
        self.installed: MainModule | None = None

    def describe(self, *, namespaces: bool = True) -> MainModule | None:
        """The current main module's description (None when spawn would not re-run it either).

        *namespaces* False: None for an interactive namespace, which is then
        not pickled (a host's early install wants only a script or module).
        """
        if self.bootstrapping:
            # spawn.py's _check_not_importing_main(): an unguarded script would
            # otherwise start workers from every worker, without end.
            raise RuntimeError(
                "An attempt has been made to start a new process before the current process "
                "has finished its bootstrapping phase: a faasmp worker is re-running the main "
                "module (as the spawn start method does) and it starts a Process or Pool. "
                "Guard that code with\n    if __name__ == '__main__':\n        ...\nas the "
                "multiprocessing docs ask for the spawn start method."
            )
        if self.in_worker:
            return self.installed  # pass on what the client sent, if anything
        main = sys.modules.get("__main__")
        if main is None or getattr(sys, "frozen", False):
            return None
        with self._lock:
            try:
                key, build = self._plan(main)
                if not namespaces and key[0] == "namespace":
                    return None
                # A module imported since the last call may be one of the project's.
                key = (key, len(sys.modules))
                if key != self._key:
                    built = build() if build is not None else None
                    self._main = _with_project_modules(built, self._sources) if built else None
                    self._key = key
            except Exception:  # noqa: BLE001 - describing __main__ must never stop the work itself
                logger.warning("faasmp: could not describe __main__ for the workers", exc_info=True)
                self._main, self._key = None, None
            return self._main

    def _plan(self, main: types.ModuleType) -> tuple[Any, Any]:
        spec = getattr(main, "__spec__", None)
        file = getattr(main, "__file__", None)
        if spec is not None and getattr(spec, "name", None):
            name = spec.name
            _alias(main)
            # As spawn's _fixup_main_from_name: a package's __main__ is not re-run.
            if name == "__main__" or name.endswith(".__main__") or not spec.origin:
                return ("skip", name), None
            package = name.rpartition(".")[0]
            return ("module", name, spec.origin), lambda: _from_file(
                MainKind.MODULE, name, spec.origin, package, os.getcwd(), self._sources
            )
        if file:
            _alias(main)
            path = os.path.abspath(file)
            if os.path.splitext(os.path.basename(path))[0] == "ipython":  # as spawn
                return ("skip", path), None
            return ("script", path), lambda: _from_file(
                MainKind.SCRIPT, path, path, "", os.path.dirname(path), self._sources
            )
        namespace = vars(main)
        candidates = _namespace_candidates(namespace)
        key = ("namespace", tuple((n, id(v), _plain_key(v)) for n, v in candidates))
        return key, lambda: _pickle_namespace(namespace, candidates, os.getcwd())


@functools.lru_cache(maxsize=4096)
def _realpath(file: str) -> str:
    """``os.path.realpath``, once per module file: hundreds of them cost ~30 ms of a cold ``Pool()``."""
    return os.path.realpath(file)


def _project_modules(search_dir: str, cache: dict[str, tuple[float, str]]) -> tuple[ModuleSource, ...]:
    """Imported modules whose files are under *search_dir* (not installed packages, not faasmp)."""
    root = os.path.realpath(search_dir) + os.sep
    installed = tuple(os.path.realpath(p) + os.sep for p in {sys.prefix, sys.base_prefix})
    # Most modules are the stdlib's or installed: their paths as imported
    # already say so, without resolving links (hundreds of lstat calls).
    installed_as_named = tuple(p + os.sep for p in {sys.prefix, sys.base_prefix}) + installed
    found: list[ModuleSource] = []
    total = 0
    for name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py") or name in ("__main__", MP_MAIN):
            continue
        if name.split(".")[0] in _OWN_PACKAGES:
            continue
        if file.startswith(installed_as_named) and not file.startswith(root):
            continue
        real = _realpath(file)
        if not real.startswith(root) or real.startswith(installed):
            continue
        parts = real.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:  # installed elsewhere (user site)
            continue
        source = _read_source(file, cache)
        if source is None or total + len(source) > MODULES_LIMIT:
            continue
        total += len(source)
        is_package = os.path.basename(file) == "__init__.py"
        found.append(ModuleSource(name, file, source, is_package))
    return tuple(found)


def _with_project_modules(main: MainModule, cache: dict[str, tuple[float, str]]) -> MainModule:
    if main.search_dir is None:
        return main
    modules = _project_modules(main.search_dir, cache)
    if not modules:
        return main
    h = hashlib.blake2b(main.digest.encode(), digest_size=16)
    for m in modules:
        h.update(f"\0{m.name}\0{m.path}\0{m.source}".encode())
    return dataclasses.replace(main, modules=modules, digest=h.hexdigest())


def _alias(main: types.ModuleType) -> None:
    """Make ``__mp_main__`` name the client's main module, as ``import multiprocessing`` does.

    Workers pickle objects of the re-run script by reference to
    ``__mp_main__``; the stdlib sets this alias when multiprocessing is first
    imported, which under ``faasmp run`` (runpy's temporary ``__main__``)
    happened before the program's module existed.
    """
    if sys.modules.get(MP_MAIN) is not main:
        sys.modules[MP_MAIN] = main


def _plain_key(value: Any) -> bytes | None:
    """Plain values by content (a mutated list is a change), definitions by identity."""
    if isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)):
        return None
    try:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a value that will not pickle is left out anyway
        return None


# --- worker side ----------------------------------------------------------------


class _NamespaceUnpickler(pickle.Unpickler):
    """Loads a namespace item with its functions' globals being *module_dict*."""

    def __init__(self, file: io.BytesIO, module_dict: dict[str, Any]) -> None:
        super().__init__(file)
        self._module_dict = module_dict

    def persistent_load(self, pid: Any) -> Any:
        if pid == _MAIN_GLOBALS:
            return self._module_dict
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r} in a __main__ item")


def _remember_source(path: str, source: str) -> None:
    """Let tracebacks of the re-run main module show its lines (the worker may lack the file)."""
    if os.path.exists(path):
        return
    lines = source.splitlines(keepends=True)
    # mtime None: linecache.checkcache() keeps the entry (as for IPython cells).
    linecache.cache[path] = (len(source), None, lines, path)


class ShippedSources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the project's modules from the sources a :class:`MainModule` carried.

    Last on ``sys.meta_path``: a module the worker can import from its own
    disk (the localhost backend shares the client's files) is imported from
    there, as spawn's child would; the shipped source serves only workers
    that lack the file (another machine).
    """

    def __init__(self) -> None:
        self.sources: dict[str, ModuleSource] = {}

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        shipped = self.sources.get(fullname)
        if shipped is None:
            return None
        spec = importlib.util.spec_from_loader(
            fullname, self, origin=shipped.path, is_package=shipped.is_package
        )
        if spec is not None:
            spec.has_location = True  # __file__ is the client's path (tracebacks name it)
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module

    def exec_module(self, module: types.ModuleType) -> None:
        shipped = self.sources[module.__name__]
        _remember_source(shipped.path, shipped.source)
        code = compile(shipped.source, shipped.path, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # the client's own module, in a signed call


class MainInstaller:
    """Worker side: makes ``__main__`` and ``__mp_main__`` the client's main module.

    One ``__mp_main__`` module object per worker process, refilled when a
    different main module arrives (a notebook's namespace after a new cell),
    so libraries that bound ``__main__`` when first imported (dill does)
    keep seeing the current one.
    """

    def __init__(self, describer: MainDescriber) -> None:
        self._describer = describer
        #: Digest of the main module installed in this process (None: none yet).
        self.installed_digest: str | None = None
        self._module: types.ModuleType | None = None
        self._finder = ShippedSources()

    def install(self, main: MainModule | None, where: str) -> None:
        """Install *main* (no-op if it is installed already); failures go to stderr.

        *where* names this worker in the report.  Also marks this process as
        a worker (even when *main* is None, for a client without one).
        """
        self._describer.in_worker = True
        if main is None or main.digest == self.installed_digest:
            return
        self.installed_digest = main.digest
        module = self._fresh_module(main)
        self._describer.installed = main
        self._describer.bootstrapping = True
        try:
            if main.kind is MainKind.NAMESPACE:
                self._load_namespace(main, module)
            else:
                self._run_source(main, module)
        except BaseException as exc:  # noqa: BLE001 - reported; by-value work still runs
            self._report(main, where, exc)
        finally:
            self._describer.bootstrapping = False

    def _fresh_module(self, main: MainModule) -> types.ModuleType:
        module = self._module
        if module is None:
            # Objects of the re-run script are pickled by reference to
            # __mp_main__ (cloudpickle too: the module has a __file__), and the
            # client resolves that name to its own __main__ (see _alias), so a
            # result of a script class is an instance of the client's class.
            module = self._module = types.ModuleType(MP_MAIN)
        module.__dict__.clear()
        module.__dict__.update(
            __name__=MP_MAIN,
            __doc__=None,
            __package__=main.package or None,
            __spec__=None,
            __loader__=None,
            __builtins__=builtins,
        )
        if main.path is not None:
            module.__file__ = main.path
            module.__cached__ = None  # type: ignore[attr-defined]
        sys.modules["__main__"] = sys.modules[MP_MAIN] = module
        dill = sys.modules.get("dill._dill")
        if dill is not None:
            # dill binds ``__main__`` when first imported (``import __main__``)
            # and loads its by-reference main dict from that binding.
            dill._main_module = module  # type: ignore[attr-defined]
        if main.search_dir and main.search_dir not in sys.path:
            sys.path.insert(1, main.search_dir)
        self._finder.sources = {m.name: m for m in main.modules}
        if self._finder not in sys.meta_path:
            sys.meta_path.append(self._finder)
        return module

    def _run_source(self, main: MainModule, module: types.ModuleType) -> None:
        assert main.path is not None and main.source is not None
        _remember_source(main.path, main.source)
        code = compile(main.source, main.path, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # the client's own main module, in a signed call

    def _load_namespace(self, main: MainModule, module: types.ModuleType) -> None:
        loaded: dict[str, Any] = {}
        failed: list[str] = []
        for name, blob, own in main.items:
            try:
                loaded[name] = _NamespaceUnpickler(io.BytesIO(blob), module.__dict__).load()
            except Exception as exc:  # noqa: BLE001 - one name that cannot load is left out
                if own:
                    failed.append(f"{name} ({type(exc).__name__}: {exc})")
                else:  # an import the worker lacks: the user's code reports it if it is used
                    logger.debug("faasmp: __main__.%s not loaded in this worker: %r", name, exc)
        # The names' own objects win over copies that came in other functions' globals.
        module.__dict__.update(loaded)
        if failed:
            sys.stderr.write(
                f"faasmp: {len(failed)} name(s) of the client's __main__ could not be loaded into "
                f"this worker's __mp_main__ and are missing there: {'; '.join(failed)}\n"
            )

    @staticmethod
    def _report(main: MainModule, where: str, exc: BaseException) -> None:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # start at the script's own frame, as spawn's report does
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        sys.stderr.write(
            f"faasmp: {where} could not re-run the main module, {main.describe()}, as "
            f"{MP_MAIN!r} (the spawn start method does this in every child):\n{text}"
            "Top-level definitions after the failing line are missing in this worker, so "
            "functions pickled by reference to __main__ (plain pickle, dill) may not resolve "
            "there; faasmp's own work (pickled by value) is not affected. Put code that must "
            "run only in the parent under `if __name__ == '__main__':`.\n"
        )
        sys.stderr.flush()


#: This process's describer (client) and installer (worker).
DESCRIBER = MainDescriber()
INSTALLER = MainInstaller(DESCRIBER)


def describe(*, namespaces: bool = True) -> MainModule | None:
    """The :class:`MainModule` a RemoteCall made now carries (see :class:`MainDescriber`)."""
    return DESCRIBER.describe(namespaces=namespaces)


def install(main: MainModule | None, where: str) -> None:
    """Make *main* this worker's ``__main__``/``__mp_main__`` (see :class:`MainInstaller`)."""
    INSTALLER.install(main, where)
