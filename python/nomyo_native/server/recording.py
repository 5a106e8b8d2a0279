"""TEST-ONLY recording of the AES keys the server saw and made, per request.

The memory-forensics suite needs to know which 32-byte keys to hunt for in a client's memory.
Recording defeats the whole point of the protocol, so it is off by default, warns loudly when
switched on, and is never enabled by anything but an explicit option.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from nomyo_native.server.private_files import open_private_append

logger = logging.getLogger("nomyo_native.server")

WARNING_TEXT = (
    "KEY RECORDING IS ON: the endpoint stores every request's and response's AES key. "
    "This is for tests only; anyone with the record can read the traffic."
)


@dataclass(frozen=True)
class RecordedKeys:
    """The keys of one exchange: the client's request key and the server's response key."""

    payload_id: str
    request_aes_key: bytes
    response_aes_key: bytes


class KeyRecorder:
    """Thread-safe list of :class:`RecordedKeys`; optionally appended to a JSON-lines file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedKeys] = []
        self.path = Path(path) if path is not None else None
        self._fd: int | None = None
        logger.warning(WARNING_TEXT)
        warnings.warn(WARNING_TEXT, RuntimeWarning, stacklevel=2)
        if self.path is not None:
            # A new 0600 file (O_EXCL|O_NOFOLLOW): the file holds keys, so an existing file or
            # a planted symlink is refused, never appended to. Kept open: no second lookup.
            try:
                self._fd = open_private_append(self.path)
            except FileExistsError:
                raise FileExistsError(
                    f"key record file {self.path} already exists; give a new path"
                ) from None

    def record(self, payload_id: str, request_aes_key: bytes, response_aes_key: bytes) -> None:
        entry = RecordedKeys(payload_id, bytes(request_aes_key), bytes(response_aes_key))
        with self._lock:
            self._records.append(entry)
            if self._fd is not None:
                line = json.dumps(
                    {
                        "payload_id": entry.payload_id,
                        "request_aes_key": entry.request_aes_key.hex(),
                        "response_aes_key": entry.response_aes_key.hex(),
                    }
                )
                os.write(self._fd, (line + "\n").encode("ascii"))

    def close(self) -> None:
        """Close the record file (the in-memory records stay readable)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @property
    def records(self) -> list[RecordedKeys]:
        with self._lock:
            return list(self._records)

    def for_payload(self, payload_id: str) -> RecordedKeys | None:
        with self._lock:
            return next((r for r in self._records if r.payload_id == payload_id), None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def read_key_record_file(path: str | os.PathLike[str]) -> list[RecordedKeys]:
    """Parse a file written by :class:`KeyRecorder` (for a server in another process)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            records.append(
                RecordedKeys(
                    item["payload_id"],
                    bytes.fromhex(item["request_aes_key"]),
                    bytes.fromhex(item["response_aes_key"]),
                )
            )
    return records
