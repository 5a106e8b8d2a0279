"""The drop-in surface: every public name of nomyo 0.2.9 with compatible signatures, the module
paths it is imported by, and the low-level SecureCompletionClient methods. The reference's side
is read by its own interpreter (tests/reference/driver.py ``surface``)."""

from __future__ import annotations

import functools
import inspect
import re
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tests.reference import run_reference

import nomyo_native
import nomyo_native.chat
import nomyo_native.client

from .peer import open_with, seal_to

REFERENCE_METHODS = {
    "SecureChatCompletion": ["__init__", "create", "acreate"],
    "SecureCompletionClient": [
        "__init__",
        "generate_keys",
        "load_keys",
        "fetch_server_public_key",
        "encrypt_payload",
        "decrypt_response",
        "send_secure_request",
    ],
}


@functools.cache
def reference_surface() -> dict[str, Any]:
    surface = run_reference("surface", REFERENCE_METHODS)
    assert surface["version"] == "0.2.9"
    return surface


@pytest.mark.reference
def test_every_reference_public_name_exists():
    reference_all = reference_surface()["all"]
    missing = [name for name in reference_all if not hasattr(nomyo_native, name)]
    assert missing == []
    assert set(reference_all) <= set(nomyo_native.__all__)


@pytest.mark.reference
def test_module_paths_of_the_reference_work():
    from nomyo_native.nomyo import SecureChatCompletion
    from nomyo_native.SecureCompletionClient import SecureCompletionClient, SecurityError
    from nomyo_native.SecureMemory import SecureBuffer

    client = nomyo_native.SecureCompletionClient(key_size=2048)
    assert isinstance(client, SecureCompletionClient)
    assert isinstance(client, nomyo_native.SecureCompletionClient)
    assert issubclass(SecureCompletionClient, nomyo_native.SecureCompletionClient)
    assert nomyo_native.SecureCompletionClient.SecureCompletionClient is SecureCompletionClient
    assert SecureChatCompletion is nomyo_native.SecureChatCompletion
    assert SecurityError is nomyo_native.SecurityError
    assert SecureBuffer is nomyo_native.SecureBuffer
    errors = reference_surface()["client_module_errors"]
    assert errors, "the reference's SecureCompletionClient module defines error classes"
    for name in errors:
        assert hasattr(nomyo_native.SecureCompletionClient, name), name


@pytest.mark.reference
@pytest.mark.parametrize(
    ("cls", "method"), [(c, m) for c, methods in REFERENCE_METHODS.items() for m in methods]
)
def test_signatures_extend_the_reference(cls, method):
    """Every reference parameter is there, in the same position, with the same default."""
    ours_cls = getattr(nomyo_native.chat, cls, None) or nomyo_native.client.SecureCompletionClient
    ref = reference_surface()["signatures"][cls][method]
    ours = inspect.signature(getattr(ours_cls, method)).parameters
    ref_positional = [p for p in ref if p["kind"] != "VAR_KEYWORD"]
    ours_list = list(ours.values())
    for index, param in enumerate(ref_positional):
        assert ours_list[index].name == param["name"]
        # Defaults are plain literals (None, numbers, strings, booleans): equal iff their
        # reprs are, and a parameter without a default has inspect's marker on both sides.
        assert repr(ours_list[index].default) == param["default"]
    if any(p["kind"] == "VAR_KEYWORD" for p in ref):
        assert any(p.kind is p.VAR_KEYWORD for p in ours.values())


@pytest.mark.reference
def test_exception_hierarchy_matches_the_reference():
    for name in (
        "AuthenticationError",
        "InvalidRequestError",
        "ForbiddenError",
        "RateLimitError",
        "ServerError",
        "ServiceUnavailableError",
    ):
        ours = getattr(nomyo_native, name)
        assert issubclass(ours, nomyo_native.APIError)
        err = ours("msg")
        assert err.status_code == reference_surface()["status_codes"][name]
        assert str(err) == "msg" and err.error_details is None
    assert not issubclass(nomyo_native.APIConnectionError, nomyo_native.APIError)
    assert not issubclass(nomyo_native.SecurityError, nomyo_native.APIError)
    err = nomyo_native.APIError("m", 418, {"detail": "x"})
    assert (err.status_code, err.error_details, err.message) == (418, {"detail": "x"}, "m")


async def test_low_level_methods_against_the_peer(peer, sleeps):
    client = nomyo_native.SecureCompletionClient(
        "https://peer.test", key_size=2048, transport=peer.transport(), sleep=sleeps
    )
    pem = await client.fetch_server_public_key()
    assert pem.strip() == peer.public_pem.strip()
    assert client.server_key_fingerprint == peer.fingerprint

    envelope = await client.encrypt_payload({"model": "m", "messages": [{"role": "user"}]})
    request, parsed = open_with(peer.key, envelope)
    assert request == {"model": "m", "messages": [{"role": "user"}]}
    assert set(parsed) == {
        "version",
        "algorithm",
        "encrypted_payload",
        "encrypted_aes_key",
        "key_algorithm",
        "payload_algorithm",
    }

    with pytest.raises(nomyo_native.SecurityError, match="not initialized"):
        await client.decrypt_response(b"{}", "pid")
    client.generate_keys()
    client_key = serialization.load_pem_public_key(client.public_key_pem.encode())
    payload_id = str(uuid.uuid4())
    body = seal_to(
        client_key, {"choices": [], "_metadata": {"payload_id": payload_id}}, processed_at=5
    )
    response = await client.decrypt_response(body, payload_id)
    assert response["_metadata"]["processed_at"] == 5
    assert response["_metadata"]["is_encrypted"] is True

    reply = await client.send_secure_request(
        {"model": "m", "messages": [{"role": "user", "content": "low level"}]},
        payload_id,
        "sk-1",
        "standard",
    )
    assert reply["choices"][0]["message"]["content"] == "echo: low level"
    assert peer.received[-1].headers["x-payload-id"] == payload_id
    assert peer.key_fetches == 1
    await client.aclose()


@pytest.mark.parametrize("bad", [None, [], {}, "payload"])
async def test_encrypt_payload_validates_its_input(peer, bad):
    client = nomyo_native.SecureCompletionClient("https://peer.test", transport=peer.transport())
    with pytest.raises(ValueError, match="Payload"):
        await client.encrypt_payload(bad)
    assert peer.key_fetches == 0


@pytest.mark.parametrize("bad", [b"", "text"])
async def test_decrypt_response_validates_its_input(bad):
    client = nomyo_native.SecureCompletionClient(key_size=2048)
    with pytest.raises(ValueError, match="response"):
        await client.decrypt_response(bad, "pid")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"router_url": "ftp://x"}, "http"),
        ({"router_url": "not a url"}, "http"),
        ({"max_retries": -1}, "max_retries"),
        ({"key_size": 1024}, "key_size"),
        ({"attestation": "sometimes"}, "attestation"),
        ({"key_rotation_interval": -5}, "rotation"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nomyo_native.SecureCompletionClient(**kwargs)


def test_generate_keys_result_is_awaitable_and_plain():
    client = nomyo_native.SecureCompletionClient(key_size=2048)
    result = client.generate_keys()
    assert result.result() is None
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", client.client_key_fingerprint)


async def test_keys_can_be_prepared_up_front_like_the_reference():
    chat = nomyo_native.SecureChatCompletion(key_size=2048)
    assert chat._keys_initialized is False
    await chat._ensure_keys()
    assert chat._keys_initialized is True
    assert chat.client.private_key.bits == 2048
