"""The attestation policy through the real client: quotes made by swtpm for each request id."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from tests.client.peer import Peer

import nomyo_native as nomyo
from nomyo_native import attestation as nomyo_attestation
from nomyo_native.errors import SecurityError

from .forge import forge_block

USER = [{"role": "user", "content": "attest this"}]


class TpmPeer(Peer):
    """The client suite's pyca peer, adding a swtpm quote bound to each request's payload id."""

    quoter: Any = None
    tamper: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    # A software key in place of the TPM (a bound quote anyone can make; pinned in some tests).
    software_aik: bool = False

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            payload_id = request.headers["x-payload-id"]
            block = self.quoter.quote(payload_id, scheme="ecdsa")
            if self.software_aik:
                values = block["pcr_values"]["sha256"]
                block = forge_block(payload_id, values, seed=1).block
            if self.tamper is not None:
                block = self.tamper(block, payload_id)
            self.extra_metadata = {"tpm_attestation": block}
        return super().handle(request)


@pytest.fixture(scope="module")
def peer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def tpm_peer(peer_key: rsa.RSAPrivateKey, tpm_quoter: Any) -> TpmPeer:
    peer = TpmPeer(key=peer_key)
    peer.quoter = tpm_quoter
    return peer


@pytest.fixture
def make_chat(tpm_peer: TpmPeer) -> Callable[..., nomyo.SecureChatCompletion]:
    def factory(**kwargs: Any) -> nomyo.SecureChatCompletion:
        kwargs.setdefault("base_url", "https://peer.test")
        kwargs.setdefault("key_size", 2048)
        kwargs.setdefault("transport", tpm_peer.transport())
        return nomyo.SecureChatCompletion(**kwargs)

    return factory


def flip_signature(block: dict[str, Any], _payload_id: str) -> dict[str, Any]:
    sig = bytearray(base64.b64decode(block["signature_b64"]))
    sig[-1] ^= 1
    return dict(block, signature_b64=base64.b64encode(bytes(sig)).decode())


SOFTWARE_AIK = forge_block("-", {"0": "00" * 32, "7": "00" * 32, "10": "00" * 32}, seed=1)


def test_require_without_a_trust_anchor_fails_at_construction(
    make_chat: Callable, tpm_peer: TpmPeer
) -> None:
    """Issue 11: "require" can only be met by a rooted quote; with nothing to root it in, the
    client refuses to exist (no prompt is ever sent) and says how to get an anchor."""
    with pytest.raises(ValueError, match="trust anchor") as raised:
        make_chat(attestation="require")
    assert "trusted_aik=" in str(raised.value) and "attestation='bound'" in str(raised.value)
    assert tpm_peer.posts == 0


async def test_require_per_call_without_anchor_sends_nothing(
    make_chat: Callable, tpm_peer: TpmPeer
) -> None:
    async with make_chat() as chat:
        with pytest.raises(ValueError, match="trust anchor"):
            await chat.create(model="m", messages=USER, attestation="require")
    assert tpm_peer.posts == 0


async def test_require_returns_content_with_a_verified_record(
    make_chat: Callable, tpm_peer: TpmPeer
) -> None:
    tpm_peer.software_aik = True  # a key the caller pinned: rooted by the caller's trust
    async with make_chat(attestation="require", trusted_aik=SOFTWARE_AIK.fingerprint) as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["choices"][0]["message"]["content"] == "echo: attest this"
    record = reply["_metadata"]["attestation_verification"]
    assert record["verified"] is True and record["bound"] and record["hardware_rooted"]
    assert record["checks"]["qualifying_data"]["passed"] is True


async def test_require_withholds_a_genuine_tpm_quote_by_another_key(make_chat: Callable) -> None:
    """A real swtpm quote is bound, but not by the pinned key: refused under "require"."""
    async with make_chat(attestation="require", trusted_aik=SOFTWARE_AIK.fingerprint) as chat:
        with pytest.raises(SecurityError, match="NOT hardware-rooted"):
            await chat.create(model="m", messages=USER)


@pytest.mark.parametrize("policy", ["bound", "require"])
async def test_bound_or_require_withholds_content_of_a_tampered_quote(
    make_chat: Callable, tpm_peer: TpmPeer, policy: str
) -> None:
    tpm_peer.tamper = flip_signature
    tpm_peer.software_aik = policy == "require"
    async with make_chat(attestation=policy, trusted_aik=SOFTWARE_AIK.fingerprint) as chat:
        with pytest.raises(SecurityError, match="signature"):
            await chat.create(model="m", messages=USER)


async def test_maximum_tier_without_anchor_defaults_to_bound(
    make_chat: Callable, tpm_peer: TpmPeer
) -> None:
    """Issue 11: unset policy + tier maximum + no anchor = "bound": a genuine (unpinned) quote is
    accepted and recorded as not hardware-rooted; no TPM is refused."""
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER, security_tier="maximum")
        record = reply["_metadata"]["attestation_verification"]
        assert record["bound"] is True and record["hardware_rooted"] is False
        tpm_peer.tamper = lambda block, _pid: {"is_available": False}
        reply = await chat.create(model="m", messages=USER, security_tier="high")
        assert reply["_metadata"]["attestation_verification"]["verified"] is False
        with pytest.raises(SecurityError, match="no TPM"):
            await chat.create(model="m", messages=USER, security_tier="maximum")


async def test_maximum_tier_with_anchor_defaults_to_require(
    make_chat: Callable, tpm_peer: TpmPeer
) -> None:
    """With a trust anchor, tier maximum requires a verified quote: the swtpm's fresh AIK is
    bound but not the pinned key, so it is refused; the pinned key's quote is accepted."""
    async with make_chat(trusted_aik=SOFTWARE_AIK.fingerprint) as chat:
        with pytest.raises(SecurityError, match="NOT hardware-rooted"):
            await chat.create(model="m", messages=USER, security_tier="maximum")
        tpm_peer.software_aik = True
        reply = await chat.create(model="m", messages=USER, security_tier="maximum")
        assert reply["_metadata"]["attestation_verification"]["verified"] is True


async def test_explicit_policy_wins_over_the_tier(make_chat: Callable, tpm_peer: TpmPeer) -> None:
    tpm_peer.tamper = lambda block, _pid: {"is_available": False}
    async with make_chat(attestation="auto") as chat:
        reply = await chat.create(model="m", messages=USER, security_tier="maximum")
        assert reply["_metadata"]["attestation_verification"]["bound"] is False
    async with make_chat() as chat:
        reply = await chat.create(
            model="m", messages=USER, security_tier="maximum", attestation="auto"
        )
        assert reply["_metadata"]["attestation_verification"]["available"] is False


async def test_auto_records_a_replayed_quote_and_returns(
    make_chat: Callable, tpm_peer: TpmPeer, tpm_quoter: Any
) -> None:
    replayed = tpm_quoter.quote("an-earlier-request")
    tpm_peer.tamper = lambda _block, _pid: replayed
    async with make_chat(attestation="auto") as chat:
        reply = await chat.create(model="m", messages=USER)
        record = reply["_metadata"]["attestation_verification"]
        assert record["verified"] is False
        assert record["checks"]["qualifying_data"]["passed"] is False
        with pytest.raises(SecurityError, match="qualifying_data"):
            await chat.create(model="m", messages=USER, attestation="bound")


async def test_off_skips_verification(make_chat: Callable, tpm_peer: TpmPeer) -> None:
    tpm_peer.tamper = flip_signature
    async with make_chat(attestation="off") as chat:
        reply = await chat.create(model="m", messages=USER, security_tier="maximum")
    # The client writes its own record even with "off" (a server must not pre-fill a verdict):
    # it says nothing was checked, and the tampered quote was not looked at.
    record = reply["_metadata"]["attestation_verification"]
    assert record["verified"] is False and "checks" not in record
    assert record["summary"] == "not checked: attestation='off'"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"pcr_baseline": {"sha256": {"0": "not-hex"}}}, ValueError),
        ({"pcr_baseline": "/nonexistent/baseline.json"}, ValueError),
        ({"trusted_aik": "sha256:1234"}, ValueError),
        ({"trusted_aik": 42}, TypeError),
    ],
)
def test_bad_baseline_or_pin_is_refused_at_construction(
    make_chat: Callable, tpm_peer: TpmPeer, options: dict[str, Any], error: type[Exception]
) -> None:
    # Refused before any request: a bad policy input must never let a prompt leave first.
    with pytest.raises(error):
        make_chat(**options)
    assert tpm_peer.posts == 0


async def test_baseline_file_is_read_once_at_construction(
    make_chat: Callable, tpm_quoter: Any, tmp_path: Any
) -> None:
    baseline = nomyo_attestation.capture_baseline(tpm_quoter.quote("baseline-source"))
    path = tmp_path / "baseline.json"
    nomyo_attestation.save_baseline(baseline, path)
    async with make_chat(attestation="bound", pcr_baseline=path) as chat:
        path.unlink()  # the client holds the validated values, not the path
        reply = await chat.create(model="m", messages=USER)
    assert reply["_metadata"]["attestation_verification"]["checks"]["pcr_baseline"]["passed"]


def _pem(key: Any, compressed: bool = False) -> str:
    if compressed:  # a valid P-256 SPKI, but never how an AIK's point is encoded
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        algorithm = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")
        bits = bytes([0x03, len(point) + 1, 0]) + point
        der = bytes([0x30, len(algorithm) + len(bits)]) + algorithm + bits
        b64 = base64.encodebytes(der).decode()
        return f"-----BEGIN PUBLIC KEY-----\n{b64}-----END PUBLIC KEY-----\n"
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(lambda: rsa.generate_private_key(65537, 1024), id="rsa1024"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), id="p521"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256K1()), id="secp256k1"),
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), id="ed25519"),
        pytest.param(lambda: (ec.generate_private_key(ec.SECP256R1()), True), id="compressed"),
    ],
)
def test_a_pem_pin_that_no_aik_can_match_is_refused_at_construction(
    make_chat: Callable, tpm_peer: TpmPeer, key: Callable[[], Any]
) -> None:
    """Under "require" every answer would be refused (the core verifies only RSA >= 2048 and
    P-256/P-384 AIKs, encoded uncompressed): the prompt must not be sent."""
    made = key()
    pem = _pem(*made) if isinstance(made, tuple) else _pem(made)
    with pytest.raises(ValueError, match="not a key an AIK can be"):
        make_chat(trusted_aik=pem, attestation="require")
    assert tpm_peer.posts == 0


@pytest.mark.parametrize(
    "key",
    [
        lambda: rsa.generate_private_key(65537, 2048),
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
    ],
)
def test_a_pem_pin_of_an_aik_kind_is_accepted(key: Callable[[], Any]) -> None:
    nomyo_attestation.validate_trusted_aik(_pem(key()))
