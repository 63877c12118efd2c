"""Writes the test notebooks (kept in git; regenerate with this script if they change)."""
import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).parent


def cell(id_, src, tags=()):
    c = new_code_cell(src.strip("\n"))
    c.id = id_
    if tags:
        c.metadata["tags"] = list(tags)
    return c


# A Process + Pipe master/worker cell (the RL pattern): in the kernel test and
# in the browser test's screenshot of the dashboard.
PROCS_CELL = """
%%faas --stats
import time
from multiprocessing import Pipe, Process

def learner(conn, n):
    for _ in range(n):
        batch = conn.recv()
        time.sleep(0.01)  # a training step
        conn.send(sum(batch) / len(batch))
    print("learner: trained on", n, "batches")

def actor(conn, n):
    total = 0.0
    for step in range(n):
        time.sleep(0.005)  # an environment step
        conn.send([step] * 64)
        total += conn.recv()
    print("actor: return", total)

end_l, end_a = Pipe()
procs = [Process(target=learner, args=(end_l, 50), name="learner"),
         Process(target=actor, args=(end_a, 50), name="actor")]
for p in procs:
    p.start()
for p in procs:
    p.join()
print("exit codes:", [p.exitcode for p in procs])
"""

kernel = new_notebook(cells=[
    new_markdown_cell("Executed by `tests/test_magics.py` in a real IPython kernel (nbclient)."),
    cell("setup", """
%load_ext faasmp_magics
import os, faasmp, faasmp_magics
kernel_pid = os.getpid()
"""),
    cell("pool", "%faas_pool 2"),
    cell("defs", """
def square(x):
    return x * x

add3 = lambda x: x + 3

def make_mul(k):
    def mul(x):
        return x * k
    return mul

class Box:
    def __init__(self, v):
        self.v = v
    def doubled(self):
        return Box(self.v * 2)

times10 = make_mul(10)
"""),
    cell("run", """
%%faas --stats
import multiprocessing, os
from multiprocessing import Pool
print("patched:", multiprocessing.Pool is faasmp.Pool)

def shout(x):
    print(f"remote hello {x}")
    return os.getpid()

with Pool(2) as p:
    squares = p.map(square, range(10))
    plus3 = p.map(add3, range(3))
    tens = p.map(times10, range(3))
    boxes = [b.v for b in p.map(Box.doubled, [Box(1), Box(2)])]
    pids = p.map(shout, range(3))
(squares, plus3, tens, boxes, kernel_pid in pids)
"""),
    cell("after", """
import multiprocessing
print("restored:", not faasmp.is_patched(), multiprocessing.Pool is not faasmp.Pool, Pool is multiprocessing.Pool)
print("records:", len(faasmp_magics.last_records()), len(faasmp.stats.last()))
"""),
    cell("threads", """
%%faas
import logging, sys, threading

def noisy(x):
    import logging, sys
    print("thread-print", x)
    print("thread-err", x, file=sys.stderr)
    logging.getLogger("nb").warning("thread-log %s", x)
    return x

results = []
def runner():
    with Pool(2) as p:
        results.extend(p.map(noisy, range(2)))

t = threading.Thread(target=runner)
t.start()
t.join()
sorted(results)
"""),
    cell("error", """
%%faas
def boom(x):
    raise ValueError(f"bad value {x}")

with Pool(2) as p:
    p.map(boom, [7])
""", tags=["raises-exception"]),
    cell("after_error", 'print("restored after error:", not faasmp.is_patched(), multiprocessing.Pool is not faasmp.Pool)'),
    cell("procs", PROCS_CELL),
    cell("static", """
%config FaasMagics.dashboard_kind = "static"
"""),
    cell("static_run", """
%%faas
with Pool(2) as p:
    total = sum(p.map(square, range(20)))
total
"""),
    cell("nodash", """
%%faas --no-dashboard
with Pool(2) as p:
    print("no dashboard:", p.map(add3, [1]))
"""),
    cell("status", """
%config FaasMagics.dashboard_kind = "auto"
%faas_pool
%faas_pool --stop
%faas_pool
"""),
])

interrupt = new_notebook(cells=[
    new_markdown_cell("Executed by `tests/test_magics.py`: the driver interrupts the `slow` cell."),
    cell("setup", """
%load_ext faasmp_magics
import os, time, faasmp
MARKS = os.environ["FAASMP_TEST_MARKS"]
"""),
    cell("pool", "%faas_pool 2 --no-dashboard"),
    cell("slow", """
%%faas
from multiprocessing import Pool

def slow(x):
    open(os.path.join(MARKS, f"started-{x}"), "w").close()
    time.sleep(15)
    open(os.path.join(MARKS, f"done-{x}"), "w").close()
    return x

with Pool(2) as p:
    p.map(slow, range(2))
""", tags=["raises-exception"]),
    cell("next", """
%%faas
with Pool(2) as p:
    print("after interrupt:", p.map(abs, [-1, -2, -3]))
"""),
])

demo = new_notebook(cells=[
    new_markdown_cell("# faasmp in Jupyter\nThe dashboard under a `%%faas` cell (opened by `tests/test_dashboard_browser.py`)."),
    cell("setup", "%load_ext faasmp_magics"),
    cell("run", """
%%faas --workers 4
import random, time
from multiprocessing import Pool

def work(i):
    random.seed(i)
    time.sleep(random.uniform(0.1, 0.6))
    inside = sum(random.random() ** 2 + random.random() ** 2 <= 1 for _ in range(200_000))
    return 4 * inside / 200_000

with Pool(4) as pool:
    estimates = pool.map(work, range(40), chunksize=1)
print(f"pi ~ {sum(estimates) / len(estimates):.4f}")
"""),
    cell("procs", PROCS_CELL),
    cell("done", 'print("ALL-CELLS-DONE")'),
])

for name, nb in (("magics_kernel", kernel), ("magics_interrupt", interrupt), ("dashboard_demo", demo)):
    for i, c in enumerate(nb.cells):
        if c.cell_type == "markdown":
            c.id = f"intro-{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(HERE / f"{name}.ipynb"))
