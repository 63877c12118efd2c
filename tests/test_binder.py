"""The Binder environment (binder/), built the way repo2docker builds it, minus docker.

repo2docker installs ``binder/requirements.txt`` into the image's Python, runs
``binder/postBuild`` from the repository root, and starts the notebook server
through ``binder/start``.  Here: a fresh venv of this interpreter (nothing of the
test environment leaks in: no PYTHONPATH, no FAASMP_* settings, a private HOME),
``pip install -r binder/requirements.txt`` and ``binder/postBuild`` on a copy of
the repository's tracked files, then commands handed to ``binder/start``.

The build is shared by this module's tests (a module fixture, 1-2 minutes).  In
the default run: the build, the notebooks' imports and the first tutorial
executed in that environment.  ``-m binder`` (or ``-m slow``) adds every
tutorial and reproduction, executed in it in small mode by
``notebooks/execute.py --check`` (about 2 minutes more).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
NOTEBOOKS = ROOT / "notebooks"

#: What a Binder session imports: faasmp with its magics, and the notebooks' libraries.
BINDER_IMPORTS = (
    "faasmp, faasmp_magics, jupyterlab, ipywidgets, anywidget, plotly, pandas, numpy, sklearn, joblib, "
    "pandarallel, vaderSentiment, gymnasium"
)


def test_binder_files_parse_as_repo2docker_reads_them():
    from packaging.requirements import Requirement

    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            Requirement(line)  # raises on anything pip would reject
    assert (BINDER / "runtime.txt").read_text().strip().startswith("python-3.")
    for script in ("postBuild", "start"):
        path = BINDER / script
        assert os.access(path, os.X_OK), f"binder/{script} must be executable"
        assert path.read_text().startswith("#!/bin/bash\n")
        subprocess.run(["bash", "-n", str(path)], check=True)  # syntax only
    assert 'exec "$@"' in (BINDER / "start").read_text(), "start must hand over to the notebook server"
    assert 'pip install --no-cache-dir -e ".[jupyter]"' in (BINDER / "postBuild").read_text()


def test_binder_postbuild_server_check_runs(tmp_path):
    """The check postBuild runs in the image: the embedded server starts and stops."""
    text = (BINDER / "postBuild").read_text()
    script = text.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "embedded server starts: True" in out.stdout


@dataclasses.dataclass
class BinderBuild:
    """A built Binder environment: the repository copy, its HOME and the environment to run in."""

    repo: Path
    home: Path
    env: dict[str, str]
    postbuild_output: str

    def run(self, *cmd: str, timeout: float = 600) -> str:
        """Run *cmd* in the repository copy; return its stdout (assert it succeeded)."""
        out = subprocess.run(
            cmd, cwd=self.repo, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert out.returncode == 0, f"{cmd}: {out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        return out.stdout

    def start(self, *cmd: str, timeout: float = 600) -> str:
        """Run *cmd* through ``binder/start``, as Binder starts the notebook server."""
        return self.run("./binder/start", *cmd, timeout=timeout)


@pytest.fixture(scope="module")
def binder_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BinderBuild]:
    """The Binder build, as repo2docker runs it, minus docker (1-2 minutes).

    It replaced a repo2docker test that skipped on every run (nothing installs
    repo2docker, and it needs docker).
    """
    tmp = tmp_path_factory.mktemp("binder")
    venv, repo = tmp / "venv", tmp / "repo"
    # HOME holds the start hook's TMPDIR, under which a notebook's stdlib Manager binds a
    # unix socket: keep it short (pytest's tmp paths are deep; a socket path has 107 bytes).
    home = Path(tempfile.mkdtemp(prefix="bh"))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS") and not k.startswith("FAASMP_")
    }
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", HOME=str(home), TMPDIR=str(tmp))
    build = BinderBuild(repo, home, env, "")
    try:
        build.run("pip", "install", "--disable-pip-version-check", "-q", "-r", "binder/requirements.txt")
        build.postbuild_output = build.run("./binder/postBuild")
        env.pop("TMPDIR")  # from here on, the start hook chooses it
        yield build
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(900)
def test_binder_environment_builds_in_a_fresh_venv(binder_build):
    """postBuild installed this checkout and its server starts; start sets the pod's settings.

    In the default run, so that a green run does mean the Binder environment builds.
    """
    assert "faasmp: embedded server starts: True" in binder_build.postbuild_output
    check = (
        f"import os, {BINDER_IMPORTS}; print(faasmp.__file__); "
        "print(os.environ['FAASMP_MAX_WORKERS'], os.environ['TMPDIR'], os.path.isdir(os.environ['TMPDIR']))"
    )
    out = binder_build.start("python", "-c", check, timeout=120).split()
    # the editable install of this checkout:
    assert out[0] == str(binder_build.repo / "faasmp" / "__init__.py")
    assert out[1:] == ["16", str(binder_build.home / ".cache" / "faasmp-tmp"), "True"]


def executed(out: str) -> list[str]:
    """The notebooks ``execute.py --check`` reports as run, relative to notebooks/."""
    return sorted(re.findall(r"^ran (\S+):", out, flags=re.MULTILINE))


@pytest.mark.timeout(900)
def test_binder_environment_runs_the_first_tutorial(binder_build):
    """A kernel of the Binder environment runs the first tutorial (magics, warm pool, dashboard).

    The part of the notebook run that fits the default test run (~10 s).
    """
    out = binder_build.start("python", "notebooks/execute.py", "--check", "01_getting_started", timeout=600)
    assert executed(out) == ["tutorials/01_getting_started.ipynb"], out
    print(out)


@pytest.mark.slow
@pytest.mark.binder
@pytest.mark.timeout(2400)
def test_binder_environment_runs_every_notebook(binder_build):
    """Every tutorial and reproduction runs, in small mode, in the Binder environment.

    ``execute.py --check`` runs the committed notebooks of the repository copy,
    each in a fresh kernel of the Binder venv, and compares their checked cells
    as nbval does; a cell that raises, for instance on a library missing from
    binder/requirements.txt, fails the run.
    """
    out = binder_build.start("python", "notebooks/execute.py", "--check", timeout=2100)
    want = sorted(str(p.relative_to(NOTEBOOKS)) for p in NOTEBOOKS.glob("*/*.ipynb"))
    assert len(want) >= 16
    assert executed(out) == want, out
    print(out)  # per-notebook seconds, shown with -rP
