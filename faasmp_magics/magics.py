"""``%faas_pool`` and ``%%faas``: IPython magics over faasmp's public API.

``%faas_pool N`` sizes a warm pool that stays warm across cells; ``%%faas``
runs a cell's ordinary ``multiprocessing`` code on faasmp
(:func:`faasmp.patched`), routes remote output to that cell, shows a live
dashboard drawn from ``faasmp.stats`` events, and turns Ctrl-C (the kernel's
stop button) into cancelling the cell's remote work.

Defaults are traits, so an IPython profile can set them, e.g. in
``ipython_config.py``::

    c.FaasMagics.dashboard = False
    c.FaasMagics.backend = "aws_lambda"
    c.FaasMagics.redis_url = "rediss://..."
"""

from __future__ import annotations

import ast
import collections
import contextvars
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float, Unicode

import faasmp
from faasmp import cost, stats
from faasmp.runtime.output import replay
from faasmp.stats import TaskRecord

from . import dashboard as dash

#: multiprocessing modules whose public names :func:`faasmp.patch` rebinds.
PATCHED_MODULES = ("multiprocessing", "multiprocessing.pool", "multiprocessing.process")


# -- shared option groups (one place, so flags and help agree) ---------------------------
def dashboard_args(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by %faas_pool and %%faas."""
    return argument(
        "--no-dashboard",
        action="store_true",
        help="Do not show the live dashboard (default from FaasMagics.dashboard).",
    )(func)


def pool_size_arg(name: str, help: str) -> Callable[[Callable[..., Any]], Any]:
    return argument(name, type=str, nargs="?", default=None, help=help)


# -- output routing -------------------------------------------------------------------
class OutputRouter:
    """Sends remote prints and log records to the cell that started the work.

    faasmp calls it on its output thread for every message.  A message of a
    Pool task goes to the cell that was running when its job started; other
    messages go to the running ``%%faas`` cell, else the default way.  A cell
    is represented by a copy of its ``contextvars`` context, in which the
    kernel's streams know the cell's parent header (ipykernel ≥ 6).
    """

    def __init__(self, max_jobs: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._jobs: collections.OrderedDict[str, contextvars.Context] = collections.OrderedDict()
        self._cell: contextvars.Context | None = None
        self._max_jobs = max_jobs

    def enter_cell(self) -> None:
        """The current (main-thread) cell becomes the destination of its jobs' output."""
        with self._lock:
            self._cell = contextvars.copy_context()

    def leave_cell(self) -> None:
        with self._lock:
            self._cell = None

    def on_event(self, event: stats.Event) -> None:
        """Stats listener: remember which cell each job started in."""
        if isinstance(event, stats.JobStarted):
            with self._lock:
                if self._cell is None:
                    return
                self._jobs[event.job_id] = self._cell
                while len(self._jobs) > self._max_jobs:
                    self._jobs.popitem(last=False)

    def _destination(self, task_id: str) -> contextvars.Context | None:
        with self._lock:
            job = task_id.rsplit(":", 1)[0] if isinstance(task_id, str) else ""
            return self._jobs.get(job, self._cell)

    def __call__(self, message: tuple[Any, ...]) -> None:
        context = self._destination(message[1]) if len(message) > 1 else None
        if context is None:
            replay(message)
            return
        try:
            context.run(replay, message)
        except RuntimeError:  # the context is entered elsewhere (never by faasmp's single output thread)
            replay(message)


# -- names the user namespace got from multiprocessing ---------------------------------
def _module_names() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for modname in PATCHED_MODULES:
        module = importlib.import_module(modname)
        for attr, value in vars(module).items():
            if not attr.startswith("_"):
                out[(modname, attr)] = value
    return out


def _imported_from_multiprocessing(tree: ast.AST) -> set[str]:
    """Names a cell binds with ``from multiprocessing[.x] import ...``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "multiprocessing":
            names.update(alias.asname or alias.name for alias in node.names if alias.name != "*")
    return names


class _NamespaceSwap:
    """Rebinds user-namespace names between stdlib multiprocessing objects and faasmp's.

    ``from multiprocessing import Pool`` in an earlier cell bound the stdlib
    ``Pool``; inside ``%%faas`` that name must mean faasmp's, and after the
    cell the stdlib's again (also for names the cell itself imported).
    """

    def __init__(self, user_ns: dict[str, Any], stdlib: dict[tuple[str, str], Any]) -> None:
        self.user_ns = user_ns
        patched = _module_names()
        self.to_faas: dict[int, Any] = {}
        self.to_std: dict[int, Any] = {}
        for key, std in stdlib.items():
            new = patched.get(key)
            if new is not None and new is not std:
                self.to_faas[id(std)] = new
                self.to_std[id(new)] = std
        self.swapped: set[str] = set()

    def enter(self) -> None:
        for name, value in list(self.user_ns.items()):
            if not name.startswith("_") and id(value) in self.to_faas:
                self.user_ns[name] = self.to_faas[id(value)]
                self.swapped.add(name)

    def leave(self, imported: set[str]) -> None:
        for name in self.swapped | imported:
            value = self.user_ns.get(name)
            if id(value) in self.to_std:
                self.user_ns[name] = self.to_std[id(value)]


# -- the magics -------------------------------------------------------------------------
@magics_class
class FaasMagics(Magics):
    """``%faas_pool`` and ``%%faas``; the traits are their configurable defaults."""

    dashboard = Bool(True, help="Show the live dashboard under %%faas and %faas_pool cells.").tag(config=True)
    dashboard_kind = Enum(
        ("auto", "widgets", "static", "text"),
        "auto",
        help="'widgets': ipywidgets + plotly FigureWidget; 'static': a text progress line, then a static "
        "plotly figure; 'text': the text table at the end; 'auto': widgets in a kernel that has them.",
    ).tag(config=True)
    refresh_interval = Float(
        dash.MIN_INTERVAL, help="Seconds between dashboard redraws; at least 0.25 (≤ 4 updates/s)."
    ).tag(config=True)
    show_stats = Bool(False, help="Print the per-phase table after every %%faas cell (as --stats).").tag(
        config=True
    )
    backend = Unicode(
        None, allow_none=True, help="Lithops backend for %faas_pool (None: faasmp's configuration)."
    ).tag(config=True)
    redis_url = Unicode(
        None, allow_none=True, help="Redis URL for %faas_pool (None: faasmp's configuration, i.e. embedded)."
    ).tag(config=True)
    idle_timeout = Float(
        None, allow_none=True, help="Seconds a warm worker waits for work (None: faasmp's configuration)."
    ).tag(config=True)
    linger = Float(
        30.0,
        help="Seconds a %%faas dashboard keeps following tasks still running after its cell ended "
        "(apply_async results nobody waited for).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.router = OutputRouter()
        self._pool_view: dash.View | None = None
        self._views: list[dash.View] = []
        self.last_records: list[TaskRecord] = []
        self._previous_handler: Any = None
        self._installed = False

    # -- lifecycle (load/unload_ipython_extension) --------------------------------
    def install(self) -> None:
        """Route remote output through :class:`OutputRouter` and follow jobs."""
        if self._installed:
            return
        ctx = faasmp.get_context()
        self._previous_handler = ctx.output_handler
        ctx.output_handler = self.router
        stats.subscribe(self.router.on_event)
        self._installed = True

    def uninstall(self) -> None:
        """Stop dashboards and give remote output back to faasmp's default handling."""
        self._stop_pool_view()
        for view in self._views:
            view.stop()
        self._views.clear()
        if self._installed:
            stats.unsubscribe(self.router.on_event)
            ctx = faasmp.get_context()
            if ctx.output_handler is self.router:
                ctx.output_handler = self._previous_handler
            self._installed = False

    def prewarm(self) -> None:
        """Import the dashboard's libraries now (plotly's first import takes seconds).

        Done while ``%load_ext`` runs rather than in the background, so the
        import never competes with a cell's work for the GIL.
        """
        if self.dashboard and self._in_kernel() and self.dashboard_kind in ("auto", "widgets"):
            dash.prewarm()

    # -- helpers ---------------------------------------------------------------------
    def _in_kernel(self) -> bool:
        return getattr(self.shell, "kernel", None) is not None

    def _view_kind(self, no_dashboard: bool) -> str:
        if no_dashboard or not self.dashboard:
            return "none"
        kind = self.dashboard_kind
        if kind == "auto":
            if not self._in_kernel():
                return "text"
            if dash.widgets_available():
                return "widgets"
            return "static" if dash.plotly_available() else "text"
        if kind in ("widgets", "static") and not self._in_kernel():
            return "text"
        if kind == "widgets" and not dash.widgets_available():
            raise UsageError(
                "FaasMagics.dashboard_kind = 'widgets' needs ipywidgets, plotly and anywidget: "
                "pip install 'faasmp[jupyter]'"
            )
        return kind

    def _make_view(self, kind: str, model: dash.DashboardModel, title: str) -> dash.View:
        status = faasmp.warm_pool_status
        if kind == "widgets":
            return dash.LiveDashboard(model, title, interval=self.refresh_interval, status=status)
        if kind == "static":
            return dash.StaticDashboard(model, title, interval=4 * self.refresh_interval, status=status)
        if kind == "text":
            return dash.TextView(model, title)
        return dash.View(model, title)

    def _prune_views(self) -> None:
        self._views = [v for v in self._views if v.alive]

    # -- %faas_pool ------------------------------------------------------------------
    @line_magic
    @magic_arguments()
    @pool_size_arg("workers", "Number of warm workers to start or resize to (omit to show the status).")
    @argument("--backend", default=None, help="Lithops compute backend (localhost, aws_lambda, k8s...).")
    @argument("--redis", default=None, help="Redis URL (redis://, rediss://, unix://); default: embedded.")
    @argument("--idle-timeout", type=str, default=None, help="Seconds an idle warm worker stays up.")
    @argument("--stop", action="store_true", help="Stop the warm pool (and the embedded Redis).")
    @dashboard_args
    def faas_pool(self, line: str = "") -> None:
        """Start, resize, show or stop the warm pool of faasmp workers.

        ``%faas_pool 8`` starts (or resizes to) 8 workers that stay warm across
        cells and shows a live dashboard of everything the pool runs;
        ``%faas_pool`` alone prints its status; ``%faas_pool --stop`` stops it.
        """
        args = parse_argstring(self.faas_pool, line)
        self.install()
        if args.stop:
            if args.workers is not None or args.backend or args.redis or args.idle_timeout:
                raise UsageError("%faas_pool --stop takes no other arguments")
            self._stop_pool_view()
            was_running = faasmp.warm_pool_status().get("running", False)
            faasmp.stop_warm_pool()
            print("faasmp warm pool stopped" if was_running else "no faasmp warm pool was running")
            return
        if args.workers is None:
            if args.backend or args.redis or args.idle_timeout:
                raise UsageError(
                    "%faas_pool: give the number of workers with --backend/--redis/--idle-timeout, "
                    "e.g. %faas_pool 4 --backend localhost"
                )
            print(format_status(faasmp.warm_pool_status()))
            return
        workers = parse_workers(args.workers, "%faas_pool")
        self._configure(self._pool_settings(args))
        kind = self._view_kind(args.no_dashboard)
        if kind != "none":
            self._stop_pool_view()
            model = dash.DashboardModel(follow_all=True)
            stats.subscribe(model.on_event)
            view = self._make_view(
                kind if kind != "text" else "none", model, f"faasmp pool ({workers} workers)"
            )
            view.show()
            self._pool_view = view
        try:
            status = faasmp.start_warm_pool(workers)
        except BaseException:
            self._stop_pool_view()
            raise
        if self._pool_view is not None:
            self._pool_view.wait_ready(60)
        print(format_status(status))

    def _pool_settings(self, args: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        backend = args.backend or self.backend
        if backend is not None:
            if not backend.strip():
                raise UsageError("%faas_pool --backend: give a Lithops backend name, e.g. localhost")
            settings["backend"] = backend
        redis_url = args.redis or self.redis_url
        if redis_url is not None:
            if "://" not in redis_url or redis_url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
                raise UsageError(
                    f"%faas_pool --redis: expected a redis://, rediss:// or unix:// URL, got {redis_url!r}"
                )
            settings["redis_url"] = redis_url
        idle = args.idle_timeout if args.idle_timeout is not None else self.idle_timeout
        if idle is not None:
            try:
                idle = float(idle)
            except ValueError:
                raise UsageError(f"%faas_pool --idle-timeout: expected seconds > 0, got {idle!r}") from None
            if not idle > 0:
                raise UsageError(f"%faas_pool --idle-timeout: expected seconds > 0, got {idle!r}")
            settings["idle_timeout"] = idle
        return settings

    def _configure(self, settings: dict[str, Any]) -> None:
        if not settings:
            return
        ctx = faasmp.get_context()
        current = {name: getattr(ctx.config, name) for name in settings}
        changed = {k: v for k, v in settings.items() if current[k] != v}
        if not changed:
            return
        if ctx.running:
            names = ", ".join(f"--{k.replace('_url', '').replace('_', '-')}" for k in changed)
            raise UsageError(
                f"%faas_pool: faasmp is already running (backend {ctx.config.backend!r}); "
                f"run %faas_pool --stop before changing {names}"
            )
        try:
            faasmp.configure(**changed)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"%faas_pool: {exc}") from None

    def _stop_pool_view(self) -> None:
        view, self._pool_view = self._pool_view, None
        if view is not None:
            stats.unsubscribe(view.model.on_event)
            view.stop()

    # -- %%faas ---------------------------------------------------------------------------
    @cell_magic
    @magic_arguments()
    @argument("--workers", type=str, default=None, help="Size the warm pool to N workers before the cell.")
    @dashboard_args
    @argument(
        "--stats",
        action="store_true",
        help="Print the per-phase overhead table and the cost estimate (faasmp.cost) after the cell.",
    )
    def faas(self, line: str, cell: str) -> Any:
        """Run the cell's ``multiprocessing`` code on faasmp, unchanged.

        ``import multiprocessing`` / ``from multiprocessing import Pool, Process,
        Queue, ...`` inside the cell (or in earlier cells) resolve to faasmp's
        while the cell runs; the stdlib is restored afterwards, also on error.
        Remote output appears in this cell; Ctrl-C cancels the cell's pools and
        processes and keeps the warm pool.  The records of the cell's tasks are
        ``faasmp_magics.last_records()`` afterwards.  ``concurrent.futures``'
        ``ProcessPoolExecutor`` runs on faasmp once :func:`faasmp.patch` covers
        it (not yet: it stays the stdlib's).
        """
        __tracebackhide__ = True
        args = parse_argstring(self.faas, line)
        self.install()
        workers = parse_workers(args.workers, "%%faas --workers") if args.workers is not None else None
        code = self._compile(cell)  # syntax errors before anything starts
        model = dash.DashboardModel(baseline=stats.reports())
        stats.subscribe(model.on_event)
        try:
            view = self._make_view(self._view_kind(args.no_dashboard), model, "faasmp %%faas")
            if workers is not None:
                faasmp.start_warm_pool(workers, wait=False)
            view.show()
            self._views.append(view)
            try:
                return self._run(code)
            finally:
                faasmp.get_context().collect_stats()  # the processes' last counters, into this cell
                model.close()
                self.last_records = model.records()
                view.finish(self.linger)
                self._prune_views()
                if args.stats or self.show_stats:
                    self._print_stats(model)
        finally:
            if model.progress().outstanding == 0:
                stats.unsubscribe(model.on_event)
            else:
                _unsubscribe_later(model, self.linger)

    def _print_stats(self, model: dash.DashboardModel) -> None:
        records = model.records()
        if records:
            print(stats.format_summary(records))
            config = faasmp.get_context().config
            print(cost.format_cost(cost.estimate(records, config), config))
        else:
            print("(no faasmp pool tasks or processes ran in this cell)")
        details = dash.details_text(model.snapshot())
        if details:
            print(details)

    def _compile(self, cell: str) -> tuple[Any, Any, set[str]]:
        shell: Any = self.shell
        source = shell.transform_cell(cell)
        tree = shell.transform_ast(shell.compile.ast_parse(source))
        # run_cell has already counted this cell: its number is execution_count - 1.
        filename = shell.compile.cache(source, max(shell.execution_count - 1, 0), raw_code=cell)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = shell.compile(tree, filename, "exec")
        value = shell.compile(last, filename, "eval") if last is not None else None
        return body, value, _imported_from_multiprocessing(tree)

    def _run(self, code: tuple[Any, Any, set[str]]) -> Any:
        __tracebackhide__ = True
        body, value, imported = code
        ns = self.shell.user_ns  # type: ignore[union-attr]
        stdlib = _module_names()
        ctx = faasmp.get_context()
        with faasmp.patched():
            swap = _NamespaceSwap(ns, stdlib)
            swap.enter()
            self.router.enter_cell()
            try:
                with ctx.work_scope() as scope:
                    try:
                        exec(body, ns)
                        return eval(value, ns) if value is not None else None
                    except KeyboardInterrupt:
                        n = scope.cancel()
                        print(
                            f"faasmp: interrupted, cancelled {n} pool(s)/process(es) of this cell",
                            file=sys.stderr,
                        )
                        raise
            finally:
                self.router.leave_cell()
                swap.leave(imported)


def _unsubscribe_later(model: dash.DashboardModel, after: float) -> None:
    timer = threading.Timer(after, stats.unsubscribe, args=(model.on_event,))
    timer.daemon = True
    timer.start()


def parse_workers(text: str, what: str) -> int:
    """A positive worker count, or a UsageError naming the option and the value."""
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what}: the number of workers must be a positive integer, got {text!r}") from None
    if n < 1:
        hint = " (stop the pool with %faas_pool --stop)" if n == 0 else ""
        raise UsageError(f"{what}: the number of workers must be >= 1, got {n}{hint}")
    return n


def format_status(status: dict[str, Any]) -> str:
    """One line for ``%faas_pool``: workers, backend, Redis, tasks run."""
    if not status.get("running"):
        return f"no faasmp warm pool running (backend {status.get('backend')!r}); start one with %faas_pool N"
    return (
        f"faasmp warm pool: {status['workers']} workers "
        f"({status['idle']} idle, {status['starting']} starting) on {status['hosts']} host(s) · "
        f"backend {status['backend']} · Redis {status['redis']} · "
        f"{status['queued']} queued · {status['tasks_run']} tasks run"
    )
