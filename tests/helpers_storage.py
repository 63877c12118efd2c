"""Remote functions of the storage tests: ordinary file code, no faasmp import.

Under ``faasmp.storage.patched(prefix)`` the built-ins they call are routed in
the worker too, so paths under the prefix reach object storage there.
"""

from __future__ import annotations

import os


def write_text(path: str, text: str) -> int:
    with open(path, "w", encoding="utf-8") as f:
        return f.write(text)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_numbered(job: tuple[str, int]) -> str:
    """Write ``<dir>/part-<i>.txt`` holding ``i`` squared; return the name."""
    directory, i = job
    name = f"part-{i:02d}.txt"
    with open(os.path.join(directory, name), "w") as f:
        f.write(f"{i * i}\n")
    return name


def facts(path: str) -> dict[str, object]:
    """What os.path and os say about *path* in the worker."""
    return {
        "exists": os.path.exists(path),
        "isdir": os.path.isdir(path),
        "isfile": os.path.isfile(path),
        "listdir": sorted(os.listdir(path)) if os.path.isdir(path) else None,
        "walk_files": sorted(f for _d, _s, fs in os.walk(path) for f in fs),
    }


def append_line(job: tuple[str, str]) -> None:
    path, line = job
    with open(path, "a") as f:
        f.write(line + "\n")


def missing_error(path: str) -> str:
    try:
        open(path)
    except FileNotFoundError as exc:
        return f"{type(exc).__name__} {exc.errno}"
    return "no error"
