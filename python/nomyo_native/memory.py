"""Caller-facing secure memory API (the names of nomyo 0.2.9's ``SecureMemory`` module).

The library's own secrets never reach Python: they live in the core's locked buffers. This module
is for the *caller's* sensitive bytes: ``secure_bytearray(data)`` copies them into a bytearray that
the core locks in RAM (mlock), excludes from core dumps and wipes on exit, also on exceptions.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from types import TracebackType
from typing import Any, cast

from nomyo_native import _core
from nomyo_native.types import MemoryProtectionInfo, ProtectionInfo

__all__ = [
    "MemoryProtectionLevel",
    "SecureBuffer",
    "SecureMemory",
    "disable_secure_memory",
    "enable_secure_memory",
    "get_memory_protection_info",
    "secure_bytearray",
    "secure_bytes",
]

logger = logging.getLogger(__name__)

_state_lock = threading.Lock()
_enabled = True


def _is_enabled() -> bool:
    return _enabled


class SecureBuffer:
    """A bytearray copy of ``data``, locked by the core while held and wiped by ``zero()``.

    When ``data`` is a bytearray, the caller's copy is wiped once it has been copied, so the
    secret exists only in this buffer. ``secure_memory`` is accepted for signature
    compatibility with nomyo 0.2.9 and ignored: the core is the single memory backend.
    """

    def __init__(self, data: bytes | bytearray | memoryview, secure_memory: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"SecureBuffer needs bytes or bytearray, not {type(data).__name__}")
        del secure_memory
        self._data = bytearray(data)
        self._size = len(self._data)
        self._lock: _core.BufferLock | None = None
        if isinstance(data, bytearray):
            _core.wipe(data)

    @property
    def data(self) -> bytearray:
        """The protected bytes (mutable; do not resize while locked)."""
        return self._data

    @property
    def address(self) -> int:
        """Address of the first byte (0 for an empty buffer)."""
        if self._size == 0:
            return 0
        view = (ctypes.c_char * self._size).from_buffer(self._data)
        try:
            return ctypes.addressof(view)
        finally:
            del view

    @property
    def size(self) -> int:
        return self._size

    @property
    def locked(self) -> bool:
        """True while the pages are locked in RAM."""
        return self._lock is not None and self._lock.locked

    def lock(self) -> bool:
        """Lock the buffer in RAM; False when locking is disabled or unavailable."""
        if self._lock is not None:
            return self._lock.locked
        if not _is_enabled() or self._size == 0:
            return False
        self._lock = _core.BufferLock(self._data)
        return self._lock.locked

    def unlock(self) -> bool:
        """Release the lock (does not wipe)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return True

    def zero(self) -> None:
        """Wipe the contents in a way the optimizer keeps."""
        if self._lock is not None:
            self._lock.wipe()
        else:
            _core.wipe(self._data)

    def __enter__(self) -> SecureBuffer:
        self.lock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.zero()
        finally:
            self.unlock()

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        """An immutable copy that cannot be wiped: avoid for secrets."""
        return bytes(self._data)

    def __repr__(self) -> str:
        return f"<SecureBuffer size={self._size} locked={self.locked}>"


class MemoryProtectionLevel(Enum):
    """What protection caller buffers get (nomyo 0.2.9's names and values)."""

    NONE = "none"
    ZEROING_ONLY = "zeroing_only"
    FULL = "full"


class SecureMemory:
    """nomyo 0.2.9's memory handler, on the core: locking by the core's ``BufferLock``, wiping
    by the core's ``wipe`` (no ctypes calls into libc from Python).

    Prefer :func:`secure_bytearray` or :class:`SecureBuffer`; this class exists so that code
    written against nomyo's ``SecureMemory`` keeps working.
    """

    def __init__(self, enable: bool = True) -> None:
        self.enabled = enable
        self.platform = sys.platform
        self.has_mlock = enable and _core.memory_status().get("method") == "mlock"
        self.has_secure_zero = enable
        if not enable:
            self.protection_level = MemoryProtectionLevel.NONE
        elif self.has_mlock:
            self.protection_level = MemoryProtectionLevel.FULL
        else:
            self.protection_level = MemoryProtectionLevel.ZEROING_ONLY
        # Locks by id() of the locked bytearray, released by unlock_memory().
        self._locks: dict[int, _core.BufferLock] = {}
        self._locks_guard = threading.Lock()

    def create_secure_buffer(self, data: bytes | bytearray) -> SecureBuffer:
        return SecureBuffer(data, self)

    def lock_memory(self, data: bytearray) -> bool:
        """Lock ``data`` in RAM until :meth:`unlock_memory`; False when not possible."""
        if not isinstance(data, bytearray) or not data or not self.enabled:
            return False
        with self._locks_guard:
            if id(data) in self._locks:
                return self._locks[id(data)].locked
            lock = _core.BufferLock(data)
            if not lock.locked:
                lock.release()
                return False
            self._locks[id(data)] = lock
            return True

    def unlock_memory(self, data: bytearray) -> bool:
        if not isinstance(data, bytearray):
            return False
        with self._locks_guard:
            lock = self._locks.pop(id(data), None)
        if lock is None:
            return False
        lock.release()
        return True

    def zero_memory(self, data: bytearray) -> None:
        """Wipe ``data`` in place (bytes are immutable and cannot be wiped)."""
        if not self.enabled or not isinstance(data, bytearray) or not data:
            return
        _core.wipe(data)

    def get_protection_info(self) -> ProtectionInfo:
        return {
            "enabled": self.enabled,
            "platform": self.platform,
            "protection_level": self.protection_level.value,
            "has_memory_locking": self.has_mlock,
            "has_secure_zeroing": self.has_secure_zero,
            "supports_full_protection": self.protection_level is MemoryProtectionLevel.FULL,
            "page_size": mmap.PAGESIZE,
        }


_secure_memory: SecureMemory | None = None


def _get_secure_memory() -> SecureMemory:
    """The process-wide :class:`SecureMemory` (nomyo 0.2.9 has this helper)."""
    global _secure_memory
    with _state_lock:
        if _secure_memory is None:
            _secure_memory = SecureMemory()
        return _secure_memory


@contextmanager
def secure_bytearray(
    data: bytes | bytearray | memoryview, lock: bool = True
) -> Iterator[SecureBuffer]:
    """Protect ``data`` for the duration of a ``with`` block; wiped on exit and on exceptions."""
    buf = SecureBuffer(data)
    try:
        if lock:
            mode = "locked" if buf.lock() else "wipe-only"
            logger.debug("secure buffer of %d bytes: %s", buf.size, mode)
        yield buf
    finally:
        try:
            buf.zero()
        finally:
            buf.unlock()


@contextmanager
def secure_bytes(data: bytes, lock: bool = True) -> Iterator[SecureBuffer]:
    """Deprecated alias of :func:`secure_bytearray` (an immutable ``bytes`` original cannot be
    wiped; pass a bytearray)."""
    warnings.warn(
        "secure_bytes() is deprecated; use secure_bytearray() with a bytearray",
        DeprecationWarning,
        stacklevel=3,
    )
    with secure_bytearray(data, lock) as buf:
        yield buf


def get_memory_protection_info() -> MemoryProtectionInfo:
    """The keys nomyo 0.2.9 reports, plus the core's live status.

    ``protection_level`` is ``"full"`` only while everything holding a secret is locked in RAM,
    ``"partial"`` when part of it is not (``bytes_unlocked`` says how much), ``"zeroing_only"``
    when nothing could be locked, ``"none"`` after ``disable_secure_memory()``."""
    status = _core.memory_status()
    enabled = _is_enabled()
    can_lock = status.get("method") == "mlock"
    # "full" only while every secret the core holds (its buffers and aws-lc's heap, where the
    # private key lives) is locked; "partial" when some of it is not (RLIMIT_MEMLOCK reached,
    # or a fork child that could not lock again what it inherited).
    if not enabled:
        level = "none"
    elif can_lock and status["bytes_unlocked"] == 0:
        level = "full"
    elif status["bytes_locked"] > 0:
        level = "partial"
    else:
        level = "zeroing_only"
    info: dict[str, Any] = {
        "enabled": enabled,
        "platform": sys.platform,
        "protection_level": level,
        "has_memory_locking": enabled and can_lock,
        "has_secure_zeroing": True,
        "supports_full_protection": level == "full",
        "page_size": mmap.PAGESIZE,
        "backend": "nomyo-native core",
    }
    # Every live counter of the core (method, bytes locked and pooled, failures, ...), so new
    # ones reach users without a change here; nomyo's own "platform" key keeps its meaning.
    info.update((key, value) for key, value in status.items() if key != "platform")
    # The cast is checked by tests/declared_types/test_types.py: the core's keys are the ones
    # CoreMemoryStatus declares.
    return cast(MemoryProtectionInfo, info)


def disable_secure_memory() -> None:
    """Stop locking caller buffers (wiping stays on). The library's own secrets are always
    held by the core in locked memory; this switch cannot expose them."""
    global _enabled
    with _state_lock:
        _enabled = False
    logger.info("secure memory locking of caller buffers disabled")


def enable_secure_memory() -> None:
    """Re-enable locking of caller buffers."""
    global _enabled
    with _state_lock:
        _enabled = True
    logger.info("secure memory locking of caller buffers enabled")
