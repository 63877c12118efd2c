"""Large payloads on their way out of the client.

redis-py's hiredis packer joined every command into one new buffer, a copy
of each argument (~790 minor faults for a 1 MiB ``RPUSH`` in a fresh
client): the client's pooled connections now use the lean packer of the
direct path, which hands large arguments on as they are.
"""

from __future__ import annotations

import os
import tracemalloc

MIB = 1 << 20


def test_the_clients_pooled_connections_hand_large_arguments_on_uncopied(ctx) -> None:
    """redis-py's hiredis packer joined every command into one new buffer (a copy of each argument)."""
    state = ctx.session.state
    key = ctx.session.keys.k("test", os.urandom(4).hex())
    # Large against what other threads of the test process allocate meanwhile (<1 MB).
    data = os.urandom(16 * MIB)
    try:
        state.rpush(key, b"warm")
        tracemalloc.start()
        try:
            pipe = state.pipeline()
            pipe.rpush(key, data)
            pipe.execute()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < len(data) // 4, f"a {len(data):,}-byte RPUSH allocated {peak:,} bytes"
        assert state.lindex(key, 1) == data
        # Commands whose name is two words go out as two arguments, as redis-py's packers send them.
        assert state._r.script_load("return 1") == state._r.script_load(
            "return 1"
        )  # test-only: redis-py's client
    finally:
        state.delete(key)
