"""Checks of an installed nomyo-native wheel, run by scripts/cross_test.py inside an emulated
arm64 Debian root (and runnable on any machine where the wheel and pyca/cryptography are
installed). The peer is tests/pyca_envelope.py, copied beside this file: the protocol written
from the spec on pyca/cryptography, sharing no code with the native core.

Prints one PASSED/FAILED line per check and a closing "N passed, N failed" line; exits 1 on
any failure.
"""

from __future__ import annotations

import json
import os
import platform
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_native
from nomyo_native import _core

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pyca_envelope  # copied beside this script

EXPECTED_MACHINE = os.environ.get("EXPECTED_MACHINE", "aarch64")
KEY_PASSWORD = "arm64-check"  # noqa: S105  (a throwaway key made for this check)
PAYLOAD = {"model": "m", "messages": [{"role": "user", "content": "héllo from arm64"}]}


def check_import() -> None:
    assert platform.machine() == EXPECTED_MACHINE, platform.machine()
    core_file = Path(_core.__file__)
    assert "site-packages" in str(core_file), core_file
    assert core_file.name == "_core.abi3.so", core_file.name
    assert _core.__version__ == nomyo_native.__version__


def check_memory_status() -> None:
    status = _core.memory_status()
    assert status["platform"] == "linux", status
    assert status["method"] == "mlock", status  # root in the emulated system: mlock works
    assert status["dump_exclusion"] is True, status  # MADV_DONTDUMP exists on Linux
    info = nomyo_native.get_memory_protection_info()
    assert info["platform"] == "linux" and info["has_memory_locking"] is True, info
    assert info["protection_level"] == "full", info


def _pem_bytes(pem: str | bytes) -> bytes:
    return pem.encode() if isinstance(pem, str) else pem


def check_keygen() -> None:
    kp = _core.ClientKeyPair.generate(2048)
    public = serialization.load_pem_public_key(_pem_bytes(kp.public_key_pem))
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert len(kp.fingerprint) > 0


def check_seal_open_against_peer() -> None:
    kp = _core.ClientKeyPair.generate(2048)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_pem = server_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Client -> peer: the core seals, pyca opens.
    sealed = _core.seal(PAYLOAD, _core.ServerPublicKey.from_pem(server_pem.decode()))
    plaintext, _key, _envelope = pyca_envelope.open_envelope(server_key, bytes(sealed))
    assert json.loads(plaintext) == PAYLOAD
    # Peer -> client: pyca seals to the client's public key, the core opens.
    client_public = serialization.load_pem_public_key(_pem_bytes(kp.public_key_pem))
    body, _ = pyca_envelope.seal_json(client_public, PAYLOAD)
    opened, _processed_at, _algorithm = _core.open(body, kp)
    assert opened == PAYLOAD
    # A tampered envelope is refused, opaquely.
    broken = json.loads(body)
    broken["encrypted_payload"]["tag"] = pyca_envelope.b64(b"\0" * 16)
    try:
        _core.open(json.dumps(broken).encode(), kp)
    except _core.CryptoError:
        return
    raise AssertionError("a tampered envelope was opened")


def check_key_files() -> None:
    kp = _core.ClientKeyPair.generate(2048)
    with tempfile.TemporaryDirectory() as tmp:
        private, public = os.path.join(tmp, "k.pem"), os.path.join(tmp, "p.pem")
        kp.save(private, public, password=KEY_PASSWORD)
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600, oct(os.stat(private).st_mode)
        again = _core.ClientKeyPair.load(private, KEY_PASSWORD)
        assert again.fingerprint == kp.fingerprint
        try:
            _core.ClientKeyPair.load(private, "wrong-" + KEY_PASSWORD)
        except _core.KeyPasswordError:
            return
        raise AssertionError("a wrong password loaded the key")


CHECKS: list[Callable[[], None]] = [
    check_import,
    check_memory_status,
    check_keygen,
    check_seal_open_against_peer,
    check_key_files,
]


def main() -> int:
    passed = failed = 0
    for check in CHECKS:
        try:
            check()
        except Exception:  # report every failure, then go on
            failed += 1
            print(f"FAILED {check.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"PASSED {check.__name__}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
