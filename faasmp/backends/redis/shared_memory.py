"""Shared memory segments in Redis: bytes, a version and a log of changed ranges.

A segment is what a faasmp ``RawArray``/``RawValue``/``SharedMemory`` keeps
in Redis for the distributed shared memory (``faasmp.runtime.dsm``).  Every
process holds its own local copy; this class is the meeting point.

Key layout, for a segment whose base key is ``K``:

* ``K``      STRING, the segment's bytes (its length is the segment's size);
* ``K:v``    STRING, an integer version, 0 at creation, +1 per push;
* ``K:log``  LIST, one entry per version (the newest :data:`LOG_LENGTH`):
  ``"<version> <writer> "`` then the ranges that version changed, packed
  (see :func:`pack_ranges`; a superset is allowed: pullers keep their own
  unreleased bytes, see ``dsm``);
* ``K:t1`` ``K:t2`` ``K:t3``  scratch strings of a push (deleted by it).

Round trips: :meth:`create` 1, :meth:`snapshot` 1, :meth:`push` 1,
:meth:`pull` 1 for any number of segments (+1 when more than
:data:`INLINE_PULL` bytes changed: those ranges are fetched with plain
``GETRANGE`` commands so they do not pass through Lua, which costs about
2 ms per MB).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import ScriptCall, StateBackend

#: Versions whose ranges the log keeps; a puller further behind gets the whole segment.
LOG_LENGTH = 64
#: Changed bytes a pull returns through Lua; above this they are fetched with GETRANGE.
INLINE_PULL = 256 * 1024
#: Packed ranges a pull merges in Lua (~1 us per range); above this (80
#: ranges) the puller merges them with numpy and fetches them in a second
#: round trip of plain GETRANGEs (~0.1 ms).
INLINE_RANGES = 80 * 16
#: Ranges fetched in a second round trip are fetched as their whole span
#: (one GETRANGE, one merge: ~0.3 ms per MB) when it holds at most this many
#: bytes per range (a GETRANGE costs about as much as 4 KB of span);
#: else one GETRANGE each (a few changes far apart in a large segment).
SPAN_PER_RANGE = 4096
#: Pushes shipping more bytes than this write them with raw SETRANGE/BITOP
#: commands (no Lua copies), then log the version with the push script.
RAW_PUSH = 64 * 1024
SUFFIXES = ("", "v", "log")

#: A range ``(start, length)`` on the wire and in the log: two little-endian
#: unsigned 8-byte integers.  Text ("start:len,...") cost the releaser about
#: 0.3 us per range to format and the push script 0.3 us per range to parse
#: (``string.gmatch``), a third of a scattered release; packed, numpy writes
#: and reads them in one call and Lua's ``struct.unpack`` parses each in
#: about 0.1 us.
RANGE = struct.Struct("<QQ")


def pack_ranges(ranges: Sequence[tuple[int, int]]) -> bytes:
    """``(start, length)`` pairs in the packed form (see :data:`RANGE`)."""
    return b"".join(RANGE.pack(start, length) for start, length in ranges)


def unpack_ranges(packed: bytes | bytearray) -> list[tuple[int, int]]:
    """The ``(start, length)`` pairs of a packed range list."""
    return [(int(a), int(b)) for a, b in RANGE.iter_unpack(packed)]


# KEYS[1] data, KEYS[2] version, KEYS[3] log, KEYS[4..6] scratch.
# ARGV[1] ttl ms, ARGV[2] writer id, ARGV[3] log length, ARGV[4] logged ranges
# (packed, see RANGE), ARGV[5] exact ranges (packed) with their bytes
# concatenated in ARGV[6], ARGV[7] masked ranges "start:len,..." with
# (new AND mask) in ARGV[8] and the mask (0xff where changed) in ARGV[9].
# An exact range is written with SETRANGE; a masked range keeps the bytes of
# Redis where the mask is 0 (other writers' bytes in the same region):
# data = (data AND NOT mask) OR (new AND mask), done by BITOP on scratch keys.
# -> the new version, or -1 if the segment is gone (released by its owner).
_PUSH = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])  -- written back to life by a raw push: the segment was released
  return -1
end
local pos, call, sub, unpack, runs, bytes = 1, redis.call, string.sub, struct.unpack, ARGV[5], ARGV[6]
for i = 1, #runs, 16 do
  local off, len = unpack('<I8I8', runs, i)
  call('SETRANGE', KEYS[1], off, sub(bytes, pos, pos + len - 1))
  pos = pos + len
end
pos = 1
for off, len in string.gmatch(ARGV[7], '(%d+):(%d+)') do
  off = tonumber(off)
  len = tonumber(len)
  redis.call('SET', KEYS[4], string.sub(ARGV[8], pos, pos + len - 1))
  redis.call('SET', KEYS[5], string.sub(ARGV[9], pos, pos + len - 1))
  redis.call('SET', KEYS[6], redis.call('GETRANGE', KEYS[1], off, off + len - 1))
  redis.call('BITOP', 'NOT', KEYS[5], KEYS[5])
  redis.call('BITOP', 'AND', KEYS[6], KEYS[6], KEYS[5])
  redis.call('BITOP', 'OR', KEYS[6], KEYS[6], KEYS[4])
  redis.call('SETRANGE', KEYS[1], off, redis.call('GET', KEYS[6]))
  pos = pos + len
end
if ARGV[10] then
  -- A raw push left (new AND mask) in KEYS[4] and the mask in KEYS[5] for the
  -- span of ARGV[11] bytes at ARGV[10]: merge them with BITOP over that span.
  local off, len = tonumber(ARGV[10]), tonumber(ARGV[11])
  redis.call('SETRANGE', KEYS[5], len - 1, redis.call('GETRANGE', KEYS[5], len - 1, len - 1) .. '')
  redis.call('SET', KEYS[6], redis.call('GETRANGE', KEYS[1], off, off + len - 1))
  redis.call('BITOP', 'NOT', KEYS[5], KEYS[5])
  redis.call('BITOP', 'AND', KEYS[6], KEYS[6], KEYS[5])
  redis.call('BITOP', 'OR', KEYS[6], KEYS[6], KEYS[4])
  redis.call('SETRANGE', KEYS[1], off, redis.call('GET', KEYS[6]))
end
if ARGV[7] ~= '' or ARGV[10] then redis.call('DEL', KEYS[4], KEYS[5], KEYS[6]) end
local v = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[3], v .. ' ' .. ARGV[2] .. ' ' .. ARGV[4])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return v
"""

# For each segment i: KEYS[3i-2] data, KEYS[3i-1] version, KEYS[3i] log;
# ARGV[1] puller's writer id, ARGV[2] inline byte budget, ARGV[3] packed-range
# budget, ARGV[3 + i] the puller's version of segment i.
# -> per segment {version} (nothing new), {-1} (gone), {version, 'all'} (too
# far behind: fetch the whole segment), {version, ranges} (fetch these
# ranges), {version, 'specs', ranges, ranges, ...} (unmerged: many ranges) or
# {version, ranges, bytes} (the ranges' current bytes, concatenated).
# Ranges are packed (see RANGE), sorted and merged; versions written by the
# puller itself are skipped (its buffer already holds them).
_PULL = """
local out = {}
local budget = tonumber(ARGV[2])
for i = 1, #KEYS / 3 do
  local data, vkey, log = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local mine = tonumber(ARGV[3 + i])
  local v = tonumber(redis.call('GET', vkey) or '-1')
  if v < 0 then
    out[i] = {-1}
  elseif v <= mine then
    out[i] = {v}
  else
    local first = redis.call('LINDEX', log, 0)
    local first_v = first and tonumber(string.match(first, '^(%d+)')) or (v + 1)
    if first_v > mine + 1 then
      out[i] = {v, 'all'}
    else
      local specs, text = {}, 0
      for _, e in ipairs(redis.call('LRANGE', log, mine + 1 - first_v, -1)) do
        -- "<version> <writer> <packed ranges>": the ranges are binary, so cut at the spaces
        local a = string.find(e, ' ', 1, true)
        local b = string.find(e, ' ', a + 1, true)
        local writer, spec = string.sub(e, a + 1, b - 1), string.sub(e, b + 1)
        if writer ~= ARGV[1] and spec ~= '' then
          specs[#specs + 1] = spec
          text = text + #spec
        end
      end
      local ranges = {}
      if text > tonumber(ARGV[3]) then
        -- Many ranges: parsing and sorting them here would block the server;
        -- the puller merges them and fetches their bytes itself.
        out[i] = {v, 'specs', unpack(specs)}
        specs = {}
      end
      for _, spec in ipairs(specs) do
        for k = 1, #spec, 16 do
          local off, len = struct.unpack('<I8I8', spec, k)
          ranges[#ranges + 1] = {off, off + len}
        end
      end
      if #specs > 1 then table.sort(ranges, function(a, b) return a[1] < b[1] end) end
      local merged, total = {}, 0
      for _, r in ipairs(ranges) do
        local last = merged[#merged]
        if last and r[1] <= last[2] then
          if r[2] > last[2] then last[2] = r[2] end
        else
          merged[#merged + 1] = {r[1], r[2]}
        end
      end
      local spec = {}
      for k, r in ipairs(merged) do
        spec[k] = struct.pack('<I8I8', r[1], r[2] - r[1])
        total = total + r[2] - r[1]
      end
      if out[i] then
        -- already answered: 'specs'
      elseif #merged == 0 then
        out[i] = {v}
      elseif total > budget then
        out[i] = {v, table.concat(spec)}
      else
        local parts = {}
        for k, r in ipairs(merged) do parts[k] = redis.call('GETRANGE', data, r[1], r[2] - 1) end
        out[i] = {v, table.concat(spec), table.concat(parts)}
      end
    end
  end
end
return out
"""


@dataclass(frozen=True)
class Pulled:
    """What changed in one segment since the puller's version."""

    #: The segment's version the puller now has (-1: the segment is gone).
    version: int
    #: The changed ranges, packed (``b""``: none; see :data:`RANGE`), or None for the whole segment.
    spec: bytes | None
    #: Their current bytes, concatenated (the whole segment if ``spec`` is None).
    data: bytes | bytearray

    def ranges(self) -> list[tuple[int, int]]:
        """``spec`` as ``(start, length)`` pairs."""
        return unpack_ranges(self.spec) if self.spec else []


@dataclass(frozen=True)
class Diff:
    """A process's changes to one segment since its last synchronisation."""

    #: ``(start, length)`` runs written as they are (packed, see :data:`RANGE`),
    #: their bytes concatenated in ``exact_data``.
    exact_runs: bytes
    exact_data: bytes | memoryview
    #: ``(start, length)`` regions merged byte by byte: ``masked_new`` holds
    #: (new AND mask), ``masked_mask`` 0xff where this process changed a byte.
    masked: list[tuple[int, int]]
    masked_new: bytes
    masked_mask: bytes
    #: ``(start, length)`` ranges pullers should fetch (may be a superset), packed.
    logged_runs: bytes

    @property
    def exact(self) -> list[tuple[int, int]]:
        """The exact runs as ``(start, length)`` pairs."""
        return unpack_ranges(self.exact_runs)

    @property
    def logged(self) -> list[tuple[int, int]]:
        """The logged ranges as ``(start, length)`` pairs."""
        return unpack_ranges(self.logged_runs)

    @property
    def nbytes(self) -> int:
        """Bytes this diff sends."""
        return len(self.exact_data) + len(self.masked_new) + len(self.masked_mask)


def _spec(ranges: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{start}:{length}" for start, length in ranges)


def _merge_specs(specs: Sequence[bytes]) -> list[tuple[int, int]]:
    """Several packed range lists merged into one sorted list of disjoint ``(start, length)`` ranges."""
    np: Any = None
    try:
        import numpy  # noqa: PLC0415 - optional: parses thousands of ranges ~50x faster

        np = numpy
    except ImportError:
        pass
    if np is None:
        merged: list[list[int]] = []
        for start, length in sorted(r for spec in specs for r in unpack_ranges(spec)):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], start + length)
            else:
                merged.append([start, start + length])
        return [(start, end - start) for start, end in merged]
    pairs = np.frombuffer(b"".join(specs), dtype="<u8").astype(np.int64).reshape(-1, 2)
    if len(specs) > 1:
        pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    starts, ends = pairs[:, 0], pairs[:, 0] + pairs[:, 1]
    reach = np.maximum.accumulate(ends)
    firsts = np.flatnonzero(np.concatenate(([True], starts[1:] > reach[:-1])))
    tops = reach[np.concatenate((firsts[1:] - 1, [len(ends) - 1]))]
    return list(zip(starts[firsts].tolist(), (tops - starts[firsts]).tolist(), strict=True))


class SharedMemoryStore:
    """The Redis side of shared memory segments (see the module doc for keys and Lua)."""

    def __init__(self, state: StateBackend) -> None:
        self._state = state
        # The direct path: its packer does not copy large arguments (redis-py's
        # hiredis packer copies each at 2.5-7 ms per MB) and costs ~1 us per
        # small command.
        self._direct = state.direct
        self._push: ScriptCall = self._direct.script(_PUSH)
        self._push_later = self._direct.deferred_script(_PUSH, hold=True)
        self._pull: ScriptCall = self._direct.script(_PULL)

    def flush(self) -> None:
        """Collect this thread's deferred push reply, if one is outstanding (see :meth:`push_deferred`)."""
        self._direct.flush()

    @staticmethod
    def keys(key: str) -> list[str]:
        """Every key of the segment *key* (what its owner deletes)."""
        return [f"{key}:{s}" if s else key for s in SUFFIXES]

    def create(self, key: str, data: bytes | int, ttl_ms: int, *, exclusive: bool = False) -> bool:
        """Store a new segment (version 0) holding *data* (an int: that many zero bytes).

        False if *exclusive* and it already exists.
        """
        if isinstance(data, int) and data == 0:
            data = b""
        if isinstance(data, int):
            if exclusive and not self._state.set(key, b"", px=ttl_ms, nx=True):
                return False
            # SETRANGE zero-fills: the zeros do not travel.
            self._direct.execute_many(
                [
                    ("SETRANGE", key, data - 1, b"\0"),
                    ("PEXPIRE", key, ttl_ms),
                    ("SET", f"{key}:v", 0, "PX", ttl_ms),
                    ("DEL", f"{key}:log"),
                ]
            )
            return True
        nx = ("NX",) if exclusive else ()
        created = self._direct.execute_many([("SET", key, data, "PX", ttl_ms, *nx)])[0]
        if created is None:
            return False
        self._direct.execute_many([("SET", f"{key}:v", 0, "PX", ttl_ms), ("DEL", f"{key}:log")])
        return True

    def snapshot(self, key: str) -> tuple[int, bytearray] | None:
        """(version, bytes) of the segment, or None if it does not exist.

        The version is read first, so the bytes are at least that new.  The
        bytes arrive straight from the socket into the returned buffer (the
        attaching process's local copy): no parser buffer, no bytes object.
        """
        version, data = self._direct.execute_bulk([("GET", f"{key}:v"), ("GET", key)])
        if version is None or data is None:
            return None
        return int(version), data

    def delete(self, key: str) -> bool:
        """Delete the segment's keys; False if it did not exist."""
        return bool(self._state.delete(*self.keys(key)))

    def push(self, key: str, diff: Diff, *, writer: str, ttl_ms: int, size: int) -> int:
        """Apply *diff* and log it; the new version (-1: segment gone).

        One round trip, atomic; above :data:`RAW_PUSH` bytes, two: the bytes
        are written with raw commands first (other processes may see them
        before the version: they are newer than what those processes hold,
        and a correctly synchronised program does not read them before it
        acquires that version), then the version is logged.
        """
        keys, args = self._push_call(key, diff, writer=writer, ttl_ms=ttl_ms)
        return int(self._push(keys=keys, args=args))

    def push_deferred(
        self, key: str, diff: Diff, on_reply: Callable[[Any], object], *, writer: str, ttl_ms: int, size: int
    ) -> None:
        """:meth:`push` without waiting: *on_reply* later gets the new version (or the error).

        The reply is read with this thread's next command, so a lock release
        sent right after it costs no extra round trip (a release of shared
        memory followed by the lock's own release: one round trip, not two).
        """
        keys, args = self._push_call(key, diff, writer=writer, ttl_ms=ttl_ms)
        self._push_later(keys, args, on_reply)

    def _push_call(self, key: str, diff: Diff, *, writer: str, ttl_ms: int) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the push script (big diffs' bytes are written first)."""
        span: list[Any] = []
        if diff.nbytes > RAW_PUSH:
            cmds, span = self._raw_writes(key, diff, writer)
            self._direct.execute_many(cmds)
            diff = Diff(b"", b"", [], b"", b"", diff.logged_runs)
        args: list[Any] = [
            ttl_ms,
            writer,
            LOG_LENGTH,
            diff.logged_runs,
            diff.exact_runs,
            diff.exact_data,
            _spec(diff.masked),
            diff.masked_new,
            diff.masked_mask,
            *span,
        ]
        return [*self.keys(key), *self._scratch(key, writer)], args

    @staticmethod
    def _scratch(key: str, writer: str) -> list[str]:
        """Scratch keys of one writer's push (two writers may push at once)."""
        return [f"{key}:t1:{writer}", f"{key}:t2:{writer}", f"{key}:t3:{writer}"]

    def _raw_writes(self, key: str, diff: Diff, writer: str) -> tuple[list[tuple[Any, ...]], list[int]]:
        """Commands writing *diff* without passing its bytes through Lua, and the masked span.

        Exact runs are SETRANGEs.  Masked regions are written, relative to
        their span's start, into two scratch keys that the push script then
        merges with BITOP over that span only.
        """
        cmds: list[tuple[Any, ...]] = []
        data, pos = memoryview(diff.exact_data), 0
        for start, length in diff.exact:
            cmds.append(("SETRANGE", key, start, data[pos : pos + length]))
            pos += length
        if not diff.masked:
            return cmds, []
        new_key, mask_key, _ = self._scratch(key, writer)
        base = diff.masked[0][0]
        top = diff.masked[-1][0] + diff.masked[-1][1]
        new, mask, pos = memoryview(diff.masked_new), memoryview(diff.masked_mask), 0
        cmds.append(("DEL", new_key, mask_key))
        for start, length in diff.masked:
            cmds.append(("SETRANGE", mask_key, start - base, mask[pos : pos + length]))
            cmds.append(("SETRANGE", new_key, start - base, new[pos : pos + length]))
            pos += length
        return cmds, [base, top - base]

    def pull(self, segments: Sequence[tuple[str, int]], *, writer: str) -> list[Pulled]:
        """What changed in each ``(key, version)`` since that version, in one round trip.

        Large changes (and pullers too far behind the log) cost one more
        round trip, made of plain GET/GETRANGE commands.
        """
        keys: list[str] = []
        for key, _ in segments:
            keys += self.keys(key)
        args: list[Any] = [writer, INLINE_PULL, INLINE_RANGES, *(version for _, version in segments)]
        replies = self._pull(keys=keys, args=args)
        out: list[Pulled | None] = []
        fetch: list[tuple[int, str, list[tuple[int, int]] | None]] = []
        for i, ((key, _), reply) in enumerate(zip(segments, replies, strict=True)):
            version = int(reply[0])
            if len(reply) == 1:
                out.append(Pulled(version, b"", b""))
            elif len(reply) == 3 and reply[1] != b"specs":
                out.append(Pulled(version, bytes(reply[1]), bytes(reply[2])))
            else:
                out.append(None)
                if reply[1] == b"all":
                    fetch.append((i, key, None))
                elif reply[1] == b"specs":
                    fetch.append((i, key, _merge_specs(reply[2:])))
                else:
                    fetch.append((i, key, unpack_ranges(reply[1])))
        if fetch:
            cmds: list[tuple[Any, ...]] = []
            for j, (i, key, ranges) in enumerate(fetch):
                if ranges is None:
                    cmds.append(("GET", key))
                    continue
                lo, hi = ranges[0][0], sum(ranges[-1])
                if hi - lo <= SPAN_PER_RANGE * len(ranges):
                    # One GETRANGE over the ranges' span: thousands of small
                    # commands, and merging thousands of pieces, cost more
                    # than the gaps' bytes.
                    fetch[j] = (i, key, [(lo, hi - lo)])
                cmds += [("GETRANGE", key, start, start + length - 1) for start, length in fetch[j][2] or ()]
            # Straight from the socket into buffers: a join pulling a child's
            # 5 MB quarter skips the parser's copies.
            fetched = iter(self._direct.execute_bulk(cmds))
            for i, _, ranges in fetch:
                version = int(replies[i][0])
                if ranges is None:
                    whole = next(fetched)
                    out[i] = Pulled(version if whole is not None else -1, None, whole or b"")
                elif len(ranges) > 1:
                    data = b"".join(next(fetched) or b"" for _ in ranges)
                    out[i] = Pulled(version, pack_ranges(ranges), data)
                else:
                    span = next(fetched) or bytearray()
                    # The whole span: its gaps hold Redis's current bytes,
                    # at least as new as the puller's (who keeps its own
                    # unreleased bytes anyway).
                    out[i] = Pulled(version, pack_ranges([(ranges[0][0], len(span))]), span)
        return [p for p in out if p is not None]
