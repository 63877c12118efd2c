"""The classic serverless patterns (examples/patterns) give the sequential result on faasmp."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np

from tests.helpers_patterns import PATTERNS, bsp_shuffle, map_pattern, map_reduce, parameter_server


def test_map_matches_sequential(ctx):
    out = map_pattern.run(ctx, size=4, processes=2)
    assert all(math.isclose(a, b) for a, b in zip(out, map_pattern.sequential(size=4), strict=True))


def test_map_reduce_tree_matches_sequential(ctx):
    chunks = map_reduce.corpus(n_chunks=7, words_per_chunk=300)
    counts = map_reduce.run(ctx, chunks, processes=2)
    assert counts == map_reduce.sequential(chunks) and sum(counts.values()) == 7 * 300


def test_bsp_shuffle_groups_every_key_on_its_owner(ctx):
    parts = bsp_shuffle.records(3, per_worker=200)
    assert bsp_shuffle.run(ctx, parts) == bsp_shuffle.sequential(parts)


def test_parameter_server_sgd_reaches_the_least_squares_solution(ctx):
    w = parameter_server.run(ctx, workers=3, epochs=2)
    ref = parameter_server.sequential()
    assert np.max(np.abs(w - ref)) < 0.05, (w, ref)


def test_examples_run_as_scripts_with_the_stdlib():
    # The same code on the stdlib: what the faasmp runs above are compared against.
    out = subprocess.run(
        [sys.executable, str(PATTERNS / "bsp_shuffle.py"), "--stdlib"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "matches the sequential result: True" in out.stdout, out.stderr
