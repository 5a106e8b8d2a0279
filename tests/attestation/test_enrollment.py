"""Issue 11 section 2: enrollment by credential activation, and clients rooted by the pin.

``TPM2_MakeCredential`` runs in the core; the real swtpm's ``TPM2_ActivateCredential`` must
recover the credential exactly when it was made for that TPM's EK and that AIK's name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tpm2_pytss import constants

import nomyo_native as nomyo
from nomyo_native import _core
from nomyo_native._pinfile import PinFile
from nomyo_native.cli import main
from nomyo_native.enrollment import ACTIVATE_PATH, ENROLLMENT_PATH, enroll
from nomyo_native.errors import SecurityError
from nomyo_native.server.runner import RunningServer
from nomyo_native.server.tpm import SwtpmProcess, TpmError, TpmQuoter

from .forge import forge_block

USER = [{"role": "user", "content": "enrolled?"}]


def name_of(public: bytes) -> bytes:
    return b"\x00\x0b" + hashlib.sha256(public[2:]).digest()


@pytest.fixture(scope="module")
def tpm() -> Any:
    with SwtpmProcess() as swtpm, TpmQuoter(swtpm.tcti, aik="persistent") as quoter:
        yield quoter


@pytest.fixture(scope="module")
def genuine(server_key: Any) -> Any:
    from tests.conftest import _start

    with _start(server_key, tls_self_signed=True, tpm="swtpm") as endpoint:
        yield endpoint


def tls(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_path))


def test_core_make_credential_is_activated_by_the_real_tpm(tpm: TpmQuoter) -> None:
    ek, aik = tpm.ek_public(), tpm.aik_public()
    credential = secrets.token_bytes(32)
    blob, secret = _core.tpm_make_credential(ek, name_of(aik), credential)
    assert tpm.activate_credential(blob, secret) == credential


def test_activation_fails_for_another_name_or_another_tpm(tpm: TpmQuoter) -> None:
    credential = secrets.token_bytes(32)
    other_name = b"\x00\x0b" + hashlib.sha256(b"a key this TPM does not hold").digest()
    blob, secret = _core.tpm_make_credential(tpm.ek_public(), other_name, credential)
    with pytest.raises(TpmError, match="activation failed"):
        tpm.activate_credential(blob, secret)
    with SwtpmProcess() as swtpm, TpmQuoter(swtpm.tcti, aik="persistent") as other:
        blob, secret = _core.tpm_make_credential(
            other.ek_public(), name_of(tpm.aik_public()), credential
        )
        with pytest.raises(TpmError, match="activation failed"):
            tpm.activate_credential(blob, secret)


def test_make_credential_refuses_bad_inputs_with_typed_errors(tpm: TpmQuoter) -> None:
    ek, aik = tpm.ek_public(), tpm.aik_public()
    with pytest.raises(_core.TpmFormatError, match="not an RSA key"):
        _core.tpm_make_credential(aik, name_of(aik), b"x" * 16)  # the (ECC) AIK is no EK
    with pytest.raises(_core.TpmFormatError, match="name"):
        _core.tpm_make_credential(ek, b"\x00\x0b" + b"\x00" * 5, b"x" * 16)
    with pytest.raises(_core.TpmFormatError, match="credential"):
        _core.tpm_make_credential(ek, name_of(aik), b"x" * 33)
    with pytest.raises(_core.TpmFormatError):
        _core.tpm_make_credential(ek[:-1], name_of(aik), b"x" * 16)


def test_enroll_pins_the_aik_and_a_client_roots_quotes_in_it(
    genuine: RunningServer, tmp_path: Path
) -> None:
    pins = tmp_path / "aik-pins.json"
    done = enroll(genuine.base_url, pins, verify=tls(genuine))
    assert done.aik_fingerprint == genuine.aik_fingerprint and done.newly_pinned
    assert json.loads(pins.read_text()) == {genuine.base_url: genuine.aik_fingerprint}
    again = enroll(genuine.base_url, pins, verify=tls(genuine))
    assert not again.newly_pinned

    chat = nomyo.SyncSecureChatCompletion(
        base_url=genuine.base_url,
        ca_bundle=str(genuine.ca_path),
        key_size=2048,
        aik_pin_file=pins,
        attestation="require",
    )
    with chat:
        reply = chat.create("echo", USER, security_tier="maximum")
    record = reply["_metadata"]["attestation_verification"]
    assert record["verified"] is True and record["binding"] == "payload_id+server_key"


def test_a_client_with_a_pin_file_but_no_enrollment_fails_at_construction(
    genuine: RunningServer, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="attest enroll"):
        nomyo.SecureChatCompletion(
            base_url=genuine.base_url, key_size=2048, aik_pin_file=tmp_path / "empty.json"
        )


def test_a_changed_key_is_refused_with_how_to_re_enroll(
    genuine: RunningServer, tmp_path: Path
) -> None:
    pins = tmp_path / "aik-pins.json"
    PinFile(pins).check(genuine.base_url, "sha256:" + "00" * 32)  # enrolled before a TPM reset
    with pytest.raises(SecurityError, match=r"remove the line .* attest enroll"):
        enroll(genuine.base_url, pins, verify=tls(genuine))
    assert PinFile(pins).pinned(genuine.base_url) == "sha256:" + "00" * 32


def test_a_key_whose_activation_fails_is_not_enrolled(
    genuine: RunningServer, tmp_path: Path
) -> None:
    """A server without a TPM offers a genuine EK (read from a real TPM) with its software AIK
    and relays the challenge to that TPM: the TPM cannot activate for a key it does not hold."""
    assert genuine.quoter is not None
    zeros = {"0": "00" * 32, "7": "00" * 32, "10": "00" * 32}
    software_aik = base64.b64decode(forge_block("-", zeros).block["aik_pubkey_b64"])

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == ENROLLMENT_PATH:
            offer = {
                "ek_public_b64": base64.b64encode(genuine.quoter.ek_public()).decode(),
                "aik_public_b64": base64.b64encode(software_aik).decode(),
            }
            return httpx2.Response(200, json=offer)
        assert request.url.path == ACTIVATE_PATH
        body = json.loads(request.content)
        try:
            credential = genuine.quoter.activate_credential(
                base64.b64decode(body["credential_blob_b64"]),
                base64.b64decode(body["encrypted_secret_b64"]),
            )
        except TpmError:
            return httpx2.Response(422, json={"detail": "credential activation failed"})
        return httpx2.Response(200, json={"credential_b64": base64.b64encode(credential).decode()})

    pins = tmp_path / "pins.json"
    with pytest.raises(SecurityError, match="failed the credential-activation challenge"):
        enroll("https://impostor.test", pins, transport=httpx2.MockTransport(handler))
    assert not pins.exists()


def test_a_server_with_a_per_request_aik_offers_no_enrollment(
    endpoint_factory: Any, tmp_path: Path
) -> None:
    server = endpoint_factory(tls_self_signed=True, tpm="swtpm", aik="per-request")
    with pytest.raises(SecurityError, match="offers no enrollment"):
        enroll(server.base_url, tmp_path / "pins.json", verify=tls(server))


def test_cli_attest_enroll(
    genuine: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pins = tmp_path / "pins.json"
    args = ["attest", "enroll", genuine.base_url, "--pin-file", str(pins)]
    assert main([*args, "--ca-bundle", str(genuine.ca_path)]) == 0
    out = capsys.readouterr().out
    assert "enrolled" in out and str(genuine.aik_fingerprint) in out
    PinFile(tmp_path / "other.json").check(genuine.base_url, "sha256:" + "11" * 32)
    other = ["attest", "enroll", genuine.base_url, "--pin-file", str(tmp_path / "other.json")]
    assert main([*other, "--ca-bundle", str(genuine.ca_path)]) == 1
    assert "remove the line" in capsys.readouterr().err


def test_an_oversized_offer_is_refused_without_being_held(tmp_path: Path) -> None:
    sent = {"bytes": 0}

    def stream() -> Any:
        for _ in range(64):
            sent["bytes"] += 16 * 1024
            yield b" " * (16 * 1024)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=stream())

    with pytest.raises(SecurityError, match="too large"):
        enroll("https://huge.test", tmp_path / "p.json", transport=httpx2.MockTransport(handler))
    assert sent["bytes"] < 1024 * 1024  # stopped reading long before the end


@pytest.mark.parametrize(
    "dropped",
    [
        pytest.param(constants.TPMA_OBJECT.FIXEDTPM | constants.TPMA_OBJECT.FIXEDPARENT, id="dup"),
        pytest.param(constants.TPMA_OBJECT.FIXEDTPM, id="no-fixedTPM"),
        pytest.param(constants.TPMA_OBJECT.SENSITIVEDATAORIGIN, id="no-sensitiveDataOrigin"),
    ],
)
def test_a_duplicable_aik_is_not_enrolled(
    genuine: RunningServer, tmp_path: Path, dropped: int
) -> None:
    """Activation proves an AIK is loaded in the EK's TPM, not that it was born there: a key
    made in software and imported (not fixedTPM/fixedParent/sensitiveDataOrigin) activates, and
    its software copy then signs any quote. Such a key is refused before any challenge."""
    assert genuine.quoter is not None
    zeros = {"0": "00" * 32, "7": "00" * 32, "10": "00" * 32}
    offered = forge_block("-", zeros, drop_attributes=dropped).block["aik_pubkey_b64"]
    activations: list[bytes] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == ENROLLMENT_PATH:
            offer = {
                "ek_public_b64": base64.b64encode(genuine.quoter.ek_public()).decode(),
                "aik_public_b64": offered,
            }
            return httpx2.Response(200, json=offer)
        # The imported key's TPM would answer correctly; the client must not even ask.
        activations.append(request.content)
        body = json.loads(request.content)
        blob = base64.b64decode(body["credential_blob_b64"])
        return httpx2.Response(200, json={"credential_b64": base64.b64encode(blob).decode()})

    pins = tmp_path / "pins.json"
    with pytest.raises(SecurityError, match="made outside the TPM"):
        enroll("https://imported.test", pins, transport=httpx2.MockTransport(handler))
    assert activations == []
    assert not pins.exists()


def test_a_client_whose_enrolled_key_changed_is_refused_with_how_to_re_enroll(
    genuine: RunningServer, tmp_path: Path
) -> None:
    """After a TPM reset the server quotes with a new key: a client holding the old enrollment
    refuses the answer and says how to re-enroll (as `attest enroll` does)."""
    pins = tmp_path / "aik-pins.json"
    PinFile(pins).check(genuine.base_url, "sha256:" + "00" * 32)  # enrolled before the reset
    chat = nomyo.SyncSecureChatCompletion(
        base_url=genuine.base_url,
        ca_bundle=str(genuine.ca_path),
        key_size=2048,
        aik_pin_file=pins,
        attestation="require",
    )
    with chat, pytest.raises(SecurityError, match=r"remove the line .* attest enroll") as caught:
        chat.create("echo", USER, security_tier="maximum")
    assert str(pins) in str(caught.value)
    assert PinFile(pins).pinned(genuine.base_url) == "sha256:" + "00" * 32


def test_trusted_aik_given_as_bytes_equal_to_the_enrolled_key_is_accepted(
    genuine: RunningServer, tmp_path: Path
) -> None:
    pins = tmp_path / "aik-pins.json"
    enroll(genuine.base_url, pins, verify=tls(genuine))
    pinned = str(genuine.aik_fingerprint)
    client = nomyo.SecureChatCompletion(
        base_url=genuine.base_url,
        key_size=2048,
        aik_pin_file=pins,
        trusted_aik=pinned.encode("ascii"),
        attestation="require",
    )
    assert client is not None
    with pytest.raises(ValueError, match="differs from the attestation key enrolled"):
        nomyo.SecureChatCompletion(
            base_url=genuine.base_url,
            key_size=2048,
            aik_pin_file=pins,
            trusted_aik=("sha256:" + "11" * 32).encode("ascii"),
        )
