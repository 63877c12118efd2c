"""faasmp_magics: the dashboard model, the magics in-process, and notebooks in a real kernel.

* The dashboard's data model and series are tested from stats events, without widgets.
* ``%faas_pool`` / ``%%faas`` run in an in-process IPython shell against the
  default context (real workers): argument errors, stdlib restored, names
  swapped, ``--stats``.
* Notebooks under ``tests/notebooks/`` run in a real IPython kernel (nbclient)
  with their own ``TMPDIR`` (Lithops isolation, docs/architecture.md "Pitfalls"): results, forwarded
  prints from background threads, remote tracebacks, widget outputs and comm
  updates sent while the cell runs, the static fallback, and Ctrl-C cancelling
  the cell's remote work.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import io
import json
import os
import pathlib
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import faasmp
from faasmp import stats
from faasmp.stats import HostStarted, JobFinished, JobStarted, LatencySample, TaskFinished, TaskRecord
from faasmp_magics import dashboard as dash
from faasmp_magics.magics import OutputRouter

NOTEBOOKS = pathlib.Path(__file__).parent / "notebooks"
REPO = pathlib.Path(__file__).parent.parent


def record(job: str, i: int, *, t: float = 100.0, ok: bool = True, run: float = 0.5) -> TaskRecord:
    start = t + i * 0.1
    return TaskRecord(
        job_id=job,
        task_id=f"{job}:{i}",
        kind="pool",
        worker="w1",
        host="h1",
        submitted=start,
        uploaded=start + 0.001,
        started=start + 0.011,
        run_start=start + 0.012,
        run_end=start + 0.012 + run,
        received=start + 0.015 + run,
        serialize_s=0.0002,
        peak_rss=64 * 2**20,
        cpu_s=run / 2,
        ok=ok,
    )


# -- the data model, without widgets -----------------------------------------------------
def test_model_counts_done_running_queued_failed_and_cancelled() -> None:
    model = dash.DashboardModel(t0=100.0)
    model.on_event(JobStarted("p:0", "pool", 5, 100.0))
    model.on_event(TaskFinished(record("p:0", 0)))
    model.on_event(TaskFinished(record("p:0", 1, ok=False)))
    model.set_status({"running": True, "workers": 4, "idle": 2, "starting": 1})
    p = model.progress()
    assert (p.total, p.done, p.failed, p.running, p.queued, p.cancelled) == (5, 1, 1, 2, 1, 0)
    assert (p.workers, p.idle, p.starting) == (4, 2, 1)
    # The job ends (terminate / Ctrl-C) with 3 tasks never run: they count as cancelled.
    model.on_event(JobFinished("p:0", 101.0, False))
    p = model.progress()
    assert (p.running, p.queued, p.cancelled, p.outstanding) == (0, 0, 3, 0)
    # A job that succeeded ran all its tasks, even if a record is missing.
    model.on_event(JobStarted("p:1", "pool", 2, 101.0))
    model.on_event(TaskFinished(record("p:1", 0)))
    model.on_event(JobFinished("p:1", 102.0, True))
    p = model.progress()
    assert (p.total, p.done, p.failed, p.cancelled, p.outstanding) == (7, 3, 1, 3, 0)


def test_cell_model_follows_only_jobs_started_while_open() -> None:
    model = dash.DashboardModel()
    model.on_event(TaskFinished(record("other:0", 0)))  # a job it never saw start
    model.on_event(JobStarted("mine:0", "pool", 1, 0.0))
    model.close()
    model.on_event(JobStarted("later:0", "pool", 1, 0.0))
    model.on_event(TaskFinished(record("mine:0", 0)))
    model.on_event(TaskFinished(record("later:0", 0)))
    assert model.jobs == ["mine:0"]
    assert [r.job_id for r in model.records()] == ["mine:0"]
    pool_model = dash.DashboardModel(follow_all=True)
    pool_model.close()
    pool_model.on_event(JobStarted("later:0", "pool", 1, 0.0))
    assert pool_model.jobs == ["later:0"]


def test_model_version_changes_only_on_relevant_events() -> None:
    model = dash.DashboardModel()
    v0 = model.version
    model.on_event(TaskFinished(record("unknown:0", 0)))
    assert model.version == v0
    model.on_event(LatencySample(1.0, 0.0004))
    model.on_event(HostStarted("h1", 1.0, 1.5))
    assert model.version == v0 + 2
    model.set_status({"running": True, "workers": 1})
    model.set_status({"running": True, "workers": 1})
    assert model.version == v0 + 3


def test_series_for_the_panels() -> None:
    model = dash.DashboardModel(t0=100.0)
    model.on_event(JobStarted("p:0", "pool", 4, 100.0))
    for i in range(4):
        model.on_event(TaskFinished(record("p:0", i, ok=i != 3)))
    for rtt in (0.0003, 0.0004, 0.0010):
        model.on_event(LatencySample(100.0, rtt))
    snap = model.snapshot()

    tl = dash.timeline(snap)
    assert tl["run"][1] == [0, 0, None, 1, 1, None, 2, 2, None]  # one segment per ok task
    assert tl["failed"][0][:2] == pytest.approx([0.312, 0.812])  # seconds since t0
    hist = dash.start_end_histogram(snap)
    assert sum(hist["start"][1]) == 4 and sum(hist["end"][1]) == 4
    x, phases = dash.phase_bars(snap)
    assert x == [0, 1, 2, 3] and set(phases) == set(stats.PHASES)
    assert phases["run"][0] == pytest.approx(500.0) and phases["invoke"][0] == pytest.approx(10.0)
    updates = dash.trace_updates(snap)
    assert len(updates) == len(dash.TRACES)
    run_bar = updates[[name for name, _, _ in dash.TRACES].index("run")]
    # Stacked by hand (base = the phases before it), so one overlay layout serves every panel.
    assert run_bar["base"][0] == pytest.approx(
        sum(phases[p][0] for p in ("serialize", "upload", "invoke", "setup"))
    )
    centers, counts, _ = dash.latency_ms(snap)
    assert sum(counts) == 3 and min(centers) < 0.4 < max(centers) < 1.0
    res = dash.resources(snap)
    assert res["memory"][1] == [64.0] * 4 and res["cpu"][1] == [0.25] * 4

    text = dash.text_report(snap, "cell")
    assert "3/4" not in text and "4/4 tasks" in text and "failed 1" in text
    assert "phase" in text and "invoke" in text and "Redis round trip" in text
    assert "<table" in dash.summary_html(snap) and "width:75.00%" in dash.progress_html(snap, "cell")


def test_static_figure_has_every_panel() -> None:
    model = dash.DashboardModel(t0=100.0)
    model.on_event(JobStarted("p:0", "pool", 2, 100.0))
    model.on_event(TaskFinished(record("p:0", 0)))
    fig = dash.static_figure(model.snapshot())
    assert [t.name for t in fig.data] == [name for name, _, _ in dash.TRACES]
    titles = [a.text for a in fig.layout.annotations]
    for title in ("Invocation timeline", "start / end", "phases", "Redis latency", "memory", "CPU"):
        assert any(title in t for t in titles), title
    assert list(fig.data[1].x[:2]) == pytest.approx([0.012, 0.512])  # the running segment of task 0
    bundle = dash.figure_bundle(fig)
    assert len(bundle["application/vnd.plotly.v1+json"]["data"]) == len(dash.TRACES)
    assert "plotly" in bundle["text/html"]


def test_live_dashboard_redraws_at_most_four_times_a_second(capsys: pytest.CaptureFixture[str]) -> None:
    model = dash.DashboardModel(t0=time.time())
    view = dash.LiveDashboard(model, "test", interval=0.1)  # clamped to MIN_INTERVAL
    view.show()
    model.on_event(JobStarted("p:0", "pool", 400, time.time()))
    t0 = time.perf_counter()
    listener_time = 0.0
    for i in range(400):  # events as fast as a pool delivers them, for ~1.2 s
        t = time.perf_counter()
        model.on_event(TaskFinished(record("p:0", i, t=time.time())))
        listener_time += time.perf_counter() - t
        time.sleep(0.003)
    elapsed = time.perf_counter() - t0
    view.finish()
    assert view.draws <= elapsed / dash.MIN_INTERVAL + 3
    assert len(view.figure.data[1].x) == 3 * 400  # every task drawn in the final redraw
    assert "400/400 tasks" in view.header.value
    assert listener_time / 400 < 0.005  # the listener only appends under a lock


def test_output_router_sends_a_jobs_output_to_the_cell_it_started_in(monkeypatch: pytest.MonkeyPatch) -> None:
    cell = contextvars.ContextVar("cell", default="none")

    class Tagged(io.StringIO):
        def write(self, s: str) -> int:
            return super().write(f"[{cell.get()}]{s}")

    out = Tagged()
    monkeypatch.setattr(sys, "stdout", out)
    router = OutputRouter()
    cell.set("A")
    router.enter_cell()
    router.on_event(JobStarted("pool1:0", "pool", 1, 0.0))
    router.leave_cell()
    cell.set("B")
    router.enter_cell()
    cell.set("elsewhere")

    def faasmp_output_thread() -> None:  # a fresh thread, like faasmp's output thread
        router(("w", "pool1:0:3", 1, "from job of A\n"))
        router(("w", "callid", 1, "from a process\n"))

    th = threading.Thread(target=faasmp_output_thread)
    th.start()
    th.join()
    router.leave_cell()
    router(("w", "callid", 1, "no cell\n"))
    assert out.getvalue() == "[A]from job of A\n[B]from a process\n[elsewhere]no cell\n"


# -- the magics in an in-process shell (real workers of the default context) ---------------------
@pytest.fixture(scope="module")
def _shell() -> Iterator[Any]:
    """One in-process IPython shell (no kernel), removed again so other tests see plain Python."""
    from IPython.core.interactiveshell import InteractiveShell  # noqa: PLC0415
    from traitlets.config import Config  # noqa: PLC0415

    hooks = (sys.displayhook, sys.excepthook)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    try:
        yield shell
    finally:
        InteractiveShell.clear_instance()
        sys.displayhook, sys.excepthook = hooks


@pytest.fixture
def ipshell(_shell: Any, default_ctx: Any) -> Iterator[Any]:
    _shell.run_line_magic("load_ext", "faasmp_magics")
    try:
        yield _shell
    finally:
        _shell.run_line_magic("unload_ext", "faasmp_magics")
    assert faasmp.get_context().output_handler is None
    assert "faas" not in _shell.magics_manager.magics["cell"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("abc", "positive integer, got 'abc'"),
        ("0", "must be >= 1, got 0 (stop the pool with %faas_pool --stop)"),
        ("--stop 3", "--stop takes no other arguments"),
        ("2 --idle-timeout -1", "--idle-timeout: expected seconds > 0, got -1.0"),
        ("2 --idle-timeout soon", "--idle-timeout: expected seconds > 0, got 'soon'"),
        ("2 --redis http://x", "expected a redis://, rediss:// or unix:// URL, got 'http://x'"),
        ("--backend localhost", "give the number of workers"),
        ("2 --bogus", "unrecognized arguments: --bogus"),
    ],
)
def test_faas_pool_rejects_bad_arguments_clearly(ipshell: Any, line: str, message: str) -> None:
    from IPython.core.error import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError) as info:
        ipshell.run_line_magic("faas_pool", line)
    assert message in str(info.value)


def test_faas_cell_option_errors(ipshell: Any) -> None:
    from IPython.core.error import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError, match=r"%%faas --workers: the number of workers must be >= 1, got -2"):
        ipshell.run_cell_magic("faas", "--workers -2", "pass")
    with pytest.raises(SyntaxError):
        ipshell.run_cell_magic("faas", "", "def (:")
    assert not faasmp.is_patched()


def test_faas_pool_refuses_to_change_backend_while_running(
    ipshell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.error import UsageError  # noqa: PLC0415

    ipshell.run_line_magic("faas_pool", "1 --no-dashboard")
    # Surplus workers leave asynchronously (idle ones take a STOP call), so the count may still be higher.
    assert re.match(r"faasmp warm pool: \d+ workers .* backend localhost", capsys.readouterr().out)
    with pytest.raises(UsageError, match=r"already running .*%faas_pool --stop before changing --backend"):
        ipshell.run_line_magic("faas_pool", "1 --backend aws_lambda")
    ipshell.run_line_magic("config", "FaasMagics.backend = 'localhost'")  # a profile default
    try:
        ipshell.run_line_magic("faas_pool", "")  # status only: the default is not an argument
    finally:
        ipshell.run_line_magic("config", "FaasMagics.backend = None")
    assert "Redis embedded" in capsys.readouterr().out


def test_faas_cell_runs_stdlib_code_on_faasmp_and_restores_the_stdlib(
    ipshell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import multiprocessing  # noqa: PLC0415

    std_pool = multiprocessing.Pool
    ipshell.run_cell("import faasmp\nfrom multiprocessing import Pool\ndef cube(x):\n    return x ** 3")
    assert ipshell.user_ns["Pool"] is std_pool
    value = ipshell.run_cell_magic(
        "faas",
        "--stats --no-dashboard",
        "import multiprocessing\nfrom multiprocessing import Process as P\n"
        "swapped = Pool is faasmp.Pool and P is faasmp.Process\n"
        "with Pool(2) as p:\n    out = p.map(cube, range(5))\nout",
    )
    assert value == [0, 1, 8, 27, 64]
    ns = ipshell.user_ns
    assert ns["swapped"] is True  # a name imported in an earlier cell meant faasmp's Pool inside %%faas
    assert ns["Pool"] is std_pool and ns["P"] is multiprocessing.Process  # ...and the stdlib's after it
    assert multiprocessing.Pool is std_pool and not faasmp.is_patched()
    out = capsys.readouterr().out
    import faasmp_magics  # noqa: PLC0415

    records = faasmp_magics.last_records()
    # Pool(2).map over 5 items: chunksize ceil(5 / (2 * 4)) = 1, so 5 chunks of 1 item, each recorded once.
    assert len(records) == 5 and all(r.n_items == 1 and r.ok for r in records), records
    assert "phase" in out and "invoke" in out and f"({len(records)} task records)" in out
    assert "cost job" in out and "GB-s" in out and "invocation(s)" in out  # --stats shows the estimate

    with pytest.raises(ZeroDivisionError) as info:
        ipshell.run_cell_magic("faas", "", "with Pool(2) as p:\n    p.map(lambda x: 1 / x, [0])")
    assert isinstance(info.value.__cause__, faasmp.RemoteTraceback)
    assert "1 / x" in str(info.value.__cause__)
    assert multiprocessing.Pool is std_pool and not faasmp.is_patched() and ns["Pool"] is std_pool


def test_faas_cell_in_a_terminal_shell_prints_the_text_dashboard(
    ipshell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ipshell.run_cell_magic(
        "faas", "", "from multiprocessing import Pool\nwith Pool(2) as p:\n    p.map(abs, [1, 2])"
    )
    out = capsys.readouterr().out
    assert "faasmp %%faas: 2/2 tasks · done 2" in out and "phase" in out
    assert "cost ≈ $" in out and "aws_lambda list prices (localhost is free)" in out


# -- notebooks in a real kernel ------------------------------------------------------------------
def kernel_env(**extra: str) -> dict[str, str]:
    """The kernel's environment: its own TMPDIR (Lithops isolation) and test timeouts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASMP_")}
    env.update(
        TMPDIR=tempfile.mkdtemp(prefix="faasmp-kernel-"),
        FAASMP_IDLE_TIMEOUT="30",
        FAASMP_HEARTBEAT_INTERVAL="0.5",
        FAASMP_START_TIMEOUT="60",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


class NotebookRun:
    """Executes a notebook cell by cell in a fresh kernel, recording outputs and widget traffic."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        import nbformat  # noqa: PLC0415
        from nbclient import NotebookClient  # noqa: PLC0415

        self.nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        self.env = env
        self.comm_log: list[tuple[float, str, dict[str, Any]]] = []  # (time, cell id, content)
        self.comm_buffers: dict[int, list[bytes]] = {}  # id(content) -> the message's binary buffers
        self.spans: dict[str, tuple[float, float]] = {}
        self.interrupted_at = 0.0
        run = self

        class Client(NotebookClient):
            def handle_comm_msg(self, outs: Any, msg: dict[str, Any], cell_index: int) -> None:
                run.comm_log.append((time.time(), run.nb.cells[cell_index].id, msg["content"]))
                if msg.get("buffers"):  # numeric arrays travel beside the JSON, as in ipywidgets
                    run.comm_buffers[id(msg["content"])] = [bytes(b) for b in msg["buffers"]]
                super().handle_comm_msg(outs, msg, cell_index)

        self.client = Client(
            self.nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
        )

    def cell(self, cell_id: str) -> Any:
        return next(c for c in self.nb.cells if c.get("id") == cell_id)

    def text(self, cell_id: str, name: str | None = None) -> str:
        parts = []
        for out in self.cell(cell_id).outputs:
            if out.output_type == "stream" and name in (None, out.name):
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data") and name is None:
                parts.append(out.data.get("text/plain", ""))
        return "".join(parts)

    async def run(self, interrupt: dict[str, Any] | None = None) -> None:
        """Run every code cell; ``interrupt={"cell": id, "when": callable}`` interrupts one when ready."""
        async with self.client.async_setup_kernel(env=self.env):
            try:
                for index, cell in enumerate(self.nb.cells):
                    if cell.cell_type != "code":
                        continue
                    start = time.time()
                    task = asyncio.ensure_future(self.client.async_execute_cell(cell, index))
                    if interrupt and cell.id == interrupt["cell"]:
                        deadline = time.monotonic() + 60
                        while not interrupt["when"]():
                            assert time.monotonic() < deadline, "the remote work never started"
                            assert not task.done(), (
                                f"cell {cell.id} ended before the interrupt: {cell.outputs}"
                            )
                            await asyncio.sleep(0.05)
                        self.interrupted_at = time.time()
                        await self.client.km.interrupt_kernel()
                    await task
                    self.spans[cell.id] = (start, time.time())
                self.client.set_widgets_metadata()
            finally:  # stop the kernel's workers and Redis before the kernel goes
                reply = self.client.kc.execute("import faasmp; faasmp.shutdown()", reply=True, timeout=30)
                if inspect.isawaitable(reply):
                    await reply

    def updates_during(self, cell_id: str) -> list[dict[str, Any]]:
        start, end = self.spans[cell_id]
        return [
            c["data"]["state"]
            for t, cid, c in self.comm_log
            if cid == cell_id and start <= t <= end and c.get("data", {}).get("method") == "update"
        ]

    def last_arrays(self, cell_id: str, trace: int) -> tuple[list[float], list[float]]:
        """The x and y a cell's figure widget last sent for trace number *trace* (NaN = a break)."""
        import numpy as np  # noqa: PLC0415

        start, end = self.spans[cell_id]
        found: dict[str, list[float]] = {}
        for t, cid, content in self.comm_log:
            data = content.get("data", {})
            if cid != cell_id or not start <= t <= end or data.get("method") != "update":
                continue
            update = data["state"].get("_py2js_update") or {}
            # style_data["x"][k] belongs to trace style_traces[k] (the traces of this batch).
            traces = update.get("style_traces") or []
            buffers = self.comm_buffers.get(id(content), [])
            for path, buf in zip(data.get("buffer_paths", []), buffers, strict=False):
                if path[:3] in (["_py2js_update", "style_data", "x"], ["_py2js_update", "style_data", "y"]):
                    if traces[path[3]] == trace:
                        spec = update["style_data"][path[2]][path[3]]
                        found[path[2]] = np.frombuffer(buf, dtype=spec["dtype"]).tolist()
        return found.get("x", []), found.get("y", [])


# Kernel tests start a kernel, faasmp and its workers: generous limits for a loaded machine.
kernel_test = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def kernel_notebook() -> NotebookRun:
    run = NotebookRun("magics_kernel", kernel_env())
    t = time.perf_counter()
    asyncio.run(run.run())
    run.elapsed = time.perf_counter() - t  # type: ignore[attr-defined]
    return run


@kernel_test
def test_kernel_pool_magic_shows_status_and_a_dashboard(kernel_notebook: NotebookRun) -> None:
    assert "faasmp warm pool: 2 workers" in kernel_notebook.text("pool")
    views = [
        o
        for o in kernel_notebook.cell("pool").outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(views) == 1


@kernel_test
def test_kernel_faas_cell_results_prints_and_stats(kernel_notebook: NotebookRun) -> None:
    nb = kernel_notebook
    result = next(o for o in nb.cell("run").outputs if o.output_type == "execute_result")
    # Functions, lambdas, closures and classes of an earlier cell ran remotely (not in the kernel).
    assert (
        result.data["text/plain"]
        == "([0, 1, 4, 9, 16, 25, 36, 49, 64, 81], [3, 4, 5], [0, 10, 20], [2, 4], False)"
    )
    out = nb.text("run", "stdout")
    assert "patched: True" in out
    assert all(f"remote hello {i}\n" in out for i in range(3))
    assert "phase" in out and "serialize" in out and "join" in out  # --stats table
    assert "restored: True True True" in nb.text("after")
    # last_records(): every job of the cell; faasmp.stats.last(): its last job.  Pool(2) maps
    # cut range(10) into 5 chunks of 2 (chunksize ceil(10 / 8)), then 3 + 3 + 2 + 3 chunks of 1:
    # 16 chunks, the last job 3 -- each recorded exactly once.
    cell_records, last_job = map(int, re.search(r"records: (\d+) (\d+)", nb.text("after")).groups())
    assert (cell_records, last_job) == (16, 3)


@kernel_test
def test_kernel_forwards_output_of_work_started_from_a_background_thread(
    kernel_notebook: NotebookRun,
) -> None:
    nb = kernel_notebook
    assert "thread-print 0\n" in nb.text("threads", "stdout") and "thread-print 1\n" in nb.text(
        "threads", "stdout"
    )
    err = nb.text("threads", "stderr")
    assert "thread-err 0" in err and "thread-log 1" in err  # stderr and logging records
    assert nb.text("threads").rstrip().endswith("[0, 1]")


@kernel_test
def test_kernel_remote_exception_shows_the_remote_traceback(kernel_notebook: NotebookRun) -> None:
    nb = kernel_notebook
    err = next(o for o in nb.cell("error").outputs if o.output_type == "error")
    assert err.ename == "ValueError" and err.evalue == "bad value 7"
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback))
    assert "RemoteTraceback" in text
    assert 'raise ValueError(f"bad value {x}")' in text  # the remote source line
    assert "p.map(boom, [7])" in text  # the cell's own line
    assert "restored after error: True True" in nb.text("after_error")


@kernel_test
def test_kernel_dashboard_widgets_are_updated_while_the_cell_runs(kernel_notebook: NotebookRun) -> None:
    nb = kernel_notebook
    outputs = nb.cell("run").outputs
    view = next(o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
    assert "16/16 tasks · done 16" in view.data["text/plain"]  # the final text fallback
    updates = nb.updates_during("run")
    figure_updates = [u for u in updates if "_py2js_update" in u or "_py2js_restyle" in u]
    headers = [u["value"] for u in updates if "faasmp-progress" in str(u.get("value"))]
    assert figure_updates and headers
    assert "16/16 tasks · done 16" in headers[-1]
    # Widget state saved with the notebook holds the models the views refer to.
    state = nb.nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert view.data["application/vnd.jupyter.widget-view+json"]["model_id"] in state


@kernel_test
def test_kernel_process_pipe_cell_dashboard_shows_both_processes_and_the_pipe_traffic(
    kernel_notebook: NotebookRun,
) -> None:
    nb = kernel_notebook
    out = nb.text("procs", "stdout")
    assert "exit codes: [0, 0]" in out
    assert "learner: trained on 50 batches" in out and "actor: return" in out  # remote prints
    outputs = nb.cell("procs").outputs
    view = next(o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
    final = view.data["text/plain"]  # the final text fallback of the live dashboard
    assert "2/2 tasks · done 2" in final
    assert "process learner: exit 0" in final and "process actor: exit 0" in final
    # The pipe's traffic, counted in both processes: 50 messages each way.
    pipe_rows = [line.split() for line in final.splitlines() if line.startswith("pipe ")]
    assert sorted(row[2] for row in pipe_rows) == ["recv", "recv", "send", "send"], pipe_rows
    assert all(int(row[3]) == 50 for row in pipe_rows), pipe_rows
    # The widgets drew them: the tables under the figure and the names on the timeline.
    tables = [u["value"] for u in nb.updates_during("procs") if "faasmp-ipc" in str(u.get("value"))]
    assert tables and "faasmp-processes" in tables[-1]
    assert "learner" in tables[-1] and "actor" in tables[-1] and "pipe" in tables[-1]
    figure = json.dumps(
        [u for u in nb.updates_during("procs") if "_py2js_restyle" in u or "_py2js_update" in u]
    )
    assert "learner (exit 0)" in figure and "actor (exit 0)" in figure
    # --stats printed the same.
    assert "process learner: exit 0" in out and "IPC / sync object" in out
    # Busy against idle per host: one host here (on localhost one invocation runs all the
    # slots; tests/test_observability.py runs two).  Its line is in the text, on its band,
    # and the band the widget drew has the busy share that line says.
    host_lines = [line for line in final.splitlines() if line.startswith("host ")]
    assert len(host_lines) == 1, final
    match = re.fullmatch(r"host [0-9a-f]+: 2 worker\(s\), 2 task\(s\), (\d+)% busy", host_lines[0])
    assert match and host_lines[0] in figure and host_lines[0] in out, host_lines
    names = [name for name, _, _ in dash.TRACES]
    idle_x, idle_y = nb.last_arrays("procs", names.index("host idle"))
    busy_x, busy_y = nb.last_arrays("procs", names.index("host busy"))
    assert idle_y[:4] == [0.0, 0.0, dash.BAND, dash.BAND] and idle_x[0] < idle_x[1]  # the whole span
    steps = busy_y[1:-2:2]  # one height per time bin (after the first point; then end, base, break)
    assert len(steps) == dash.HOST_BINS and busy_x[0] == idle_x[0] and busy_x[-2] == idle_x[1]
    assert sum(steps) / len(steps) / dash.BAND * 100 == pytest.approx(int(match[1]), abs=0.51)


@kernel_test
def test_kernel_static_fallback_and_no_dashboard(kernel_notebook: NotebookRun) -> None:
    nb = kernel_notebook
    (display,) = [o for o in nb.cell("static_run").outputs if o.output_type == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" not in display.data
    assert display.data["application/vnd.plotly.v1+json"]["data"]
    assert "7/7 tasks · done 7" in display.data["text/plain"] and "phase" in display.data["text/plain"]
    assert "2470" in nb.text("static_run")
    assert [o.output_type for o in nb.cell("nodash").outputs] == ["stream"]
    assert "no dashboard: [4]" in nb.text("nodash")


@kernel_test
def test_kernel_pool_status_and_stop(kernel_notebook: NotebookRun) -> None:
    lines = kernel_notebook.text("status").splitlines()
    # Pools of the cells may have added workers beyond the 2 of %faas_pool 2 (the pool grows on demand).
    assert re.match(r"faasmp warm pool: \d+ workers \(\d+ idle, \d+ starting\) on 1 host", lines[0]), lines[0]
    assert "Redis embedded" in lines[0] and "tasks run" in lines[0]
    assert lines[1:] == [
        "faasmp warm pool stopped",
        "no faasmp warm pool running (backend 'localhost'); start one with %faas_pool N",
    ]


@kernel_test
def test_kernel_interrupt_cancels_the_cells_remote_work(tmp_path: pathlib.Path) -> None:
    # The default: the kernel's own embedded server (jupyter_client interrupts
    # the kernel's process group; the server must survive that SIGINT).
    marks = tmp_path / "marks"
    marks.mkdir()
    env = kernel_env(FAASMP_TEST_MARKS=str(marks))
    assert "FAASMP_REDIS_URL" not in env
    run = NotebookRun("magics_interrupt", env)

    def started() -> bool:
        return all((marks / f"started-{i}").exists() for i in range(2))

    asyncio.run(run.run(interrupt={"cell": "slow", "when": started}))
    err = next(o for o in run.cell("slow").outputs if o.output_type == "error")
    assert err.ename == "KeyboardInterrupt"
    assert "cancelled 1 pool(s)/process(es) of this cell" in run.text("slow", "stderr")
    _, end = run.spans["slow"]
    took = end - run.interrupted_at
    # The cell ended soon (Pool.terminate kills the busy workers), not after the 15 s tasks.
    assert took < 10, (took, sorted(p.name for p in marks.iterdir()), run.text("slow"))
    assert "after interrupt: [1, 2, 3]" in run.text("next")  # the warm pool is still usable
    started = max((marks / f"started-{i}").stat().st_mtime for i in range(2))
    remaining = started + 16 - time.time()
    if remaining > 0:
        time.sleep(remaining)
    assert not list(marks.glob("done-*"))  # the busy workers were stopped, not left running
