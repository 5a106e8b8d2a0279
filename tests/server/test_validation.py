"""Every malformed request gets its PROTOCOL.md section 4 status and a JSON detail; the server
keeps serving. Requests are built byte by byte with the pyca wire helper."""

from __future__ import annotations

import json
import urllib.parse

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.pyca_envelope import b64

from .wire import PATH, encode_uri_component, open_response, public_pem, seal

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def wire(http_endpoint, wire_for):
    return wire_for(http_endpoint)


def post(wire, headers, body: bytes) -> httpx2.Response:
    return httpx2.post(wire.base_url + PATH, headers=headers, content=body, timeout=60)


def good_request_works(wire, client_key) -> None:
    pid, headers, body = wire.request(CHAT)
    response = post(wire, headers, body)
    assert response.status_code == 200
    reply, _ = open_response(response.content, client_key)
    assert reply["_metadata"]["payload_id"] == pid


def envelope_bytes(wire, mutate=None, payload=CHAT) -> bytes:
    envelope, _ = seal(payload, wire.server_public_pem)
    if mutate is not None:
        mutate(envelope)
    return json.dumps(envelope).encode()


def test_good_request_round_trip(wire, client_key, http_endpoint):
    pid, headers, body = wire.request(CHAT)
    response = post(wire, headers, body)
    assert response.status_code == 200
    envelope = response.json()
    assert envelope["key_algorithm"] == "RSA-OAEP-SHA256"
    assert envelope["payload_algorithm"] == "AES-256-GCM"
    assert isinstance(envelope["processed_at"], float)
    reply, _ = open_response(response.content, client_key)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == "hello"
    meta = reply["_metadata"]
    assert meta["payload_id"] == pid
    assert meta["security_tier"] == "standard"
    assert meta["tpm_attestation"] == {"is_available": False}
    # Honest about what a pure-Python process can do.
    assert meta["memory_protection"]["memory_locking"] is False
    assert meta["memory_protection"]["secure_zeroing"] is False


def test_public_key_endpoint(http_endpoint):
    response = httpx2.get(http_endpoint.base_url + "/pki/public_key")
    assert response.status_code == 200
    assert response.text == http_endpoint.public_key_pem
    assert response.text.startswith("-----BEGIN PUBLIC KEY-----")


def test_encode_uri_component_public_key_is_accepted(wire, client_key):
    pid, headers, body = wire.request(CHAT)
    headers["X-Public-Key"] = encode_uri_component(public_pem(client_key))
    assert "%2F" in headers["X-Public-Key"] or "/" not in public_pem(client_key)
    response = post(wire, headers, body)
    assert response.status_code == 200
    assert open_response(response.content, client_key)[0]["_metadata"]["payload_id"] == pid


def _small_rsa_pem() -> str:
    return public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))


def _ec_pem() -> str:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize(
    ("header", "value", "detail"),
    [
        ("X-Payload-ID", None, "missing X-Payload-ID"),
        ("X-Payload-ID", "has space", "X-Payload-ID must be"),
        ("X-Payload-ID", "x" * 129, "X-Payload-ID must be"),
        ("X-Public-Key", None, "missing X-Public-Key"),
        ("X-Public-Key", "not-a-key", "not a PEM public key"),
        ("X-Public-Key", "%FF%FE-----BEGIN", "not a PEM public key"),
        ("X-Public-Key", "RSA_1024", "minimum is 2048"),
        ("X-Public-Key", "EC", "must be an RSA public key"),
        ("X-Security-Tier", "ultra", "X-Security-Tier must be one of"),
    ],
)
def test_bad_headers_get_400(wire, client_key, header, value, detail):
    _, headers, body = wire.request(CHAT)
    if value is None:
        del headers[header]
    elif value == "RSA_1024":
        headers[header] = urllib.parse.quote(_small_rsa_pem())
    elif value == "EC":
        headers[header] = urllib.parse.quote(_ec_pem())
    else:
        headers[header] = value
    response = post(wire, headers, body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    good_request_works(wire, client_key)


def _drop(field):
    return lambda env: env.pop(field)


def _set(field, value):
    return lambda env: env.__setitem__(field, value)


def _set_inner(field, value):
    return lambda env: env["encrypted_payload"].__setitem__(field, value)


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (_set("version", "2.0"), "unsupported version"),
        (_set("algorithm", "hybrid-aes128-rsa2048"), "unsupported algorithm"),
        (_set("key_algorithm", "RSA-PKCS1"), "unsupported key_algorithm"),
        (_set("payload_algorithm", "AES-128-CBC"), "unsupported payload_algorithm"),
        (_drop("encrypted_aes_key"), "missing 'encrypted_aes_key'"),
        (_drop("encrypted_payload"), "missing 'encrypted_payload'"),
        (_set("encrypted_payload", "abc"), "encrypted_payload must be an object"),
        (_set_inner("nonce", b64(b"\x00" * 8)), "nonce must be 12 bytes"),
        (_set_inner("tag", b64(b"\x00" * 15)), "tag must be 16 bytes"),
        (_set_inner("ciphertext", "***"), "not valid base64"),
        (_set_inner("ciphertext", 12), "must be a base64 string"),
        (lambda env: env["encrypted_payload"].pop("tag"), "missing 'tag'"),
    ],
)
def test_malformed_envelopes_get_400(wire, client_key, mutate, detail):
    _, headers, _ = wire.request(CHAT)
    response = post(wire, headers, envelope_bytes(wire, mutate))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed envelope")
    assert detail in response.json()["detail"]
    good_request_works(wire, client_key)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'{"version": "1.0"}'])
def test_non_envelope_bodies_get_400(wire, body):
    _, headers, _ = wire.request(CHAT)
    response = post(wire, headers, body)
    assert response.status_code == 400
    assert response.json()["detail"]


def _flip_ciphertext(env):
    raw = bytearray(__import__("base64").b64decode(env["encrypted_payload"]["ciphertext"]))
    raw[0] ^= 1
    env["encrypted_payload"]["ciphertext"] = b64(bytes(raw))


def _foreign_wrapped_key(env):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong, _ = seal(CHAT, public_pem(other))
    env["encrypted_aes_key"] = wrong["encrypted_aes_key"]


@pytest.mark.parametrize(
    "mutate",
    [
        _flip_ciphertext,
        _set_inner("tag", b64(b"\x01" * 16)),
        _set_inner("nonce", b64(b"\x02" * 12)),
        _set("encrypted_aes_key", b64(b"\x03" * 512)),
        _foreign_wrapped_key,
    ],
    ids=["ciphertext", "tag", "nonce", "wrapped-key-garbage", "wrapped-key-wrong-length"],
)
def test_failed_decryption_is_one_opaque_400(wire, client_key, mutate):
    _, headers, _ = wire.request(CHAT)
    response = post(wire, headers, envelope_bytes(wire, mutate))
    assert response.status_code == 400
    assert response.json() == {"detail": "decryption failed"}
    good_request_works(wire, client_key)


@pytest.mark.parametrize(
    ("plaintext", "detail"),
    [
        (b"definitely not json", "not valid JSON"),
        (b"\xff\xfe\xfd", "not valid JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (json.dumps({"messages": CHAT["messages"]}).encode(), "'model'"),
        (json.dumps({"model": "m", "messages": []}).encode(), "'messages'"),
        (json.dumps({"model": "m", "messages": ["hi"]}).encode(), "'role'"),
    ],
)
def test_bad_plaintexts_get_400(wire, client_key, plaintext, detail):
    _, headers, _ = wire.request(CHAT)
    response = post(wire, headers, envelope_bytes(wire, payload=plaintext))
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    good_request_works(wire, client_key)


def test_body_over_the_cap_gets_400(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(max_body_bytes=8192)
    wire = wire_for(endpoint)
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 10_000}]}
    _, headers, body = wire.request(big)
    assert len(body) > 8192
    response = post(wire, headers, body)
    assert response.status_code == 400
    assert "exceeds the limit of 8192 bytes" in response.json()["detail"]

    # Without Content-Length (chunked upload) the cap still holds.
    def chunks():
        yield body[:4000]
        yield body[4000:]

    response = httpx2.post(wire.base_url + PATH, headers=headers, content=chunks(), timeout=60)
    assert response.status_code == 400
    assert "exceeds the limit" in response.json()["detail"]
    good_request_works(wire, client_key)


def test_maximum_tier_without_tpm_is_503(wire, client_key):
    _, headers, body = wire.request(CHAT, tier="maximum")
    response = post(wire, headers, body)
    assert response.status_code == 503
    assert "requires a TPM" in response.json()["detail"]


@pytest.mark.parametrize("tier", ["standard", "high"])
def test_tiers_without_tpm_proceed(wire, client_key, tier):
    _, headers, body = wire.request(CHAT, tier=tier)
    response = post(wire, headers, body)
    assert response.status_code == 200
    meta = open_response(response.content, client_key)[0]["_metadata"]
    assert meta["security_tier"] == tier
    assert meta["tpm_attestation"] == {"is_available": False}


def test_api_keys_gate_requests(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(api_keys=("key-one", "key-two"))
    for api_key, header_override, expected in [
        (None, None, "missing API key"),
        ("wrong", None, "invalid API key"),
        (None, "Basic a2V5LW9uZQ==", "must be 'Bearer <key>'"),
        ("key-one-extra", None, "invalid API key"),
    ]:
        wire = wire_for(endpoint, api_key=api_key)
        _, headers, body = wire.request(CHAT)
        if header_override:
            headers["Authorization"] = header_override
        response = post(wire, headers, body)
        assert response.status_code == 401, api_key
        assert expected in response.json()["detail"]
    for good in ("key-one", "key-two"):
        good_request_works(wire_for(endpoint, api_key=good), client_key)


def test_api_key_checked_before_anything_else(endpoint_factory, wire_for):
    endpoint = endpoint_factory(api_keys=("key-one",))
    response = httpx2.post(endpoint.base_url + PATH, content=b"garbage")
    assert response.status_code == 401


def test_tier_policy_forbids_models(endpoint_factory, wire_for, client_key):
    from nomyo_native.server import TierPolicy

    policy = TierPolicy.from_specs(["high=approved-model", "high=other-approved"])
    wire = wire_for(endpoint_factory(tier_policy=policy))
    payload = {"model": "random-model", "messages": CHAT["messages"]}
    _, headers, body = wire.request(payload, tier="high")
    response = post(wire, headers, body)
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "the requested model is not allowed for security tier 'high'"
    )
    assert "random-model" not in response.text  # encrypted content is never echoed in clear
    for model in ("approved-model", "other-approved"):
        _, headers, body = wire.request({**payload, "model": model}, tier="high")
        assert post(wire, headers, body).status_code == 200
    # Tiers without a list allow every model.
    _, headers, body = wire.request(payload, tier="standard")
    assert post(wire, headers, body).status_code == 200


def test_unknown_routes_and_methods_answer_json(http_endpoint):
    response = httpx2.get(http_endpoint.base_url + "/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    response = httpx2.get(http_endpoint.base_url + PATH)
    assert response.status_code == 405
    assert "detail" in response.json()


def test_internal_backend_failure_is_500_and_server_keeps_serving(
    endpoint_factory, wire_for, client_key
):
    class Exploding:
        name = "exploding"

        async def complete(self, request):
            raise RuntimeError("secret prompt content must not leak")

        async def aclose(self):
            return None

    wire = wire_for(endpoint_factory(backend=Exploding()))
    for _ in range(2):
        _, headers, body = wire.request(CHAT)
        response = post(wire, headers, body)
        assert response.status_code == 500
        assert response.json() == {"detail": "internal server error"}


def test_rate_limit_answers_429_with_retry_after(endpoint_factory, wire_for, client_key):
    endpoint = endpoint_factory(rate_limit_per_minute=2, api_keys=("k1", "k2"))
    first = wire_for(endpoint, api_key="k1")
    for _ in range(2):
        _, headers, body = first.request(CHAT)
        assert post(first, headers, body).status_code == 200
    _, headers, body = first.request(CHAT)
    response = post(first, headers, body)
    assert response.status_code == 429
    assert response.json() == {"detail": "rate limit exceeded"}
    assert 1 <= int(response.headers["retry-after"]) <= 30
    # Another key has its own budget.
    good_request_works(wire_for(endpoint, api_key="k2"), client_key)


@pytest.mark.parametrize("declared", ["\u00b2", "\u0661\u0662", "-1", "1e3"])
async def test_content_length_that_is_not_ascii_digits_is_a_400(declared):
    # str.isdigit() accepts "²" and Arabic-Indic digits, which int() then rejects: a 500 before.
    from types import SimpleNamespace

    from nomyo_native.server.app import Refusal, _read_body, _Reservation
    from nomyo_native.server.limits import BodyBudget, ConnectionLimits

    class Request:
        def __init__(self) -> None:
            self.headers = {"content-length": declared}

        async def stream(self):
            yield b""

    with pytest.raises(Refusal) as refused:
        state = SimpleNamespace(
            max_body_bytes=1024, limits=ConnectionLimits(), body_budget=BodyBudget(4096)
        )
        await _read_body(Request(), state, _Reservation())
    assert refused.value.status == 400


@pytest.mark.parametrize("stream", [True, 1, "true", {"on": True}])
def test_stream_true_is_refused_with_400(wire, client_key, stream):
    _, headers, body = wire.request({**CHAT, "stream": stream})
    response = post(wire, headers, body)
    assert response.status_code == 400
    assert "no streaming" in response.json()["detail"]
    good_request_works(wire, client_key)


@pytest.mark.parametrize("stream", [0, 0.0, -0.0, "false", "", [], {}])
def test_stream_that_is_not_json_false_or_null_is_refused_with_400(wire, client_key, stream):
    # Python's 0 == False must not let a number pass for the boolean.
    _, headers, body = wire.request({**CHAT, "stream": stream})
    response = post(wire, headers, body)
    assert response.status_code == 400
    assert "no streaming" in response.json()["detail"]


@pytest.mark.parametrize("stream", [False, None])
def test_stream_false_or_null_is_answered(wire, client_key, stream):
    pid, headers, body = wire.request({**CHAT, "stream": stream})
    response = post(wire, headers, body)
    assert response.status_code == 200
    assert open_response(response.content, client_key)[0]["_metadata"]["payload_id"] == pid
