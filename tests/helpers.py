"""Functions the tests run remotely (shipped by value, like notebook code)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import uuid

import faasmp

_init_token: str | None = None


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


def exit_with(code: object) -> None:
    sys.exit(code)


def hard_exit(code: int) -> None:
    os._exit(code)


def raise_value_error(msg: str) -> None:
    raise ValueError(msg)


def sleep_forever() -> None:
    while True:
        time.sleep(0.05)


def _mark_start(marks: str) -> None:
    """Leave one new file in *marks* per call: the caller counts how often a target started."""
    import tempfile  # noqa: PLC0415

    tempfile.NamedTemporaryFile(dir=marks, prefix="start-", delete=False).close()


def record_start_then_sleep(marks: str) -> None:
    """Record this start, then sleep forever (a re-run would record a second start)."""
    _mark_start(marks)
    sleep_forever()


def record_start_then_die(marks: str) -> None:
    """Record this start, then SIGKILL the worker running it (injected fault)."""
    _mark_start(marks)
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_then(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def print_lines(n: int, prefix: str = "line") -> int:
    for i in range(n):
        print(f"{prefix} {i}")
    print(f"{prefix} to stderr", file=sys.stderr)
    return n


def log_warning(msg: str) -> str:
    logging.getLogger("faasmp.tests.remote").warning("remote says %s", msg)
    return msg


def whoami() -> tuple[str, int]:
    p = faasmp.current_process()
    return p.name, os.getpid()


def parent_info() -> tuple[str, bool] | None:
    parent = faasmp.parent_process()
    if parent is None:
        return None
    return parent.name, parent.is_alive()


def report_identity(q_name: str) -> None:
    name, _pid = whoami()
    info = parent_info()
    print(f"{q_name}: {name} parent={info}")


def init_worker(tag: str) -> None:
    global _init_token
    _init_token = f"{tag}-{uuid.uuid4().hex}"


def read_init_token(_x: object = None) -> str | None:
    return _init_token


def kill_self(_x: object = None) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable_result(_x: object = None) -> object:
    return lambda_holder()


def lambda_holder() -> object:
    import threading

    return threading.Lock()


def slow_gen(n: int, delay: float):  # type: ignore[no-untyped-def]
    for i in range(n):
        time.sleep(delay)
        yield i


class Counter(faasmp.Process):
    """A Process subclass overriding run()."""

    def __init__(self, code: int) -> None:
        super().__init__(name="Counter-sub")
        self.code = code

    def run(self) -> None:
        print(f"subclass run in {faasmp.current_process().name}")
        sys.exit(self.code)


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise KeyError(f"bad item {x}")
    return x


def die_first_time(marker: str) -> str:
    """SIGKILL the worker the first time (injected fault), succeed on the retry."""
    if not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def report_waited_thread(q: object, hold: float) -> None:
    """Start a non-daemon thread that reports after *hold* s; the process must wait for it to exit."""
    import threading

    def late() -> None:
        time.sleep(hold)
        q.put(("thread", threading.current_thread().daemon))  # type: ignore[attr-defined]

    q.put(("main", threading.current_thread().daemon))  # type: ignore[attr-defined]
    threading.Thread(target=late).start()


def exit_with_a_grandchilds_code(code: int) -> None:
    """Run inside a worker: start a Process there, join it, exit with its exit code."""
    child = faasmp.Process(target=sys.exit, args=(code,))
    child.start()
    child.join(60)
    sys.exit(child.exitcode)


def exit_unless_imported(names: list[str]) -> None:
    """Exit with 0 if every module in *names* was already imported when the target ran, else 3."""
    sys.exit(0 if all(name in sys.modules for name in names) else 3)


def die_first_time_sized(marker: str, data: bytes) -> int:
    """:func:`die_first_time` with a large argument: its size, on the retry."""
    die_first_time(marker)
    return len(data)
