"""``python -m faasmp`` / ``faasmp``: the command line.

* ``faasmp demo [--workers N] [--points N]`` runs a Monte Carlo estimate of pi
  with a Pool on the configured backend (embedded Redis + Lithops localhost by
  default) and prints the result and the per-phase overhead table.
* ``faasmp run script.py [args...]`` / ``faasmp run -m module [args...]`` runs an
  unmodified program with ``multiprocessing`` (and
  ``concurrent.futures.ProcessPoolExecutor``) on faasmp: same ``sys.argv``,
  ``__main__`` guard, exit code, stdout and stderr as ``python script.py``.
  Modules next to the script are shipped to the workers by value.
  ``--storage PREFIX`` routes ``open()``/``os`` paths under PREFIX to object
  storage (:mod:`faasmp.storage`) in the program and its workers.
* ``faasmp status`` prints the configuration in effect (secrets hidden).
* Further subcommands (``doctor``, ``repro``) live in their own modules, listed
  in ``_PLUGINS``; each exposes ``add_arguments(parser)`` and ``main(args) -> int``
  and is imported only when its subcommand runs, so ``faasmp run`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import time


def _count_inside(n: int) -> int:
    rnd = random.Random()
    inside = 0
    for _ in range(n):
        x, y = rnd.random(), rnd.random()
        if x * x + y * y <= 1.0:
            inside += 1
    return inside


def demo(workers: int, points: int, tasks: int) -> int:
    import faasmp  # noqa: PLC0415
    from faasmp.stats import format_summary  # noqa: PLC0415

    per_task = points // tasks
    print(f"faasmp demo: Monte Carlo pi with Pool({workers}), {tasks} tasks x {per_task:,} points")
    print(
        f"backend={faasmp.get_context().config.backend!r}, Redis: "
        f"{'embedded' if faasmp.get_context().config.redis_url is None else 'external'}"
    )
    t0 = time.perf_counter()
    with faasmp.Pool(workers) as pool:
        t_pool = time.perf_counter()
        counts = pool.map(_count_inside, [per_task] * tasks, chunksize=1)
        t_map = time.perf_counter()
    pi = 4.0 * sum(counts) / (per_task * tasks)
    print(f"pi ~= {pi:.6f} (error {abs(pi - 3.141592653589793):.2e})")
    print(f"pool start {t_pool - t0:.3f} s, map {t_map - t_pool:.3f} s (includes the first cold start)")
    print()
    print("per-phase overhead of the map's tasks:")
    print(format_summary(faasmp.stats.last()))
    hosts = faasmp.stats.hosts()
    if hosts:
        print(f"cold start of the worker invocation: {hosts[0].cold_start:.3f} s")
    faasmp.shutdown()
    return 0 if abs(pi - 3.14159) < 0.05 else 1


def run(
    target: str, args: list[str], module: bool, storage: list[str] | None = None, show_stats: bool = False
) -> int:
    """Run a program with multiprocessing patched to faasmp; returns its exit code.

    With *storage* prefixes, paths under them go to object storage
    (:mod:`faasmp.storage`) in the program and in its workers.  With
    *show_stats*, :func:`faasmp.stats.report` is printed to stderr at exit.
    """
    import os  # noqa: PLC0415
    import runpy  # noqa: PLC0415
    import traceback  # noqa: PLC0415

    import faasmp  # noqa: PLC0415
    from faasmp.process import exit_code  # noqa: PLC0415
    from faasmp.runtime.call import ship_modules_under  # noqa: PLC0415

    if module:
        sys.argv = [target, *args]
        sys.path.insert(0, os.getcwd())
        ship_modules_under(os.getcwd())
    else:
        if not os.path.isfile(target):
            print(f"faasmp run: can't open file {target!r}: no such file", file=sys.stderr)
            return 2
        sys.argv = [target, *args]
        script_dir = os.path.dirname(os.path.abspath(target))
        sys.path.insert(0, script_dir)
        ship_modules_under(script_dir)
    code: int = 0
    if storage:
        import faasmp.storage  # noqa: PLC0415

        try:
            faasmp.storage.patch(*storage)
        except ValueError as exc:
            print(f"faasmp run: --storage: {exc}", file=sys.stderr)
            return 2
    faasmp.patch()
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException:  # noqa: BLE001 - print like the interpreter does
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        if show_stats:
            _print_stats()
        faasmp.shutdown()  # joins non-daemonic children, like the stdlib at exit
        faasmp.unpatch()
        if storage:
            faasmp.storage.unpatch()
    return code


def _print_stats() -> None:
    """The whole-program statistics, after the last reports of the workers arrived."""
    import faasmp  # noqa: PLC0415

    ctx = faasmp.get_context()
    if ctx.running:
        ctx.collect_stats()
    print("\nfaasmp run --stats:", file=sys.stderr)
    print(faasmp.stats.report(), file=sys.stderr)


def status() -> int:
    import faasmp  # noqa: PLC0415

    print(json.dumps(faasmp.get_context().config.redacted(), indent=2, default=str))
    return 0


# subcommand -> (module, help). Imported lazily: argument definitions are
# registered from the module only when that subcommand is asked for.
_PLUGINS: dict[str, tuple[str, str]] = {
    "doctor": ("faasmp.doctor", "check a configuration end to end (compute, Redis from a worker, versions)"),
    "repro": ("faasmp.repro", "run a reproduction of the published evaluation headless"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faasmp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_demo = sub.add_parser("demo", help="Monte Carlo pi on a faasmp Pool, with the overhead table")
    p_demo.add_argument("--workers", type=int, default=4)
    p_demo.add_argument("--points", type=int, default=4_000_000)
    p_demo.add_argument("--tasks", type=int, default=16)
    sub.add_parser("status", help="show the configuration in effect")
    p_run = sub.add_parser("run", help="run an unmodified multiprocessing program on faasmp")
    p_run.add_argument("-m", dest="module", action="store_true", help="run a module (like python -m)")
    p_run.add_argument(
        "--storage",
        action="append",
        metavar="PREFIX",
        help="route open()/os paths under PREFIX (e.g. /faas/ or s3://bucket/) to object storage, "
        "in the program and its workers (repeatable)",
    )
    p_run.add_argument(
        "--stats", action="store_true", help="print the statistics (faasmp.stats.report()) to stderr at exit"
    )
    p_run.add_argument("target", help="script path (or module name with -m)")
    p_run.add_argument("args", nargs=argparse.REMAINDER, help="the program's own arguments")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_module, help_text) in _PLUGINS.items():
        p_plugin = sub.add_parser(name, help=help_text)
        if name == chosen:
            plugin = importlib.import_module(_module)
            plugin.add_arguments(p_plugin)
            p_plugin.set_defaults(plugin=plugin)
    args = parser.parse_args(argv)
    if getattr(args, "plugin", None) is not None:
        return int(args.plugin.main(args))
    if args.cmd == "run":
        return run(args.target, args.args, args.module, args.storage, args.stats)
    if args.cmd == "demo":
        if args.workers < 1 or args.points < args.tasks or args.tasks < 1:
            parser.error("--workers and --tasks must be >= 1 and --points >= --tasks")
        return demo(args.workers, args.points, args.tasks)
    return status()


if __name__ == "__main__":
    sys.exit(main())
