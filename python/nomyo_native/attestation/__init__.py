"""TPM 2.0 quote verification (PROTOCOL.md section 5) and the client's attestation policy.

A response from a server with a TPM carries ``_metadata.tpm_attestation``: an ephemeral AIK's
public area, a quote (``TPMS_ATTEST``) over a PCR selection, its signature and the claimed PCR
values. :func:`verify_attestation` checks each property separately, so that a caller (and the
``_metadata`` record) can see exactly what was proven:

``signature``        the quote is signed by the AIK in the block (a restricted signing key)
``magic_and_type``   ``TPM_GENERATED_VALUE`` and ``TPM_ST_ATTEST_QUOTE``
``qualifying_data``  ``extraData == SHA-256(payload_id)[:16]``: bound to this request
``pcr_digest``       the claimed ``pcr_values`` hash, in selection order, to the signed digest
``pcr_baseline``     the signed digest agrees with the caller's known-good values (if given)
``aik_trusted``      the AIK is the one the caller pinned (if given), and a key that cannot
                     leave its TPM (fixedTPM, fixedParent, sensitiveDataOrigin)

Two verdicts come out of those checks (PROTOCOL.md section 5): ``bound`` (the first four, and
the baseline when given: consistent, and made for this request) and ``hardware_rooted`` (the
signing key is one the caller trusts, pinned or enrolled). ``verified`` is both. An unpinned AIK
is created by the server itself, so it proves binding, never hardware: a server with no TPM can
make a bound quote with a software key.

Policies: ``"off"``; ``"auto"`` (verify and record, never refuse); ``"bound"`` (refuse a response
whose quote is not bound); ``"require"`` (refuse unless verified, so it needs a trust anchor).
:func:`resolve_policy` picks the policy of a request from the explicit one and the tier.

``trusted_aik`` is either a PEM public key (compared as SubjectPublicKeyInfo) or
``"sha256:<hex>"``: the SHA-256 of the AIK's marshalled ``TPMT_PUBLIC`` public area. For a key
whose nameAlg is SHA-256 this is its TPM Name without the ``000b`` prefix, as printed by
``tpm2_readpublic`` (``name:``).

The TSS structures are parsed, and the signature verified, by the native core (``rust/src/tpm``:
bounded parsers, aws-lc signatures), so verification needs no optional package and no C code
unmarshals server input. Nothing here touches a secret.

The package, one module per concern: ``_result`` (the result model), ``_wire`` (decoding the
block's fields), ``_pcr`` (PCR selections, values and their checks), ``_aik`` (the attestation
key and its pin), ``_verify`` (the checks together), ``_baseline`` (baseline files) and
``_policy`` (the client's policy). Import from ``nomyo_native.attestation`` itself.
"""

from nomyo_native._constants import ATTESTATION_POLICIES
from nomyo_native.attestation._aik import (
    aik_fingerprint,
    aik_residency_problem,
    validate_trusted_aik,
)
from nomyo_native.attestation._baseline import (
    BASELINE_FORMAT,
    BaselineError,
    load_baseline,
    prepare_baseline,
    save_baseline,
)
from nomyo_native.attestation._pcr import PcrValues
from nomyo_native.attestation._policy import (
    NO_TRUST_ANCHOR_HINT,
    apply_attestation_policy,
    resolve_policy,
    validate_policy,
)
from nomyo_native.attestation._result import (
    CHECK_NAMES,
    AttestationResult,
    Binding,
    CheckName,
    CheckResult,
)
from nomyo_native.attestation._verify import capture_baseline, verify_attestation

__all__ = [
    "ATTESTATION_POLICIES",
    "BASELINE_FORMAT",
    "CHECK_NAMES",
    "NO_TRUST_ANCHOR_HINT",
    "AttestationResult",
    "BaselineError",
    "Binding",
    "CheckName",
    "CheckResult",
    "PcrValues",
    "aik_fingerprint",
    "aik_residency_problem",
    "apply_attestation_policy",
    "capture_baseline",
    "load_baseline",
    "prepare_baseline",
    "resolve_policy",
    "save_baseline",
    "validate_policy",
    "validate_trusted_aik",
    "verify_attestation",
]

# The classes show (in reprs, tracebacks and pickles) as the public path they are used by.
for _public in (AttestationResult, BaselineError, CheckResult):
    _public.__module__ = __name__
del _public
