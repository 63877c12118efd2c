"""Process records in Redis: the one owner of a Process' "exited" transition.

Key layout (``faasmp.runtime.keys`` names them, per process id):

* ``proc`` -- a hash: ``state`` (``queued``, ``running``, ``exited``),
  ``exitcode``, ``slot``/``host``/``pid``/``started`` once running,
  ``pending_signal`` (a signal sent before it ran), and ``ended`` or ``lost``
  (why it exited without its slot's report) once exited; ``run_start``,
  ``run_end``, ``cpu_s``, ``peak_rss``, ``out_bytes`` as the process' slot
  records its exit (the process hands them over through a local pipe; for
  :mod:`faasmp.stats`).
* ``exit`` -- a list holding the exit code once exited (``join`` blocks on
  it); the same key is the pub/sub channel that ``connection.wait`` listens
  on for the exit.
* ``ctl`` -- the process' control list, read by the slot that runs it.

A process exits in four ways: its slot reports its exit status, its host
reports the slot lost, the client finds the host dead, or ``terminate()`` /
``kill()`` cancels it while still queued.  All four go through
:func:`exit_lua` (the cancel inside :data:`SIGNAL_PROCESS`, the others through
:meth:`ProcessRecords.exited`), so every exit writes the same fields, wakes the
same waiters (exit list, channel) and ends the process' output with the same
marker; and only the first exit counts (a dead host's report and the client's
own finding may race).

Round-trip budget: a start 1, an exit 1, a signal 1 (one script each), a
wait for the exit with the record read behind it 1; the
queued record is written with the queued call (``hosts.WarmPool.push_and_reserve``);
the process' timing none of its own (it goes with the exit; the client reads
it with a heartbeat's pipeline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import StateBackend


def exit_lua(code: str, note_field: str, note: str, eof: str, extra: str = "") -> str:
    """Lua making the process of ``KEYS[1]`` (hash) / ``KEYS[2]`` (exit list) exited.

    KEYS[3] is the run's output list (the end-of-output marker *eof* goes
    there, so a ``join`` waiting for the process' output returns; an empty
    *eof* -- a process that wrote nothing -- pushes none, and the hash's
    ``eof`` field says which); KEYS[4]
    the process' control list (deleted).  *code*, *note_field*, *note* and
    *eof* are Lua expressions; ``ARGV[1]`` must be the exit list's TTL in ms
    (the hash has its TTL since ``start()``).  *extra* adds HSET field and
    value arguments (Lua, e.g. ``, unpack(ARGV, 7)``).  Does nothing once the process
    exited: the first exit recorded is the one waiters see.
    """
    return f"""
if redis.call('HGET', KEYS[1], 'state') ~= 'exited' then
  local code = tostring({code})
  local eof = {eof}
  local has_eof = '0'
  if eof ~= '' then has_eof = '1' end
  redis.call('HSET', KEYS[1], 'state', 'exited', 'exitcode', code, 'eof', has_eof,
             {note_field}, {note}{extra})
  redis.call('RPUSH', KEYS[2], code)
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('PUBLISH', KEYS[2], 'exit')
  if eof ~= '' then redis.call('RPUSH', KEYS[3], eof) end
  redis.call('DEL', KEYS[4])
  exited = 1
end
"""


# KEYS: hash, exit, out, ctl, tasks_run.  ARGV: ttl, code, note field, note, eof, count (0/1),
# then field, value pairs of the process' timing (for faasmp.stats)
# -> 1 if this call made the process exited, 0 if it had exited already
PROCESS_EXIT = (
    "local exited = 0\n"
    + exit_lua("ARGV[2]", "ARGV[3]", "ARGV[4]", "ARGV[5]", ", unpack(ARGV, 7)")
    + """
if exited == 1 and ARGV[6] == '1' then redis.call('INCRBY', KEYS[5], 1) end
return exited
"""
)

# Deliver a signal to a running process, or cancel one still queued.
# KEYS: hash, exit, out, ctl, work queue.  ARGV: ttl, signal message, signum, the queued call, eof
# -> 1 signalled, 0 already exited, 2 cancelled while queued, 3 signal kept for its start
SIGNAL_PROCESS = (
    """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' then
  redis.call('RPUSH', KEYS[4], ARGV[2])
  return 1
end
if state == 'exited' then return 0 end
if redis.call('LREM', KEYS[5], 1, ARGV[4]) == 1 then
  local exited = 0
"""
    + exit_lua("-tonumber(ARGV[3])", "'lost'", "'cancelled before it started'", "ARGV[5]")
    + """
  return 2
end
redis.call('HSET', KEYS[1], 'pending_signal', ARGV[3])
return 3
"""
)

# A slot started the process: record where it runs, and take a signal sent while queued.
# KEYS: hash.  ARGV: slot, host, pid, started -> the pending signal number, or 0
PROCESS_START = """
local sig = redis.call('HGET', KEYS[1], 'pending_signal')
redis.call('HSET', KEYS[1], 'state', 'running', 'slot', ARGV[1], 'host', ARGV[2],
           'pid', ARGV[3], 'started', ARGV[4])
if sig then return tonumber(sig) end
return 0
"""


class ProcessRecords:
    """The records of a run's processes (the keys come from the run's ``Keys``)."""

    def __init__(self, state: StateBackend, keys: Any, ttl_ms: int) -> None:
        self._state = state
        self._keys = keys
        self._ttl_ms = ttl_ms

    def _keys_of(self, proc_id: str) -> list[str]:
        k = self._keys
        return [k.proc(proc_id), k.proc_exit(proc_id), k.out, k.proc_ctl(proc_id)]

    def delete(self, proc_id: str) -> None:
        """Delete the record of *proc_id* (``Process.close()``)."""
        self._state.delete(*self._keys_of_own(proc_id))

    def read_and_delete(self, proc_id: str) -> dict[bytes, bytes]:
        """The record of *proc_id* (``{}`` if gone), deleted in the same round trip (for its stats)."""
        pipe = self._state.pipeline()
        pipe.hgetall(self._keys.proc(proc_id))
        pipe.delete(*self._keys_of_own(proc_id))
        return pipe.execute()[0] or {}

    def _keys_of_own(self, proc_id: str) -> list[str]:
        k = self._keys
        return [k.proc(proc_id), k.proc_exit(proc_id), k.proc_ctl(proc_id)]

    def exit_codes(self, proc_ids: list[str]) -> list[int | None]:
        """The exit codes of *proc_ids* (None for one still running), in one round trip."""
        pipe = self._state.pipeline()
        for proc_id in proc_ids:
            pipe.lindex(self._keys.proc_exit(proc_id), 0)
        return [None if raw is None else int(raw) for raw in pipe.execute()]

    def wait_exit(self, proc_id: str, timeout: float) -> tuple[int | None, dict[bytes, bytes]]:
        """Wait up to *timeout* seconds for *proc_id* to exit: its exit code (None: running) and record.

        One round trip: the record (``{}`` if gone) is read right after the
        wait, in the same write, so a ``join`` has the exit's details (was
        there output to wait for, its timing) and a timed-out wait the state
        to check the process' host with.  *timeout* must be > 0 (Redis reads
        0 as forever).
        """
        k = self._keys
        exit_key = k.proc_exit(proc_id)
        raw, record = self._state.direct.execute_many(
            [("BLMOVE", exit_key, exit_key, "RIGHT", "RIGHT", timeout), ("HGETALL", k.proc(proc_id))]
        )
        return (None if raw is None else int(raw)), _as_dict(record)

    def read(self, proc_id: str) -> dict[bytes, bytes]:
        """The record of *proc_id* (``{}`` if gone)."""
        return self._state.hgetall(self._keys.proc(proc_id)) or {}

    def started(self, proc_id: str, slot_id: str, host_id: str, pid: int, started: float) -> int:
        """Record that *proc_id* runs as *pid* in *slot_id* since *started* (client clock).

        Returns the signal sent to it while it was queued (the slot delivers
        it now), or 0.
        """
        script = self._state.script(PROCESS_START)
        return int(script(keys=[self._keys.proc(proc_id)], args=[slot_id, host_id, pid, started]) or 0)

    def exited(
        self,
        proc_id: str,
        code: int,
        eof: bytes,
        *,
        ended: float | None = None,
        lost: str | None = None,
        count_task: bool = False,
        timing: dict[str, float | int] | None = None,
    ) -> bool:
        """Record that *proc_id* exited with *code* (the one place that does); True if it was first.

        *eof* is the signed end-of-output marker of the process (``b""``:
        none, the process wrote nothing and nobody waits for it); *ended* the
        exit time (client clock) when its slot saw it, or *lost* the reason
        when it died without its slot.  *count_task* adds one to the run's
        count of tasks run.  *timing* (how the process ran: ``run_start``,
        ``run_end``, ``cpu_s``, ``peak_rss``, ``out_bytes``) goes into the same
        HSET, for :mod:`faasmp.stats`.
        """
        note_field, note = ("lost", lost) if lost is not None else ("ended", repr(ended or 0.0))
        script = self._state.script(PROCESS_EXIT)
        done = script(
            keys=[*self._keys_of(proc_id), self._keys.tasks_run],
            args=[
                self._ttl_ms,
                code,
                note_field,
                note,
                eof,
                int(count_task),
                *(x for k, v in (timing or {}).items() for x in (k, repr(v))),
            ],
        )
        return bool(done)

    def signal(self, proc_id: str, signum: int, message: bytes, queued_call: bytes, eof: bytes) -> int:
        """Send *message* (a signed ``SignalProcess``) to the running *proc_id*, or cancel it if queued.

        Returns 1 signalled, 0 already exited, 2 cancelled while queued (it
        exited with ``-signum``), 3 still being started (the slot delivers
        the signal when it starts it).
        """
        script = self._state.script(SIGNAL_PROCESS)
        return int(
            script(
                keys=[*self._keys_of(proc_id), self._keys.work],
                args=[self._ttl_ms, message, signum, queued_call, eof],
            )
        )


def _as_dict(reply: Any) -> dict[bytes, bytes]:
    """A raw HGETALL reply (RESP2 flat list or RESP3 map) as a dict."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True)) if reply else {}
