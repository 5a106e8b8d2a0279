"""The trust-on-first-use pin file: server origin -> server key fingerprint, shared safely.

Several clients, in several processes, may pin servers in one file at the same time. Every
read-check-write runs under an exclusive lock on a lock file beside the pin file
(``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), and the file is replaced atomically,
so no pin is ever lost and no reader sees half a file.

Pins are keyed by the normalized origin of the base URL (scheme, IDNA host in lower case, IPv6
in brackets, no default port, path without a trailing slash), so that two spellings of one
server share one pin. Files written with the earlier raw-URL keys are still honoured: their
keys are normalized when read, and the file is rewritten with normalized keys on the next
write. Ignoring an old pin would silently re-pin, which is exactly what pinning prevents.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from nomyo_native._trust import normalize_fingerprint
from nomyo_native.errors import SecurityError

__all__ = ["PinFile", "normalize_fingerprint", "normalize_origin"]

logger = logging.getLogger(__name__)

_MAX_PIN_FILE_BYTES = 4 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Threads of one process: flock is per open file description, but one lock costs nothing and
# also covers platforms where a process's own locks do not exclude each other.
_THREAD_LOCK = threading.Lock()


def normalize_origin(url: str) -> str:
    """``scheme://host[:port][/path]`` with the host lower-cased and IDNA-encoded, IPv6 in
    brackets, the scheme's default port dropped and no trailing slash; no query or fragment.

    Raises ``ValueError`` for a URL without an http(s) scheme and a host.
    """
    try:
        parsed = httpx2.URL(url.strip())
        host = parsed.raw_host.decode("ascii").lower()
    except (httpx2.InvalidURL, UnicodeError) as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError("an origin needs an http(s) scheme and a host")
    if ":" in host:
        host = f"[{ipaddress.IPv6Address(host.split('%', 1)[0]).compressed}]"
    # httpx2 drops a default port only when the scheme was written in lower case.
    default_port = _DEFAULT_PORTS[parsed.scheme]
    port = f":{parsed.port}" if parsed.port not in (None, default_port) else ""
    path = parsed.raw_path.decode("ascii").split("?", 1)[0].rstrip("/")
    return f"{parsed.scheme}://{host}{port}{path}"


class PinFile:
    """One pin file. :meth:`check` records a first fingerprint and refuses a changed one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def check(self, url: str, fingerprint: str) -> None:
        """Trust on first use: record ``fingerprint`` for ``url``'s origin, or raise
        :class:`SecurityError` if a different one is recorded."""
        origin = normalize_origin(url)
        with _THREAD_LOCK, self._exclusive():
            pins, legacy = self._read()
            known = pins.get(origin)
            if known is not None:
                if known != fingerprint:
                    raise SecurityError(
                        f"Server public key fingerprint {fingerprint} differs from {known} "
                        f"recorded in {self.path} for {origin}: refusing (the key changed, or "
                        "someone is in the middle). If the server's key really changed, remove "
                        f"that line from {self.path} to pin the new one."
                    )
                if legacy:
                    self._write(pins)  # migrate raw-URL keys while we hold the lock
                return
            pins[origin] = fingerprint
            self._write(pins)
        logger.info("pinned server key %s for %s in %s", fingerprint, origin, self.path)

    def pinned(self, url: str) -> str | None:
        """The fingerprint recorded for ``url``'s origin, if any."""
        origin = normalize_origin(url)
        with _THREAD_LOCK, self._exclusive():
            pins, _legacy = self._read()
        return pins.get(origin)

    # ---- file ----------------------------------------------------------------------------

    def _read(self) -> tuple[dict[str, str], bool]:
        """The pins by normalized origin, and whether any key was not yet normalized."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(_MAX_PIN_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}, False
        if len(raw) > _MAX_PIN_FILE_BYTES:
            raise SecurityError(f"pin file {self.path} is larger than 4 MiB")
        try:
            loaded = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise SecurityError(f"pin file {self.path} is not valid JSON") from exc
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise SecurityError(f"pin file {self.path} must map URLs to fingerprints")
        pins: dict[str, str] = {}
        legacy = False
        for key, value in loaded.items():
            try:
                origin = normalize_origin(key)
                fingerprint = normalize_fingerprint(value)
            except ValueError as exc:
                raise SecurityError(f"pin file {self.path}: entry {key!r}: {exc}") from None
            legacy |= origin != key or fingerprint != value
            previous = pins.setdefault(origin, fingerprint)
            if previous != fingerprint:
                # Two spellings of one server pinned to different keys: which one is right
                # cannot be decided here, and guessing could unpin a genuine key.
                raise SecurityError(
                    f"pin file {self.path} pins {origin} (written as several URLs) to different "
                    f"keys {previous} and {fingerprint}: remove the wrong entry"
                )
        return pins, legacy

    def _write(self, pins: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(pins, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); Windows has no directory handles to sync."""
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int) -> None:
        # LK_LOCK gives up after about ten seconds; a pin check holding it that long is stuck.
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                time.sleep(0.05)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
