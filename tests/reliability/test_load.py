"""Load: nothing lost, duplicated or reordered under volume and concurrency.

The default sizes keep this file well under a minute on 2 cores; the
``slow`` variants run the issue's full sizes (``pytest -m slow``).
"""

from __future__ import annotations

import collections

import pytest

from tests import helpers, helpers_reliability


@pytest.mark.parametrize(
    ("n", "chunksize"),
    [
        (10_000, 50),
        pytest.param(10_000, 1, marks=pytest.mark.slow, id="10000-tasks-chunksize-1"),
    ],
)
def test_big_map_returns_every_result_in_order(ctx, n, chunksize):
    with ctx.Pool(4) as pool:
        assert pool.map(helpers.square, range(n), chunksize=chunksize) == [i * i for i in range(n)]
        # imap_unordered: the same multiset, whatever the order.
        got = list(pool.imap_unordered(helpers_reliability.identity, range(n), chunksize=max(chunksize, 25)))
        assert sorted(got) == list(range(n))


@pytest.mark.parametrize(
    "per_producer", [500, pytest.param(2_000, marks=pytest.mark.slow, id="5x2000-items")]
)
def test_producers_and_consumers_lose_and_duplicate_nothing(ctx, per_producer):
    producers, consumers = 5, 2
    q, out = ctx.Queue(), ctx.Queue()
    cons = [ctx.Process(target=helpers_reliability.consume, args=(q, out, 0)) for _ in range(consumers)]
    prods = [
        ctx.Process(target=helpers_reliability.produce, args=(q, p, per_producer)) for p in range(producers)
    ]
    for proc in cons + prods:
        proc.start()
    for proc in prods:
        proc.join(120)
        assert proc.exitcode == 0
    for _ in cons:
        q.put(None)
    batches = [out.get(timeout=120) for _ in cons]
    for proc in cons:
        proc.join(60)
        assert proc.exitcode == 0
    received = collections.Counter(item for batch in batches for item in batch)
    expected = collections.Counter((p, i) for p in range(producers) for i in range(per_producer))
    assert received == expected  # a multiset: nothing lost, nothing twice
    # Each producer's items arrive in the order it put them (FIFO per producer).
    for batch in batches:
        for p in range(producers):
            seq = [i for (pp, i) in batch if pp == p]
            assert seq == sorted(seq)
    assert q.qsize() == 0


# These two exercise the workers, not the server: one backend is enough.
EMBEDDED_ONLY = pytest.mark.parametrize("ctx", ["embedded"], indirect=True)


@EMBEDDED_ONLY
def test_64_concurrent_processes_complete_with_their_exit_codes(ctx):
    n = 64
    q = ctx.Queue()
    procs = [ctx.Process(target=helpers_reliability.child_exit, args=(q, i)) for i in range(n)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [i % 4 for i in range(n)]
    reports = [q.get(timeout=30) for _ in range(n)]
    assert sorted(i for i, _ in reports) == list(range(n))
    assert {pid for _, pid in reports} == {p.pid for p in procs}


@EMBEDDED_ONLY
@pytest.mark.parametrize("keys", [2_000, pytest.param(10_000, marks=pytest.mark.slow, id="10000-keys")])
def test_manager_dict_under_concurrent_writers_is_consistent(ctx, keys):
    writers = 4
    with ctx.Manager() as manager:
        d = manager.dict()
        d["counter"] = 0
        lock = manager.Lock()
        per = keys // writers
        procs = [
            ctx.Process(target=helpers_reliability.write_keys, args=(d, w, per)) for w in range(writers)
        ] + [
            ctx.Process(target=helpers_reliability.bump_shared_counter, args=(d, lock, 50)) for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
            assert proc.exitcode == 0
        snapshot = dict(d)
        assert snapshot.pop("counter") == 100  # read-modify-write under the lock: no lost update
        assert snapshot == {f"w{w}-{i}": (w, i) for w in range(writers) for i in range(per)}
        assert len(d) == keys + 1
