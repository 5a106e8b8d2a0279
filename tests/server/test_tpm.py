"""Real swtpm quotes, verified here independently of nomyo_native.attestation: the signature
with pyca/cryptography over the attest bytes, the binding to the payload id, the PCR digest."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess

import httpx2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .wire import PATH, open_response

pytestmark = pytest.mark.swtpm
tss = pytest.importorskip("tpm2_pytss")
from tpm2_pytss.constants import TPM2_ALG, TPM2_GENERATED, TPM2_ST  # noqa: E402
from tpm2_pytss.types import TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE  # noqa: E402

HASHES = {TPM2_ALG.SHA256: hashes.SHA256(), TPM2_ALG.SHA384: hashes.SHA384()}


def aik_public_key(public: TPM2B_PUBLIC):
    area = public.publicArea
    if area.type == TPM2_ALG.RSA:
        exponent = area.parameters.rsaDetail.exponent or 65537
        modulus = int.from_bytes(bytes(area.unique.rsa), "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    assert area.type == TPM2_ALG.ECC
    x = int.from_bytes(bytes(area.unique.ecc.x), "big")
    y = int.from_bytes(bytes(area.unique.ecc.y), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def verify_block(
    block: dict, payload_id: str, server_key_fingerprint: str | None = None
) -> TPMS_ATTEST:
    """Raises on any failed check; returns the parsed attest structure. With
    ``server_key_fingerprint``, the quote must carry the extension's binding (persistent AIK):
    SHA-256("nomyo-native/quote-binding/v1" 0x00 payload_id 0x00 fingerprint)[:16]."""
    public, _ = TPM2B_PUBLIC.unmarshal(base64.b64decode(block["aik_pubkey_b64"]))
    attest_2b = base64.b64decode(block["quote_b64"])
    size = int.from_bytes(attest_2b[:2], "big")
    attest_bytes = attest_2b[2:]
    assert size == len(attest_bytes)
    signature, _ = TPMT_SIGNATURE.unmarshal(base64.b64decode(block["signature_b64"]))
    key = aik_public_key(public)
    if signature.sigAlg == TPM2_ALG.ECDSA:
        sig = signature.signature.ecdsa
        der = encode_dss_signature(
            int.from_bytes(bytes(sig.signatureR), "big"),
            int.from_bytes(bytes(sig.signatureS), "big"),
        )
        key.verify(der, attest_bytes, ec.ECDSA(HASHES[sig.hash]))
    elif signature.sigAlg == TPM2_ALG.RSASSA:
        sig = signature.signature.rsassa
        key.verify(bytes(sig.sig), attest_bytes, padding.PKCS1v15(), HASHES[sig.hash])
    elif signature.sigAlg == TPM2_ALG.RSAPSS:
        sig = signature.signature.rsapss
        pss = padding.PSS(mgf=padding.MGF1(HASHES[sig.hash]), salt_length=padding.PSS.AUTO)
        key.verify(bytes(sig.sig), attest_bytes, pss, HASHES[sig.hash])
    else:
        raise AssertionError(f"unexpected signature algorithm {signature.sigAlg}")
    signing_hash = {TPM2_ALG.SHA256: hashlib.sha256, TPM2_ALG.SHA384: hashlib.sha384}[sig.hash]

    attest, _ = TPMS_ATTEST.unmarshal(attest_bytes)
    assert attest.magic == TPM2_GENERATED.VALUE
    assert attest.type == TPM2_ST.ATTEST_QUOTE
    if server_key_fingerprint is None:
        expected = hashlib.sha256(payload_id.encode()).digest()[:16]
    else:
        material = b"nomyo-native/quote-binding/v1\0%s\0%s" % (
            payload_id.encode(),
            server_key_fingerprint.encode(),
        )
        expected = hashlib.sha256(material).digest()[:16]
        assert block["binding"] == "payload_id+server_key"
    assert bytes(attest.extraData) == expected
    selection = attest.attested.quote.pcrSelect
    assert selection.count == 1
    assert selection.pcrSelections[0].hash == TPM2_ALG.SHA256
    values = block["pcr_values"]["sha256"]
    concatenated = b"".join(bytes.fromhex(values[str(i)]) for i in (0, 7, 10))
    # The TPM digests the selected PCRs with the signing scheme's hash.
    assert bytes(attest.attested.quote.pcrDigest) == signing_hash(concatenated).digest()
    return attest


@pytest.mark.parametrize("scheme", ["ecdsa", "rsassa", "rsapss"])
def test_quote_verifies_for_every_scheme(swtpm_quoter, scheme):
    payload_id = f"payload-{scheme}"
    block = swtpm_quoter.quote(payload_id, scheme=scheme)
    assert block["is_available"] is True
    assert block["pcr_banks"] == "sha256:0,7,10"
    verify_block(block, payload_id)


def test_quote_with_sha384_signature(swtpm_quoter):
    block = swtpm_quoter.quote("p-384", scheme="rsassa", hash_alg="sha384")
    signature, _ = TPMT_SIGNATURE.unmarshal(base64.b64decode(block["signature_b64"]))
    assert signature.signature.rsassa.hash == TPM2_ALG.SHA384
    verify_block(block, "p-384")


def test_quote_is_bound_to_its_payload_id(swtpm_quoter):
    block = swtpm_quoter.quote("the-real-request")
    verify_block(block, "the-real-request")
    with pytest.raises(AssertionError):
        verify_block(block, "another-request")


def test_every_quote_has_a_fresh_aik(swtpm_quoter):
    first = swtpm_quoter.quote("a")
    second = swtpm_quoter.quote("a")
    assert first["aik_pubkey_b64"] != second["aik_pubkey_b64"]


def test_tampered_signature_or_values_fail(swtpm_quoter):
    block = swtpm_quoter.quote("tamper")
    forged = dict(
        block, pcr_values={"sha256": dict(block["pcr_values"]["sha256"], **{"7": "11" * 32})}
    )
    with pytest.raises(AssertionError):
        verify_block(forged, "tamper")
    other = swtpm_quoter.quote("tamper")
    swapped = dict(block, aik_pubkey_b64=other["aik_pubkey_b64"])
    with pytest.raises(InvalidSignature):
        verify_block(swapped, "tamper")


def test_pcr_extend_changes_the_quoted_value(swtpm_quoter):
    before = swtpm_quoter.quote("before")["pcr_values"]["sha256"]
    swtpm_quoter.pcr_extend(10, b"measured component")
    after_block = swtpm_quoter.quote("after")
    verify_block(after_block, "after")
    after = after_block["pcr_values"]["sha256"]
    expected = hashlib.sha256(
        bytes.fromhex(before["10"]) + hashlib.sha256(b"measured component").digest()
    ).hexdigest()
    assert after["10"] == expected
    assert after["0"] == before["0"] and after["7"] == before["7"]


def test_bad_arguments_are_refused(swtpm_quoter):
    with pytest.raises(ValueError, match="unsupported quote scheme"):
        swtpm_quoter.quote("p", scheme="dsa")
    with pytest.raises(ValueError, match="unsupported quote scheme"):
        swtpm_quoter.quote("p", hash_alg="md5")
    with pytest.raises(TypeError):
        swtpm_quoter.quote(b"bytes-id")
    with pytest.raises(ValueError, match="PCR index"):
        swtpm_quoter.pcr_extend(24, b"x")


async def test_endpoint_responses_carry_verified_quotes(swtpm_endpoint, wire_for, client_key):
    wire = wire_for(swtpm_endpoint)
    async with httpx2.AsyncClient(verify=wire.verify, timeout=60) as http:
        for tier in ("standard", "maximum"):
            pid, response = await wire.chat(http, "quote me", tier=tier)
            assert response.status_code == 200
            reply, _ = open_response(response.content, client_key)
            meta = reply["_metadata"]
            assert meta["payload_id"] == pid
            assert meta["security_tier"] == tier
            verify_block(meta["tpm_attestation"], pid)


def test_swtpm_process_lifecycle():
    from nomyo_native.server.tpm import SwtpmProcess, TpmError, TpmQuoter

    swtpm = SwtpmProcess().start()
    try:
        tcti = swtpm.tcti
        assert tcti.startswith("swtpm:host=127.0.0.1,port=")
        state_dir = swtpm.state_dir
        assert os.path.isdir(state_dir)
        pid = swtpm.pid
        with TpmQuoter(tcti) as quoter:
            verify_block(quoter.quote("own"), "own")
        with pytest.raises(TpmError, match="closed"):
            quoter.quote("after close")
    finally:
        swtpm.stop()
    assert not swtpm.running
    assert not os.path.exists(state_dir)
    with pytest.raises(TpmError, match="not running"):
        _ = swtpm.tcti
    # The process is gone (reaped), not merely detached.
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_missing_swtpm_binary_is_a_clear_error():
    from nomyo_native.server.tpm import SwtpmNotFoundError, SwtpmProcess

    with pytest.raises(SwtpmNotFoundError, match="apt-get install swtpm"):
        SwtpmProcess(binary="swtpm-does-not-exist").start()


def test_unreachable_tcti_is_a_clear_error():
    from nomyo_native.server.tpm import TpmError, TpmQuoter

    with pytest.raises(TpmError, match="cannot open TPM"):
        TpmQuoter("swtpm:host=127.0.0.1,port=1")


def test_server_with_owned_swtpm(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(tpm="swtpm", tpm_scheme="rsapss")
    assert endpoint.tpm_available
    wire = wire_for(endpoint)
    pid, headers, body = wire.request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, tier="maximum"
    )
    response = httpx2.post(endpoint.base_url + PATH, headers=headers, content=body, timeout=60)
    assert response.status_code == 200
    block = open_response(response.content, client_key)[0]["_metadata"]["tpm_attestation"]
    signature, _ = TPMT_SIGNATURE.unmarshal(base64.b64decode(block["signature_b64"]))
    assert signature.sigAlg == TPM2_ALG.RSAPSS
    verify_block(block, pid, endpoint.server_key_fingerprint)


def test_owned_swtpm_measures_the_server_code_into_pcr10(endpoint_factory, wire_for, client_key):
    from nomyo_native.server.resources import measure_server_code

    endpoint = endpoint_factory(tpm="swtpm")
    assert endpoint.code_measurement == measure_server_code()
    wire = wire_for(endpoint)
    pid, headers, body = wire.request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    response = httpx2.post(endpoint.base_url + PATH, headers=headers, content=body, timeout=60)
    block = open_response(response.content, client_key)[0]["_metadata"]["tpm_attestation"]
    verify_block(block, pid, endpoint.server_key_fingerprint)
    # A fresh swtpm's PCR 10 is zero; one extend with SHA-256(measurement) gives this value.
    expected = hashlib.sha256(b"\0" * 32 + hashlib.sha256(endpoint.code_measurement).digest())
    assert block["pcr_values"]["sha256"]["10"] == expected.hexdigest()
    assert block["pcr_values"]["sha256"]["0"] == "00" * 32


def test_swtpm_starts_on_a_retry_after_a_failed_attempt(monkeypatch):
    # A failed attempt (say, its port taken between the probe and swtpm's bind) is reaped, and
    # its guard deletes the temporary state directory: the retry must not reuse that path.
    from nomyo_native.server.swtpm import SwtpmProcess

    real_wait = SwtpmProcess._wait_ready
    attempts: list[object] = []

    def first_fails(self, process, ports):
        attempts.append(self.state_dir)
        return False if len(attempts) == 1 else real_wait(self, process, ports)

    monkeypatch.setattr(SwtpmProcess, "_wait_ready", first_fails)
    swtpm = SwtpmProcess().start()
    try:
        assert swtpm.running and len(attempts) == 2
        assert attempts[0] != attempts[1]
        assert swtpm.state_dir is not None and swtpm.state_dir.is_dir()
    finally:
        swtpm.stop()
    assert not any(path.exists() for path in attempts)  # both temporary directories removed
