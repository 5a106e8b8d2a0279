"""Client key lifecycle: the current key pair, leases held by in-flight requests, rotation.

A request leases the key pair it sends in ``X-Public-Key`` and decrypts its response with that
same pair, even if a rotation installs a new one meanwhile. A retired pair is wiped (its private
key zeroed in the core) as soon as its last lease is returned.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar, cast

from nomyo_native import _core
from nomyo_native._keygen import PendingKeyPair
from nomyo_native.errors import ClientClosedError

__all__ = ["KeyRing"]

_Lock = TypeVar("_Lock")

logger = logging.getLogger("nomyo_native.client")


class KeyRing:
    """Holds the client's current ``_core.ClientKeyPair`` and retires replaced ones safely."""

    def __init__(
        self, rotation_interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rotation_interval < 0:
            raise ValueError("key_rotation_interval must be >= 0 (0 disables rotation)")
        self.rotation_interval = float(rotation_interval)
        self._clock = clock
        self._lock = threading.Lock()
        # Held while a pair is made (seconds for 4096 bits): one pair per first use or
        # rotation, however many threads or event loops ask at once.
        self._making = threading.Lock()
        self._current: _core.ClientKeyPair | None = None
        self._rotatable = False
        self._installed_at = 0.0
        self._leases: dict[int, int] = {}
        self._retired: dict[int, _core.ClientKeyPair] = {}
        self._disposed = False
        # The first pair, generated in the background (see nomyo_native._keygen).
        self._pending: PendingKeyPair | None = None
        # One creation lock per event loop (an asyncio lock belongs to one loop).
        self._creation_locks: weakref.WeakKeyDictionary[object, object] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def current(self) -> _core.ClientKeyPair | None:
        return self._current

    def creation_lock(self, loop: object, make: Callable[[], _Lock]) -> _Lock:
        """The lock that serialises key creation on ``loop`` (made by ``make`` on first use).
        It belongs to the ring, so every client sharing it (siblings for other base URLs too)
        generates one pair on first use or rotation, not one each."""
        with self._lock:
            lock = self._creation_locks.get(loop)
            if lock is None:
                lock = self._creation_locks[loop] = make()
            # Only ``make`` fills an entry, and every caller passes the same kind of lock.
            return cast(_Lock, lock)

    def pregenerate(self, bits: int) -> None:
        """Start generating the first pair in the background (a ring with no pair yet)."""
        with self._lock:
            if self._pending is None and self._current is None and not self._disposed:
                self._pending = PendingKeyPair(bits)
                # A client dropped before its first request wastes no generation.
                weakref.finalize(self, self._pending.discard)

    def take_pregenerated(self, bits: int) -> _core.ClientKeyPair | None:
        """The background pair if one was started for ``bits`` bits (waiting for it), once."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending.take(bits) if pending is not None else None

    def _discard_pregenerated(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.discard()

    def install(
        self, keypair: _core.ClientKeyPair, *, rotatable: bool, only_if_empty: bool = False
    ) -> None:
        """Make ``keypair`` current; the previous one is wiped once no request uses it. A pair
        still being generated in the background is discarded (load_keys, generate_keys).

        ``only_if_empty`` (the first use's pair): when a pair was installed meanwhile (by
        load_keys or generate_keys while the first pair was being made), that one stays and
        ``keypair`` is wiped.

        After :meth:`wipe_all` the ring stays disposed: ``keypair`` is wiped and refused, so a
        sibling client cannot bring a disposed ring back to life.
        """
        self._discard_pregenerated()
        with self._lock:
            if self._disposed:
                keypair.wipe()
                raise ClientClosedError("the client was disposed: its keys are wiped")
            previous = self._current
            superseded = only_if_empty and previous is not None
            if not superseded:
                self._current = keypair
                self._rotatable = rotatable
                self._installed_at = self._clock()
                if previous is not None and previous is not keypair:
                    self._retire_locked(previous)
        if superseded:
            keypair.wipe()

    def refresh(
        self,
        initial: Callable[[], _core.ClientKeyPair],
        rotated: Callable[[], _core.ClientKeyPair],
    ) -> None:
        """Install ``initial()`` when there is no pair, ``rotated()`` when rotation is due
        (blocking: async callers run this in a worker thread)."""
        with self._making:
            if self._disposed:
                # Not even generated: a pair made for a disposed ring would only be wiped.
                raise ClientClosedError("the client was disposed: its keys are wiped")
            if self._current is None:
                self.install(initial(), rotatable=True, only_if_empty=True)
            elif self.rotation_due():
                self.install(rotated(), rotatable=True)
                logger.info("client key pair rotated")

    def rotation_due(self) -> bool:
        with self._lock:
            return (
                self._current is not None
                and self._rotatable
                and self.rotation_interval > 0
                and self._clock() - self._installed_at >= self.rotation_interval
            )

    def acquire(self) -> _core.ClientKeyPair:
        """Lease the current key pair for one request; give it back with :meth:`release`."""
        with self._lock:
            keypair = self._current
            if keypair is None:
                # Only dispose() empties an installed ring while requests may still arrive.
                raise ClientClosedError("no client key pair: the client was disposed")
            self._leases[id(keypair)] = self._leases.get(id(keypair), 0) + 1
            return keypair

    def release(self, keypair: _core.ClientKeyPair) -> None:
        with self._lock:
            count = self._leases.get(id(keypair), 0) - 1
            if count > 0:
                self._leases[id(keypair)] = count
                return
            self._leases.pop(id(keypair), None)
            retired = self._retired.pop(id(keypair), None)
        if retired is not None:
            retired.wipe()

    def wipe_all(self) -> None:
        """Zero every key pair now (dispose): in-flight requests will fail to decrypt."""
        self._discard_pregenerated()
        with self._lock:
            self._disposed = True
            doomed = list(self._retired.values())
            if self._current is not None:
                doomed.append(self._current)
            self._current = None
            self._retired.clear()
            self._leases.clear()
        for keypair in doomed:
            keypair.wipe()

    @property
    def live_count(self) -> int:
        """Key pairs not yet wiped (current plus retired ones still leased)."""
        with self._lock:
            return len(self._retired) + (1 if self._current is not None else 0)

    def _retire_locked(self, keypair: _core.ClientKeyPair) -> None:
        if self._leases.get(id(keypair), 0) > 0:
            self._retired[id(keypair)] = keypair
        else:
            keypair.wipe()
