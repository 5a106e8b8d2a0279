"""apply_attestation_policy: what "off", "auto" and "require" record and when they refuse."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest

from nomyo_native.attestation import (
    apply_attestation_policy,
    capture_baseline,
    verify_attestation,
)
from nomyo_native.errors import SecurityError

PAYLOAD_ID = "0d9f3a52-6c1e-4b7a-8f2d-3e4c5b6a7d8e"


@pytest.fixture(scope="module")
def block(tpm_quoter: Any) -> dict[str, Any]:
    return tpm_quoter.quote(PAYLOAD_ID, scheme="rsassa")


def tampered(block: dict[str, Any]) -> dict[str, Any]:
    sig = bytearray(base64.b64decode(block["signature_b64"]))
    sig[-1] ^= 0x80
    return dict(block, signature_b64=base64.b64encode(bytes(sig)).decode())


@pytest.fixture
def without_optional_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tpm2_pytss`` and ``import cryptography`` fail, as on a base install."""
    for name in [*sys.modules, "tpm2_pytss", "cryptography"]:
        if name.split(".")[0] in ("tpm2_pytss", "cryptography"):
            monkeypatch.setitem(sys.modules, name, None)


def test_off_records_nothing(block: dict[str, Any]) -> None:
    metadata = {"tpm_attestation": tampered(block)}
    apply_attestation_policy(metadata, PAYLOAD_ID, "off")
    assert "attestation_verification" not in metadata


def test_auto_records_a_bound_quote(block: dict[str, Any]) -> None:
    metadata: dict[str, Any] = {"payload_id": PAYLOAD_ID, "tpm_attestation": block}
    apply_attestation_policy(
        metadata, PAYLOAD_ID, "auto", pcr_baseline=capture_baseline(block, PAYLOAD_ID)
    )
    record = metadata["attestation_verification"]
    # Issue 11: unpinned, so bound and not verified (this asserted verified before).
    assert record["bound"] is True and record["available"] is True
    assert record["verified"] is False and record["hardware_rooted"] is False
    assert record["checks"]["pcr_baseline"]["passed"] is True
    assert record["checks"]["aik_trusted"]["passed"] is None
    assert json.loads(json.dumps(record)) == record
    assert (
        record
        == verify_attestation(
            block, PAYLOAD_ID, pcr_baseline=capture_baseline(block, PAYLOAD_ID)
        ).to_dict()
    )


def test_auto_records_a_failure_without_raising(block: dict[str, Any]) -> None:
    metadata = {"tpm_attestation": tampered(block)}
    apply_attestation_policy(metadata, PAYLOAD_ID, "auto")
    record = metadata["attestation_verification"]
    assert record["verified"] is False
    assert record["checks"]["signature"]["passed"] is False
    assert record["bound"] is False
    assert "NOT bound" in record["summary"]


def test_auto_without_a_block_records_why() -> None:
    metadata: dict[str, Any] = {}
    apply_attestation_policy(metadata, PAYLOAD_ID, "auto")
    assert metadata["attestation_verification"]["verified"] is False
    assert "no tpm_attestation" in metadata["attestation_verification"]["reason"]


def test_require_accepts_a_verified_quote(block: dict[str, Any]) -> None:
    metadata = {"tpm_attestation": block}
    pin = verify_attestation(block, PAYLOAD_ID).aik_fingerprint
    apply_attestation_policy(metadata, PAYLOAD_ID, "require", trusted_aik=pin)
    assert metadata["attestation_verification"]["verified"] is True
    assert metadata["attestation_verification"]["hardware_rooted"] is True


def test_require_refuses_a_bound_quote_from_an_unpinned_aik(block: dict[str, Any]) -> None:
    """Issue 11: "require" means verified; a bound quote alone is refused (after recording)."""
    metadata = {"tpm_attestation": block}
    with pytest.raises(SecurityError, match="NOT hardware-rooted"):
        apply_attestation_policy(metadata, PAYLOAD_ID, "require")
    record = metadata["attestation_verification"]
    assert record["bound"] is True and record["verified"] is False


def test_bound_accepts_an_unpinned_bound_quote(block: dict[str, Any]) -> None:
    metadata = {"tpm_attestation": block}
    apply_attestation_policy(metadata, PAYLOAD_ID, "bound")
    record = metadata["attestation_verification"]
    assert record["bound"] is True and record["hardware_rooted"] is False


@pytest.mark.parametrize(
    "metadata",
    [{}, {"tpm_attestation": {"is_available": False}}, {"tpm_attestation": "garbage"}],
)
def test_bound_refuses_a_missing_or_unavailable_block(metadata: dict) -> None:
    with pytest.raises(SecurityError):
        apply_attestation_policy(metadata, PAYLOAD_ID, "bound")
    assert metadata["attestation_verification"]["bound"] is False


def test_bound_refuses_a_tampered_or_replayed_quote(block: dict[str, Any]) -> None:
    with pytest.raises(SecurityError, match="signature"):
        apply_attestation_policy({"tpm_attestation": tampered(block)}, PAYLOAD_ID, "bound")
    with pytest.raises(SecurityError, match="qualifying_data"):
        apply_attestation_policy({"tpm_attestation": block}, "another-request", "bound")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "carries none"),
        ({"tpm_attestation": {"is_available": False}}, "reported no TPM"),
        ({"tpm_attestation": "garbage"}, "must be an object"),
    ],
)
def test_require_refuses_a_missing_or_unavailable_block(metadata: dict, message: str) -> None:
    with pytest.raises(SecurityError, match=message):
        apply_attestation_policy(metadata, PAYLOAD_ID, "require")
    assert metadata["attestation_verification"]["verified"] is False


def test_require_refuses_a_failed_check(block: dict[str, Any]) -> None:
    metadata = {"tpm_attestation": tampered(block)}
    with pytest.raises(SecurityError, match="signature"):
        apply_attestation_policy(metadata, PAYLOAD_ID, "require")
    assert metadata["attestation_verification"]["checks"]["signature"]["passed"] is False


def test_require_refuses_a_replayed_quote(block: dict[str, Any]) -> None:
    with pytest.raises(SecurityError, match="qualifying_data"):
        apply_attestation_policy({"tpm_attestation": block}, "some-other-request", "require")


def test_require_refuses_a_baseline_mismatch(block: dict[str, Any]) -> None:
    baseline = {"sha256": {"0": "11" * 32}}
    with pytest.raises(SecurityError, match="pcr_baseline"):
        apply_attestation_policy(
            {"tpm_attestation": block}, PAYLOAD_ID, "require", pcr_baseline=baseline
        )


def test_unknown_policy_is_a_value_error(block: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="attestation policy"):
        apply_attestation_policy({"tpm_attestation": block}, PAYLOAD_ID, "sometimes")


def test_base_install_verifies_without_tpm2_pytss_or_pyca(
    block: dict[str, Any], without_optional_packages: None
) -> None:
    """Issue 11 section 3: the verifier is the core's, so a quote verifies on a base install."""
    result = verify_attestation(block, PAYLOAD_ID)
    assert all(check.passed for check in result.checks if check.passed is not None)
    assert result.signature.passed and result.pcr_digest.passed
    assert not verify_attestation(tampered(block), PAYLOAD_ID).signature.passed


def test_verification_imports_no_c_unmarshaller(block: dict[str, Any]) -> None:
    """In a fresh interpreter, verifying a real quote loads neither tpm2-pytss nor pyca."""
    script = (
        "import json, sys\n"
        "from nomyo_native.attestation import verify_attestation\n"
        "result = verify_attestation(json.loads(sys.stdin.read()), sys.argv[1])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'tpm2_pytss', 'cryptography'})\n"
        "print(json.dumps({'signature': result.signature.passed, 'loaded': loaded}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, PAYLOAD_ID],
        input=json.dumps(block),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == {"signature": True, "loaded": []}


def test_a_server_without_tpm_is_reported_as_such(without_optional_packages: None) -> None:
    result = verify_attestation({"is_available": False}, PAYLOAD_ID)
    assert result.available is False and result.verified is False
    assert "no TPM" in result.summary
    metadata: dict[str, Any] = {"tpm_attestation": {"is_available": False}}
    with pytest.raises(SecurityError, match="no TPM"):
        apply_attestation_policy(metadata, PAYLOAD_ID, "require")


def test_each_answer_from_a_server_without_a_tpm_gets_a_record_of_its_own() -> None:
    # The verdict on "no TPM" is worked out once and shared; the record written into each
    # answer's _metadata must still be new, so that a caller changing one changes no other.
    first: dict[str, Any] = {"tpm_attestation": {"is_available": False}}
    second: dict[str, Any] = {"tpm_attestation": {"is_available": False}}
    apply_attestation_policy(first, PAYLOAD_ID, "auto")
    record = first["attestation_verification"]
    assert record["available"] is False and record["level"] == "none"
    assert record["summary"] == "None: the server reported no TPM (is_available is false)."
    assert record["checks"]["signature"] == {
        "passed": None,
        "detail": "not run: the server reported no TPM",
    }
    expected = json.loads(json.dumps(record))
    record["summary"] = "changed by the caller"
    record["checks"]["signature"]["passed"] = True
    apply_attestation_policy(second, PAYLOAD_ID, "auto")
    assert second["attestation_verification"] == expected
    assert verify_attestation({"is_available": False}, PAYLOAD_ID).to_dict() == expected
