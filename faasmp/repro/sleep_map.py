"""Fig 4.2: start and end times of a large map of ``sleep`` functions."""

from __future__ import annotations

import time

from . import paper
from .core import Result, Row, context, verify

TITLE = "A map of sleep functions: start/end histogram (Fig 4.2)"


def nap(seconds: float) -> float:
    """Sleep, then return the worker's clock (the task's real work is waiting)."""
    time.sleep(seconds)
    return time.time()


def run(full: bool = False) -> Result:
    """Map *n* sleeps on ``Pool(n)`` (one function per task, as in the paper)."""
    import plotly.graph_objects as go

    n, secs = (1024, 5.0) if full else (16, 2.0)
    ctx = context()
    ctx.shutdown()  # start from cold, like the paper's single large map
    t_start = time.perf_counter()
    with ctx.Pool(n) as pool:
        t_map = time.perf_counter()
        woke = pool.map(nap, [secs] * n, chunksize=1)
        t_done = time.perf_counter()
    recs = ctx.stats.last()
    checks = verify(
        {
            f"all {n} functions returned": len(woke) == n and all(isinstance(t, float) for t in woke),
            f"{n} task records, each ran its {secs:g} s sleep": len(recs) == n
            and all(r.run_end - r.run_start >= secs * 0.999 for r in recs),
            "the map took at least the sleep": t_done - t_map >= secs,
        }
    )
    t0 = min(r.submitted for r in recs)
    starts = sorted(r.run_start - t0 for r in recs)
    ends = sorted(r.run_end - t0 for r in recs)
    spread = starts[-1] - starts[0]
    makespan = t_done - t_map
    fig = go.Figure(
        [
            go.Histogram(x=starts, name="start", opacity=0.7, nbinsx=40),
            go.Histogram(x=ends, name="end", opacity=0.7, nbinsx=40),
        ]
    )
    fig.update_layout(
        title=f"{n} functions sleeping {secs:g} s: start/end times",
        xaxis_title="seconds since the map was submitted",
        yaxis_title="functions",
        barmode="overlay",
        height=380,
    )
    rows = [
        Row("functions", paper.SLEEP_MAP_FUNCTIONS, n, ""),
        Row("sleep per function", paper.SLEEP_MAP_SLEEP_S, secs, "s"),
        Row("start spread (first to last start)", "figure only", spread, "s"),
        Row("first start after submit", "figure only", starts[0], "s"),
        Row("map makespan", "figure only", makespan, "s", f"ideal {secs:g} s"),
        Row("overhead beyond the sleep", "figure only", makespan - secs, "s"),
    ]
    notes = f"""
The paper shows this experiment as a histogram (Fig 4.2) rather than a number: on
Lambda, 1024 invocations start over a few seconds because the client invokes them
in batches and each cold container boots on its own.  Here {n} tasks run on
`Pool({n})`; on localhost one invocation forks several worker slots, so the start
spread is the time to start a handful of local interpreters and fork the rest, not a
provider's ramp-up.  On a 2-core machine, more slots than cores still works for
sleeping tasks, which use no CPU.  In full mode on a cloud backend the histogram
shows the provider's ramp-up, which is what Fig 4.2 measures.
"""
    return Result(
        "sleep_map",
        TITLE,
        "full" if full else "small",
        rows,
        {"histogram": fig},
        {"starts": starts, "ends": ends},
        notes,
        time.perf_counter() - t_start,
        checks,
    )
