"""Remote stdout/stderr/logging capture (worker side) and replay (client side).

Workers replace ``sys.stdout``/``sys.stderr`` with :class:`RemoteStream` and
add a :class:`LogShipper` to the root logger; both push signed messages to the
run's output list.  Messages, in order per task:

* ``("w", task_id, fd, text)``  text written to stdout (fd 1) or stderr (fd 2)
* ``("log", task_id, record_dict)``  a logging record, re-emitted on the client
* ``("eof", task_id)``  the task's output is complete (sent before its result)
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

Push = Callable[[tuple[Any, ...]], None]


def end_of_output(task_id: str, authkey: bytes) -> bytes:
    """The signed ``("eof", task_id)`` marker, for whoever ends a task's output besides its sink.

    (A Process' exit, recorded by its slot, its host or the client.)
    """
    from .call import dumps  # noqa: PLC0415 - call imports the pickler; output stays light

    return dumps(("eof", task_id), authkey)


class TaskOutput:
    """Where the current task's output goes; shared by the streams and log handler."""

    def __init__(self, push: Push) -> None:
        self.push = push
        self.task_id: str | None = None
        self.wrote = False
        #: UTF-8 bytes written to stdout/stderr so far (the output volume in stats).
        self.bytes_out = 0

    def begin(self, task_id: str) -> None:
        self.task_id = task_id
        self.wrote = False

    def end(self, force: bool = False) -> bool:
        """Flush and mark the task's output complete; True if it wrote anything.

        The ``eof`` marker is sent only if the task wrote, unless *force*.
        """
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, RemoteStream):
                stream.flush()
        wrote = self.wrote
        if wrote or force:
            self.push(("eof", self.task_id))
        self.task_id = None
        return wrote


class RemoteStream(io.TextIOBase):
    """A line-buffered text stream whose lines go to the client."""

    def __init__(self, sink: TaskOutput, fd: int, name: str) -> None:
        self._sink = sink
        self._fd = fd
        self._name = name
        self._buf: list[str] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        with self._lock:
            self._buf.append(s)
            if "\n" in s:
                self._flush_locked()
        return len(s)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buf:
            return
        text = "".join(self._buf)
        self._buf.clear()
        if self._sink.task_id is None:
            return
        self._sink.wrote = True
        self._sink.bytes_out += len(text.encode("utf-8", "surrogateescape"))
        self._sink.push(("w", self._sink.task_id, self._fd, text))


class LogShipper(logging.Handler):
    """Sends log records to the client, where they go through its logging config."""

    def __init__(self, sink: TaskOutput) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if self._sink.task_id is None:
            return
        try:
            d = dict(record.__dict__)
            d["msg"] = record.getMessage()
            d["args"] = None
            if record.exc_info:
                d["exc_text"] = logging.Formatter().formatException(record.exc_info)
            d["exc_info"] = None
            d.pop("message", None)
            d["faasmp_remote"] = True
            self._sink.wrote = True
            self._sink.push(("log", self._sink.task_id, d))
        except Exception:  # noqa: BLE001 - logging must never break the task
            self.handleError(record)


def install(push: Push, log_level: int) -> TaskOutput:
    """Route this process' stdout/stderr/logging to the client (worker side)."""
    sink = TaskOutput(push)
    sys.stdout = RemoteStream(sink, 1, "<stdout>")
    sys.stderr = RemoteStream(sink, 2, "<stderr>")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(LogShipper(sink))
    root.setLevel(log_level)
    return sink


def replay(message: tuple[Any, ...], stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
    """Write one output message on the client side."""
    kind = message[0]
    if kind == "w":
        _, _task, fd, text = message
        stream = (stdout or sys.stdout) if fd == 1 else (stderr or sys.stderr)
        stream.write(text)
        stream.flush()
    elif kind == "log":
        record = logging.makeLogRecord(message[2])
        logging.getLogger(record.name).handle(record)
