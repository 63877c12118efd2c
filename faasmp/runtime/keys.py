"""Names of every Redis key of a run.

All keys of one run start with ``fmp:{<run_id>}:``.  The braces are a Redis
Cluster hash tag: every key of a run lands in one slot, so multi-key Lua
scripts stay valid on a cluster, and one SCAN finds (and deletes) them all.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "fmp:"


@dataclass(frozen=True)
class Keys:
    run_id: str

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{{{self.run_id}}}:"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key of the run."""
        return f"{PREFIX}{{{self.run_id}}}:*"

    def k(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    # warm pool
    @property
    def work(self) -> str:
        return self.k("work")

    @property
    def client(self) -> str:
        return self.k("client")

    @property
    def out(self) -> str:
        return self.k("out")

    @property
    def events(self) -> str:
        return self.k("events")

    @property
    def grow(self) -> str:
        return self.k("grow")

    @property
    def hosts(self) -> str:
        return self.k("hosts")

    @property
    def slots(self) -> str:
        return self.k("slots")

    @property
    def idle(self) -> str:
        return self.k("idle")

    @property
    def starting(self) -> str:
        return self.k("starting")

    @property
    def ready(self) -> str:
        """Slot ids as they register (a wake-up list for wait_ready)."""
        return self.k("ready")

    @property
    def tasks_run(self) -> str:
        return self.k("tasks_run")

    def host_alive(self, host_id: str) -> str:
        return self.k("host", host_id, "alive")

    def host_ctl(self, host_id: str) -> str:
        return self.k("host", host_id, "ctl")

    # processes
    def proc(self, proc_id: str) -> str:
        return self.k("proc", proc_id)

    def proc_exit(self, proc_id: str) -> str:
        return self.k("proc", proc_id, "exit")

    def proc_ctl(self, proc_id: str) -> str:
        return self.k("proc", proc_id, "ctl")

    # pools
    def pool_tasks(self, pool_id: str) -> str:
        return self.k("pool", pool_id, "tasks")

    def pool_results(self, pool_id: str) -> str:
        return self.k("pool", pool_id, "res")

    def pool_funcs(self, pool_id: str) -> str:
        return self.k("pool", pool_id, "fn")

    def pool_alive(self, pool_id: str) -> str:
        return self.k("pool", pool_id, "alive")
