"""STRING (faasmp.sharedctypes) vs LIST layout for a 1M-element c_int array.

Each operation alternates the two layouts call by call (so machine load hits
both alike) and reports the median in ms; the stdlib's local shared-memory
Array is given for reference.
"""

import multiprocessing
import statistics
import sys
import time

from faasmp.context import FaasContext

N = 1_000_000
K = 1000


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ctx = FaasContext()
    st = ctx.session.state
    vals = list(range(N))
    chunk = list(range(K))
    a = ctx.RawArray("i", N)
    s = ctx.Array("i", N)
    key = ctx.session.keys.k("bench", "list")
    lset_many = st.script(
        "for i = 2, #ARGV do redis.call('LSET', KEYS[1], ARGV[1] + i - 2, ARGV[i]) end return 1"
    )

    def list_write_whole():
        pipe = st.pipeline(transaction=True)
        pipe.delete(key)
        for i in range(0, N, 10_000):
            pipe.rpush(key, *vals[i : i + 10_000])
        pipe.execute()

    def string_write_whole():
        a[:] = vals

    def string_write_slice():
        a[500_000 : 500_000 + K] = chunk

    def string_set_one():
        a[123_456] = 7

    m = multiprocessing.Array("i", N, lock=False)

    def std_write_whole():
        m[:] = vals

    def std_write_slice():
        m[500_000 : 500_000 + K] = chunk

    def std_set_one():
        m[123_456] = 7

    list_write_whole()
    cases = [
        ("write whole array", 7, string_write_whole, list_write_whole, std_write_whole),
        ("read whole array", 7, lambda: a[:], lambda: [int(x) for x in st.lrange(key, 0, -1)], lambda: m[:]),
        (
            "read 1,000-element slice",
            300,
            lambda: a[500_000 : 500_000 + K],
            lambda: [int(x) for x in st.lrange(key, 500_000, 500_000 + K - 1)],
            lambda: m[500_000 : 500_000 + K],
        ),
        (
            "write 1,000-element slice",
            300,
            string_write_slice,
            lambda: lset_many(keys=[key], args=[500_000, *chunk]),
            std_write_slice,
        ),
        (
            "get one element",
            2000,
            lambda: a[123_456],
            lambda: int(st.lindex(key, 123_456)),
            lambda: m[123_456],
        ),
        ("set one element", 2000, string_set_one, lambda: st._r.lset(key, 123_456, 7), std_set_one),
    ]
    print(f"{'operation (median ms)':28} {'STRING':>9} {'LIST':>9} {'stdlib':>9}")
    for name, reps, f_string, f_list, f_std in cases:
        ts_s, ts_l = [], []
        for _ in range(reps):
            ts_s.append(timed(f_string))
            ts_l.append(timed(f_list))
        ts_std = [timed(f_std) for _ in range(reps)]
        med = [statistics.median(x) * 1e3 for x in (ts_s, ts_l, ts_std)]
        print(f"{name:28} {med[0]:9.3f} {med[1]:9.3f} {med[2]:9.4f}")
    sync_get = statistics.median(timed(lambda: s[123_456]) for _ in range(2000)) * 1e3

    def sync_set():
        s[123_456] = 7

    sync_set_ms = statistics.median(timed(sync_set) for _ in range(2000)) * 1e3
    print(f"synchronized Array (lock=True): get one {sync_get:.3f} ms, set one {sync_set_ms:.3f} ms")
    print(f"Redis PING median: {statistics.median(st.ping() for _ in range(2000)) * 1e3:.3f} ms")
    st.delete(key)
    ctx.shutdown()


if __name__ == "__main__":
    sys.exit(main())
