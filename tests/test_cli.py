"""The README's main job: python -m faasmp demo."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_prints_pi_and_phase_table():
    out = subprocess.run(
        [sys.executable, "-m", "faasmp", "demo", "--workers", "2", "--points", "200000", "--tasks", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    pi = float(re.search(r"pi ~= ([0-9.]+)", out).group(1))
    assert abs(pi - 3.1416) < 0.05
    for phase in ("serialize", "upload", "invoke", "setup", "run", "join"):
        assert re.search(rf"^{phase}\s+[0-9.]+", out, re.M), out


def test_demo_bad_arguments_fail_fast():
    res = subprocess.run(
        [sys.executable, "-m", "faasmp", "demo", "--workers", "0"], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 2
    assert "--workers" in res.stderr
