"""Which of the core's calls the async client runs on the event loop thread itself.

The core's calls run on worker threads so that the event loop keeps serving other tasks while
they work, and so that concurrent requests seal and open on several cores at once. A hand-off
to a worker and back costs CPU (queue, a thread wake-up, the loop's self-pipe wake-up: on a
virtual machine each wake-up of a sleeping thread on another core is an interrupt between
cores), ~0.1-0.2 ms per request measured here, and wall time (the worker and then the loop
must be scheduled: ~0.4 ms here, several ms on a busy machine). Two rules:

- **Any request:** a payload whose JSON provably fits in :data:`INLINE_SEAL_MAX_BYTES` is
  sealed inline (the RSA-OAEP wrap with the server's *public* key, ~60 us, plus ~0.5 us per
  KiB): the loop stalls for less than a hand-off costs.
- **A lone request** (no other request of the library's clients is in flight on this event
  loop, and the client's ``crypto_on_loop`` is on, the default): there is no other request
  to overlap with, so its seal (JSON of at most :data:`LONE_SEAL_MAX_BYTES` at worst: ~0.4-0.7
  ms per MiB of plain text, up to ~6 ms per MiB of text JSON must escape) and the first half
  of its open (an envelope of at most :data:`LONE_OPEN_MAX_BYTES`: the RSA-4096 unwrap with
  the client's private key, ~1.4 ms, plus ~0.3 ms per MiB of base64 and AES-GCM) run inline
  too: a stall of ~1.5 ms for a small request instead of two hand-offs.
  The open's second half builds the answer's objects, and what it builds is the server's: an
  ordinary answer costs ~0.5-1.5 ms per MiB, a hostile one ~5-190 ms per MiB (strings of
  nothing but escapes such as ``\"``, lists of empty lists, integers of thousands of digits).
  So the first half also counts a bound of the build's work (containers, separators,
  backslashes, long numbers' digits: ``_core.OpenedEnvelope.build_cost``), and the build
  runs inline only when that is at most :data:`LONE_BUILD_MAX_COST` and the plaintext at most
  :data:`LONE_BUILD_MAX_BYTES`: text the count does not see (raw UTF-8 of mixed scripts, the
  dearest) is built at ~1-1.5 ms per MiB, so a stall of ~3 ms at most, whatever the server
  sent. An answer past either bound whose structure alone is within the cost
  (``structure_cost``: the count without backslashes), whose strings are what make it dear
  (a server that escapes non-ASCII text writes an escape every few bytes; or long ones), is
  built inline within :data:`LONE_BUILD_BUDGET`: the reader looks at the clock every 64 KiB
  and inside long strings, and does not begin a long string whose worst case (or, for an
  escaped one, whose usual pace) does not fit in the time left; when it gives up, what it built
  is dropped and the plaintext, never decoded in place by such a build, goes to a worker.
  Otherwise the build runs on a worker, where the reader lets the GIL go every 5 ms, so the
  loop gets its turns (longest gap with a 4 MiB hostile answer 311-367 ms before, 49-70
  ms after: CPython's garbage collector, which the build's million allocations set off, holds
  the GIL for tens of ms at a time). The seal's JSON writer, over the caller's own payload,
  holds the GIL throughout.
  While a second request is in flight, both go to workers (several cores, and the loop keeps
  reading the other's bytes). An application whose loop must never stall for a millisecond
  passes ``crypto_on_loop=False``: then only the small seal runs inline.

:func:`json_size_bound` never walks more than a fixed number of values, so deciding costs a
few microseconds at most.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nomyo_native import _core, _protocol
from nomyo_native._workers import run_blocking

__all__ = [
    "INLINE_SEAL_MAX_BYTES",
    "LONE_BUILD_BUDGET",
    "LONE_BUILD_MAX_BYTES",
    "LONE_BUILD_MAX_COST",
    "LONE_OPEN_MAX_BYTES",
    "LONE_SEAL_MAX_BYTES",
    "InFlight",
    "LoopCalls",
    "in_flight_here",
    "json_size_bound",
    "seals_inline",
]

INLINE_SEAL_MAX_BYTES = 16 * 1024
LONE_SEAL_MAX_BYTES = 8 * 1024 * 1024
LONE_OPEN_MAX_BYTES = 4 * 1024 * 1024
# Below what LONE_OPEN_MAX_BYTES lets through (a 4 MiB envelope holds 3 MiB of plaintext).
LONE_BUILD_MAX_BYTES = 2 * 1024 * 1024
# Containers and separators (a chat answer has ~50; one with logprobs or many tool calls
# thousands) cost ~0.1 us each to build, escapes 0.01-0.02 us (counted alike: the bound errs
# on the worker's side for answers of escaped text); a 4300-digit integer, the reader's
# longest whatever the interpreter's limit, ~75 us.
LONE_BUILD_MAX_COST = 4096
# Seconds a lone request's build may take on the loop thread when its strings are what the cost
# counts (escapes) or are long: the reader looks at the clock as it goes and hands the build
# to a worker past this (overrunning it by ~0.5 ms at most).
LONE_BUILD_BUDGET = 0.004
# Values (strings, numbers, containers, keys) looked at before giving up: enough for a chat of
# a dozen messages, and for a lone request's of some fifty (~0.1 ms of walking at most).
_MAX_ENTRIES = 64
_LONE_MAX_ENTRIES = 256
# A character in JSON: \u00XX for a control character is 6 bytes; a character beyond the BMP
# written as an escaped surrogate pair is 12.
_ASCII_CHAR_BYTES = 6
_ANY_CHAR_BYTES = 12
# Longest JSON of a float (repr: sign, 17 digits, point, exponent) and of a 64-bit integer.
_FLOAT_BYTES = 24
_INT_BYTES = 20
_INT_RANGE = range(-(2**63), 2**64)


def seals_inline(payload: dict[str, Any]) -> bool:
    """True when ``payload``'s JSON is provably at most :data:`INLINE_SEAL_MAX_BYTES`."""
    return json_size_bound(payload) is not None


# Requests in flight per event loop (by the loop's id), across every client of the library on
# it: a loop's entry is only ever touched from that loop's thread, and removed at zero.
_in_flight: dict[int, int] = {}


def in_flight_here() -> int:
    """The library's requests in flight on the running event loop."""
    return _in_flight.get(id(asyncio.get_running_loop()), 0)


class InFlight:
    """Counts one request in flight on the running loop while its ``with`` block runs."""

    __slots__ = ("_loop",)

    def __enter__(self) -> None:
        self._loop = loop = id(asyncio.get_running_loop())
        _in_flight[loop] = _in_flight.get(loop, 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        loop = self._loop
        left = _in_flight[loop] - 1
        if left:
            _in_flight[loop] = left
        else:
            del _in_flight[loop]


class LoopCalls:
    """Where one async client's core calls run, from its ``crypto_on_loop`` option and the
    library's requests in flight on the running loop (each counted by :meth:`counted`)."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @staticmethod
    def counted() -> InFlight:
        """A request's span in flight: ``with loop_calls.counted(): ...`` on the loop."""
        return InFlight()

    def _lone(self) -> bool:
        return self.enabled and in_flight_here() <= 1

    def seal_payload_here(self, payload: dict[str, Any]) -> bool:
        """Whether ``payload`` is sealed on the loop thread (asked at each attempt: the
        caller's payload may grow between attempts)."""
        if self._lone():  # the lone bounds hold the small ones: one walk either way
            return json_size_bound(payload, LONE_SEAL_MAX_BYTES, _LONE_MAX_ENTRIES) is not None
        return json_size_bound(payload) is not None

    def seal_bytes_here(self, plaintext_bytes: int) -> bool:
        """Whether a plaintext of ``plaintext_bytes`` the caller seals is sealed here."""
        limit = LONE_SEAL_MAX_BYTES if self._lone() else INLINE_SEAL_MAX_BYTES
        return plaintext_bytes <= limit

    async def open(
        self, body: bytes | bytearray | memoryview, payload_id: str, keypair: _core.ClientKeyPair
    ) -> dict[str, Any]:
        """``_protocol.open_response`` of a received answer, each half where the rules above
        put it (``body`` is done with once this returns)."""
        if not self.open_here(len(body)):
            return await run_blocking(_protocol.open_response, body, payload_id, keypair)
        opened = _protocol.decrypt_response(body, keypair, LONE_BUILD_MAX_COST)
        if self.build_here(opened):
            return _protocol.build_response(opened, payload_id)
        if opened.structure_cost <= LONE_BUILD_MAX_COST:
            # Its strings make it dear (long ones, or escapes): built here if that ends within
            # the budget, else, the plaintext untouched, on a worker.
            answer = _protocol.build_response_within(opened, payload_id, LONE_BUILD_BUDGET)
            if answer is not None:
                return answer
        return await run_blocking(_protocol.build_response, opened, payload_id)

    def open_here(self, envelope_bytes: int) -> bool:
        """Whether a response envelope of ``envelope_bytes`` is decrypted on the loop thread
        (then :meth:`build_here` says where its payload is built; else both run on a
        worker)."""
        return self._lone() and envelope_bytes <= LONE_OPEN_MAX_BYTES

    @staticmethod
    def build_here(opened: _core.OpenedEnvelope) -> bool:
        """Whether the payload of an envelope decrypted on the loop thread is built there too."""
        return (
            opened.build_cost <= LONE_BUILD_MAX_COST
            and opened.plaintext_bytes <= LONE_BUILD_MAX_BYTES
        )


def json_size_bound(
    payload: object, limit: int = INLINE_SEAL_MAX_BYTES, max_entries: int = _MAX_ENTRIES
) -> int | None:
    """An upper bound of the bytes of ``payload`` as JSON, or None when it is above ``limit``,
    has more than ``max_entries`` values, or holds a value whose size is not known at a glance
    (a subclass, a huge integer, anything the core would refuse)."""
    bound = _Bound(limit, max_entries)
    return bound.total if bound.add(payload) else None


class _Bound:
    def __init__(self, limit: int, max_entries: int) -> None:
        self.limit = limit
        self.max_entries = max_entries
        self.total = 0
        self.entries = 0

    def add(self, value: object) -> bool:
        self.entries += 1
        if self.entries > self.max_entries:
            return False
        if type(value) is str:
            per_char = _ASCII_CHAR_BYTES if value.isascii() else _ANY_CHAR_BYTES
            self.total += 2 + per_char * len(value)
        elif type(value) is bool or value is None:
            self.total += 5
        elif type(value) is int:
            if value not in _INT_RANGE:
                return False
            self.total += _INT_BYTES
        elif type(value) is float:
            self.total += _FLOAT_BYTES
        elif type(value) is dict:
            return self._add_dict(value)
        elif type(value) is list or type(value) is tuple:
            return self._add_items(value)
        else:
            return False
        return self.total <= self.limit

    def _add_dict(self, value: dict[object, object]) -> bool:
        self.total += 2  # braces
        for key, item in value.items():
            self.total += 2  # colon and comma
            # A key that is not a str is written as a quoted string of its JSON.
            self.total += 2
            if not (self.add(key) and self.add(item)):
                return False
        return self.total <= self.limit

    def _add_items(self, value: list[object] | tuple[object, ...]) -> bool:
        self.total += 2  # brackets
        for item in value:
            self.total += 1  # comma
            if not self.add(item):
                return False
        return self.total <= self.limit
