"""TPM attestation costs: a quote from swtpm (a fresh AIK each time, as the endpoint makes one per
request) and its verification by the client, per signature scheme. Verification is measured
twice per scheme, in one group: ``verify_core`` is the client's (the core's TPM parsers and
aws-lc), ``verify_pyca`` the same checks on tpm2-pytss (libtss2-mu) and pyca/cryptography, which
is how the client verified before issue 11. No target: this measures what attestation adds."""

from __future__ import annotations

import base64
import hashlib
import itertools
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from nomyo_native.attestation import verify_attestation
from nomyo_native.server.tpm import SwtpmProcess, TpmQuoter, supported_quote_schemes

QUOTE_SCHEMES = ("ecdsa", "rsassa", "rsapss")

pytestmark = pytest.mark.skipif(shutil.which("swtpm") is None, reason="swtpm is not installed")


@pytest.fixture(scope="module")
def quoter() -> Iterator[TpmQuoter]:
    with SwtpmProcess() as tpm, TpmQuoter(tpm.tcti) as quoter:
        yield quoter


@pytest.mark.benchmark(group="tpm-quote")
@pytest.mark.parametrize("scheme", QUOTE_SCHEMES)
def test_quote(benchmark: Any, quoter: TpmQuoter, scheme: str) -> None:
    ids = (f"bench-{n}" for n in itertools.count())
    block = benchmark.pedantic(
        lambda: quoter.quote(next(ids), scheme=scheme), rounds=10, warmup_rounds=1
    )
    assert block["is_available"] is True


def _pyca_verify(block: dict[str, Any], payload_id: str) -> bool:
    """Signature, magic, binding and PCR digest, on tpm2-pytss and pyca/cryptography."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
    from tpm2_pytss import types

    public = types.TPM2B_PUBLIC.unmarshal(base64.b64decode(block["aik_pubkey_b64"]))[0]
    wrapped = types.TPM2B_ATTEST.unmarshal(base64.b64decode(block["quote_b64"]))[0]
    signed = bytes(wrapped)
    attest = types.TPMS_ATTEST.unmarshal(signed)[0]
    sig = types.TPMT_SIGNATURE.unmarshal(base64.b64decode(block["signature_b64"]))[0]
    key = serialization.load_der_public_key(public.publicArea.to_der())
    alg = int(sig.sigAlg)
    digest = {0x0B: hashes.SHA256, 0x0C: hashes.SHA384, 0x0D: hashes.SHA512}
    if alg == 0x0018:
        body = sig.signature.ecdsa
        der = utils.encode_dss_signature(
            int.from_bytes(bytes(body.signatureR), "big"),
            int.from_bytes(bytes(body.signatureS), "big"),
        )
        key.verify(der, signed, ec.ECDSA(digest[int(body.hash)]()))
    else:
        body = sig.signature.rsassa
        algorithm = digest[int(body.hash)]()
        pad: Any = (
            padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
            if alg == 0x0016
            else padding.PKCS1v15()
        )
        key.verify(bytes(body.sig), signed, pad, algorithm)
    bound = bytes(attest.extraData) == hashlib.sha256(payload_id.encode()).digest()[:16]
    quoted = bytes(attest.attested.quote.pcrDigest)
    pcrs = hashlib.new({32: "sha256", 48: "sha384", 64: "sha512"}[len(quoted)])
    for index in ("0", "7", "10"):
        pcrs.update(bytes.fromhex(block["pcr_values"]["sha256"][index]))
    return int(attest.magic) == 0xFF544347 and bound and pcrs.digest() == quoted


@pytest.fixture(scope="module")
def verify_blocks(quoter: TpmQuoter) -> dict[str, dict[str, Any]]:
    return {
        f"{scheme}-{hash_alg}": quoter.quote("bench-verify", scheme=scheme, hash_alg=hash_alg)
        for scheme, hash_alg in supported_quote_schemes()
    }


SCHEME_IDS = [f"{scheme}-{hash_alg}" for scheme, hash_alg in supported_quote_schemes()]


@pytest.mark.parametrize("scheme", SCHEME_IDS)
def test_verify_core(benchmark: Any, verify_blocks: dict[str, Any], scheme: str) -> None:
    benchmark.group = f"tpm-verify {scheme}"
    result = benchmark(verify_attestation, verify_blocks[scheme], "bench-verify")
    assert result.bound, result.summary


@pytest.mark.parametrize("scheme", SCHEME_IDS)
def test_verify_pyca(benchmark: Any, verify_blocks: dict[str, Any], scheme: str) -> None:
    benchmark.group = f"tpm-verify {scheme}"
    assert benchmark(_pyca_verify, verify_blocks[scheme], "bench-verify")
