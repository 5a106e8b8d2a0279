"""Issue 10 item 5: the payload-id binding of a response is recorded honestly and enforced where
asked; every ``_metadata`` field the client computes is the client's, never the server's."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

import nomyo_native as nomyo

from .peer import seal_to

USER = [{"role": "user", "content": "bind me"}]


async def test_unbound_response_is_recorded_as_unverified_not_disguised(make_chat, peer):
    peer.echo_payload_id = None
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER)
    metadata = reply["_metadata"]
    assert metadata["payload_id_verified"] is False
    # nomyo's field stays: the request's own id, which the server did not vouch for.
    assert metadata["payload_id"] == peer.received[0].headers["x-payload-id"]


async def test_echoed_payload_id_is_recorded_as_verified(make_chat, peer):
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["_metadata"]["payload_id_verified"] is True


@pytest.mark.parametrize("echo", ["another-id", ""])
async def test_a_different_echo_is_refused(make_chat, peer, echo):
    peer.echo_payload_id = echo
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError, match="payload_id"):
            await chat.create(model="m", messages=USER)


@pytest.mark.parametrize("echo", [1, ["x"], {"id": "x"}, True])
async def test_an_echo_of_another_type_is_refused(make_chat, peer, echo):
    peer.echo_payload_id = None
    peer.extra_metadata = {"payload_id": echo}
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError, match="payload_id"):
            await chat.create(model="m", messages=USER)


async def test_require_payload_echo_refuses_an_unbound_response(make_chat, peer):
    peer.echo_payload_id = None
    async with make_chat(require_payload_echo=True) as chat:
        with pytest.raises(nomyo.SecurityError, match="echo"):
            await chat.create(model="m", messages=USER)
    peer.echo_payload_id = "echo"
    async with make_chat(require_payload_echo=True) as chat:
        reply = await chat.create(model="m", messages=USER)
    assert reply["_metadata"]["payload_id_verified"] is True


async def test_tier_maximum_refuses_a_response_bound_by_nothing(make_chat, peer):
    # No echo and no quote: at tier maximum the answer cannot be told from a replay.
    peer.echo_payload_id = None
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError, match="maximum"):
            await chat.create(model="m", messages=USER, security_tier="maximum", attestation="off")
        with pytest.raises(nomyo.SecurityError):
            await chat.create(model="m", messages=USER, security_tier="maximum", attestation="auto")
        # Below maximum the same response is handed out, recorded as unverified.
        reply = await chat.create(model="m", messages=USER, security_tier="high")
    assert reply["_metadata"]["payload_id_verified"] is False


async def test_tier_maximum_accepts_the_echo(make_chat, peer):
    async with make_chat() as chat:
        reply = await chat.create(
            model="m", messages=USER, security_tier="maximum", attestation="off"
        )
    assert reply["_metadata"]["payload_id_verified"] is True


FORGED = {
    "payload_id_verified": True,
    "attestation_verification": {"verified": True, "bound": True, "summary": "trust me"},
    "is_encrypted": "forged",
    "encryption_algorithm": "forged",
    "processed_at": "forged",
}


@pytest.mark.parametrize("attestation", ["off", "auto"])
async def test_client_metadata_overwrites_what_the_server_wrote(make_chat, peer, attestation):
    peer.echo_payload_id = None
    peer.extra_metadata = dict(FORGED)
    async with make_chat() as chat:
        reply = await chat.create(model="m", messages=USER, attestation=attestation)
    metadata = reply["_metadata"]
    assert metadata["payload_id_verified"] is False
    assert metadata["attestation_verification"]["verified"] is False
    assert metadata["attestation_verification"]["summary"] != "trust me"
    assert metadata["is_encrypted"] is True
    assert metadata["encryption_algorithm"] == "hybrid-aes256-rsa4096"
    assert metadata["processed_at"] == 1700000001


async def test_a_forged_verdict_does_not_satisfy_tier_maximum(make_chat, peer):
    peer.echo_payload_id = None
    peer.extra_metadata = dict(FORGED)
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError):
            await chat.create(model="m", messages=USER, security_tier="maximum", attestation="off")


async def test_decrypt_response_records_the_binding_too(make_chat, peer):
    # The lower-level API: a response opened by hand is checked the same way.
    peer.echo_payload_id = None
    async with make_chat(require_payload_echo=True) as chat:
        client = chat.client
        await client._ensure_keys()
        public = serialization.load_pem_public_key(client.public_key_pem.encode())
        body = seal_to(public, {"choices": [], "_metadata": {}})
        with pytest.raises(nomyo.SecurityError, match="echo"):
            await client.decrypt_response(body, "pid-1")
        body = seal_to(public, {"choices": [], "_metadata": {"payload_id": "pid-1"}})
        reply = await client.decrypt_response(body, "pid-1")
    assert reply["_metadata"]["payload_id_verified"] is True


async def test_require_payload_echo_per_call_is_client_only_and_enforced(make_chat, peer):
    peer.echo_payload_id = None
    async with make_chat() as chat:
        with pytest.raises(nomyo.SecurityError, match="echo"):
            await chat.create(model="m", messages=USER, require_payload_echo=True)
        reply = await chat.create(model="m", messages=USER, require_payload_echo=False)
    assert reply["_metadata"]["payload_id_verified"] is False
    assert all("require_payload_echo" not in got.request for got in peer.received)
    async with make_chat(require_payload_echo=True) as chat:
        # A per-call False overrides the client's setting.
        await chat.create(model="m", messages=USER, require_payload_echo=False)
