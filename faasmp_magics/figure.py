"""The dashboard's plotly figure: one subplot grid, a fixed list of traces, filled from a snapshot.

:func:`build_figure` makes the empty figure (a ``FigureWidget`` for the live
view), :func:`update_figure` puts a snapshot's series (:mod:`.series`) into
it, in the order of :data:`TRACES`.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from faasmp.stats import PHASES

from .series import (
    busy_workers,
    host_bands,
    ipc_bars,
    latency_by_command,
    phase_bars,
    resources,
    start_end_histogram,
    timeline,
    utilisation,
)

if TYPE_CHECKING:
    from .dashboard import Snapshot

PHASE_COLORS = {
    "serialize": "#8c564b",
    "upload": "#e377c2",
    "invoke": "#ff7f0e",
    "setup": "#bcbd22",
    "run": "#1f77b4",
    "join": "#2ca02c",
}


#: Trace order of the figure; :func:`trace_updates` returns data in this order.
TRACES: tuple[tuple[str, int, int], ...] = (
    ("waiting", 1, 1),
    ("running", 1, 1),
    ("failed", 1, 1),
    ("names", 1, 1),
    ("starts", 1, 2),
    ("ends", 1, 2),
    ("busy workers", 1, 2),
    *((phase, 2, 1) for phase in PHASES),
    ("Redis latency", 2, 2),
    ("peak RSS", 3, 1),
    ("CPU", 3, 2),
    ("wall (run)", 3, 2),
    ("busy %", 4, 1),
    ("IPC ops", 4, 2),
    ("host idle", 5, 1),
    ("host busy", 5, 1),
    ("hosts", 5, 1),
)


def build_figure(widget: bool = False) -> Any:
    """An empty dashboard figure (``go.FigureWidget`` if *widget*); fill it with :func:`update_figure`."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    fig = make_subplots(
        rows=5,
        cols=2,
        column_widths=[0.62, 0.38],
        # The last row is one wide panel: the per-host bands share the timeline's time axis.
        specs=[[{}, {}]] * 4 + [[{"colspan": 2}, None]],
        vertical_spacing=0.065,
        horizontal_spacing=0.08,
        subplot_titles=(
            "Invocation timeline (s)",
            "Task start / end times, busy workers",
            "Per-task phases (ms, stacked)",
            "Redis latency by command (µs, sampled)",
            "Peak memory per task (MB)",
            "CPU vs wall time per task (s)",
            "Worker utilisation (busy %)",
            "IPC / sync operations",
            "Workers busy per host over time (s; each band is a host's workers, grey = idle)",
        ),
    )
    line = {"width": 3}
    fig.add_trace(go.Scatter(name="waiting", mode="lines", line={"width": 1, "color": "#bbbbbb"}), 1, 1)
    fig.add_trace(go.Scatter(name="running", mode="lines", line={**line, "color": "#1f77b4"}), 1, 1)
    fig.add_trace(go.Scatter(name="failed", mode="lines", line={**line, "color": "#d62728"}), 1, 1)
    fig.add_trace(
        go.Scatter(
            name="names",
            mode="text",
            textposition="top right",
            textfont={"size": 10},
            showlegend=False,
            cliponaxis=False,
        ),
        1,
        1,
    )
    fig.add_trace(go.Bar(name="starts", marker_color="#1f77b4", opacity=0.6), 1, 2)
    fig.add_trace(go.Bar(name="ends", marker_color="#2ca02c", opacity=0.6), 1, 2)
    fig.add_trace(
        go.Scatter(name="busy workers", mode="lines", line={"color": "#333333", "width": 2, "shape": "hv"}),
        1,
        2,
    )
    for phase in PHASES:
        fig.add_trace(go.Bar(name=phase, marker_color=PHASE_COLORS[phase]), 2, 1)
    fig.add_trace(go.Bar(name="Redis latency", marker_color="#9467bd", showlegend=False), 2, 2)
    fig.add_trace(go.Scatter(name="peak RSS", mode="markers", marker_color="#17becf", showlegend=False), 3, 1)
    fig.add_trace(go.Scatter(name="CPU", mode="markers", marker_color="#ff7f0e"), 3, 2)
    fig.add_trace(
        go.Scatter(name="wall (run)", mode="markers", marker={"color": "#1f77b4", "symbol": "x"}), 3, 2
    )
    fig.add_trace(go.Bar(name="busy %", marker_color="#1f77b4", showlegend=False), 4, 1)
    fig.add_trace(
        go.Bar(name="IPC ops", marker_color="#8c564b", orientation="h", showlegend=False, hoverinfo="text"),
        4,
        2,
    )
    # Per host: its idle band, the busy share drawn over it, its name and numbers
    # above.  One trace each for any number of hosts (shapes split by None).
    fig.add_trace(
        go.Scatter(
            name="host idle",
            mode="lines",
            fill="toself",
            fillcolor="#e6e6e6",
            line={"width": 0},
            hoverinfo="skip",
        ),
        5,
        1,
    )
    fig.add_trace(
        go.Scatter(
            name="host busy",
            mode="lines",
            fill="toself",
            fillcolor="rgba(31, 119, 180, 0.75)",
            line={"width": 1, "color": "#1f77b4"},
            hoverinfo="skip",
        ),
        5,
        1,
    )
    fig.add_trace(
        go.Scatter(
            name="hosts",
            mode="text",
            textposition="top right",
            textfont={"size": 10},
            showlegend=False,
            cliponaxis=False,
        ),
        5,
        1,
    )
    fig.update_layout(
        height=1220,
        autosize=True,
        barmode="overlay",
        bargap=0.05,
        margin={"l": 50, "r": 20, "t": 70, "b": 30},
        legend={"orientation": "h", "x": 0, "y": 1.05, "yanchor": "bottom", "font": {"size": 10}},
        font={"size": 11},
        template="plotly_white",
    )
    fig.update_yaxes(title_text="task", row=1, col=1)
    fig.update_yaxes(title_text="tasks", row=1, col=2)
    fig.update_xaxes(title_text="task #", row=2, col=1)
    fig.update_xaxes(title_text="task #", row=3, col=1)
    fig.update_xaxes(title_text="task #", row=3, col=2)
    fig.update_yaxes(range=[0, 100], row=4, col=1)
    fig.update_xaxes(type="category", row=4, col=1)  # worker ids like "123456.1" are names, not numbers
    fig.update_xaxes(type="category", row=2, col=2)
    fig.update_yaxes(autorange="reversed", tickfont={"size": 9}, row=4, col=2)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=5, col=1)
    fig.update_xaxes(title_text="s since the cell started", row=5, col=1)
    for row, col in ((1, 2), (2, 1), (2, 2), (3, 1), (3, 2)):
        fig.update_yaxes(rangemode="tozero", row=row, col=col)
    for ann in fig.layout.annotations:
        ann.font = {"size": 12}
    return fig if not widget else go.FigureWidget(fig)


def trace_updates(snap: Snapshot) -> list[dict[str, Any]]:
    """New data for every trace of :func:`build_figure`, in :data:`TRACES` order."""
    tl = timeline(snap)
    hist = start_end_histogram(snap)
    bar_x, phase_ms = phase_bars(snap)
    lat = latency_by_command(snap)
    res = resources(snap)
    util = utilisation(snap)
    ipc = ipc_bars(snap)
    busy = busy_workers(snap)
    bands = host_bands(snap)
    out: list[dict[str, Any]] = [
        {"x": tl["wait"][0], "y": tl["wait"][1]},
        {"x": tl["run"][0], "y": tl["run"][1]},
        {"x": tl["failed"][0], "y": tl["failed"][1]},
        {"x": tl["labels"][0], "y": tl["labels"][1], "text": tl["texts"][0]},
        {"x": hist["start"][0], "y": hist["start"][1], "width": hist["start"][2]},
        {"x": hist["end"][0], "y": hist["end"][1], "width": hist["end"][2]},
        {"x": busy[0], "y": busy[1]},
    ]
    base = [0.0] * len(bar_x)
    for phase in PHASES:
        ys = phase_ms[phase]
        out.append({"x": bar_x, "y": ys, "base": list(base)})
        base = [b + y for b, y in zip(base, ys, strict=True)]
    out.append({"x": lat[0], "y": lat[1], "text": [f"{n} samples" for n in lat[2]]})
    out.append({"x": res["memory"][0], "y": res["memory"][1]})
    out.append({"x": res["cpu"][0], "y": res["cpu"][1]})
    out.append({"x": res["wall"][0], "y": res["wall"][1]})
    out.append({"x": util[0], "y": util[1], "text": [f"{n} task(s)" for n in util[2]]})
    out.append({"x": ipc[1], "y": ipc[0], "hovertext": ipc[2]})
    out.append({"x": bands["idle"][0], "y": bands["idle"][1]})
    out.append({"x": bands["busy"][0], "y": bands["busy"][1]})
    out.append({"x": bands["labels"][0], "y": bands["labels"][1], "text": bands["texts"][0]})
    return out


def _as_arrays(data: dict[str, Any]) -> dict[str, Any]:
    """Lists as float arrays (None = a line break becomes NaN): plotly validates and sends them far faster."""
    try:
        import numpy as np  # noqa: PLC0415
    except ImportError:
        return data

    def numeric(v: list[Any]) -> bool:
        return all(x is None or isinstance(x, int | float) for x in v)

    return {
        k: np.array([np.nan if x is None else x for x in v], dtype=float)
        if isinstance(v, list) and numeric(v)
        else v
        for k, v in data.items()
    }


def _has_strings(data: dict[str, Any]) -> bool:
    return any(isinstance(v, list) and any(isinstance(x, str) for x in v) for v in data.values())


def update_figure(fig: Any, snap: Snapshot) -> None:
    """Put *snap*'s data into *fig* (one message for a ``FigureWidget``, plus one per labelled trace)."""
    updates = trace_updates(snap)
    # Traces with strings (process names, commands, workers, objects) go on
    # their own, as lists: batched beside other traces' typed arrays, their
    # x or y sometimes reached plotly.js as null (labels lost, seen in Chromium).
    labelled = [(t, d) for t, d in zip(fig.data, updates, strict=True) if _has_strings(d)]
    batch = fig.batch_update() if hasattr(fig, "batch_update") else contextlib.nullcontext()
    with batch:
        for trace, data in zip(fig.data, updates, strict=True):
            if not _has_strings(data):
                trace.update(_as_arrays(data))
    for trace, data in labelled:
        trace.update(data)


def static_figure(snap: Snapshot) -> Any:
    fig = build_figure()
    update_figure(fig, snap)
    return fig


def figure_bundle(fig: Any) -> dict[str, Any]:
    """A MIME bundle for a static plotly figure (renders in JupyterLab, Notebook 7 and nbconvert HTML)."""
    return {
        "application/vnd.plotly.v1+json": json.loads(fig.to_json()),
        "text/html": fig.to_html(full_html=False, include_plotlyjs="cdn"),
    }
