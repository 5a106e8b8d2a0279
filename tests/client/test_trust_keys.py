"""Trust and key lifecycle decisions without a server: the https rule, the server-key pin and
pin file, the attestation policy of a request, and where key pairs come from and go
(``_trust``, ``_keys``)."""

from __future__ import annotations

import pytest

import nomyo_native as nomyo
from nomyo_native import _core, _keys
from nomyo_native._pinfile import PinFile
from nomyo_native._trust import AttestationTrust, ServerKeyTrust, check_transport_policy

FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server_key() -> _core.ServerPublicKey:
    pair = _core.ClientKeyPair.generate(2048)
    return _core.ServerPublicKey.from_pem(pair.public_key_pem.encode())


def test_plain_http_needs_allow_http():
    check_transport_policy(True, False, "https://h.test")
    check_transport_policy(False, True, "http://h.test")
    with pytest.raises(nomyo.SecurityError, match="allow_http=True"):
        check_transport_policy(False, False, "http://h.test")


def test_a_key_that_is_not_the_pinned_one_is_refused(server_key):
    ServerKeyTrust("https://h.test", "https://h.test", server_key.fingerprint, None).check_pin(
        server_key
    )
    ServerKeyTrust("https://h.test", "https://h.test", None, None).check_pin(server_key)
    pinned_elsewhere = ServerKeyTrust("https://h.test", "https://h.test", FP_A, None)
    with pytest.raises(nomyo.SecurityError, match="does not match the pinned"):
        pinned_elsewhere.check_pin(server_key)


def test_the_pin_file_trusts_the_first_key_and_refuses_another(tmp_path):
    trust = ServerKeyTrust("https://h.test", "https://h.test", None, PinFile(tmp_path / "pins"))
    trust.check_pin_file(FP_A)
    trust.check_pin_file(FP_A)
    with pytest.raises(nomyo.SecurityError):
        trust.check_pin_file(FP_B)
    other_server = ServerKeyTrust("https://o.test", "https://o.test", None, trust.pin_file)
    other_server.check_pin_file(FP_B)


def _attestation(**changes) -> AttestationTrust:
    fields = {
        "explicit_policy": None,
        "pcr_baseline": None,
        "trusted_aik": None,
        "untrusted_key_hint": None,
        "require_payload_echo": False,
    }
    fields.update(changes)
    return AttestationTrust(**fields)


def test_the_policy_of_a_request_call_then_client_then_tier():
    trust = _attestation()
    assert trust.policy_for(None, None) == "auto"
    assert trust.policy_for(None, "maximum") == "bound"
    assert trust.policy_for("off", "maximum") == "off"
    assert _attestation(explicit_policy="bound").policy_for(None, "high") == "bound"
    with pytest.raises(ValueError, match="attestation"):
        trust.policy_for("sometimes", None)
    with pytest.raises(ValueError):
        trust.policy_for("require", None)  # nothing to root a quote in


def test_policy_off_records_the_clients_own_verdict_and_binding_still_applies():
    metadata = {"payload_id_verified": False, "attestation_verification": {"verified": True}}
    _attestation().judge(metadata, "pid", "off", None, None)
    assert metadata["attestation_verification"]["verified"] is False
    assert metadata["attestation_verification"]["level"] == "none"
    with pytest.raises(nomyo.SecurityError, match="require_payload_echo"):
        _attestation(require_payload_echo=True).judge(dict(metadata), "pid", "off", None, None)
    with pytest.raises(nomyo.SecurityError, match="maximum"):
        _attestation().judge(dict(metadata), "pid", "off", "maximum", None)
    # The call's own setting wins over the client's.
    _attestation(require_payload_echo=True).judge(dict(metadata), "pid", "off", None, None, False)


def test_key_dir_is_generated_and_saved_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    key_dir = tmp_path / "keys"
    first = _keys.KeyLifecycle(2048, key_dir, None, None, None).initial()
    assert sorted(p.name for p in key_dir.iterdir()) == ["private_key.pem", "public_key.pem"]
    again = _keys.KeyLifecycle(2048, key_dir, None, None, None).initial()
    assert again.fingerprint == first.fingerprint


def test_rotation_never_writes_the_users_key_dir(tmp_path):
    key_dir, rotation_dir = tmp_path / "keys", tmp_path / "rotated"
    with pytest.raises(ValueError, match="key_rotation_dir is key_dir"):
        _keys.KeyLifecycle(2048, key_dir, PASSWORD, key_dir, None)
    lifecycle = _keys.KeyLifecycle(2048, key_dir, PASSWORD, rotation_dir, None)
    first = lifecycle.initial()
    saved = (key_dir / "private_key.pem").read_bytes()
    rotated = lifecycle.rotated()
    assert rotated.fingerprint != first.fingerprint
    assert (key_dir / "private_key.pem").read_bytes() == saved
    loaded = _keys.load_keypair(rotation_dir / "private_key.pem", None, PASSWORD)
    assert loaded.fingerprint == rotated.fingerprint


def test_a_rotation_dir_that_became_the_users_is_left_alone(tmp_path):
    rotation_dir = tmp_path / "rotated"
    lifecycle = _keys.KeyLifecycle(2048, None, None, rotation_dir, None)
    with pytest.warns(UserWarning, match="UNENCRYPTED"):
        lifecycle.generate(rotation_dir, None)  # generate_keys(save_to_file=True) there
    saved = (rotation_dir / "private_key.pem").read_bytes()
    lifecycle.rotated()
    assert (rotation_dir / "private_key.pem").read_bytes() == saved


def test_a_public_key_file_of_another_pair_is_refused(tmp_path):
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    _keys.save_keypair(_keys.generate_keypair(2048), mine, PASSWORD)
    _keys.save_keypair(_keys.generate_keypair(2048), theirs, PASSWORD)
    with pytest.raises(nomyo.KeyLoadError, match="does not belong"):
        _keys.load_keypair(mine / "private_key.pem", theirs / "public_key.pem", PASSWORD)


@pytest.mark.parametrize("bits", [1024, 4097])
def test_key_sizes_are_checked(bits):
    with pytest.raises(ValueError, match="key_size"):
        _keys.KeyLifecycle(bits, None, None, None, None)


def test_a_disposed_key_ring_makes_no_pair():
    from nomyo_native._keyring import KeyRing

    ring = KeyRing(3600.0)
    ring.wipe_all()
    made: list[int] = []

    def make() -> _core.ClientKeyPair:
        made.append(1)
        return _keys.generate_keypair(2048)

    with pytest.raises(nomyo.ClientClosedError):
        ring.refresh(make, make)
    assert made == [] and ring.current is None
