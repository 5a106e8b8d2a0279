"""The client key pair's lifecycle on disk and in memory: generate, load, save, rotate.

Every pair is a ``_core.ClientKeyPair`` handle (the private key never leaves the core's locked
memory). :func:`generate_keypair` is the one place a fresh pair comes from. A pair the user
keeps (``key_dir``, ``generate_keys(save_to_file=True)``) is never overwritten: rotated pairs
live in memory, or in ``key_rotation_dir`` when one is given. Blocking work throughout (key
generation, file I/O): async callers run it in a worker thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from nomyo_native import _core
from nomyo_native._constants import KEY_PASSWORD_ENV, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE
from nomyo_native._option_hints import option
from nomyo_native._protocol import MAX_PUBLIC_KEY_BYTES
from nomyo_native.errors import KeyFormatError, KeyLoadError, KeyPasswordError

__all__ = [
    "KeyLifecycle",
    "generate_keypair",
    "key_password",
    "load_keypair",
    "save_keypair",
]

logger = logging.getLogger("nomyo_native.client")

KEY_SIZES = (2048, 3072, 4096)


def key_password(*preferred: str | None) -> str | None:
    """The first non-empty of ``preferred``, else ``NOMYO_KEY_PASSWORD``. An empty string means
    "not given" everywhere (as an empty environment variable always did)."""
    for candidate in preferred:
        if candidate:
            return candidate
    return os.environ.get(KEY_PASSWORD_ENV) or None


def generate_keypair(bits: int) -> _core.ClientKeyPair:
    """A fresh RSA pair of ``bits`` bits, in the core's locked memory."""
    started = time.perf_counter()
    keypair = _core.ClientKeyPair.generate(bits)
    logger.debug(
        "generated %d-bit client key pair in %.0f ms", bits, (time.perf_counter() - started) * 1000
    )
    return keypair


def _explained(exc: KeyLoadError, message: str) -> KeyLoadError:
    """The core's own error (its class kept), saying where the key or its password came from:
    the option's spelling depends on the caller (Python or the CLI), which the core cannot
    know."""
    exc.args = (message,)
    return exc


def _password_hint() -> str:
    return f"the password comes from {option('key_password')}"


def _write_keypair(keypair: _core.ClientKeyPair, key_dir: Path, password: str | None) -> None:
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        keypair.save(key_dir / PRIVATE_KEY_FILE, key_dir / PUBLIC_KEY_FILE, password)
    except KeyPasswordError as exc:
        raise _explained(exc, f"{exc} ({_password_hint()})") from None


def _report_saved(key_dir: Path, password: str | None) -> None:
    if not password:
        # nomyo 0.2.9 saves without a password when none is given; so do we, but loudly.
        message = (
            f"private key saved UNENCRYPTED in {key_dir}: anyone who can read that file can "
            f"decrypt your responses. Set a password with {option('key_password')}"
        )
        warnings.warn(message, UserWarning, stacklevel=5)
        logger.warning("%s", message)
    else:
        logger.debug("key pair saved (password-protected) in %s", key_dir)


def save_keypair(keypair: _core.ClientKeyPair, key_dir: Path, password: str | None) -> None:
    """Save ``keypair`` into ``key_dir`` (files 0600, written atomically by the core)."""
    _write_keypair(keypair, key_dir, password)
    _report_saved(key_dir, password)


def save_first_keypair(keypair: _core.ClientKeyPair, key_dir: Path, password: str | None) -> bool:
    """Save the first pair into ``key_dir`` without ever replacing a private key there: False
    when one appeared meanwhile (clients in several processes starting at once).

    The pair is written into a fresh directory beside, then hard-linked into place, which fails
    if the name exists (a rename would silently replace it).
    """
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".nomyo-new-pair-", dir=key_dir))
    try:
        _write_keypair(keypair, staging, password)
        private_path = key_dir / PRIVATE_KEY_FILE
        try:
            os.link(staging / PRIVATE_KEY_FILE, private_path)
        except FileExistsError:
            return False
        except OSError:
            # A file system without hard links: the check and the rename are not atomic
            # together, but a pair already there is still never replaced knowingly.
            if private_path.exists():
                return False
            os.replace(staging / PRIVATE_KEY_FILE, private_path)
        # The public half belongs to the private key just placed.
        os.replace(staging / PUBLIC_KEY_FILE, key_dir / PUBLIC_KEY_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _report_saved(key_dir, password)
    return True


def _check_public_half(
    keypair: _core.ClientKeyPair, public_key_path: str | os.PathLike[str]
) -> None:
    with open(public_key_path, "rb") as fh:
        public_pem = fh.read(MAX_PUBLIC_KEY_BYTES + 1)
    try:
        public_fp = _core.ServerPublicKey.from_pem(public_pem).fingerprint
    except KeyFormatError as exc:
        keypair.wipe()
        raise _explained(exc, f"Failed to load public key: {exc}") from None
    if public_fp != keypair.fingerprint:
        keypair.wipe()
        raise KeyLoadError(
            f"Public key {os.fspath(public_key_path)} does not belong to the private key"
        )


def load_keypair(
    private_key_path: str | os.PathLike[str],
    public_key_path: str | os.PathLike[str] | None,
    password: str | None,
) -> _core.ClientKeyPair:
    """Load a pair (password from ``password`` or ``NOMYO_KEY_PASSWORD``); a public key file,
    when given, must belong to the private key."""
    password = key_password(password)
    started = time.perf_counter()
    # The core raises the package's classes: KeyPermissionError (an InsecureKeyFileError whose
    # message gives the chmod fix), KeyPasswordError and KeyFormatError (KeyLoadErrors).
    try:
        keypair = _core.ClientKeyPair.load(private_key_path, password)
    except KeyPasswordError as exc:
        path = os.fspath(private_key_path)
        message = f"Failed to load private key {path}: {exc} ({_password_hint()})"
        raise _explained(exc, message) from None
    except KeyFormatError as exc:
        raise _explained(exc, f"Failed to load private key: {exc}") from None
    if public_key_path is not None:
        _check_public_half(keypair, public_key_path)
    logger.debug(
        "loaded %d-bit client key pair in %.0f ms",
        keypair.bits,
        (time.perf_counter() - started) * 1000,
    )
    return keypair


class KeyLifecycle:
    """Where a client's pairs come from and go: ``key_dir`` (load, or generate and save once),
    ``key_rotation_dir`` (rotated pairs), and the directories that hold the user's own pair."""

    def __init__(
        self,
        key_size: int,
        key_dir: str | os.PathLike[str] | None,
        password: str | None,
        rotation_dir: str | os.PathLike[str] | None,
        rotation_password: str | None,
    ) -> None:
        if key_size not in KEY_SIZES:
            raise ValueError("key_size must be 2048, 3072 or 4096")
        self.key_size = key_size
        self.key_dir = Path(key_dir) if key_dir is not None else None
        self._password = password
        self._rotation_dir = Path(rotation_dir) if rotation_dir is not None else None
        self._rotation_password = rotation_password
        # Directories holding a pair the user asked for (key_dir, generate_keys' key_dir): a
        # rotation never writes there, however the rotation dir is spelled.
        self._user_key_dirs: list[Path] = [self.key_dir] if self.key_dir is not None else []
        if self._rotation_dir is not None and self.is_user_key_dir(self._rotation_dir):
            raise ValueError(
                "key_rotation_dir is key_dir: rotated pairs would overwrite the pair you keep "
                "there; give key_rotation_dir a directory of its own (or leave it out to rotate "
                "in memory only)"
            )

    def generate(
        self, save_to: str | os.PathLike[str] | None, password: str | None
    ) -> _core.ClientKeyPair:
        """``generate_keys``: a fresh pair, saved to ``save_to`` (then the user's) if given."""
        keypair = generate_keypair(self.key_size)
        if save_to is not None:
            save_keypair(keypair, Path(save_to), password)
            self._user_key_dirs.append(Path(save_to))
        return keypair

    def initial(self) -> _core.ClientKeyPair:
        """The first pair: from ``key_dir`` (load, or generate and save) or in memory."""
        if self.key_dir is None:
            return generate_keypair(self.key_size)
        private_path = self.key_dir / PRIVATE_KEY_FILE
        public_path = self.key_dir / PUBLIC_KEY_FILE
        password = key_password(self._password)
        if private_path.exists():
            return load_keypair(
                private_path, public_path if public_path.exists() else None, password
            )
        keypair = generate_keypair(self.key_size)
        if save_first_keypair(keypair, self.key_dir, password):
            return keypair
        # Another process saved its pair there first: that one is the user's pair now (its
        # public half may still be on its way: the private key alone is loaded).
        keypair.wipe()
        return load_keypair(private_path, None, password)

    def rotated(self) -> _core.ClientKeyPair:
        """A fresh pair, saved only to ``key_rotation_dir``. ``key_dir`` holds the user's pair
        and is never overwritten: a client that rotated away from it loads it again on its
        next start, as intended."""
        keypair = generate_keypair(self.key_size)
        if self._rotation_dir is None:
            return keypair
        if self.is_user_key_dir(self._rotation_dir):
            # Became one after construction (generate_keys saved there, or a symlink): the
            # user's files win; the new pair lives in memory only.
            logger.warning(
                "rotated key pair not saved: key_rotation_dir %s holds your own key pair",
                self._rotation_dir,
            )
            return keypair
        password = key_password(self._rotation_password, self._password)
        save_keypair(keypair, self._rotation_dir, password)
        return keypair

    def is_user_key_dir(self, directory: Path) -> bool:
        """Whether ``directory`` is (by path or, when both exist, by inode) one the user keeps
        a pair in."""
        resolved = os.path.realpath(directory.expanduser())
        for user_dir in self._user_key_dirs:
            if os.path.realpath(user_dir.expanduser()) == resolved:
                return True
            try:
                if os.path.samefile(user_dir.expanduser(), directory.expanduser()):
                    return True
            except OSError:
                continue  # one of them does not exist yet: the path comparison decided
        return False
