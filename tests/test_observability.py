"""faasmp.stats sees a whole program: Processes, IPC/sync counters, Redis latency, utilisation.

The model parts are tested from events; the rest through real workers: a
Process + Pipe master/worker program whose process record, phases, output
volume and per-object counters (from both processes) reach the client's
collector, and whose summary ``python -m faasmp run --stats`` prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from faasmp import stats
from faasmp.context import FaasContext
from faasmp.runtime import metrics
from faasmp.stats import (
    IpcStat,
    LatencyStat,
    MetricsReport,
    ProcessStarted,
    StatsCollector,
    TaskFinished,
    TaskRecord,
)
from faasmp_magics import dashboard as dash
from tests import helpers_obs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(worker: str, host: str, started: float, run_end: float, kind: str = "pool") -> TaskRecord:
    return TaskRecord(
        job_id="j",
        task_id=f"{worker}:{started}",
        kind=kind,
        worker=worker,
        host=host,
        submitted=started - 0.1,
        uploaded=started - 0.05,
        started=started,
        run_start=started + 0.01,
        run_end=run_end,
        received=run_end + 0.01,
        serialize_s=0.001,
        peak_rss=0,
        cpu_s=0.0,
        ok=True,
    )


def _report(source: str, t: float, count: int, latency: int = 0) -> MetricsReport:
    ipc = (IpcStat(source, source, "pipe", "abc/0", "send", count, 10 * count, 0.0),)
    lat = (
        (LatencyStat(source, "EVALSHA", latency, latency * 1e-4, (0, latency) + (0,) * 10),)
        if latency
        else ()
    )
    return MetricsReport(source, source, "h", t, ipc, lat)


# -- the model, without workers ---------------------------------------------------------
def test_utilisation_merges_overlapping_busy_time_per_worker_and_host() -> None:
    recs = [
        _record("h.1", "h", 0.0, 1.0),
        _record("h.1", "h", 0.5, 2.0),  # overlaps the first: counted once
        _record("h.2", "h", 3.0, 4.0),
    ]
    util = {(u.host, u.worker): u for u in stats.utilisation(recs)}
    assert util[("h", "h.1")].busy_s == pytest.approx(2.0)
    assert util[("h", "h.1")].busy_fraction == pytest.approx(0.5)  # span 0..4
    assert util[("h", "h.2")].busy_fraction == pytest.approx(0.25)
    assert util[("h", "")].busy_s == pytest.approx(3.0) and util[("h", "")].tasks == 3
    times, busy = stats.busy_over_time(recs, bins=4)
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert busy == pytest.approx([1.5, 1.0, 0.0, 1.0])  # two overlapping tasks in 0..1, then idle in 2..3


def test_a_report_replaces_the_older_one_of_its_process_and_tables_sum_processes() -> None:
    c = StatsCollector()
    c.emit(_report("a", 2.0, 5, latency=4))
    c.emit(_report("a", 1.0, 3))  # older: ignored
    c.emit(_report("b", 1.0, 7))
    assert {(s.source, s.count) for s in c.ipc()} == {("a", 5), ("b", 7)}
    assert stats.ipc_table(c.ipc()) == [("pipe", "abc/0", "send", 12, 120, 0.0)]
    (cmd, n, mean, p90) = stats.latency_table(c.redis_latency())[0]
    assert (cmd, n) == ("EVALSHA", 4) and mean == pytest.approx(1e-4) and p90 == metrics.LATENCY_BOUNDS[1]
    later = stats.subtract(_report("a", 3.0, 9), _report("a", 2.0, 5))
    assert [s.count for s in later.ipc] == [4]


def test_to_pandas_has_a_table_per_kind_and_names_the_known_ones() -> None:
    pytest.importorskip("pandas")
    c = StatsCollector()
    c.emit(TaskFinished(_record("h.1", "h", 0.0, 1.0)))
    c.emit(_report("a", 1.0, 3, latency=2))
    assert list(c.to_pandas()["kind"]) == ["pool"]
    assert c.to_pandas(table="ipc")["count"].sum() == 3
    assert list(c.to_pandas(table="latency")["command"]) == ["EVALSHA"]
    assert set(c.to_pandas(table="utilisation")["worker"]) == {"h.1", ""}
    with pytest.raises(
        ValueError, match=r"unknown table 'x'; known: \['tasks', 'ipc', 'latency', 'utilisation'\]"
    ):
        c.to_pandas(table="x")


def test_counters_of_a_forked_child_start_at_zero() -> None:
    c = metrics.counter("pipe", "fork-test", "send")
    c.add(100)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, str(c.count).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 100) == b"0"
    os.close(r)
    assert c.count >= 1


def test_dashboard_draws_processes_running_and_ended_with_names_and_ipc() -> None:
    model = dash.DashboardModel(t0=100.0)
    model.on_event(stats.JobStarted("p1", "process", 1, 100.0))
    model.on_event(ProcessStarted("p1", "learner", 100.0))
    model.on_event(stats.JobStarted("p2", "process", 1, 100.0))
    model.on_event(ProcessStarted("p2", "actor", 100.5))
    rec = stats.process_record(
        "p1",
        "learner",
        100.0,
        0.001,
        100.01,
        {"started": "100.2", "run_start": "100.3", "run_end": "101.0", "exitcode": "3", "slot": "h.1"},
        101.1,
    )
    model.on_event(TaskFinished(rec))
    model.on_event(_report("p1", 101.0, 40, latency=3))
    snap = model.snapshot()
    tl = dash.timeline(snap)
    assert tl["texts"][0] == ["learner (exit 3)", "actor (running)"]
    assert tl["failed"][0][:2] == pytest.approx([0.3, 1.0])  # exit code 3: drawn as failed
    labels, counts, hover = dash.ipc_bars(snap)
    assert labels == ["pipe …abc/0 send"] and counts == [40] and "400 bytes" in hover[0]
    assert dash.latency_by_command(snap)[0] == ["EVALSHA"]
    assert dash.utilisation(snap)[0] == ["slot h.1"]
    text = dash.text_report(snap, "cell")
    assert "process learner: exit 3" in text and "pipe abc/0" in text and "advisor: no Pool tasks" in text
    html = dash.summary_html(snap)
    assert "faasmp-processes" in html and "faasmp-ipc" in html and "learner" in html
    assert len(dash.trace_updates(snap)) == len(dash.TRACES)


def _shapes(xs: list[Any], ys: list[Any]) -> list[list[tuple[float, float]]]:
    """The None-separated shapes of one trace, as lists of points."""
    shapes: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        if x is None:
            shapes.append([])
        else:
            shapes[-1].append((x, y))
    return [s for s in shapes if s]


def test_dashboard_draws_busy_against_idle_per_host_over_time() -> None:
    """One band per host; in each time bin its busy share is stats.busy_over_time of that host."""
    recs = [
        _record("a.1", "a", 10.0, 12.0),
        _record("a.2", "a", 10.0, 11.0),
        _record("b.1", "b", 11.0, 14.0),  # b starts later and ends last
    ]
    model = dash.DashboardModel(t0=9.0)
    model.on_event(stats.JobStarted("j", "pool", 3, 9.0))
    for r in recs:
        model.on_event(TaskFinished(r))
    snap = model.snapshot()
    hosts = dash.host_busy(snap)
    assert [(h.host, h.workers, h.tasks) for h in hosts] == [("a", 2, 2), ("b", 1, 1)]
    for h in hosts:  # the same bins for both hosts: the span of the whole run
        times, busy = stats.busy_over_time(recs, dash.HOST_BINS, h.host, span=(10.0, 14.0))
        assert h.times == pytest.approx([t - 9.0 for t in times]) and h.busy == pytest.approx(busy)
    assert hosts[0].busy_fraction == pytest.approx(3 / 8)  # 3 worker-seconds of 2 workers x 4 s
    assert hosts[1].busy_fraction == pytest.approx(3 / 4)
    bands = dash.host_bands(snap)
    assert bands["texts"][0] == [
        "host a: 2 worker(s), 2 task(s), 38% busy",
        "host b: 1 worker(s), 1 task(s), 75% busy",
    ]
    idle_a, idle_b = _shapes(*bands["idle"])
    assert idle_a == [(1.0, 1.0), (5.0, 1.0), (5.0, 1.8), (1.0, 1.8)]  # a on top: the whole span
    assert idle_b == [(1.0, 0.0), (5.0, 0.0), (5.0, 0.8), (1.0, 0.8)]
    busy_a, busy_b = _shapes(*bands["busy"])
    # First bin: both of a's workers busy (full band), b not started; last bin: only b busy.
    assert busy_a[1][1] == pytest.approx(1.8) and busy_b[1][1] == pytest.approx(0.0)
    assert busy_a[-2][1] == pytest.approx(1.0) and busy_b[-2][1] == pytest.approx(0.8)
    heights = [y - 1.0 for _, y in busy_a[1:-1:2]]
    assert heights == pytest.approx([b / 2 * dash.BAND for b in hosts[0].busy])
    # The figure gets exactly these, as numbers (strings only in the labels' trace).
    names = [name for name, _, _ in dash.TRACES]
    updates = dash.trace_updates(snap)
    assert updates[names.index("host busy")] == {"x": bands["busy"][0], "y": bands["busy"][1]}
    assert updates[names.index("host idle")] == {"x": bands["idle"][0], "y": bands["idle"][1]}
    assert updates[names.index("hosts")]["text"] == bands["texts"][0]
    text = dash.text_report(snap)
    assert all(line in text for line in bands["texts"][0])
    many = dash.DashboardModel(t0=0.0)
    many.on_event(stats.JobStarted("j", "pool", 20, 0.0))
    for i in range(20):
        many.on_event(TaskFinished(_record(f"h{i}.1", f"h{i}", 1.0 + i, 2.0 + i)))
    texts = dash.host_bands(many.snapshot())["texts"][0]
    assert len(texts) == dash.MAX_HOSTS_DRAWN and texts[-1].endswith("(and 4 more host(s), not drawn)")


def test_two_localhost_invocations_each_get_their_own_band() -> None:
    """A real run on two hosts (one slot per localhost invocation): each band is that host's own busy time."""
    from tests.conftest import TEST_SETTINGS  # noqa: PLC0415

    two = FaasContext(slots_per_invocation=1, max_workers=2, **TEST_SETTINGS)
    model = dash.DashboardModel()
    listener = two.stats.subscribe(model.on_event)
    try:
        barrier = two.Barrier(2)  # both tasks at once: two workers, so two hosts
        with two.Pool(2) as pool:
            pool.map(helpers_obs.meet, [barrier] * 2, chunksize=1)
        model.close()
        snap = _wait_for("both records", lambda: (s := model.snapshot()) and len(s.records) == 2 and s)
    finally:
        two.stats.unsubscribe(listener)
        two.shutdown()
    hosts = dash.host_busy(snap)
    assert len(hosts) == 2 and len({h.host for h in hosts}) == 2, hosts
    assert {u.host for u in stats.utilisation(snap.records) if not u.worker} == {h.host for h in hosts}
    span = (min(r.started for r in snap.records), max(r.run_end for r in snap.records))
    for h in hosts:
        assert (h.workers, h.tasks) == (1, 1)
        times, busy = stats.busy_over_time(snap.records, dash.HOST_BINS, h.host, span=span)
        assert h.busy == pytest.approx(busy) and h.times == pytest.approx([t - snap.t0 for t in times])
        assert 0 < h.busy_fraction <= 1 and max(h.busy) <= 1 + 1e-6  # one worker: never more than 1 busy
    assert dash.host_bands(snap)["texts"][0] == [h.describe() for h in hosts]
    # python -m faasmp run --stats prints the same lines (from the per-worker utilisation).
    assert sorted(stats.host_lines(stats.utilisation(snap.records))) == sorted(h.describe() for h in hosts)


def test_manager_namespace_attribute_reads_writes_and_deletes_are_counted(ctx: FaasContext) -> None:
    """A Namespace's shared attributes are its operations; its private ("_") names stay local."""
    with ctx.Manager() as manager:
        ns = manager.Namespace(a=1)
        name = f"Namespace {ns._oid}"

        def counts() -> dict[str, int]:
            report = metrics.REGISTRY.report(0.0)
            return {s.op: s.count for s in report.ipc if s.kind == "manager" and s.name == name}

        before = counts()
        ns.b = 2
        ns.b = 3
        assert ns.a + ns.b == 4
        assert not hasattr(ns, "missing")  # a read that finds nothing still asked Redis
        del ns.b
        ns._local = 5  # a proxy's own attribute: no Redis, not counted
        assert ns._local == 5
        after = counts()
    got = {op: after.get(op, 0) - before.get(op, 0) for op in after}
    assert got == {"__setattr__": 2, "__getattribute__": 3, "__delattr__": 1}, got


# -- through real workers -----------------------------------------------------------------
def _wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_process_pipe_program_reaches_stats(ctx: FaasContext) -> None:
    """A master/worker program: both processes' counters, the worker's record and phases."""
    n = 40
    events: list[Any] = []
    listener = ctx.stats.subscribe(events.append)
    try:
        a, b = ctx.Pipe()
        lock, q, ev = ctx.Lock(), ctx.Queue(), ctx.Event()
        with ctx.Manager() as manager:
            shared = manager.dict()
            p = ctx.Process(target=helpers_obs.learner, args=(b, lock, q, ev, shared, n, 3), name="learner")
            p.start()
            for i in range(n):
                a.send(i)
                assert a.recv() == 2 * i
                assert q.get(timeout=30) == i
            ev.set()
            p.join(60)
            assert p.exitcode == 3
            assert shared["done"] == n
        proc_id = p._proc_id
        ctx.collect_stats()
        rec = _wait_for(
            "the process record",
            lambda: [r for r in ctx.stats.records() if r.task_id == proc_id],
        )[0]
    finally:
        ctx.stats.unsubscribe(listener)
    assert rec.kind == "process" and rec.name == "learner" and rec.exitcode == 3 and not rec.ok
    assert rec.out_bytes == len("learner done\n")
    assert rec.worker and rec.host
    assert rec.submitted <= rec.uploaded <= rec.started <= rec.run_start < rec.run_end <= rec.received
    assert all(v >= 0 for v in rec.phases.values()) and rec.phases["run"] > 0
    assert any(isinstance(e, ProcessStarted) and e.proc_id == proc_id for e in events)

    def counts() -> dict[tuple[str, str, str], int]:
        ctx.collect_stats()
        out: dict[tuple[str, str, str], int] = {}
        for s in ctx.stats.ipc():
            key = ("remote" if s.source == proc_id else "client", s.kind, s.op)
            out[key] = out.get(key, 0) + s.count
        return out

    want = {
        ("remote", "pipe", "recv"): n,
        ("remote", "pipe", "send"): n,
        ("client", "pipe", "send"): n,
        ("client", "pipe", "recv"): n,
        ("remote", "lock", "acquire"): n,
        ("remote", "queue", "put"): n,
        ("client", "queue", "get"): n,
        ("remote", "event", "wait"): 1,
        ("remote", "manager", "__setitem__"): 1,
    }
    got = _wait_for(
        "the counters", lambda: (c := counts()) and all(c.get(k, 0) >= v for k, v in want.items()) and c
    )
    assert all(got[k] >= v for k, v in want.items()), got
    remote_pipe = [s for s in ctx.stats.ipc() if s.source == proc_id and s.kind == "pipe" and s.op == "recv"]
    assert sum(s.nbytes for s in remote_pipe) > 0 and sum(s.wait_s for s in remote_pipe) > 0
    # The worker's own Redis commands were sampled (1 in metrics.SAMPLE_EVERY).
    assert any(s.source == proc_id and s.count > 0 for s in ctx.stats.redis_latency())
    assert "learner" in stats.format_report(ctx.stats)


def test_counters_and_records_arrive_with_the_heartbeat(ctx: FaasContext) -> None:
    """No collect_stats(): a running process' counters come with its heartbeat, its record after join."""
    n = 10
    a, b = ctx.Pipe()
    ev = ctx.Event()
    p = ctx.Process(target=helpers_obs.echo_then_wait, args=(b, ev, n), name="echoer")
    p.start()
    for _ in range(n):
        a.send_bytes(b"ping")
        a.recv_bytes()
    proc_id = p._proc_id

    def remote_recvs() -> int:
        return sum(s.count for s in ctx.stats.ipc() if s.source == proc_id and s.op == "recv")

    _wait_for("the running process' counters", lambda: remote_recvs() >= n)
    assert p.is_alive()  # shipped while it still runs: by its heartbeat, not its end

    def client_sends() -> int:
        # Each context's heartbeat brings the client's counters to its own collector.
        return sum(
            s.count for s in ctx.stats.ipc() if s.source == "MainProcess" and s.name.startswith(a._oid)
        )

    _wait_for("the client's counters", lambda: client_sends() >= n)
    ev.set()
    p.join(60)
    rec = _wait_for("its record", lambda: [r for r in ctx.stats.records() if r.task_id == proc_id])[0]
    assert rec.name == "echoer" and rec.exitcode == 0 and rec.ok and rec.phases["run"] > 0


def test_every_context_gets_the_clients_counters_with_its_own_heartbeat(
    ctx: FaasContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One counter registry per process, one session per context: each session ships them to its collector.

    Guards commit 79f6bae: when the registry remembered what was shipped,
    the first context's heartbeat took the change and the other's saw none.
    Redis latency sampling is off here: the heartbeats' own sampled commands
    change the registry every few seconds, which would deliver the counts
    late instead of never and hide the bug; without them only the pipe's
    operations change it.
    """
    from tests.conftest import TEST_SETTINGS  # noqa: PLC0415

    monkeypatch.setattr(metrics.Sampler, "due", lambda self: False)
    n = 10
    other = FaasContext(**TEST_SETTINGS)
    try:
        other.Pipe()  # starts the other context's run, and so its heartbeat
        a, b = ctx.Pipe()
        for _ in range(n):
            a.send_bytes(b"x")
            b.recv_bytes()

        def client_sends(context: FaasContext) -> int:
            return sum(
                s.count
                for s in context.stats.ipc()
                if s.source == "MainProcess" and s.name.startswith(a._oid) and s.op == "send"
            )

        # No collect_stats(): the heartbeats alone bring the client's counters.
        _wait_for("the pipe's sends in its own context", lambda: client_sends(ctx) >= n)
        _wait_for("the pipe's sends in the other context", lambda: client_sends(other) >= n)
    finally:
        other.shutdown()


def test_a_process_closed_right_after_join_keeps_its_timing(ctx: FaasContext) -> None:
    """close() deletes the process' hash: its record is read in the same round trip first."""
    p = ctx.Process(target=helpers_obs.say, args=("hi",), name="closer")
    p.start()
    p.join(60)
    proc_id = p._proc_id
    p.close()
    rec = _wait_for("its record", lambda: [r for r in ctx.stats.records() if r.task_id == proc_id])[0]
    assert rec.exitcode == 0 and rec.out_bytes == len("hi\n") and rec.worker
    assert rec.run_end > rec.run_start


@pytest.mark.parametrize("flag", ["--stats"])
def test_run_stats_prints_the_summary_at_exit(tmp_path: Any, flag: str) -> None:
    script = tmp_path / "mw.py"
    script.write_text(
        "import multiprocessing as mp\n"
        "from tests import helpers_obs\n"
        "if __name__ == '__main__':\n"
        "    a, b = mp.Pipe()\n"
        "    p = mp.Process(target=helpers_obs.echo_n, args=(b, 5), name='echoer')\n"
        "    p.start()\n"
        "    for i in range(5):\n"
        "        a.send_bytes(b'x' * 10)\n"
        "        a.recv_bytes()\n"
        "    p.join()\n"
        "    print('program done')\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO, FAASMP_HEARTBEAT_INTERVAL="0.5")
    out = subprocess.run(
        [sys.executable, "-m", "faasmp", "run", flag, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "program done"  # the summary goes to stderr
    err = out.stderr
    assert "faasmp run --stats:" in err
    assert "echoer" in err and "process" in err
    assert "pipe" in err and "send" in err and "recv" in err
    assert "advisor:" in err
    assert re.search(r"^host \w+: 1 worker\(s\), 1 task\(s\), \d+% busy$", err, re.MULTILINE), err
