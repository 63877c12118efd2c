"""What every reproduction returns, and how it is shown and saved.

An experiment is a function ``run(full: bool = False) -> Result``.  Small mode
(the default) finishes in well under a minute on a 2-core machine with the
localhost backend; full mode uses the published scale and is meant for a cloud
backend (``faasmp.configure(backend=..., redis_url=...)`` first).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faasmp

COLUMNS = ("metric", "paper", "ours", "unit", "comment")


@dataclasses.dataclass
class Row:
    """One line of a comparison table: the published figure beside ours."""

    metric: str
    paper: float | str | None
    ours: float | str | None
    unit: str = ""
    comment: str = ""


@dataclasses.dataclass
class Result:
    """A reproduction's outcome: comparison rows, figures, raw data and an honest note."""

    name: str
    title: str
    mode: str
    rows: list[Row]
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: str = ""
    elapsed_s: float = 0.0
    #: What was verified about the result (all true: :func:`verify` raised otherwise).
    checks: dict[str, bool] = dataclasses.field(default_factory=dict)

    def check_report(self) -> str:
        """One line per check, ``name: ok`` (the notebooks compare it)."""
        return "\n".join(f"{name}: {'ok' if ok else 'FAILED'}" for name, ok in self.checks.items())

    @property
    def table(self) -> Any:
        """The comparison as a pandas DataFrame (columns: metric, paper, ours, unit, comment)."""
        import pandas as pd

        return pd.DataFrame([dataclasses.astuple(r) for r in self.rows], columns=list(COLUMNS))

    def markdown(self) -> str:
        """The comparison table as Markdown, followed by the notes."""
        lines = [f"## {self.title} ({self.mode} mode)", "", "| " + " | ".join(COLUMNS) + " |"]
        lines.append("|" + "---|" * len(COLUMNS))
        for r in self.rows:
            cells = [r.metric, _fmt(r.paper), _fmt(r.ours), r.unit, r.comment]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines += ["", self.notes.strip(), ""]
        return "\n".join(lines)

    def show(self) -> None:
        """Display the figures (interactive plotly in Jupyter, nothing in a plain terminal)."""
        for fig in self.figures.values():
            try:
                fig.show()
            except Exception as exc:  # noqa: BLE001 - renderers vary; never fail a notebook on display
                print(f"(figure not shown: {exc})")

    def save(self, out_dir: str | os.PathLike[str], *, png: bool = True) -> list[pathlib.Path]:
        """Write ``NAME.csv``, ``NAME.md``, one HTML per figure and, if kaleido works, PNGs."""
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / f"{self.name}.csv", out / f"{self.name}.md"]
        self.table.to_csv(written[0], index=False)
        written[1].write_text(self.markdown())
        for key, fig in self.figures.items():
            html = out / f"{self.name}_{key}.html"
            fig.write_html(html, include_plotlyjs="cdn")
            written.append(html)
            if png:
                try:
                    fig.write_image(out / f"{self.name}_{key}.png")
                    written.append(out / f"{self.name}_{key}.png")
                except Exception as exc:  # noqa: BLE001 - kaleido needs a browser; PNG is optional
                    png = False
                    print(f"(PNG export skipped: {type(exc).__name__}: {str(exc)[:120]})")
        return written


def verify(checks: dict[str, bool]) -> dict[str, bool]:
    """Raise ``AssertionError`` naming each failed check; return *checks* when all hold.

    A reproduction whose result is wrong must not report timings as if it worked.
    """
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise AssertionError(f"reproduction result is wrong; failed checks: {failed}")
    return checks


def _fmt(v: float | str | None) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as t: ...; t()`` gives the seconds spent inside."""
    t0 = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - t0
    end.append(time.perf_counter())


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else float("nan")


def context() -> faasmp.FaasContext:
    """The context experiments run on: faasmp's default one (configure it first for a cloud)."""
    return faasmp.get_context()


def workers_for(full: bool, small: int = 2, big: int = 64) -> int:
    """Workers to use: *small* here, *big* (the paper's count) in full mode."""
    return big if full else small


def bar(x: Sequence[Any], ys: dict[str, Sequence[float]], title: str, yaxis: str) -> Any:
    """A grouped bar chart (one trace per key of *ys*)."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Bar(name=k, x=list(x), y=list(v)) for k, v in ys.items()])
    fig.update_layout(title=title, yaxis_title=yaxis, barmode="group", height=380)
    return fig
