"""Issue 16: every Redis command and Lua script lives in faasmp/backends/.

The API and runtime modules call the named methods of the classes under
faasmp/backends/redis/ (``WarmPool.reserve_capacity``, ``PoolQueues.upload``,
``ProcessRecords.exited``, ...), so each structure's key layout, Lua and
round-trip budget has one home.  Typed single commands of ``StateBackend``
(``get``, ``rpush``, ``blpop``, ...) are allowed; what is not: Lua source, a
script registration, a pipeline, or a raw command on the direct connection.
"""

from __future__ import annotations

import pathlib
import re

import faasmp

ROOT = pathlib.Path(faasmp.__file__).parent
# Lua (redis.call/pcall), script registration, pipelines, raw and batched
# commands on the thread's own connection.
RAW = re.compile(
    r"redis\.p?call\b|\.script\(|\.pipeline\(|\.execute\(|\.execute_many\(|send_many|"
    r"state\.direct\b|\.direct\.|\bEVALSHA\b|\bEVAL\b"
)


def raw_redis_lines(root: pathlib.Path) -> list[str]:
    """Lines of modules under *root* (outside its backends/ package) that hold a raw Redis command."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if rel.parts[:2] == ("faasmp", "backends"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if RAW.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_no_module_outside_backends_sends_a_raw_redis_command_or_lua():
    found = raw_redis_lines(ROOT)
    magics = ROOT.parent / "faasmp_magics"
    if magics.is_dir():
        found += raw_redis_lines(magics)
    assert found == [], "Redis commands or Lua outside faasmp/backends/:\n" + "\n".join(found)


def test_the_scan_finds_what_it_forbids(tmp_path):
    # The scan itself: each forbidden form is caught, typed commands are not.
    pkg = tmp_path / "faasmp"
    (pkg / "backends").mkdir(parents=True)
    (pkg / "backends" / "ok.py").write_text("s = state.script('return 1')\n")
    (pkg / "api.py").write_text(
        "x = state.get(k)\n"
        "LUA = \"redis.call('GET', KEYS[1])\"\n"
        "pipe = state.pipeline()\n"
        "pipe.execute()\n"
        "state.direct.execute('LPOP', k, 5)\n"
        "run = state.script(LUA)\n"
    )
    found = raw_redis_lines(pkg)
    assert [line.split(":")[1] for line in found] == ["2", "3", "4", "5", "6"]


#: The house rule: no module over about 1,000 lines (split by job instead).
MAX_LINES = 1000


def test_no_module_of_the_packages_is_over_the_line_budget():
    magics = ROOT.parent / "faasmp_magics"
    sizes = {
        str(path.relative_to(ROOT.parent)): len(path.read_text().splitlines())
        for root in (ROOT, magics)
        for path in root.rglob("*.py")
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by job): {over}"
    assert len(sizes) > 50, sorted(sizes)  # the scan saw the packages
