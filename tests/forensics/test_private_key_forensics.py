"""Private-key forensics: a key loaded from ``key_dir`` leaves no PEM or DER copy, and after
``dispose()`` none of its secret numbers remain anywhere in the process.

The parent writes the key directory itself (pyca/cryptography), so it knows the secret numbers
(primes p, q and exponent d) to hunt for. While the key is in use, aws-lc legitimately holds p,
q and d as BIGNUMs (little-endian 64-bit limbs): finding them then is the positive control that
proves the scan sees key material at all. The PEM text and the PKCS#8 DER must never linger.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .harness import Examination, examine
from .scanner import supported

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(
        not supported(), reason="needs Linux /proc/PID/mem and ptrace rights over a child"
    ),
    pytest.mark.filterwarnings("ignore:KEY RECORDING IS ON:RuntimeWarning"),
]
KEY_CATEGORIES = ("pem_text", "pkcs8_der", "secret_numbers")


def _number_forms(value: int, size: int) -> list[bytes]:
    big = value.to_bytes(size, "big")
    # Both byte orders: serialized (big-endian) and BIGNUM limbs (little-endian); 48 bytes
    # from the middle are enough to be unique and survive a partial overwrite at either end.
    middle = slice(size // 2 - 24, size // 2 + 24)
    return [big[middle], big[::-1][middle]]


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory) -> tuple[Path, dict[str, list[bytes]]]:
    directory = tmp_path_factory.mktemp("client_keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private = directory / "private_key.pem"
    private.write_bytes(pem)
    private.chmod(0o600)
    (directory / "public_key.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    numbers = key.private_numbers()
    pem_lines = pem.splitlines()[1:-1]
    needles = {
        # Interior base64 lines of the PEM (each 64 characters, all secret).
        "pem_text": [pem_lines[i] for i in (3, len(pem_lines) // 2, len(pem_lines) - 3)],
        "pkcs8_der": [der[len(der) // 2 : len(der) // 2 + 48]],
        "secret_numbers": _number_forms(numbers.p, 128)
        + _number_forms(numbers.q, 128)
        + _number_forms(numbers.d, 256),
    }
    return directory, needles


def _run(recording_endpoint, key_dir, client: str, *extra: str) -> Examination:
    directory, needles = key_dir
    return examine(
        client,
        recording_endpoint.base_url,
        lambda _outcome: [],
        requests=2,
        ca=str(recording_endpoint.ca_path),
        extra_args=("--key-dir", str(directory), *extra),
        extra_needles=needles,
        label=f"{client}{' ' + ' '.join(extra) if extra else ''}",
    )


def test_loaded_key_leaves_no_pem_or_der_and_dispose_leaves_nothing(
    recording_endpoint, key_dir, capsys
) -> None:
    in_use = _run(recording_endpoint, key_dir, "ours")
    disposed = _run(recording_endpoint, key_dir, "ours", "--dispose")
    with capsys.disabled():
        print("\nprivate-key forensics (occurrences in the client process):")
        for examination in (in_use, disposed):
            counts = "  ".join(f"{c}={examination.scan.counts[c]}" for c in KEY_CATEGORIES)
            print(f"  {examination.client:<16} {counts}")
    assert in_use.outcome["ok"] == 2 and disposed.outcome["ok"] == 2
    # Positive control: the key in use is visible to the scan as aws-lc's BIGNUMs.
    assert in_use.scan.counts["secret_numbers"] >= 1
    assert in_use.scan.counts["pem_text"] == 0, in_use.scan.where("pem_text")
    assert in_use.scan.counts["pkcs8_der"] == 0, in_use.scan.where("pkcs8_der")
    found = {c: disposed.scan.counts[c] for c in KEY_CATEGORIES}
    assert found == dict.fromkeys(KEY_CATEGORIES, 0), {
        c: disposed.scan.where(c) for c in KEY_CATEGORIES
    }


@pytest.mark.reference
def test_reference_client_key_material_printed(recording_endpoint, key_dir, capsys) -> None:
    reference = _run(recording_endpoint, key_dir, "reference")
    with capsys.disabled():
        counts = "  ".join(f"{c}={reference.scan.counts[c]}" for c in KEY_CATEGORIES)
        print(f"\n  {'nomyo-0.2.9':<16} {counts}")
    assert reference.outcome["ok"] == 2, reference.outcome
