"""Large Pipe and Queue messages in host mode: the body in a host file, a signed descriptor in Redis.

When every process of a run is on the client's host (``shared_memory``
mode ``host``: see ``Config.shared_memory_mode`` and docs/shared_memory.md),
a message body of at least :data:`HOST_MIN` bytes does not cross Redis.
The sender writes it into a new file of the run's private directory
(:func:`faasmp.backends.host_memory.write_message`) and pushes, in the
message's place in the same Redis list, a *descriptor*: the file's random
token and the body's size.  The receiver reads the file and removes it.  The
list keeps the order of messages, and end of file, ``poll``, ``wait``,
closed pipes and queue bounds work as for any message.  A 1 MiB message so
costs each end one copy into or out of the file, and no MAC.

Descriptor element (``DESCRIPTOR_SIZE`` = 59 bytes)::

    tag (32) || b"hm1" || token (16) || size (8, little endian)

``tag = HMAC-SHA256(authkey, DOMAIN || b"hm1" || token || size)``: the run's
MAC, computed over a *domain-separated* message (:data:`_DOMAIN` comes first,
and no tag of an ordinary message covers it).  A receiver checks for a
descriptor only when an element has exactly this size and shape; otherwise,
and when that check fails, the element is an ordinary signed message and is
verified as such.  So a user's 27-byte message that starts with ``hm1`` is
delivered as data (its tag is the ordinary one, not the descriptor's), and a
descriptor forged or altered without the authkey is refused like any
unsigned message.

The file's bytes are not authenticated: the run's directory is a private
directory (mode 0700) of the user running the program, so only that user's
processes can write it, and they can already do anything the program does.
The token is 16 random bytes that faasmp turns into the file name itself
(hex digits): a descriptor cannot name any other file.

Where the run is not in host mode (cloud backends, isolation mode,
``FAASMP_SHARED_MEMORY=dsm``) every message goes through Redis, signed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from ..backends import host_memory as hostmem
from .call import Signer, dumps_message, dumps_payload_message, payload_size

#: Bodies of at least this many bytes travel through a host file in host mode.
#: From 32 KiB up a message's create, write, read and unlink of a file cost
#: less than the Redis path's copies through the server and its MAC: one
#: sender streaming to one receiver on 2 cores, 32 KiB messages 56-77 vs
#: 71-87 us each, 64 KiB 64-67 vs 183-186 us, 256 KiB 128-130 vs 298-306 us.
#: At 8-16 KiB the two paths are level, within the noise.
HOST_MIN = 1 << 15

_MAGIC = b"hm1"
#: Prepended to a descriptor before it is MAC'd: no ordinary message's tag is a descriptor's.
_DOMAIN = b"faasmp host message descriptor\x00"
_MAC_SIZE = 32
#: The size of a descriptor element (tag, magic, token, size).
DESCRIPTOR_SIZE = _MAC_SIZE + len(_MAGIC) + 16 + 8


def seal(
    signer: Signer, host: hostmem.HostIdentity | None, body: Any, where: str
) -> tuple[Any, Any, bytes | None]:
    """``(tag, body, token)`` to send for *body* (a bytes-like object or a tuple of them).

    In host mode a body of at least :data:`HOST_MIN` bytes is written to a
    host file first; the tag and body returned are then its descriptor's, and
    *token* names the file (pass it to :func:`discard` if the message is not
    sent after all).  Otherwise *token* is None.
    """
    multi = type(body) is tuple
    if host is not None:
        size = payload_size(body)
        if size >= HOST_MIN:
            token = hostmem.write_message(host, body if multi else (body,), where)
            desc = b"".join((_MAGIC, token, size.to_bytes(8, "little")))
            return signer.mac(_DOMAIN + desc), desc, token
    return (signer.mac_parts(body) if multi else signer.mac(body)), body, None


def discard(host: hostmem.HostIdentity | None, token: bytes | None) -> None:
    """Remove the host file of a sealed message that was not sent (a full queue's timeout)."""
    if host is not None and token is not None:
        hostmem.remove_file(hostmem.message_path(host, token))


def unseal(
    signer: Signer,
    host: hostmem.HostIdentity | None,
    blob: Any,
    where: str,
    take: Callable[[int], memoryview] | None = None,
) -> Any:
    """The body of a received element: read from its host file, else a memoryview of *blob*.

    A host file's bytes come as ``bytes``, or in the memoryview *take(size)*
    returns (see :func:`faasmp.backends.host_memory.read_message`).

    Raises ``AuthenticationError`` for an element that is neither a valid
    descriptor nor a validly signed message, and ``HostMemoryError`` when a
    descriptor's file cannot be read (naming *where*).
    """
    if len(blob) == DESCRIPTOR_SIZE and blob[_MAC_SIZE : _MAC_SIZE + 3] == _MAGIC:
        view = memoryview(blob)
        desc = view[_MAC_SIZE:]
        if hmac.compare_digest(view[:_MAC_SIZE], signer.mac(_DOMAIN + desc.tobytes())):
            token = desc[3:19].tobytes()
            size = int.from_bytes(desc[19:27], "little")
            if host is None:
                raise _not_in_host_mode(where, "a message kept in host shared memory")
            return hostmem.read_message(host, token, size, where, take)
    return signer.verify(blob)


def _not_in_host_mode(where: str, what: str) -> hostmem.HostMemoryError:
    """The error for host-file data reaching a process that does not use the run's host shared memory."""
    return hostmem.HostMemoryError(
        f"faasmp {where}: {what} reached a process that does not use the run's host shared memory; "
        f"shared memory modes never mix in one run (set {hostmem.SWITCH} the same for every process)"
    )


# -- Pool payloads ------------------------------------------------------------
#
# A Pool task's arguments and its result travel inside a signed message
# (faasmp.runtime.protocol: PoolTask.chunk, TaskDone.value).  In host mode a
# payload of at least HOST_MIN bytes is written to a host file instead, and
# the field holds ``b"\x01" || token (16) || size (8, little endian)``: the
# message's MAC covers it, and no payload is ever that (a pickle starts with
# PROTO, 0x80).  A task's argument file is read by every attempt of the task
# (a retry after a lost worker reads it again) and removed by the client
# when the task's result arrives; a result's file is read and removed by the
# client.  Files no one removed (a pool terminated with tasks queued) go
# with the run's directory.

_PAYLOAD_FILE = b"\x01"
_PAYLOAD_FIELD_SIZE = 1 + 16 + 8


def stash_payload(host: hostmem.HostIdentity | None, parts: list[Any], where: str) -> bytes | None:
    """The field value naming a host file that now holds *parts* (a pickle), or None.

    Only in host mode and for a payload of at least :data:`HOST_MIN` bytes;
    None otherwise, and when the file cannot be written (a full
    ``/dev/shm``: the payload then goes through Redis).
    """
    if host is None:
        return None
    size = sum(map(len, parts))  # bytes, or byte-format memoryviews (PickleParts)
    if size < HOST_MIN:
        return None
    try:
        token = hostmem.write_message(host, tuple(parts), where)
    except OSError:
        return None
    return b"".join((_PAYLOAD_FILE, token, size.to_bytes(8, "little")))


def seal_payload(
    host: hostmem.HostIdentity | None,
    make: Callable[[Any], Any],
    payload: list[Any],
    authkey: bytes,
    where: str,
    dumps_split: Callable[..., Any] = dumps_payload_message,
) -> tuple[Any, bytes | None]:
    """The signed message ``make(field)`` for the pickle *payload* (its parts), and its host file's field.

    In host mode a large payload goes into a host file (:func:`stash_payload`)
    and the message names it; otherwise *dumps_split* makes the message
    (:func:`~faasmp.runtime.call.dumps_payload_message` or ``..._parts``) and
    the second value is None.
    """
    stashed = stash_payload(host, payload, where)
    if stashed is None:
        return dumps_split(make, payload, authkey), None
    return dumps_message(make(stashed), authkey), stashed


def discard_payload(host: hostmem.HostIdentity | None, field: Any) -> None:
    """Remove the host file a payload field names, if it names one (nobody will read it)."""
    discard(host, stashed_token(field))


def stashed_token(field: Any) -> bytes | None:
    """The host file token a payload field names, or None if the field holds the payload itself."""
    if len(field) == _PAYLOAD_FIELD_SIZE and field[:1] == _PAYLOAD_FILE:
        return bytes(field[1:17])
    return None


def load_payload(
    host: hostmem.HostIdentity | None, field: Any, where: str, *, remove: bool
) -> bytes | memoryview:
    """The pickle in a payload field: the field itself, or its host file's bytes (removed if *remove*).

    Raises :class:`~faasmp.backends.host_memory.HostMemoryError` naming
    *where* when the file cannot be read.
    """
    token = stashed_token(field)
    if token is None:
        return field  # type: ignore[no-any-return]
    if host is None:
        raise _not_in_host_mode(where, "data kept in host shared memory")
    size = int.from_bytes(field[17:25], "little")
    return hostmem.read_message(host, token, size, where, remove=remove)
