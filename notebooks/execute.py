"""Executes the tutorial and reproduction notebooks and writes them with their outputs.

The committed notebooks are make_notebooks.py's texts executed in small mode, so
that a reader sees results (GitHub renders the outputs and the plots' PNGs)::

    python notebooks/make_notebooks.py --execute            # all of them
    python notebooks/make_notebooks.py --execute 07_evolution 01_getting_started
    python notebooks/execute.py --check                     # run the committed files, write nothing

How a notebook is run:

* one fresh kernel of *this* interpreter per notebook (the environment you run
  the command in, as nbval's ``--nbval-current-env``), started in the
  notebook's directory with a private, short TMPDIR (Lithops' localhost backend
  keeps its working copy there, and a unix socket path must stay under 108 bytes);
* every cell has a time limit (``--cell-timeout``, 300 s); a cell that fails,
  times out, or whose ``nbval-check-output`` output differs from the expected
  one (after ``nbval_sanitize.cfg``) fails that notebook, which is then not written;
* cells tagged ``nbval-skip`` (the cloud-configuration examples) are not run;
* the ``%%faas`` dashboards are static (``FaasMagics.dashboard_kind = "static"``)
  and plotly figures are sent as plotly JSON (``PLOTLY_RENDERER=plotly_mimetype``);
  each plotly output is then replaced by a PNG rendered with kaleido (headless
  Chromium) beside its text, because GitHub renders neither widgets nor plotly's
  JavaScript.

What is stripped so that a re-run gives a small diff: execution timestamps
(``record_timing=False``), widget state, the kernel's ``language_info`` (its
version; the notebook metadata stays make_notebooks.py's) and this machine's
paths in outputs (:func:`machine_paths`).  Outputs themselves (timings) change
from run to run, and so do the PNGs of plots that show them.
"""

from __future__ import annotations

import argparse
import base64
import configparser
import contextlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SANITIZE_CFG = HERE / "nbval_sanitize.cfg"
CHECKED_TAG = "nbval-check-output"
SKIP_TAG = "nbval-skip"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Seconds one cell may run (the longest small-mode reproduction cell takes ~40 s on 2 cores).
CELL_TIMEOUT = 300
#: Seconds to wait for a kernel to start and answer.
STARTUP_TIMEOUT = 120
#: Kernel options: the magics' dashboards as static figures, not widgets.
KERNEL_ARGS = ("--FaasMagics.dashboard_kind=static",)
#: Seconds kaleido may take to render one figure (well under 1 s here; kaleido's default is 90).
PNG_TIMEOUT = 60
#: Size of a figure's PNG when its layout sets none (plotly's own default is 700 x 500).
PNG_WIDTH, PNG_HEIGHT = 800, 450


class NotebookFailed(Exception):
    """A notebook raised, timed out, or printed something else than make_notebooks.py expects."""


# -- the generator and what it expects ---------------------------------------------------


def generator() -> ModuleType:
    """make_notebooks.py, loaded from this directory (works from a script, a test or another cwd)."""
    spec = importlib.util.spec_from_file_location("make_notebooks", HERE / "make_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def select(paths: Iterable[pathlib.Path], names: Iterable[str]) -> list[pathlib.Path]:
    """The notebooks named by *names* (file stems such as ``07_evolution``); all if none.

    Raises ``ValueError`` listing the known names for a name that matches none.
    """
    paths = list(paths)
    wanted = list(names)
    if not wanted:
        return paths
    known = {p.stem: p for p in paths}
    unknown = [n for n in wanted if n.removesuffix(".ipynb") not in known]
    if unknown:
        raise ValueError(f"no notebook named {unknown}; known: {sorted(known)}")
    return [known[n.removesuffix(".ipynb")] for n in wanted]


class Sanitizer:
    """nbval's ``--nbval-sanitize-with``: the regex/replace pairs of nbval_sanitize.cfg, in order."""

    def __init__(self, path: pathlib.Path = SANITIZE_CFG) -> None:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path)
        self.rules = [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]

    def __call__(self, text: str) -> str:
        for regex, replace in self.rules:
            text = regex.sub(replace, text)
        return text


def checked_text(cell: nbformat.NotebookNode, sanitize: Sanitizer) -> str:
    """What nbval compares for a tagged cell: its outputs' text, per stream, sanitized."""
    parts: list[str] = []
    stream = None
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            # Consecutive writes to one stream may arrive as separate outputs: join them.
            if out.name == stream:
                parts[-1] += out.text
            else:
                parts.append(f"[{out.name}]\n{out.text}")
            stream = out.name
            continue
        stream = None
        if out.output_type in ("execute_result", "display_data"):
            parts.append(f"[{out.output_type}]\n{out.data.get('text/plain', '')}")
        elif out.output_type == "error":
            parts.append(f"[error]\n{out.ename}: {out.evalue}")
    return sanitize("\n".join(parts))


def check_outputs(expected: nbformat.NotebookNode, actual: nbformat.NotebookNode) -> list[str]:
    """Tagged cells of *actual* whose outputs differ from *expected*'s (after sanitizing)."""
    sanitize = Sanitizer()
    by_id = {c.get("id"): c for c in expected.cells}
    problems = []
    for i, cell in enumerate(actual.cells):
        if CHECKED_TAG not in cell.metadata.get("tags", []):
            continue
        want = checked_text(by_id.get(cell.get("id"), cell), sanitize)
        got = checked_text(cell, sanitize)
        if got != want:
            problems.append(f"cell {i} ({cell.get('id')}) printed\n{got}\nexpected\n{want}")
    return problems


def differences(expected: nbformat.NotebookNode, committed: nbformat.NotebookNode) -> list[str]:
    """What keeps *committed* from being *expected* (make_notebooks.py's) as :func:`regenerate` writes it.

    The same cells (type, id, source, metadata), every code cell executed (but
    ``nbval-skip`` ones), tagged outputs as expected, no volatile metadata, and
    no output that GitHub cannot render (plotly JSON or JavaScript, widgets).
    """
    problems = []
    if committed.metadata != expected.metadata:
        problems.append(f"notebook metadata {dict(committed.metadata)} is not {dict(expected.metadata)}")
    if len(committed.cells) != len(expected.cells):
        problems.append(f"{len(committed.cells)} cells, make_notebooks.py writes {len(expected.cells)}")
    for i, (want, got) in enumerate(zip(expected.cells, committed.cells, strict=False)):  # counted above
        for key in ("cell_type", "id", "source", "metadata"):
            if want.get(key) != got.get(key):
                problems.append(
                    f"cell {i}: its {key} differs from make_notebooks.py's: {got.get(key)!r:.200}"
                )
        if got.cell_type != "code" or SKIP_TAG in got.metadata.get("tags", []):
            continue
        if got.get("execution_count") is None:
            problems.append(f"cell {i} ({got.get('id')}) was not executed")
        for out in got.get("outputs", []):
            data = out.get("data", {})
            unrenderable = [m for m in (PLOTLY_MIME, WIDGET_MIME) if m in data]
            if "<script" in data.get("text/html", ""):
                unrenderable.append("text/html with a script")
            if unrenderable:
                problems.append(f"cell {i} ({got.get('id')}): {unrenderable} output, not a static image")
            leaked = [p for holder, key in _texts(out) for p, _ in machine_paths() if p in holder[key]]
            if leaked:
                problems.append(f"cell {i} ({got.get('id')}): an output shows this machine's paths {leaked}")
    return problems + check_outputs(expected, committed)


def machine_paths(tmp: str | None = None) -> list[tuple[str, str]]:
    """This machine's absolute paths that outputs may show, longest first, with their stand-ins.

    The repository's own files become relative (``faasmp/stats.py``), installed
    packages ``site-packages/...``, the kernel's temp dir ``$TMPDIR``: a committed
    notebook names no directory of the machine that ran it.
    """
    pairs = {str(pathlib.Path.home()) + os.sep: "~/", sys.prefix + os.sep: "$PREFIX/"}
    for key in ("purelib", "platlib"):
        pairs[sysconfig.get_paths()[key] + os.sep] = "site-packages/"
    # The checkout whose faasmp the kernels import (PYTHONPATH may name another one than this).
    spec = importlib.util.find_spec("faasmp")
    for root in {ROOT, *([pathlib.Path(spec.origin).parents[1]] if spec and spec.origin else [])}:
        pairs[str(root) + os.sep] = ""
    if tmp is not None:
        pairs[tmp] = "$TMPDIR"
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def _texts(out: nbformat.NotebookNode) -> Iterator[tuple[Any, str]]:
    """(container, key) of every text of an output: stream text, text/* data, tracebacks."""
    if out.output_type == "stream":
        yield out, "text"
    elif out.output_type == "error":
        yield out, "evalue"
        for i in range(len(out.traceback)):
            yield out.traceback, i  # type: ignore[misc]
    for key, value in out.get("data", {}).items():
        if key.startswith("text/") and isinstance(value, str):
            yield out.data, key


def scrub(nb: nbformat.NotebookNode, tmp: str) -> None:
    """Replace the :func:`machine_paths` in every output text of *nb*."""
    pairs = machine_paths(tmp)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for holder, key in _texts(out):
                for path, stand_in in pairs:
                    holder[key] = holder[key].replace(path, stand_in)


# -- running a notebook ------------------------------------------------------------------


def _kernel_manager() -> Any:
    """A kernel manager for this interpreter's ipykernel, whatever kernelspecs are installed."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            spec = ipykernel.kernelspec.get_kernel_dict()
            spec["argv"] = [*spec["argv"], *KERNEL_ARGS]
            return KernelSpec(resource_dir=ipykernel.kernelspec.RESOURCES, **spec)

    return KernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvSpecs())


def run(nb: nbformat.NotebookNode, path: pathlib.Path, *, cell_timeout: float = CELL_TIMEOUT) -> None:
    """Execute *nb* in place, as the notebook at *path*; raise :class:`NotebookFailed` if a cell fails.

    Blocks up to *cell_timeout* seconds per cell (plus the kernel's start).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    tmp = tempfile.mkdtemp(prefix="nbx-")
    env = {**os.environ, "TMPDIR": tmp, "PLOTLY_RENDERER": "plotly_mimetype"}
    env.pop("PYTEST_CURRENT_TEST", None)
    client = NotebookClient(
        nb,
        km=_kernel_manager(),
        timeout=cell_timeout,
        startup_timeout=STARTUP_TIMEOUT,
        skip_cells_with_tag=SKIP_TAG,
        record_timing=False,
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        # cleanup_kc: shut the kernel down at the end (nbclient leaves a kernel it did not create running).
        client.execute(env=env, cleanup_kc=True)
        scrub(nb, tmp)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # IPython colours its tracebacks
        raise NotebookFailed(f"{path.name}: {type(exc).__name__}: {text[-3000:]}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- static images ---------------------------------------------------------------------


@contextlib.contextmanager
def png_renderer() -> Iterator[Any]:
    """Yield ``to_png(figure_json) -> bytes``, with one headless Chromium for every figure.

    kaleido starts Chromium (Debian's ``chromium`` or the one ``kaleido.get_chrome()``
    installed); nothing is downloaded here.
    """
    import kaleido
    import plotly.io as pio

    kaleido.start_sync_server(timeout=PNG_TIMEOUT, silence_warnings=True)

    def to_png(spec: dict[str, Any]) -> bytes:
        fig = pio.from_json(json.dumps(spec), skip_invalid=True)
        width = fig.layout.width or PNG_WIDTH
        height = fig.layout.height or PNG_HEIGHT
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    # plotly passes its kaleido options again on every call; the server has them.
                    warnings.filterwarnings("ignore", "The kopts argument is ignored", UserWarning)
                    return pio.to_image(fig, format="png", width=width, height=height)
            except Exception as exc:
                # Chromium sometimes answers before kaleido's page has loaded
                # ("kaleido_scopes is not defined", 1 of ~10 first calls here): retry.
                if attempt == 2:
                    raise RuntimeError(
                        f"kaleido could not render a figure to PNG ({type(exc).__name__}: {str(exc)[:300]}); "
                        "it needs Chromium (apt-get install chromium, or python -c "
                        "'import kaleido; kaleido.get_chrome_sync()')"
                    ) from exc
                time.sleep(1)
        raise AssertionError("unreachable")

    try:
        yield to_png
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


def static_outputs(nb: nbformat.NotebookNode, to_png: Any) -> None:
    """Replace every plotly output of *nb* by its PNG (and its text).

    The JavaScript fallback (``text/html`` loading plotly.js) is dropped with
    the JSON: GitHub strips scripts and would prefer that HTML to the image.
    """
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME not in data:
                continue
            png = to_png(data[PLOTLY_MIME])
            title = data[PLOTLY_MIME].get("layout", {}).get("title")
            title = title.get("text") if isinstance(title, dict) else title
            text = data.get("text/plain") or f"<plotly figure: {title or 'untitled'}>"
            out.data = nbformat.from_dict({"image/png": base64.b64encode(png).decode(), "text/plain": text})
            out.metadata = nbformat.from_dict({})


def tidy(nb: nbformat.NotebookNode, generated: nbformat.NotebookNode) -> None:
    """Keep the generator's notebook metadata (no kernel version) and no per-cell run metadata."""
    nb.metadata = generated.metadata
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("widgets", None)


# -- the commands ---------------------------------------------------------------------------


def executed(expected: nbformat.NotebookNode, path: pathlib.Path, to_png: Any, cell_timeout: float) -> Any:
    """*expected* (make_notebooks.py's notebook for *path*) executed, as it is committed.

    Raises :class:`NotebookFailed` if a cell fails, or if the result is not what
    tests/test_notebooks.py accepts (:func:`differences`).
    """
    nb = nbformat.from_dict(json.loads(json.dumps(expected)))  # a deep copy
    run(nb, path, cell_timeout=cell_timeout)
    problems = check_outputs(expected, nb)
    if not problems:
        static_outputs(nb, to_png)
        tidy(nb, expected)
        nbformat.validate(nb)
        problems = differences(expected, nb)
    if problems:
        raise NotebookFailed(f"{path.name}: " + "\n".join(problems))
    return nb


def regenerate(names: Iterable[str] = (), *, cell_timeout: float = CELL_TIMEOUT) -> list[str]:
    """Generate, execute and write the notebooks; return the failures (those are not written)."""
    generated = generator().notebooks()
    failures = []
    with png_renderer() as to_png:
        for path in select(generated, names):
            t0 = time.perf_counter()
            try:
                nb = executed(generated[path], path, to_png, cell_timeout)
            except NotebookFailed as exc:
                failures.append(str(exc))
                print(f"FAILED {path.relative_to(HERE)} after {time.perf_counter() - t0:.0f} s", flush=True)
                continue
            nbformat.write(nb, path)
            figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
            print(
                f"wrote {path.relative_to(HERE)}: {time.perf_counter() - t0:.0f} s, {figures} PNG", flush=True
            )
    return failures


def check(names: Iterable[str] = (), *, cell_timeout: float = CELL_TIMEOUT) -> list[str]:
    """Execute the committed notebooks in memory and compare their checked cells; write nothing."""
    paths = sorted(HERE.glob("tutorials/*.ipynb")) + sorted(HERE.glob("reproduction/*.ipynb"))
    failures = []
    for path in select(paths, names):
        t0 = time.perf_counter()
        committed = nbformat.read(path, as_version=4)
        nb = nbformat.read(path, as_version=4)
        try:
            run(nb, path, cell_timeout=cell_timeout)
            problems = check_outputs(committed, nb)
            if problems:
                raise NotebookFailed(f"{path.name}: " + "\n".join(problems))
        except NotebookFailed as exc:
            failures.append(str(exc))
            print(f"FAILED {path.relative_to(HERE)} after {time.perf_counter() - t0:.0f} s", flush=True)
            continue
        print(f"ran {path.relative_to(HERE)}: {time.perf_counter() - t0:.0f} s", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("names", nargs="*", help="notebooks to run, by file stem (default: all)")
    parser.add_argument(
        "--check", action="store_true", help="run the committed notebooks without writing them"
    )
    parser.add_argument(
        "--cell-timeout", type=float, default=CELL_TIMEOUT, help=f"seconds per cell (default {CELL_TIMEOUT})"
    )
    args = parser.parse_args(argv)
    command = check if args.check else regenerate
    try:
        failures = command(args.names, cell_timeout=args.cell_timeout)
    except ValueError as exc:
        parser.error(str(exc))
    for failure in failures:
        print(f"\n--- {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
