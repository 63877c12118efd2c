"""The dashboard in a real browser: JupyterLab on localhost, driven by headless Chromium.

Opens ``tests/notebooks/dashboard_demo.ipynb``, runs all cells from the Run
menu, and checks in the DOM that the ``%%faas`` dashboard rendered: the
widget views (progress bar, HTML header, phase table), the plotly graph with
its six panels and drawn traces, the final counts, and no "Error displaying
widget".  The screenshot of the cell is saved in the test's temp dir; with
``FAASMP_UPDATE_SCREENSHOT=1`` it also replaces ``docs/dashboard.png`` and
``docs/dashboard-processes.png`` (the Process + Pipe cell).

Uses Debian's ``chromium`` (``.ci/run`` installs it; playwright cannot
download browsers here), ``--no-sandbox`` because CI runs as root, and
JupyterLab settings from docs/architecture.md, "Pitfalls" (``autoStartDefaultKernel``,
``windowingMode: "none"`` so every cell is attached and renders).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

REPO = pathlib.Path(__file__).parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)"
    ),
]

PANEL_TITLES = ("Invocation timeline", "start / end", "phases", "Redis latency", "memory", "CPU")
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "autoStartDefaultKernel": True,
        "windowingMode": "none",
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with a random token, in its own temp dirs."""

    def __init__(self, root: pathlib.Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = secrets.token_hex(24)
        base = pathlib.Path(tempfile.mkdtemp(prefix="faasmp-lab-"))
        settings = base / "settings"
        for rel, values in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FAASMP_", "JUPYTER"))}
        env.update(
            TMPDIR=str(base),  # Lithops isolation for its kernel (docs/architecture.md)
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
            JUPYTER_RUNTIME_DIR=str(base / "runtime"),
            JUPYTER_CONFIG_DIR=str(base / "config"),
            PYTHONPATH=str(REPO),
            FAASMP_IDLE_TIMEOUT="30",
            FAASMP_HEARTBEAT_INTERVAL="0.5",
            FAASMP_START_TIMEOUT="60",
        )
        self.log = open(base / "lab.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.news_url=",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "lab.log"
        self._wait_ready(90)

    def api(self, path: str, method: str = "GET") -> bytes:
        req = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with {self.proc.returncode}: {self.log_path.read_text()}"
                )
            try:
                self.api("/api/status")
                return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JupyterLab did not start: {self.log_path.read_text()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Shut the server down through its API (it shuts its kernels down, so faasmp stops)."""
        try:
            self.api("/api/shutdown", method="POST")
            self.proc.wait(30)
        except (urllib.error.URLError, ConnectionError, subprocess.TimeoutExpired):
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


#: Reads traces from the plotly graph in the page, by name (NaN, a line break, as null).
_TRACE_JS = """(gd, name) => {
    const t = gd.data.find(d => d.name === name);
    const list = a => Array.from(a || [], v => (typeof v === "number" && Number.isNaN(v)) ? null : v);
    return t ? {x: list(t.x), y: list(t.y), text: list(t.text)} : null;
}"""


def label_tasks(plot: Any) -> int:
    """The tasks the host labels of *plot* count (all of a cell's once its last redraw arrived)."""
    labels = plot.first.evaluate(_TRACE_JS, "hosts")["text"]
    return sum(int(n) for label in labels for n in re.findall(r"(\d+) task", label))


def host_bands(plot: Any) -> list[tuple[str, int, int, float]]:
    """Per host drawn in *plot*: (its label, tasks, busy % on the label, mean busy % of its band's data)."""
    from faasmp_magics.series import BAND, HOST_BINS  # noqa: PLC0415

    labels = plot.first.evaluate(_TRACE_JS, "hosts")["text"]
    busy = plot.first.evaluate(_TRACE_JS, "host busy")["y"]
    shapes: list[list[float]] = [[]]
    for y in busy:
        if y is None:
            shapes.append([])
        else:
            shapes[-1].append(y)
    bands = [s for s in shapes if s]
    assert len(bands) == len(labels), f"{len(bands)} busy band(s) drawn for host labels {labels}"
    out = []
    for label, ys in zip(labels, bands, strict=True):
        match = re.fullmatch(r"host [0-9a-f]+: \d+ worker\(s\), (\d+) task\(s\), (\d+)% busy", label)
        assert match, label
        steps = ys[1:-1:2]  # one height per time bin, above the band's base (its last point)
        assert len(steps) == HOST_BINS, ys
        drawn = sum(y - ys[-1] for y in steps) / len(steps) / BAND * 100
        assert drawn == pytest.approx(int(match[2]), abs=0.51), (label, drawn)
        out.append((label, int(match[1]), int(match[2]), drawn))
    return out


@pytest.fixture
def lab(tmp_path: pathlib.Path) -> Iterator[JupyterLab]:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(REPO / "tests" / "notebooks" / "dashboard_demo.ipynb", root / "dashboard.ipynb")
    server = JupyterLab(root)
    try:
        yield server
    finally:
        server.stop()


def test_dashboard_renders_in_jupyterlab(lab: JupyterLab, tmp_path: pathlib.Path) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    shot = tmp_path / "dashboard.png"
    procs_shot = tmp_path / "dashboard-processes.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{lab.base_url}/lab/tree/dashboard.ipynb?token={lab.token}", timeout=90_000)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
            page.locator("#jp-main-statusbar", has_text="Idle").wait_for(timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.locator(".jp-OutputArea-output", has_text="ALL-CELLS-DONE").wait_for(timeout=150_000)

            cell = page.locator(".jp-CodeCell").filter(has_text="pool.map(work")
            dashboard = cell.locator(".faasmp-dashboard")
            dashboard.wait_for(timeout=30_000)
            # The last redraw reached the browser: all 40 tasks done, none failed.
            header = dashboard.locator(".faasmp-progress")
            header.filter(has_text="40/40 tasks · done 40").wait_for(timeout=30_000)
            assert "failed 0" in header.inner_text()
            assert dashboard.locator("table.faasmp-phases").count() == 1
            assert "invoke" in dashboard.locator("table.faasmp-phases").inner_text()

            plot = dashboard.locator(".js-plotly-plot")
            plot.first.wait_for(timeout=30_000)
            assert plot.count() == 1
            titles = plot.locator(".annotation-text").all_text_contents()
            for title in PANEL_TITLES:
                assert any(title in t for t in titles), (title, titles)
            # Traces were drawn with data: timeline lines, histogram and phase bars, markers.
            assert plot.locator(".scatterlayer .trace path.js-line").count() >= 2
            assert plot.locator(".barlayer .trace .point").count() >= 40
            assert plot.locator(".scatterlayer .trace .point").count() >= 40

            # Busy against idle per host: each host's band carries the busy share its label says.
            deadline = time.monotonic() + 30
            while label_tasks(plot) != 40:
                assert time.monotonic() < deadline, plot.first.evaluate(_TRACE_JS, "hosts")
                page.wait_for_timeout(200)  # the figure redraws on its own timer
            assert sum(tasks for _, tasks, _, _ in host_bands(plot)) == 40
            assert plot.locator(".scatterlayer .trace path.js-fill").count() >= 2  # idle and busy areas

            body = page.locator("body").inner_text()
            assert "Error displaying widget" not in body
            assert "pi ~ 3.1" in body
            assert not [e for e in errors if "widget" in e.lower() or "plotly" in e.lower()], errors

            cell.scroll_into_view_if_needed()
            page.wait_for_timeout(500)  # let plotly finish its transition before the picture
            cell.screenshot(path=str(shot))

            # The Process + Pipe cell: both processes on the timeline, the pipe's traffic below.
            procs_cell = page.locator(".jp-CodeCell").filter(has_text="def learner")
            procs = procs_cell.locator(".faasmp-dashboard")
            procs.locator(".faasmp-progress").filter(has_text="2/2 tasks · done 2").wait_for(timeout=30_000)
            ipc = procs.locator("table.faasmp-ipc")
            ipc.wait_for(timeout=30_000)
            assert "pipe" in ipc.inner_text() and "send" in ipc.inner_text()
            # Both processes on the timeline, under their names (the figure redraws on its own timer).
            labels = procs.locator(".js-plotly-plot .textpoint")
            deadline = time.monotonic() + 30
            while not {"learner (exit 0)", "actor (exit 0)"} <= set(labels.all_text_contents()):
                assert time.monotonic() < deadline, labels.all_text_contents()
                page.wait_for_timeout(200)
            # One host (localhost runs both slots in one invocation): its line as --stats printed it.
            ((line, tasks, _, _),) = host_bands(procs.locator(".js-plotly-plot"))
            assert tasks == 2 and line in procs_cell.locator(".jp-OutputArea").inner_text()
            page.set_viewport_size({"width": 1280, "height": 3600})  # the whole cell in the picture
            page.wait_for_timeout(1000)  # JupyterLab lays the panel out again
            procs_cell.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            procs_cell.screenshot(path=str(procs_shot))
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print("FAILURE SCREENSHOT", tmp_path / "failure.png")
            raise
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000 and procs_shot.stat().st_size > 20_000
    if os.environ.get("FAASMP_UPDATE_SCREENSHOT"):
        shutil.copy(shot, REPO / "docs" / "dashboard.png")
        shutil.copy(procs_shot, REPO / "docs" / "dashboard-processes.png")
