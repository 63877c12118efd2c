"""Plotly figures of a ``run_all.py`` result: HTML always, PNG through kaleido (>= 1) and a Chromium.

kaleido >= 1 drives a Chrome/Chromium over the DevTools protocol (``choreographer``).
If none is found on its own, the Chromium on ``PATH`` (``chromium``, ``chromium-browser``,
``google-chrome``) is handed to it through ``BROWSER_PATH``; it needs no network.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

COLORS = {"stdlib": "#7f7f7f", "lithops": "#1f77b4", "faasmp": "#d62728"}
LABEL = {"stdlib": "stdlib (fork)", "lithops": "lithops.multiprocessing", "faasmp": "faasmp"}


def _slowdown(res: dict[str, Any], std: dict[str, Any], better: str) -> float | None:
    if not res or not std or res.get("status") != "ok" or std.get("status") != "ok":
        return None
    a, b = res["value"], std["value"]
    if a <= 0 or b <= 0:
        return None
    return a / b if better == "lower" else b / a


def overview(doc: dict[str, Any]) -> Any:
    """How many times worse than the stdlib each implementation is, per metric (log scale)."""
    import plotly.graph_objects as go

    results, metrics = doc["results"], doc["metrics"]
    names = [m for m in metrics if m != "mc_efficiency" and results.get(m)]
    fig = go.Figure()
    for impl in ("lithops", "faasmp"):
        if impl not in doc["meta"]["impls"]:
            continue
        xs, ys, text = [], [], []
        for m in names:
            r = results[m]
            v = _slowdown(r.get(impl, {}), r.get("stdlib", {}), metrics[m]["better"])
            ys.append(metrics[m]["label"])
            if v is None:
                st = r.get(impl, {}).get("status", "-")
                xs.append(None)
                text.append(st)
            else:
                xs.append(v)
                text.append(f"{v:.2f}x")
        fig.add_trace(
            go.Bar(
                x=xs,
                y=ys,
                orientation="h",
                name=LABEL[impl],
                marker_color=COLORS[impl],
                text=text,
                textposition="outside",
            )
        )
    fig.add_vline(x=1.0, line_dash="dash", line_color="black")
    fig.update_layout(
        title="Times worse than stdlib multiprocessing (1 = equal; lower is better; no bar: timeout or error)",
        xaxis={"type": "log", "title": "slowdown vs stdlib (log)"},
        yaxis={"autorange": "reversed"},
        barmode="group",
        height=60 + 42 * len(names),
        width=1100,
        margin={"l": 420},
        legend={"orientation": "h", "y": -0.05},
    )
    return fig


def scaling(doc: dict[str, Any]) -> Any:
    """Fork-join overhead and tiny-task rate against the number of workers."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sm = doc["scaling_metrics"]
    keys = list(sm)
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[sm[k]["label"] for k in keys])
    for col, key in enumerate(keys, start=1):
        for impl in doc["meta"]["impls"]:
            points = doc["scaling"].get(key, {}).get(impl, {})
            xs = sorted(int(n) for n, r in points.items() if r.get("status") == "ok")
            ys = [points[str(n)]["value"] for n in xs]
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines+markers",
                    name=LABEL[impl],
                    line={"color": COLORS[impl]},
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(type="log", title_text="workers (n)", row=1, col=col)
        fig.update_yaxes(type="log", title_text=sm[key]["unit"], row=1, col=col)
    fig.update_layout(title="Scaling with the number of workers", width=1100, height=450)
    return fig


def latency(doc: dict[str, Any]) -> Any:
    """Absolute latencies (µs) of the IPC and shared-state rows, per implementation."""
    import plotly.graph_objects as go

    names = [
        m
        for m in ("pipe_rtt_p50", "pipe_rtt_p99", "lock_us", "mgr_set_us", "mgr_get_us")
        if doc["results"].get(m)
    ]
    fig = go.Figure()
    for impl in doc["meta"]["impls"]:
        ys = []
        for m in names:
            r = doc["results"][m].get(impl, {})
            ys.append(r["value"] if r.get("status") == "ok" else None)
        fig.add_trace(
            go.Bar(
                x=[doc["metrics"][m]["label"] for m in names],
                y=ys,
                name=LABEL[impl],
                marker_color=COLORS[impl],
            )
        )
    fig.update_layout(
        title="Latency of pipes, locks and manager dicts (µs, log; missing bar = timeout/error)",
        yaxis={"type": "log", "title": "µs"},
        barmode="group",
        width=1100,
        height=450,
    )
    return fig


def _png_ready() -> str | None:
    """Why PNG export cannot work, or None if it should."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "kaleido is not installed (pip install 'kaleido>=1')"
    if not os.environ.get("BROWSER_PATH"):
        for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
            path = shutil.which(name)
            if path:
                os.environ["BROWSER_PATH"] = path
                break
    return None


def make_all(doc: dict[str, Any], out: str, png: bool = True) -> dict[str, Any]:
    """Write every figure as ``out/<name>.html`` (and ``.png``); return what was written."""
    figs = {"overview": overview(doc), "scaling": scaling(doc), "latency": latency(doc)}
    written: dict[str, Any] = {"html": [], "png": [], "png_error": None}
    for name, fig in figs.items():
        path = os.path.join(out, f"{name}.html")
        fig.write_html(path, include_plotlyjs="cdn", full_html=True)
        written["html"].append(os.path.basename(path))
    if png:
        why = _png_ready()
        if why is None:
            try:
                for name, fig in figs.items():
                    path = os.path.join(out, f"{name}.png")
                    fig.write_image(path, scale=1)
                    written["png"].append(os.path.basename(path))
            except Exception as exc:  # noqa: BLE001 - no PNG, but the run's results stand
                why = f"{type(exc).__name__}: {exc}"[:300]
        written["png_error"] = why
        if why:
            import sys

            print(f"PNG export skipped: {why}", file=sys.stderr)
    return written
