"""Object storage as a disk: aggregate read/write throughput through ``faasmp.storage``."""

from __future__ import annotations

import importlib.util
import os
import time
import uuid

from . import paper
from .core import Result, Row, bar, context

TITLE = "Object-storage read/write throughput through faasmp.storage"

MB = 1 << 20


def unavailable() -> str:
    """'' when ``faasmp.storage`` is importable and has ``open``, else the reason it is not."""
    if importlib.util.find_spec("faasmp.storage") is None:
        return "faasmp.storage is not part of this faasmp version yet"
    try:
        import faasmp.storage as fs
    except Exception as exc:  # noqa: BLE001 - any import failure is the reason to skip
        return f"faasmp.storage does not import: {type(exc).__name__}: {exc}"
    if not callable(getattr(fs, "open", None)):
        return "faasmp.storage has no open()"
    return ""


def write_files(job: tuple[str, int, int]) -> float:
    """Write *files* objects of *size_mb* MiB under *prefix*; returns the seconds it took."""
    import faasmp.storage as fs

    prefix, files, size_mb = job
    block = os.urandom(MB)
    t0 = time.perf_counter()
    fs.makedirs(prefix, exist_ok=True)
    for i in range(files):
        with fs.open(f"{prefix}/part-{i}", "wb") as f:
            for _ in range(size_mb):
                f.write(block)
    return time.perf_counter() - t0


def read_files(job: tuple[str, int, int]) -> float:
    """Read back what :func:`write_files` wrote; returns the seconds it took."""
    import faasmp.storage as fs

    prefix, files, size_mb = job
    t0 = time.perf_counter()
    for i in range(files):
        with fs.open(f"{prefix}/part-{i}", "rb") as f:
            got = 0
            while chunk := f.read(8 * MB):
                got += len(chunk)
        if got != size_mb * MB:
            raise OSError(f"{prefix}/part-{i}: read {got} bytes, wrote {size_mb * MB}")
    return time.perf_counter() - t0


def remove_files(job: tuple[str, int, int]) -> None:
    import faasmp.storage as fs

    prefix, files, _ = job
    for i in range(files):
        fs.remove(f"{prefix}/part-{i}")


def run(full: bool = False) -> Result:
    """*workers* functions each write then read *files* objects; aggregate MB/s of each phase."""
    mode = "full" if full else "small"
    why_not = unavailable()
    if why_not:
        rows = [
            Row("aggregate read", paper.STORAGE_READ_GBS, None, "GB/s", f"skipped: {why_not}"),
            Row("aggregate write", paper.STORAGE_WRITE_GBS, None, "GB/s", f"skipped: {why_not}"),
        ]
        return Result("storage", TITLE, mode, rows, notes=f"Skipped: {why_not}.")
    workers, files, size_mb = (1000, 4, 256) if full else (2, 4, 8)
    t_start = time.perf_counter()
    ctx = context()
    ctx.start_warm_pool(workers)
    run_id = uuid.uuid4().hex[:8]
    jobs = [(f"/faasmp-repro/{run_id}/w{w}", files, size_mb) for w in range(workers)]
    total_mb = workers * files * size_mb
    with ctx.Pool(workers) as pool:
        warm = [(f"/faasmp-repro/{run_id}/warm{w}", 1, 1) for w in range(workers)]
        pool.map(write_files, warm, chunksize=1)  # the workers import faasmp.storage first
        t0 = time.perf_counter()
        w_each = pool.map(write_files, jobs, chunksize=1)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        r_each = pool.map(read_files, jobs, chunksize=1)
        t_read = time.perf_counter() - t0
        pool.map(remove_files, jobs + warm, chunksize=1)
    write_gbs, read_gbs = total_mb / 1024 / t_write, total_mb / 1024 / t_read
    rows = [
        Row("functions", paper.STORAGE_FUNCTIONS, workers, ""),
        Row("data written and read", None, total_mb / 1024, "GiB"),
        Row("aggregate write", paper.STORAGE_WRITE_GBS, write_gbs, "GB/s"),
        Row("aggregate read", paper.STORAGE_READ_GBS, read_gbs, "GB/s"),
        Row("write per function", 0.065, total_mb / workers / 1024 / max(w_each), "GB/s"),
        Row("read per function", 0.08, total_mb / workers / 1024 / max(r_each), "GB/s"),
    ]
    fig = bar(
        ["write", "read"],
        {
            "paper (1000 Lambdas + S3)": [paper.STORAGE_WRITE_GBS, paper.STORAGE_READ_GBS],
            "ours": [write_gbs, read_gbs],
        },
        f"{TITLE} ({workers} workers)",
        "GB/s (aggregate)",
    )
    fig.update_yaxes(type="log")
    notes = f"""
The paper's 80 GB/s read and 65 GB/s write are *aggregate* figures of about a thousand
Lambda functions each streaming from S3 at roughly 80/65 MB/s: object storage scales
with the number of clients.  Small mode has {workers} workers on one machine, and Lithops'
localhost storage is a directory on the local disk, so our {read_gbs:.2f} GB/s read and
{write_gbs:.2f} GB/s write measure this machine's disk and page cache through
`faasmp.storage.open()` (whole-object puts on close, 8 MiB ranged reads), not a cloud
store.  The per-function rows are the comparable ones; only full mode on a cloud
backend can show the aggregate scaling.
"""
    return Result(
        "storage",
        TITLE,
        mode,
        rows,
        {"throughput": fig},
        {"write_s": w_each, "read_s": r_each},
        notes,
        time.perf_counter() - t_start,
    )
