"""Dashboard overhead: the same %%faas cell with and without the live dashboard, alternating in one kernel.

    python tests/notebooks/dashboard_overhead.py [N_TASKS]

Prints the p50 wall time of ``Pool(4).map(abs, range(N), chunksize=1)`` (N tasks,
so N TaskFinished events) per mode.  Not part of the test suite.
"""
import os, pathlib, statistics, sys, tempfile, time
from nbformat.v4 import new_notebook, new_code_cell
from nbclient import NotebookClient
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
body = f"""
with Pool(4) as p:
    t = time.perf_counter()
    p.map(abs, range({N}), chunksize=1)
    elapsed.append(time.perf_counter() - t)
"""
cells = ["%load_ext faasmp_magics\nimport time\nelapsed = []", "%faas_pool 4 --no-dashboard"]
order = []
for i in range(7):
    for mode in ("--no-dashboard", ""):
        cells.append(f"%%faas {mode}\nfrom multiprocessing import Pool\n" + body)
        order.append(mode or "dashboard")
cells.append("print(elapsed)")
nb = new_notebook(cells=[new_code_cell(c) for c in cells])
env = dict(os.environ, TMPDIR=tempfile.mkdtemp(), FAASMP_IDLE_TIMEOUT="60")
NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(pathlib.Path(__file__).parents[2])}}).execute(env=env)
elapsed = eval(nb.cells[-1].outputs[0].text)
res = {}
for mode, e in zip(order, elapsed):
    res.setdefault(mode, []).append(e)
for mode, v in res.items():
    print(f"{mode:>15}: p50 {statistics.median(v)*1e3:.0f} ms  ({', '.join(f'{x*1e3:.0f}' for x in v)}) for {N} tasks")
