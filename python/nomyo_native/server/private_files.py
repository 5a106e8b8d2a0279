"""Directories and files that hold the endpoint's secrets (TLS key, TPM state, key records).

One rule for all of them: a directory we keep is ours alone (0700, owned by this user, not a
symlink); a secret file is created ``O_EXCL|O_NOFOLLOW`` with mode 0600 and never overwritten;
an existing one is reused only when it is a regular file we own that nobody else can read
or write. Anything else is refused with a message that says what to fix, rather than
silently repaired: a path we did not create may be someone else's trap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Not on Windows: there the checks below that need them are skipped.
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


class UnsafePathError(Exception):
    """A path meant for secrets is a symlink, not ours, or open to other users."""


def _owned_by_us(info: os.stat_result) -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is None or info.st_uid == geteuid()


def _check_private(path: Path, info: os.stat_result, kind: str, fix: str) -> None:
    if not _owned_by_us(info):
        raise UnsafePathError(f"{kind} {path} belongs to another user; {fix}")
    if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafePathError(
            f"{kind} {path} is open to group or others (mode {stat.S_IMODE(info.st_mode):o}); {fix}"
        )


def ensure_private_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Create ``path`` 0700 (parents as needed) or check that the existing one is private.

    ``what`` names the directory in messages (e.g. ``"--tls-dir"``).
    """
    directory = Path(path)
    try:
        directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{what} {directory} is a symlink; give the real directory")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"{what} {directory} exists and is not a directory")
    _check_private(directory, info, what, "use a directory only you can access (chmod 700)")
    return directory


def create_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a new 0600 file; refuses an existing path or a symlink."""
    fd = os.open(
        path,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY,
        PRIVATE_FILE_MODE,
    )
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def open_private_append(path: str | os.PathLike[str]) -> int:
    """A new 0600 file opened for appending (the fd); refuses an existing path or a symlink."""
    return os.open(
        path,
        os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY,
        PRIVATE_FILE_MODE,
    )


def read_private_file(path: str | os.PathLike[str], what: str, limit: int = 1 << 20) -> bytes:
    """Contents of an existing file we own, 0600 or stricter, not a symlink (at most ``limit``)."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePathError(f"{what} {path} is a symlink; refusing to follow it") from None
        raise exc
    with os.fdopen(fd, "rb") as handle:
        # fstat of the opened file, so a swap between check and read changes nothing.
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePathError(f"{what} {path} is not a regular file")
        _check_private(Path(path), info, what, f"fix with: chmod 600 {path}")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafePathError(f"{what} {path} is larger than {limit} bytes")
    return data
