"""``nomyo-native keys``: generate a client key directory, or show the fingerprint of one."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomyo_native._constants import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE
from nomyo_native.cli._common import new_key_password

if TYPE_CHECKING:
    from nomyo_native._core import ClientKeyPair, ServerPublicKey

# Unix mode bits say who may read a file; on Windows st_mode says 0o666 for any writable file
# and the core checks the file's ACL when it loads a key (rust/src/keys/windows.rs).
MODE_BITS_MEAN_ACCESS = os.name == "posix"


def add_parser(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="generate a client key directory, or show the fingerprint of one",
        description=(
            "Client key directories hold private_key.pem (PKCS#8, mode 0600) and public_key.pem "
            "(mode 0644), the layout nomyo 0.2.9 uses. The password comes from "
            "NOMYO_KEY_PASSWORD (never from the command line)."
        ),
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="{generate,show}")
    actions.required = True
    generate = actions.add_parser(
        "generate",
        help="generate a key pair into DIR",
        description=(
            "Generate an RSA key pair in locked memory and save it into DIR, encrypted with "
            "NOMYO_KEY_PASSWORD (at least 8 characters). Without that variable, pass "
            "--unencrypted to save the private key in clear (not recommended)."
        ),
    )
    generate.add_argument("dir", metavar="DIR", help="key directory (created 0700 if missing)")
    generate.add_argument("--bits", type=int, choices=(2048, 3072, 4096), default=4096)
    generate.add_argument(
        "--unencrypted", action="store_true", help="allow saving without a password"
    )
    generate.add_argument(
        "--force", action="store_true", help="replace an existing private_key.pem"
    )
    show = actions.add_parser(
        "show",
        help="show the fingerprint, size and file modes of the key pair in DIR",
        description="Exit status: 0 fine, 1 the private key file is group/other accessible.",
    )
    show.add_argument("dir", metavar="DIR", help="key directory")


def _make_private_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents 0700; return the created ones, outermost first."""
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        current = current.parent
    created = []
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        created.append(directory)
    return created


def _remove_if_empty(created: list[Path]) -> None:
    for directory in reversed(created):
        with contextlib.suppress(OSError):  # not empty (someone else's files): keep it
            directory.rmdir()


def run(args: argparse.Namespace) -> int:
    from nomyo_native import _core

    key_dir = Path(args.dir)
    private_path, public_path = key_dir / PRIVATE_KEY_FILE, key_dir / PUBLIC_KEY_FILE
    try:
        if args.keys_command == "generate":
            return _generate(args, key_dir)
        public = _core.ServerPublicKey.from_pem(public_path.read_bytes())
    except (OSError, ValueError, _core.CoreError) as exc:
        print(f"nomyo-native keys: error: {exc}", file=sys.stderr)
        return 2
    return _show(public, private_path, public_path)


def _generate(args: argparse.Namespace, key_dir: Path) -> int:
    """Make a key pair in locked memory and save it into ``key_dir`` (created 0700)."""
    from nomyo_native import _core

    private_path, public_path = key_dir / PRIVATE_KEY_FILE, key_dir / PUBLIC_KEY_FILE
    password = new_key_password(args.unencrypted)
    if private_path.exists() and not args.force:
        raise ValueError(f"{private_path} exists (pass --force to replace it)")
    keypair = _core.ClientKeyPair.generate(args.bits)
    created = _make_private_dirs(key_dir)
    try:
        keypair.save(private_path, public_path, password)
    except BaseException:
        # A refused password (or a failed write) leaves no empty directory behind.
        keypair.wipe()
        _remove_if_empty(created)
        raise
    _print_generated(keypair, private_path, public_path, encrypted=password is not None)
    keypair.wipe()
    return 0


def _print_generated(
    keypair: ClientKeyPair, private_path: Path, public_path: Path, *, encrypted: bool
) -> None:
    print(f"key pair          {keypair.bits}-bit RSA")
    print(f"private key       {private_path} ({'encrypted' if encrypted else 'UNENCRYPTED'})")
    print(f"public key        {public_path}")
    print(f"fingerprint       {keypair.fingerprint}")


def _show(public: ServerPublicKey, private_path: Path, public_path: Path) -> int:
    """Print the public key's fingerprint and size and the private key file's protection;
    1 when that file is open to group or others."""
    print(f"public key        {public_path}")
    print(f"fingerprint       {public.fingerprint}")
    print(f"size              {public.bits} bits")
    if not private_path.exists():
        print(f"private key       {private_path} is missing")
        return 0
    mode = private_path.stat().st_mode & 0o777
    # Only the PEM header, read unbuffered: the rest of the file (maybe an unencrypted private
    # key) must not become a Python object.
    with open(private_path, "rb", buffering=0) as handle:
        encrypted = b"ENCRYPTED" in handle.read(64)
    access = f"mode {mode:o}" if MODE_BITS_MEAN_ACCESS else "access by ACL, checked on load"
    print(
        f"private key       {private_path} {access}, {'encrypted' if encrypted else 'UNENCRYPTED'}"
    )
    if MODE_BITS_MEAN_ACCESS and mode & 0o077:
        print(
            f"warning: {private_path} is accessible by group or others; "
            f"fix with: chmod 600 {private_path}",
            file=sys.stderr,
        )
        return 1
    return 0
