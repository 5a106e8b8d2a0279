"""verify_attestation on real swtpm quotes: every check, every tamper, every malformed field."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpm2_pytss.types import TPM2B_PUBLIC

from nomyo_native.attestation import (
    CHECK_NAMES,
    AttestationResult,
    BaselineError,
    aik_fingerprint,
    capture_baseline,
    verify_attestation,
)

SCHEMES = [("ecdsa", "sha256"), ("rsassa", "sha256"), ("rsapss", "sha256")]
EXTRA_SCHEMES = [("ecdsa", "sha384"), ("rsassa", "sha512")]
PAYLOAD_ID = "5f0c6a4e-1d2b-4c3a-9e8f-7a6b5c4d3e2f"


def failed(result: AttestationResult) -> set[str]:
    return {check.name for check in result.checks if check.passed is False}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def flip(raw: bytes, offset: int) -> bytes:
    out = bytearray(raw)
    out[offset] ^= 0x01
    return bytes(out)


def clock_offset(quote: bytes) -> int:
    """Offset, in a marshalled TPM2B_ATTEST, of a byte inside clockInfo.clock.

    Only the signature covers the clock, so flipping it must fail the signature check alone.
    """
    offset = 2 + 4 + 2  # TPM2B size, magic, type
    name_len = int.from_bytes(quote[offset : offset + 2], "big")
    offset += 2 + name_len
    extra_len = int.from_bytes(quote[offset : offset + 2], "big")
    offset += 2 + extra_len
    return offset + 3


@pytest.fixture(scope="module")
def quotes(tpm_quoter: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """One valid block per scheme, all for PAYLOAD_ID, made before any PCR is extended here."""
    return {
        key: tpm_quoter.quote(PAYLOAD_ID, scheme=key[0], hash_alg=key[1])
        for key in SCHEMES + EXTRA_SCHEMES
    }


def pin_of(block: dict[str, Any]) -> str:
    public = TPM2B_PUBLIC.unmarshal(unb64(block["aik_pubkey_b64"]))[0]
    return "sha256:" + hashlib.sha256(public.publicArea.marshal()).hexdigest()


def verify_full(block: dict[str, Any], reference: dict[str, Any], **kw: Any) -> AttestationResult:
    """Verify with every optional check on: baseline and pin both taken from ``reference``."""
    kw.setdefault("pcr_baseline", capture_baseline(reference, PAYLOAD_ID))
    kw.setdefault("trusted_aik", pin_of(reference))
    return verify_attestation(block, kw.pop("payload_id", PAYLOAD_ID), **kw)


# ---- valid quotes ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES + EXTRA_SCHEMES, ids="-".join)
def test_valid_quote_passes_every_check(quotes: dict, scheme: tuple[str, str]) -> None:
    block = quotes[scheme]
    result = verify_full(block, block)
    assert [c.passed for c in result.checks] == [True] * len(CHECK_NAMES), result.checks
    assert result.verified and result.bound and result.hardware_rooted and result.available
    assert result.level == "rooted"
    assert result.aik_fingerprint == pin_of(block) == aik_fingerprint(block["aik_pubkey_b64"])
    assert result.pcr_banks == "sha256:0,7,10"
    assert "verified (bound and hardware-rooted)" in result.summary


@pytest.mark.parametrize("scheme", SCHEMES, ids="-".join)
def test_unpinned_quote_says_it_proves_no_hardware(quotes: dict, scheme: tuple[str, str]) -> None:
    # Issue 11: an unpinned quote is bound, never verified (it asserted verified before).
    result = verify_attestation(quotes[scheme], PAYLOAD_ID)
    assert result.bound and not result.hardware_rooted and not result.verified
    assert result.pcr_baseline.passed is None and result.aik_trusted.passed is None
    assert "NOT hardware-rooted" in result.summary
    assert "not genuine TPM hardware" in result.summary
    record = result.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["checks"]["aik_trusted"]["passed"] is None
    assert record["verified"] is False and record["bound"] is True
    assert record["hardware_rooted"] is False and record["level"] == "bound"


def test_signature_detail_names_scheme_and_hash(quotes: dict) -> None:
    details = {key: verify_attestation(quotes[key], PAYLOAD_ID).signature.detail for key in quotes}
    assert details[("ecdsa", "sha384")].startswith("ECDSA-SHA384 by P-384")
    assert details[("rsapss", "sha256")].startswith("RSA-PSS-SHA256 by RSA-2048")
    assert details[("rsassa", "sha512")].startswith("RSASSA-PKCS1v1.5-SHA512")


# ---- each tamper fails exactly the check it breaks -------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES, ids="-".join)
def test_flipped_quote_byte_fails_only_signature(quotes: dict, scheme: tuple[str, str]) -> None:
    block = dict(quotes[scheme])
    quote = unb64(block["quote_b64"])
    block["quote_b64"] = b64(flip(quote, clock_offset(quote)))
    result = verify_full(block, quotes[scheme])
    assert failed(result) == {"signature"}
    assert "does not verify" in result.signature.detail
    assert not result.verified


@pytest.mark.parametrize("scheme", SCHEMES, ids="-".join)
def test_flipped_signature_byte_fails_only_signature(quotes: dict, scheme: tuple[str, str]) -> None:
    block = dict(quotes[scheme])
    sig = unb64(block["signature_b64"])
    block["signature_b64"] = b64(flip(sig, len(sig) - 1))
    result = verify_full(block, quotes[scheme])
    assert failed(result) == {"signature"}
    assert not result.verified


@pytest.mark.parametrize("scheme", SCHEMES, ids="-".join)
def test_flipped_pcr_value_fails_only_pcr_digest(quotes: dict, scheme: tuple[str, str]) -> None:
    block = copy.deepcopy(quotes[scheme])
    value = bytes.fromhex(block["pcr_values"]["sha256"]["7"])
    block["pcr_values"]["sha256"]["7"] = flip(value, 5).hex()
    result = verify_full(block, quotes[scheme])
    # The baseline is compared with what the TPM signed, so it still holds.
    assert failed(result) == {"pcr_digest"}
    assert "does not match" in result.pcr_digest.detail


@pytest.mark.parametrize("scheme", SCHEMES, ids="-".join)
def test_replay_for_another_payload_fails_only_qualifying_data(
    quotes: dict, scheme: tuple[str, str]
) -> None:
    result = verify_full(quotes[scheme], quotes[scheme], payload_id="another-request-id")
    assert failed(result) == {"qualifying_data"}
    assert "another request" in result.qualifying_data.detail


@pytest.mark.parametrize("scheme", SCHEMES, ids="-".join)
def test_swapped_aik_fails_only_signature(
    tpm_quoter: Any, quotes: dict, scheme: tuple[str, str]
) -> None:
    other = tpm_quoter.quote(PAYLOAD_ID, scheme=scheme[0], hash_alg=scheme[1])
    assert other["aik_pubkey_b64"] != quotes[scheme]["aik_pubkey_b64"]  # a different AIK
    block = dict(quotes[scheme], aik_pubkey_b64=other["aik_pubkey_b64"])
    result = verify_full(block, quotes[scheme], trusted_aik=None)
    assert failed(result) == {"signature"}


def test_valid_quote_from_another_aik_fails_only_the_pin(tpm_quoter: Any, quotes: dict) -> None:
    pinned = quotes[("ecdsa", "sha256")]
    other = tpm_quoter.quote(PAYLOAD_ID, scheme="ecdsa")
    result = verify_full(other, pinned, pcr_baseline=capture_baseline(other, PAYLOAD_ID))
    assert failed(result) == {"aik_trusted"}
    assert pin_of(pinned) in result.aik_trusted.detail


def test_pcr_extended_after_baseline_fails_only_baseline(tpm_quoter: Any) -> None:
    before = tpm_quoter.quote("before-extend")
    baseline = capture_baseline(before, "before-extend")
    tpm_quoter.pcr_extend(10, b"an unexpected binary was measured")
    after = tpm_quoter.quote(PAYLOAD_ID)
    assert after["pcr_values"]["sha256"]["10"] != before["pcr_values"]["sha256"]["10"]
    result = verify_attestation(after, PAYLOAD_ID, pcr_baseline=baseline)
    assert failed(result) == {"pcr_baseline"}
    assert "sha256:10" in result.pcr_baseline.detail
    # The same baseline still accepts the quote taken before the extend.
    assert verify_attestation(before, "before-extend", pcr_baseline=baseline).bound


def test_baseline_pcr_outside_the_quote_fails_baseline(quotes: dict) -> None:
    block = quotes[("ecdsa", "sha256")]
    baseline = {"sha256": {"3": "00" * 32}}
    result = verify_attestation(block, PAYLOAD_ID, pcr_baseline=baseline)
    assert failed(result) == {"pcr_baseline"}
    assert "sha256:3" in result.pcr_baseline.detail


def test_pem_pin_matches_the_aik_spki(quotes: dict) -> None:
    block = quotes[("rsapss", "sha256")]
    public = TPM2B_PUBLIC.unmarshal(unb64(block["aik_pubkey_b64"]))[0]
    pem = public.publicArea.to_pem()
    assert verify_attestation(block, PAYLOAD_ID, trusted_aik=pem).aik_trusted.passed is True
    other = quotes[("rsassa", "sha256")]
    result = verify_attestation(other, PAYLOAD_ID, trusted_aik=pem.decode())
    assert failed(result) == {"aik_trusted"}


# ---- the quote's own structure ---------------------------------------------------------------


def test_pcr_banks_that_differ_from_the_quote_selection_fail_pcr_digest(quotes: dict) -> None:
    block = copy.deepcopy(quotes[("ecdsa", "sha256")])
    block["pcr_banks"] = "sha256:0,7"
    del block["pcr_values"]["sha256"]["10"]
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == {"pcr_digest"}
    assert "quote selects sha256:0,7,10" in result.pcr_digest.detail


def test_unquoted_extra_pcr_value_fails_pcr_digest(quotes: dict) -> None:
    block = copy.deepcopy(quotes[("ecdsa", "sha256")])
    block["pcr_values"]["sha256"]["3"] = "00" * 32
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == {"pcr_digest"}
    assert "exactly the quoted PCRs" in result.pcr_digest.detail


# ---- malformed blocks: a failed result naming the field, never an exception ------------------


def test_bad_base64_quote_fails_quote_checks_naming_the_field(quotes: dict) -> None:
    block = dict(quotes[("ecdsa", "sha256")], quote_b64="not*base64!")
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == {"signature", "magic_and_type", "qualifying_data", "pcr_digest"}
    assert all("quote_b64 is not valid base64" in c.detail for c in result.failed_checks)


def test_truncated_quote_is_a_failed_result(quotes: dict) -> None:
    block = dict(quotes[("ecdsa", "sha256")])
    block["quote_b64"] = b64(unb64(block["quote_b64"])[:-7])
    result = verify_attestation(block, PAYLOAD_ID)
    assert "quote_b64 is not a valid TPM2B_ATTEST" in result.magic_and_type.detail
    assert not result.verified


def test_trailing_bytes_are_refused(quotes: dict) -> None:
    block = dict(quotes[("rsassa", "sha256")])
    block["signature_b64"] = b64(unb64(block["signature_b64"]) + b"\x00")
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == {"signature"}
    assert "trailing bytes" in result.signature.detail


@pytest.mark.parametrize("field", ["aik_pubkey_b64", "signature_b64"])
def test_truncated_key_or_signature_fails_only_signature(quotes: dict, field: str) -> None:
    block = dict(quotes[("ecdsa", "sha256")])
    block[field] = b64(unb64(block[field])[:20])
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == {"signature"}
    assert field in result.signature.detail


@pytest.mark.parametrize(
    ("field", "value", "expected_failures"),
    [
        ("quote_b64", 12345, {"signature", "magic_and_type", "qualifying_data", "pcr_digest"}),
        ("aik_pubkey_b64", None, {"signature"}),
        ("signature_b64", ["x"], {"signature"}),
        ("pcr_banks", 7, {"pcr_digest"}),
        ("pcr_banks", "sha999:0", {"pcr_digest"}),
        ("pcr_values", "abc", {"pcr_digest"}),
        ("pcr_values", {"sha256": {"0": "zz"}}, {"pcr_digest"}),
        ("pcr_values", {"sha256": {"0": "00"}}, {"pcr_digest"}),
        ("pcr_values", {"sha256": {"x": "00" * 32}}, {"pcr_digest"}),
    ],
)
def test_wrong_types_fail_the_dependent_checks(
    quotes: dict, field: str, value: Any, expected_failures: set[str]
) -> None:
    block = dict(quotes[("ecdsa", "sha256")], **{field: value})
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == expected_failures
    assert all(c.detail.startswith(field) for c in result.failed_checks)


@pytest.mark.parametrize(
    "field", ["aik_pubkey_b64", "quote_b64", "signature_b64", "pcr_banks", "pcr_values"]
)
def test_missing_field_is_a_failed_result(quotes: dict, field: str) -> None:
    block = dict(quotes[("ecdsa", "sha256")])
    del block[field]
    result = verify_attestation(block, PAYLOAD_ID)
    assert result.failed_checks and not result.verified
    assert any(field in c.detail for c in result.failed_checks)


@pytest.mark.parametrize("block", [None, [], "is_available", {"is_available": "yes"}, {}])
def test_block_of_the_wrong_shape_fails_every_check(block: Any) -> None:
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == {"signature", "magic_and_type", "qualifying_data", "pcr_digest"}
    assert not result.verified and not result.available


def test_unavailable_tpm_runs_no_check() -> None:
    result = verify_attestation({"is_available": False}, PAYLOAD_ID)
    assert not result.available and not result.verified
    assert all(c.passed is None for c in result.checks)
    assert "no TPM" in result.summary


def test_caller_errors_are_typed(quotes: dict) -> None:
    block = quotes[("ecdsa", "sha256")]
    with pytest.raises(TypeError):
        verify_attestation(block, b"bytes-id")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trusted_aik must be"):
        verify_attestation(block, PAYLOAD_ID, trusted_aik="md5:abcd")
    with pytest.raises(ValueError, match="not a valid PEM"):
        verify_attestation(block, PAYLOAD_ID, trusted_aik="-----BEGIN PUBLIC KEY-----\nxx")
    with pytest.raises(BaselineError):
        verify_attestation(block, PAYLOAD_ID, pcr_baseline={"sha256": {"0": "00"}})
    with pytest.raises(ValueError, match="aik_pubkey_b64 is not a valid TPM2B_PUBLIC"):
        aik_fingerprint(b64(unb64(block["aik_pubkey_b64"])[:-3]))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    field=st.sampled_from(["aik_pubkey_b64", "quote_b64", "signature_b64"]),
    position=st.floats(min_value=0, max_value=1, exclude_max=True),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_corrupted_byte_is_a_failed_result_never_an_exception(
    quotes: dict, field: str, position: float, mask: int
) -> None:
    for scheme in SCHEMES:
        block = dict(quotes[scheme])
        raw = bytearray(unb64(block[field]))
        raw[int(position * len(raw))] ^= mask
        block[field] = b64(bytes(raw))
        # The signature covers every quote byte; it does not cover the AIK's non-key fields
        # (nameAlg, some attributes), which is what the pin is for.
        result = verify_attestation(block, PAYLOAD_ID, trusted_aik=pin_of(quotes[scheme]))
        assert not result.verified
        assert result.failed_checks


@pytest.mark.parametrize("attest_type", [0x8017, 0x8019, 0x1234])  # certify, time, nonsense
def test_attest_of_another_type_fails_magic_and_type(quotes: dict, attest_type: int) -> None:
    block = dict(quotes[("ecdsa", "sha256")])
    quote = bytearray(unb64(block["quote_b64"]))
    quote[6:8] = attest_type.to_bytes(2, "big")  # after the TPM2B size and the magic
    block["quote_b64"] = b64(bytes(quote))
    result = verify_attestation(block, PAYLOAD_ID)
    assert result.magic_and_type.passed is False
    assert result.signature.passed is False and result.pcr_digest.passed is False
    assert not result.verified


def test_wrong_magic_fails_magic_and_type_and_signature(quotes: dict) -> None:
    block = dict(quotes[("rsapss", "sha256")])
    quote = bytearray(unb64(block["quote_b64"]))
    quote[2:6] = b"\x00\x00\x00\x00"
    block["quote_b64"] = b64(bytes(quote))
    result = verify_attestation(block, PAYLOAD_ID)
    assert failed(result) == {"magic_and_type", "signature"}
    assert "not TPM_GENERATED_VALUE" in result.magic_and_type.detail
