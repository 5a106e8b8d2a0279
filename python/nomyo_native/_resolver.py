"""Name resolution a deadline can walk away from: ``getaddrinfo`` on a few daemon threads of
our own, waited for within the caller's time (both drivers).

``socket.getaddrinfo`` blocks in the C library with no timeout of its own: a resolver that
never answers (a dead DNS server and the resolver's retries, a stuck NSS module) holds the
thread that asked for as long as it likes. The sync driver asked in the request's thread,
outside the attempt's deadline; the async driver's ``loop.getaddrinfo`` asks in the loop's
default executor, where the deadline left a stuck thread behind that ``asyncio.run`` then
waited for at shutdown (and the application's own ``to_thread`` calls queued behind).

Here a lookup runs on one of at most :data:`MAX_THREADS` daemon threads and the caller waits
for its answer within its own time. Past that it leaves the lookup behind: a later request for
the same name and port joins the lookup still running instead of starting another, and one
nobody waits for any more is dropped before it starts. However many attempts time out, stuck
lookups hold at most :data:`MAX_THREADS` threads, and daemon threads never hold up the
interpreter's exit. Nothing is cached: each connection asks the system again (its own cache,
nscd or systemd-resolved, honours the records' lifetimes).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_THREADS", "AddressInfo", "numeric_hosts", "resolve", "resolve_async"]

# The most lookups running at once (each on a thread of its own). A client talks to one or two
# hosts; this only has to outnumber the names it resolves at the same moment, and it is the
# most threads stuck lookups can hold.
MAX_THREADS = 4
_THREAD_NAME = "nomyo-resolver"

# One entry of getaddrinfo's answer: (family, type, proto, canonname, sockaddr).
AddressInfo = tuple[Any, ...]
_Key = tuple[str, int]


class _Lookup:
    """One getaddrinfo call for ``key``, shared by everyone waiting for that name and port."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.done = threading.Event()
        self.started = False
        self.waiters = 0
        self.callbacks: list[Callable[[], None]] = []  # an async waiter's wake-up, per waiter
        self.infos: list[AddressInfo] = []
        self.error: BaseException | None = None

    def answer(self) -> list[AddressInfo]:
        """The addresses, or a copy of the lookup's error (one object raised in several threads
        at once would have its traceback rewritten under the others)."""
        if self.error is not None:
            raise copy.copy(self.error)
        return self.infos


class _Resolver:
    """The lookups waiting or running, and the threads running them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._lookups: dict[_Key, _Lookup] = {}  # waiting or running
        self._waiting: deque[_Lookup] = deque()  # not started yet
        self._threads = 0

    def join(self, key: _Key, callback: Callable[[], None] | None = None) -> _Lookup:
        """The lookup for ``key`` (started if there is none), with one more waiter."""
        with self.lock:
            lookup = self._lookups.get(key)
            if lookup is None:
                lookup = self._lookups[key] = _Lookup(key)
                self._waiting.append(lookup)
                if self._threads < MAX_THREADS:
                    self._threads += 1
                    threading.Thread(target=self._work, name=_THREAD_NAME, daemon=True).start()
            lookup.waiters += 1
            if callback is not None:
                lookup.callbacks.append(callback)
            return lookup

    def leave(self, lookup: _Lookup, callback: Callable[[], None] | None = None) -> None:
        """A waiter is done with ``lookup`` (answered or gone): one nobody waits for any more
        is dropped if it has not started."""
        with self.lock:
            lookup.waiters -= 1
            if callback is not None and callback in lookup.callbacks:
                lookup.callbacks.remove(callback)
            if lookup.waiters == 0 and not lookup.started:
                self._waiting.remove(lookup)
                del self._lookups[lookup.key]

    def _work(self) -> None:
        while True:
            with self.lock:
                if not self._waiting:
                    self._threads -= 1
                    return
                lookup = self._waiting.popleft()
                lookup.started = True
            host, port = lookup.key
            try:
                lookup.infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
            except BaseException as exc:  # gaierror; UnicodeError for a name IDNA refuses
                lookup.error = exc.with_traceback(None)
            with self.lock:
                del self._lookups[lookup.key]  # the next connection asks afresh
                callbacks, lookup.callbacks = lookup.callbacks, []
                lookup.done.set()
            for callback in callbacks:
                callback()


_resolver = _Resolver()


def _forget_in_child() -> None:
    """A forked child has none of the parent's threads (nor, maybe, a free lock)."""
    global _resolver
    _resolver = _Resolver()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _numeric(host: str, port: int) -> list[AddressInfo] | None:
    """``host``'s address if it is one (an IP literal: getaddrinfo asks no one), else None."""
    try:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None


def numeric_hosts(infos: list[AddressInfo]) -> list[str]:
    """The addresses of ``infos`` as IP literals, in order, each once: what a connect given
    one as its host looks up without asking anyone (an IPv6 scope kept: ``fe80::1%eth0``)."""
    hosts: list[str] = []
    for info in infos:
        host = socket.getnameinfo(info[4], socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
        if host not in hosts:
            hosts.append(host)
    return hosts


def resolve(host: str, port: int, timeout: float | None) -> list[AddressInfo]:
    """``host``'s addresses for a TCP connection to ``port`` (``socket.create_connection``'s
    lookup), within ``timeout`` seconds: TimeoutError past it, getaddrinfo's error if it
    fails."""
    numeric = _numeric(host, port)
    if numeric is not None:
        return numeric
    resolver = _resolver
    lookup = resolver.join((host, port))
    try:
        if not lookup.done.wait(timeout):
            raise TimeoutError("name resolution timed out")
    finally:
        resolver.leave(lookup)
    return lookup.answer()


async def resolve_async(host: str, port: int) -> list[AddressInfo]:
    """:func:`resolve` for a coroutine, as long as the caller's timeout scope lets it wait
    (cancelled, it leaves the lookup behind)."""
    numeric = _numeric(host, port)
    if numeric is not None:
        return numeric
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not answered.done():
            answered.set_result(None)

    def wake() -> None:  # on the resolver's thread
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle)

    resolver = _resolver
    lookup = resolver.join((host, port), wake)
    try:
        await answered
    finally:
        resolver.leave(lookup, wake)
    return lookup.answer()
