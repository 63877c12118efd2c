"""Reproductions of the published evaluation (docs/architecture.md), for notebooks and the CLI.

Each experiment is a module with ``run(full: bool = False) -> Result``; the
result holds a table with the paper's figure beside ours, plotly figures and a
note on where and why they differ.  Small mode (default) runs in under a minute
on a 2-core machine with the localhost backend; full mode is the paper's scale,
meant for a cloud backend configured beforehand.

    python -m faasmp repro list
    python -m faasmp repro pipes --out results/
    python -m faasmp repro all --full --out results/

In Python: ``faasmp.repro.run("pipes")`` or ``faasmp.repro.pipes.run()``.  The
applications also have a scaling curve, ``faasmp.repro.scaling.curve("evolution")``
(speed-up against workers beside the paper's; the CLI writes it as ``NAME_scaling.csv``),
and :mod:`faasmp.repro.paper` holds every published figure they compare with.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import time
from typing import Any

from . import paper, scaling
from .core import Result, Row

# name -> (module, one-line description).  Order = the paper's order.
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "overheads": ("overheads", "per-phase overheads of one invocation, cold and warm (Table 4.1)"),
    "sleep_map": ("sleep_map", "start/end histogram of a large map of sleep functions (Fig 4.2)"),
    "pipes": ("pipes", "Pipe 1-byte latency and 1 MB throughput (Table 4.2)"),
    "montecarlo_pi": ("montecarlo_pi", "Monte Carlo pi scaling, faasmp vs a local Pool"),
    "storage": ("storage", "object-storage read/write throughput through faasmp.storage"),
    "shared_sort": ("shared_sort", "sort: in-place shared Array vs local copy vs pipes (Table 4.3)"),
    "evolution": ("evolution", "evolution strategies with a Pool and a Manager dict"),
    "sentiment": ("sentiment", "pandarallel-style sentiment scoring of a generated dataset"),
    "gridsearch": ("gridsearch", "scikit-learn GridSearchCV through the joblib 'faasmp' backend"),
    "rl_pipes": (
        "rl_pipes",
        "PPO-style rollouts in gymnasium's AsyncVectorEnv (Processes, Pipes, shared Array)",
    ),
}

__all__ = ["EXPERIMENTS", "Result", "Row", "add_arguments", "main", "paper", "run", "scaling"]


def run(name: str, full: bool = False) -> Result:
    """Run experiment *name* (see :data:`EXPERIMENTS`) and return its :class:`Result`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    module = importlib.import_module(f"{__name__}.{EXPERIMENTS[name][0]}")
    result: Result = module.run(full=full)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``faasmp repro``."""
    parser.add_argument(
        "name",
        nargs="?",
        default="list",
        help="experiment to run, 'all', or 'list' (default) to list them",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the paper's scale (for a cloud backend; configure it first via FAASMP_* or ~/.faasmp.toml)",
    )
    parser.add_argument(
        "--out", default="repro-results", help="directory for tables and plots (default: %(default)s)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run and an estimate of its cost, run nothing",
    )
    parser.add_argument("--no-png", action="store_true", help="skip PNG export (needs kaleido and a browser)")


def _list() -> int:
    width = max(map(len, EXPERIMENTS))
    print("experiments (python -m faasmp repro NAME [--full] [--out DIR]):")
    for name, (_mod, desc) in EXPERIMENTS.items():
        print(f"  {name:<{width}}  {desc}")
    return 0


def _save_scaling(name: str, full: bool, result: Result, out: str) -> pathlib.Path:
    """Measure *name*'s scaling curve, print it and write ``NAME_scaling.csv``; returns the path."""
    curve = scaling.curve(name, full=full, result=result)
    path = pathlib.Path(out) / f"{name}_scaling.csv"
    curve.table.to_csv(path, index=False)
    text = curve.table.to_string(index=False, float_format="{:.3g}".format)
    print(f"scaling ({name}):\n{text}\n\n{curve.note}\n")
    return path


def main(args: Any) -> int:
    """``faasmp repro``: list experiments or run one (or all) headless and save the outputs."""
    import faasmp

    name = args.name
    if name == "list":
        return _list()
    names = list(EXPERIMENTS) if name == "all" else [name]
    if any(n not in EXPERIMENTS for n in names):
        print(f"faasmp repro: unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2
    if getattr(args, "dry_run", False):
        from .plan import dry_run

        if not args.full:
            print("faasmp repro: --dry-run estimates full mode; add --full", file=sys.stderr)
            return 2
        print(dry_run(names))
        return 0
    status = 0
    try:
        for n in names:
            t0 = time.perf_counter()
            print(f"== {n} ({'full' if args.full else 'small'} mode) ==", flush=True)
            try:
                result = run(n, full=args.full)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next experiment
                print(f"faasmp repro {n}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                status = 1
                continue
            print(result.markdown())
            files = result.save(args.out, png=not args.no_png)
            if n in paper.SCALING:  # the notebook's scaling curve, as a table
                try:
                    files.append(_save_scaling(n, args.full, result, args.out))
                except Exception as exc:  # noqa: BLE001 - the experiment's own outputs are saved
                    print(
                        f"faasmp repro {n}: scaling curve failed: {type(exc).__name__}: {exc}",
                        file=sys.stderr,
                    )
                    status = 1
            print(
                f"wrote {', '.join(str(f) for f in files)} ({time.perf_counter() - t0:.1f} s)\n", flush=True
            )
    finally:
        faasmp.shutdown()
    return status
