"""nomyo_native.attestation is a package of private modules: every public name is imported from
the package itself, as before the split, and its classes show that public path."""

from __future__ import annotations

import pickle

import nomyo_native.attestation as attestation

# Every name users, the client and the tests import from nomyo_native.attestation.
PUBLIC = {
    "ATTESTATION_POLICIES",
    "BASELINE_FORMAT",
    "CHECK_NAMES",
    "NO_TRUST_ANCHOR_HINT",
    "AttestationResult",
    "BaselineError",
    "CheckResult",
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
}


def test_every_public_name_is_importable_from_the_package():
    assert PUBLIC <= set(attestation.__all__)
    assert all(hasattr(attestation, name) for name in attestation.__all__)


def test_classes_show_their_public_path_and_pickle_through_it():
    for cls in (attestation.AttestationResult, attestation.CheckResult, attestation.BaselineError):
        assert cls.__module__ == "nomyo_native.attestation"
    result = attestation.verify_attestation({"is_available": False}, "payload-1")
    assert isinstance(result, attestation.AttestationResult)
    assert pickle.loads(pickle.dumps(result)) == result
