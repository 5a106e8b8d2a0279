"""A client's first key pair, generated in the background while the application starts up.

RSA-4096 key generation costs about half a second of CPU. A client created with no key source
(no ``key_dir``, no keys loaded) would pay it on its first request; instead, creating it starts
a :class:`PendingKeyPair` on a daemon thread (the core releases the GIL while it generates), so
an application that creates its client at start-up pays nothing on its first request. The
thread waits ``START_DELAY_S`` before it starts (unless the pair is asked for sooner), so that
``load_keys`` right after construction wastes no generation.

- The pair is the core's ``ClientKeyPair``: the private key stays in locked memory, never a
  Python object.
- It belongs to the client's key ring, which sibling clients (other base URLs) share: one pair
  for all of them.
- ``load_keys``/``generate_keys`` and ``dispose`` discard it (wiped if already generated; a
  generation still running is wiped when it ends).
- A fork child never uses its parent's pending pair: the thread does not exist there, and two
  processes must not share a private key. The child discards (wipes) what it inherited and
  generates its own on first use.
- Opt out with the client option ``background_keygen=False`` or ``NOMYO_BACKGROUND_KEYGEN=0``.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

from nomyo_native import _core, _keys

__all__ = ["BACKGROUND_KEYGEN_ENV", "START_DELAY_S", "PendingKeyPair", "background_keygen_enabled"]

logger = logging.getLogger("nomyo_native")

BACKGROUND_KEYGEN_ENV = "NOMYO_BACKGROUND_KEYGEN"
# Generation starts this long after the client is made (at once if the pair is asked for
# first): code that calls load_keys or generate_keys right after construction then costs no
# wasted half-second of CPU.
START_DELAY_S = 0.25
_OFF = frozenset({"0", "false", "no", "off"})


def background_keygen_enabled(option: bool | None) -> bool:
    """The client option if given, else the environment (on unless it says 0/false/no/off)."""
    if option is not None:
        return bool(option)
    return os.environ.get(BACKGROUND_KEYGEN_ENV, "").strip().lower() not in _OFF


class PendingKeyPair:
    """One key pair being generated on a daemon thread, handed over at most once."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._wanted = threading.Event()  # set: start now (asked for, or discarded: stop)
        self._keypair: _core.ClientKeyPair | None = None
        self._discarded = False
        # The lifecycle's generator as it is when the client is made (it also logs the time).
        self._generate_keypair = _keys.generate_keypair
        _LIVE.add(self)
        self._thread = threading.Thread(target=self._generate, name="nomyo-keygen", daemon=True)
        self._thread.start()

    def _generate(self) -> None:
        self._wanted.wait(START_DELAY_S)
        if self._discarded:
            self._done.set()
            return
        try:
            keypair: _core.ClientKeyPair | None = self._generate_keypair(self.bits)
        except Exception as exc:  # the first request generates in the foreground instead
            logger.debug("background key generation failed: %s", type(exc).__name__)
            keypair = None
        with self._lock:
            keep = not self._discarded and os.getpid() == self._owner_pid
            if keep:
                self._keypair = keypair
        if not keep and keypair is not None:
            keypair.wipe()
        self._done.set()

    def take(self, bits: int) -> _core.ClientKeyPair | None:
        """The pair (waiting for it if still running), once; None when it was discarded, this
        is a fork child of the process that started it, or ``bits`` is not its size."""
        if os.getpid() != self._owner_pid or bits != self.bits:
            self.discard()
            return None
        self._wanted.set()
        self._done.wait()
        with self._lock:
            keypair, self._keypair = self._keypair, None
            self._discarded = True
        return keypair

    def discard(self) -> None:
        """Never hand the pair over; wipe it now if generated, else when its generation ends."""
        with self._lock:
            self._discarded = True
            keypair, self._keypair = self._keypair, None
        self._wanted.set()
        if keypair is not None:
            keypair.wipe()

    @property
    def discarded(self) -> bool:
        return self._discarded

    def _after_fork_in_child(self) -> None:
        # The parent's thread may have held the lock, or an Event's inner lock (briefly, in
        # wait() and set()), at fork time: the child gets new ones. Its take() never waits.
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._done = threading.Event()
        self.discard()


_LIVE: weakref.WeakSet[PendingKeyPair] = weakref.WeakSet()


def _discard_inherited() -> None:
    for pending in list(_LIVE):
        pending._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_discard_inherited)
