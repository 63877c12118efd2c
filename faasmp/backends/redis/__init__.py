"""The Redis side of each shared structure: one module per structure.

Each module holds a small class with named methods (``sem_acquire``,
``pipe_send``, ...) that owns the structure's Lua, its key layout and its
round-trip budget (docs/performance.md, "Round trips per operation").  The
API modules (``faasmp.synchronize``, ``faasmp.connection``, ...) call only
those methods.  These classes speak to Redis through a
:class:`~faasmp.backends.state.StateBackend`, so ``redis`` itself is still
imported by ``faasmp.backends.state`` alone.
"""
