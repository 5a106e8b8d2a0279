"""Response body buffers the library keeps and reuses, one free list per process.

A megabyte envelope received into fresh memory paid for it every time: a zero fill and realloc
copies as the buffer grew with what arrived, and (in the blocking driver) about 300 page faults
of memory never touched before. A body of more than :data:`POOLED_MIN_BYTES` (a smaller one is
copied into ``bytes`` anyway) is received into a buffer taken from this free list instead, and
handed on as a memoryview of exactly its length (:func:`hand_on`): the bytes past it, left by
an earlier and longer body, are never part of it.

A buffer comes back through :func:`release`, called once the core has read the body (after
``open_envelope`` returns, on the thread that ran it). That releases the view itself: whoever
still holds it (a traceback's frame, the caller's local) can no longer read through it. The
buffer is kept only if nothing else refers to it, neither another view (a slice or a copy of
the view, an export held by C code) nor the buffer itself taken through ``view.obj``: a kept
buffer is reachable from here alone, so it is never written while anything can read it, nor
resized while exported. A body that is never released (one that failed, or that a caller
kept) is simply freed when its last reference goes.

What is kept is bounded: at most :data:`MAX_KEPT` buffers and :data:`MAX_KEPT_BYTES` in all,
least recently returned dropped first, and never a buffer over :data:`MAX_KEPT_BUFFER` (a
one-off large answer does not stay resident). A forked child starts with an empty list, and a
buffer lent before the fork (a request in flight in the parent) is not taken back in it.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = [
    "MAX_KEPT",
    "MAX_KEPT_BUFFER",
    "MAX_KEPT_BYTES",
    "POOLED_MIN_BYTES",
    "BodyBuffer",
    "hand_on",
    "kept_sizes",
    "release",
    "take",
]

# Bodies up to this size are copied into bytes once read (``_http_body``): not worth a buffer.
POOLED_MIN_BYTES = 64 * 1024
MAX_KEPT = 4
MAX_KEPT_BYTES = 4 * 1024 * 1024
MAX_KEPT_BUFFER = 4 * 1024 * 1024


class BodyBuffer(bytearray):
    """A buffer of the free list; its length is its capacity (a body is a view of its start)."""

    __slots__ = ("generation", "lent")

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation  # the free list's at creation (see _after_fork)
        self.lent = True


class _FreeList:
    def __init__(self, generation: int) -> None:
        self.generation = generation
        self._lock = threading.Lock()
        self._kept: list[BodyBuffer] = []  # least recently returned first
        self._bytes = 0

    def take(self, length: int) -> BodyBuffer:
        with self._lock:
            index = self._best_fit(length)
            if index is not None:
                buffer = self._kept.pop(index)
                self._bytes -= len(buffer)
                buffer.lent = True
                return buffer
        return BodyBuffer(self.generation)

    def _best_fit(self, length: int) -> int | None:
        """The kept buffer nearest ``length`` in size, among those from half of it (grown
        once, cheaper than growing a fresh one from nothing) to twice it (a larger one is
        left for a larger body); the ones at least ``length`` long first."""
        best: tuple[bool, int] | None = None
        chosen = None
        for index, buffer in enumerate(self._kept):
            size = len(buffer)
            if length <= 2 * size and size <= 2 * length:
                rank = (size < length, abs(size - length))
                if best is None or rank < best:
                    best, chosen = rank, index
        return chosen

    def put_back(self, buffer: BodyBuffer) -> None:
        size = len(buffer)
        if buffer.generation != self.generation or not 0 < size <= MAX_KEPT_BUFFER:
            return
        with self._lock:
            if not buffer.lent:  # already back: never kept twice (two bodies in one buffer)
                return
            buffer.lent = False
            self._kept.append(buffer)
            self._bytes += size
            while len(self._kept) > MAX_KEPT or self._bytes > MAX_KEPT_BYTES:
                self._bytes -= len(self._kept.pop(0))

    def sizes(self) -> list[int]:
        with self._lock:
            return [len(buffer) for buffer in self._kept]


_free_list = _FreeList(0)


def _after_fork() -> None:
    """In a forked child: a fresh list (and lock: a parent's thread may have held the old one);
    buffers from before the fork belong to the parent's requests and are not taken back."""
    global _free_list
    _free_list = _FreeList(_free_list.generation + 1)


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork)


def take(length: int) -> BodyBuffer:
    """A buffer for a body of ``length`` bytes: a kept one near that size, or a new empty one.
    Its length is whatever it held before (grow it with ``_http11.make_room``)."""
    return _free_list.take(length)


def put_front(body: bytearray, data: memoryview) -> None:
    """Write ``data`` over the start of ``body``, growing it if it is shorter. A bytearray's
    slice assignment from a view copies the view into a temporary bytearray first; a view of
    ``body`` takes it in one copy (the megabyte bodies' first read)."""
    if len(body) >= len(data):
        with memoryview(body) as into:
            into[: len(data)] = data
    else:
        body[: len(data)] = data


def hand_on(buffer: BodyBuffer, length: int) -> memoryview:
    """The first ``length`` bytes of ``buffer``, as the one view through which the body is
    read from now on (the only thing :func:`release` takes back)."""
    with memoryview(buffer) as whole:
        return whole[:length]


def _unshared_references() -> int:
    """What ``sys.getrefcount`` reports for a buffer held by one local variable and nothing
    else, measured the way :func:`release` measures (interpreters count differently), and
    measured again at each release rather than once at import: a tracer (a debugger, a
    coverage tool) reading frame locals adds a reference, and one active at import only would
    have made a buffer still held elsewhere look unshared."""
    buffer = bytearray()
    return sys.getrefcount(buffer)


def release(body: object) -> None:
    """Done with ``body``: a view from :func:`hand_on` is released and its buffer kept for the
    next body when nothing else refers to it; anything else is left alone."""
    if type(body) is not memoryview:
        return
    try:
        buffer = body.obj
    except ValueError:  # released already
        return
    if type(buffer) is not BodyBuffer:
        return
    try:
        body.release()
    except BufferError:  # exported to a reader that still holds it: never reused
        return
    if sys.getrefcount(buffer) > _unshared_references():
        return  # another view of it, or the buffer itself, is still held somewhere
    _free_list.put_back(buffer)


def kept_sizes() -> list[int]:
    """The sizes of the buffers kept right now, least recently returned first."""
    return _free_list.sizes()
