"""Issue 10 finding 9: scrypt key files. Every table the KDF allocates is bounded (256 MiB in
all, refused before anything is allocated, with a clear error), and the tables live in aws-lc's
locked heap: dump-excluded, locked where RLIMIT_MEMLOCK allows (and reported when not), wiped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ._limits import limited, run

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads Linux /proc accounting"
)

SEEDS = Path(__file__).resolve().parents[2] / "fuzz" / "seeds" / "load_key"
SEED_PASSWORD = "fuzz-password"
PASSWORD = "correct horse battery"


def scrypt_key_file(tmp_path: Path, n: int) -> Path:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    plain = tmp_path / "plain.pem"
    plain.write_bytes(
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out = tmp_path / "scrypt.pem"
    subprocess.run(
        [openssl, "pkcs8", "-topk8", "-scrypt", "-scrypt_N", str(n), "-scrypt_r", "8",
         "-scrypt_p", "1", "-in", str(plain), "-out", str(out), "-passout", f"pass:{PASSWORD}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    out.chmod(0o600)
    return out


@pytest.mark.parametrize(
    ("seed", "n", "r", "p"),
    [
        ("regress-scrypt-huge-b", 2, 65535, 512),  # B = p·r·128 = 4 GiB
        ("regress-scrypt-just-over-budget", 1 << 18, 8, 2),  # V + B + T just over
        ("regress-scrypt-wide-pr", 2, 32768, 70),  # B alone over
        ("regress-scrypt-huge-memory", 1 << 40, 8, 1),  # V = 2^50 bytes
    ],
)
def test_finding9_scrypt_tables_past_the_budget_are_refused(
    tmp_path: Path, seed: str, n: int, r: int, p: int
) -> None:
    needs = f"{-(-128 * r * (n + p + 1) // (1 << 20))} MiB"
    path = tmp_path / "key.pem"
    path.write_bytes((SEEDS / seed).read_bytes()[1:])
    path.chmod(0o600)
    # Under a 1 GiB address-space limit an attempt at any of these tables would abort.
    code = """
        import resource, sys
        from nomyo_native import _core
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            _core.ClientKeyPair.load(sys.argv[1], sys.argv[2])
        except _core.KeyFormatError as exc:
            print(json.dumps({"error": str(exc)}))
    """
    r = run(code, None, str(path), SEED_PASSWORD)
    assert "scrypt parameters are invalid" in r["error"]
    assert needs in r["error"] and "256 MiB allowed" in r["error"]
    assert SEED_PASSWORD not in r["error"]


LOAD_AND_REPORT = """
import sys
from nomyo_native import _core

before = _core.memory_status()
kp = _core.ClientKeyPair.load(sys.argv[1], sys.argv[2])
after = _core.memory_status()
print(json.dumps(dict(before=before, after=after, cap=cap_ipc_lock(), fingerprint=kp.fingerprint)))
"""


def test_finding9_scrypt_tables_are_in_the_locked_heap_and_reported(tmp_path: Path) -> None:
    # N=2^14, r=8: a 16 MiB table, which an 8 MiB RLIMIT_MEMLOCK cannot lock: the heap must
    # count it (and still work), then wipe and unmap it.
    path = scrypt_key_file(tmp_path, 1 << 14)
    r = run(LOAD_AND_REPORT, limited(8 << 20), str(path), PASSWORD)
    assert r["cap"] is False
    before, after = r["before"]["aws_lc_heap"], r["after"]["aws_lc_heap"]
    assert after["lock_failures"] >= before["lock_failures"] + 1
    assert r["after"]["lock_failures"] >= r["before"]["lock_failures"] + 1
    # Freed again: no big block is left unlocked (or at all) once the key is loaded.
    assert after["bytes_unlocked"] - after["small_blocks_unlocked"] <= (
        before["bytes_unlocked"] - before["small_blocks_unlocked"] + 256 * 1024
    )
    assert r["after"]["bytes_unlocked"] < 16 << 20
