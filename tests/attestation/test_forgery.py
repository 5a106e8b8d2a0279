"""Issue 11: what a server without a TPM can send is never reported as verified.

A software key standing in for the AIK, a hand-built quote bound to the right payload id, PCR
values equal to the victim's baseline: every such quote is *bound* (it is consistent and made for
the request), and none is *hardware rooted* or *verified*, whatever is pinned, under every
policy and at tier maximum.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tpm2_pytss import constants

from nomyo_native.attestation import (
    apply_attestation_policy,
    capture_baseline,
    resolve_policy,
    verify_attestation,
)
from nomyo_native.errors import SecurityError

from .forge import forge_block, software_key

PAYLOAD_ID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
FORGERIES = [
    ("ecdsa", "sha256", "p256"),
    ("ecdsa", "sha384", "p384"),
    ("rsassa", "sha256", "rsa2048"),
    ("rsapss", "sha256", "rsa2048"),
]


@pytest.fixture(scope="module")
def genuine(tpm_quoter: Any) -> dict[str, Any]:
    return tpm_quoter.quote(PAYLOAD_ID)


@pytest.fixture(scope="module")
def baseline(genuine: dict[str, Any]) -> dict[str, Any]:
    return capture_baseline(genuine, PAYLOAD_ID)


@pytest.mark.parametrize(("scheme", "hash_alg", "key_kind"), FORGERIES)
def test_forged_quote_matching_the_baseline_is_bound_never_verified(
    genuine: dict[str, Any],
    baseline: dict[str, Any],
    scheme: str,
    hash_alg: str,
    key_kind: str,
) -> None:
    values = genuine["pcr_values"]["sha256"]
    forged = forge_block(PAYLOAD_ID, values, scheme=scheme, hash_alg=hash_alg, key_kind=key_kind)
    genuine_pin = verify_attestation(genuine, PAYLOAD_ID).aik_fingerprint
    unpinned = verify_attestation(forged.block, PAYLOAD_ID, pcr_baseline=baseline)
    assert unpinned.bound and unpinned.pcr_baseline.passed is True
    assert not unpinned.hardware_rooted and not unpinned.verified
    assert unpinned.level == "bound"
    pinned_other = verify_attestation(
        forged.block, PAYLOAD_ID, pcr_baseline=baseline, trusted_aik=genuine_pin
    )
    assert pinned_other.aik_trusted.passed is False
    assert not pinned_other.hardware_rooted and not pinned_other.verified
    record = pinned_other.to_dict()
    assert record["verified"] is False and record["hardware_rooted"] is False


@pytest.mark.parametrize("tier", [None, "standard", "high", "maximum"])
def test_no_policy_a_client_can_run_under_accepts_a_forgery_as_verified(
    genuine: dict[str, Any], baseline: dict[str, Any], tier: str | None
) -> None:
    """Under every policy the tier can pick, with an anchor (the genuine AIK) or without, the
    forged quote's record says not verified; where verification is required it is refused."""
    forged = forge_block(PAYLOAD_ID, genuine["pcr_values"]["sha256"]).block
    genuine_pin = verify_attestation(genuine, PAYLOAD_ID).aik_fingerprint
    for anchor in (None, genuine_pin):
        for explicit in (None, "auto", "bound", "require"):
            try:
                policy = resolve_policy(explicit, tier, has_anchor=anchor is not None)
            except ValueError:
                assert explicit == "require" and anchor is None
                continue
            metadata: dict[str, Any] = {"tpm_attestation": forged}
            try:
                apply_attestation_policy(
                    metadata, PAYLOAD_ID, policy, pcr_baseline=baseline, trusted_aik=anchor
                )
            except SecurityError:
                assert policy == "require"
            else:
                assert policy != "require"
            record = metadata["attestation_verification"]
            assert record["verified"] is False and record["hardware_rooted"] is False


def test_tier_maximum_default_is_bound_without_anchor_and_require_with_one() -> None:
    assert resolve_policy(None, "maximum", has_anchor=False) == "bound"
    assert resolve_policy(None, "maximum", has_anchor=True) == "require"
    assert resolve_policy(None, "high", has_anchor=True) == "auto"
    assert resolve_policy("auto", "maximum", has_anchor=True) == "auto"
    assert resolve_policy("off", "maximum", has_anchor=False) == "off"
    with pytest.raises(ValueError, match="trust anchor"):
        resolve_policy("require", None, has_anchor=False)
    with pytest.raises(ValueError, match="attestation policy"):
        resolve_policy("verified", None, has_anchor=True)


def test_baseline_is_captured_from_a_bound_quote(genuine: dict[str, Any]) -> None:
    """`attest baseline` accepts a bound quote: nothing about it may demand a pinned AIK."""
    assert not verify_attestation(genuine, PAYLOAD_ID).verified
    captured = capture_baseline(genuine, PAYLOAD_ID)
    assert captured["pcr_values"] == genuine["pcr_values"]


DUPLICABLE = [
    pytest.param(constants.TPMA_OBJECT.FIXEDTPM, id="no-fixedTPM"),
    pytest.param(constants.TPMA_OBJECT.FIXEDPARENT, id="no-fixedParent"),
    pytest.param(constants.TPMA_OBJECT.SENSITIVEDATAORIGIN, id="no-sensitiveDataOrigin"),
    pytest.param(
        constants.TPMA_OBJECT.FIXEDTPM | constants.TPMA_OBJECT.FIXEDPARENT, id="duplicable"
    ),
]


@pytest.mark.parametrize("dropped", DUPLICABLE)
@pytest.mark.parametrize(("scheme", "hash_alg", "key_kind"), FORGERIES)
def test_a_pinned_aik_that_may_live_outside_a_tpm_is_never_hardware_rooted(
    genuine: dict[str, Any],
    baseline: dict[str, Any],
    dropped: int,
    scheme: str,
    hash_alg: str,
    key_kind: str,
) -> None:
    """A restricted signing key without fixedTPM, fixedParent or sensitiveDataOrigin can be made
    in software (and imported into a TPM to pass activation): the software copy signs any quote.
    Pinned by fingerprint or by PEM, its quotes stay bound but never rooted."""
    values = genuine["pcr_values"]["sha256"]
    forged = forge_block(
        PAYLOAD_ID,
        values,
        scheme=scheme,
        hash_alg=hash_alg,
        key_kind=key_kind,
        drop_attributes=dropped,
    )
    pem = (
        software_key(key_kind, 0)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for pin in (forged.fingerprint, pem):
        result = verify_attestation(
            forged.block, PAYLOAD_ID, pcr_baseline=baseline, trusted_aik=pin
        )
        assert result.bound and result.signature.passed is True
        assert result.aik_trusted.passed is False
        assert "made outside the TPM" in result.aik_trusted.detail
        assert not result.hardware_rooted and not result.verified
        metadata: dict[str, Any] = {"tpm_attestation": forged.block}
        with pytest.raises(SecurityError, match="not verified"):
            apply_attestation_policy(
                metadata, PAYLOAD_ID, "require", pcr_baseline=baseline, trusted_aik=pin
            )
        assert metadata["attestation_verification"]["hardware_rooted"] is False
