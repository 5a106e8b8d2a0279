"""The protocol layer on its own, without sockets: requests built, answers judged, responses
opened and bound, retries decided (``_protocol``, ``_retry``)."""

from __future__ import annotations

import json
import ssl
import urllib.parse
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

import nomyo_native as nomyo
from nomyo_native import _core, _protocol
from nomyo_native._retry import RetryPolicy, tls_verification_failure

from .peer import open_with, seal_to


@pytest.fixture(scope="module")
def keypair() -> _core.ClientKeyPair:
    return _core.ClientKeyPair.generate(2048)


def _client_public(keypair: _core.ClientKeyPair):
    return serialization.load_pem_public_key(keypair.public_key_pem.encode())


# ---- building requests -----------------------------------------------------------------------


def test_completion_headers_carry_exactly_what_the_protocol_names(keypair):
    quoted = _protocol.quote_public_key(keypair)
    headers = _protocol.completion_headers("pid-1", quoted, "sk-x", "high")
    assert headers == {
        "X-Payload-ID": "pid-1",
        "X-Public-Key": quoted,
        "Content-Type": "application/octet-stream",
        "Authorization": "Bearer sk-x",
        "X-Security-Tier": "high",
    }
    assert urllib.parse.unquote(quoted) == keypair.public_key_pem
    bare = _protocol.completion_headers("pid-1", quoted, None, None)
    assert "Authorization" not in bare and "X-Security-Tier" not in bare


def test_a_sealed_payload_opens_at_the_server_key_owner(peer_key):
    server_key = _core.ServerPublicKey.from_pem(
        peer_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    request, envelope = open_with(peer_key, _protocol.seal_payload(payload, server_key))
    assert request == payload
    assert envelope["version"] == "1.0"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ([], ValueError),
        ({}, ValueError),
        ({"model": "m", "stream": True}, nomyo.InvalidRequestError),
        ({"model": "m", "stream": 0}, nomyo.InvalidRequestError),
    ],
)
def test_payloads_that_cannot_be_sent_are_refused_before_sealing(payload, error):
    with pytest.raises(error):
        _protocol.validate_payload(payload)


def test_stream_false_and_null_are_accepted():
    _protocol.validate_payload({"model": "m", "stream": False})
    _protocol.validate_payload({"model": "m", "stream": None})


def test_unknown_tier_is_refused():
    assert _protocol.validate_security_tier("maximum") == "maximum"
    with pytest.raises(ValueError, match="security_tier"):
        _protocol.validate_security_tier("ultra")


def test_an_invalid_server_key_is_a_response_format_error():
    with pytest.raises(nomyo.ResponseFormatError, match="invalid public key"):
        _protocol.parse_server_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


# ---- finishing responses ---------------------------------------------------------------------


def test_open_response_fills_the_clients_metadata_whatever_the_server_wrote(keypair):
    payload_id = str(uuid.uuid4())
    server_metadata = {
        "payload_id": payload_id,
        "payload_id_verified": "forged",
        "is_encrypted": "forged",
        "model_extra": 1,
    }
    body = seal_to(
        _client_public(keypair), {"choices": [], "_metadata": server_metadata}, processed_at=7
    )
    response = _protocol.open_response(body, payload_id, keypair)
    metadata = response["_metadata"]
    assert metadata["payload_id"] == payload_id
    assert metadata["payload_id_verified"] is True
    assert metadata["is_encrypted"] is True
    assert metadata["processed_at"] == 7
    assert metadata["model_extra"] == 1


def test_open_response_without_echo_is_unverified_and_a_wrong_echo_is_refused(keypair):
    public = _client_public(keypair)
    unechoed = _protocol.open_response(seal_to(public, {"choices": []}), "pid-a", keypair)
    assert unechoed["_metadata"]["payload_id_verified"] is False
    assert unechoed["_metadata"]["payload_id"] == "pid-a"
    replayed = seal_to(public, {"choices": [], "_metadata": {"payload_id": "pid-b"}})
    with pytest.raises(nomyo.SecurityError, match="replay"):
        _protocol.open_response(replayed, "pid-a", keypair)


def test_a_tampered_response_fails_opaquely(keypair):
    body = json.loads(seal_to(_client_public(keypair), {"secret": "x" * 64}))
    ciphertext = bytearray(body["encrypted_payload"]["ciphertext"].encode())
    ciphertext[10] = ord("A") if ciphertext[10] != ord("A") else ord("B")
    body["encrypted_payload"]["ciphertext"] = ciphertext.decode()
    with pytest.raises(nomyo.SecurityError) as caught:
        _protocol.open_response(json.dumps(body).encode(), "pid", keypair)
    assert str(caught.value) == nomyo.errors.OPAQUE_CRYPTO_MESSAGE
    assert not isinstance(caught.value, nomyo.ResponseFormatError)


def test_a_broken_envelope_is_a_response_format_error(keypair):
    with pytest.raises(nomyo.ResponseFormatError):
        _protocol.open_response(b"<html>not an envelope</html>", "pid", keypair)


@pytest.mark.parametrize(
    ("status", "cls", "text"),
    [
        (400, nomyo.InvalidRequestError, "Bad request: nope"),
        (401, nomyo.AuthenticationError, "nope"),
        (403, nomyo.ForbiddenError, "Forbidden: nope"),
        (404, nomyo.APIError, "Endpoint not found: nope"),
        (429, nomyo.RateLimitError, "Rate limit exceeded: nope"),
        (500, nomyo.ServerError, "Server error: nope"),
        (503, nomyo.ServiceUnavailableError, "Service unavailable: nope"),
        (502, nomyo.APIError, "Unexpected status code: 502 nope"),
    ],
)
def test_status_errors_follow_protocol_section_4(status, cls, text):
    error = _protocol.error_from_response(status, json.dumps({"detail": "nope"}).encode())
    assert type(error) is cls
    assert str(error) == text
    assert error.status_code == status
    assert error.error_details == {"detail": "nope"}


def test_a_non_json_error_body_is_kept_as_text_and_defaults_apply():
    error = _protocol.error_from_response(401, b"<html>denied</html>")
    assert str(error) == "Invalid API key or authentication failed"
    assert error.error_details == {"body": "<html>denied</html>"}
    assert _protocol.error_from_response(500, b"").error_details is None


def test_status_error_scrubs_what_the_request_carried_and_hints_at_a_v1_path():
    body = json.dumps({"detail": "invalid API key sk-secret-123 for user"}).encode()
    error = _protocol.status_error(
        404, body, 3.0, secrets=("sk-secret-123",), shown_url="https://h.test/v1"
    )
    assert "sk-secret-123" not in str(error)
    assert "sk-secret-123" not in json.dumps(error.error_details)
    assert "without /v1" in str(error) and "https://h.test" in str(error)
    assert error.retry_after == 3.0


def test_a_certificate_failure_is_found_on_the_chain_and_explained():
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    try:
        try:
            raise cause
        except ssl.SSLError as exc:
            raise ConnectionError("wrapped") from exc
    except ConnectionError as wrapped:
        assert tls_verification_failure(wrapped) is cause
        error = _protocol.connection_error(wrapped, "https://h.test")
    assert "self-signed certificate" in str(error) and "ca_bundle" in str(error)
    assert tls_verification_failure(ConnectionError("plain")) is None


# ---- retry decisions -------------------------------------------------------------------------


def _error(status: int, retry_after: float | None = None, detail: str = "x") -> nomyo.APIError:
    body = json.dumps({"detail": detail}).encode()
    return _protocol.status_error(status, body, retry_after, secrets=(), shown_url="https://h")


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_until_the_last_attempt(status):
    policy = RetryPolicy(max_retries=2, retry_backoff=1.0, max_backoff=30.0)
    assert policy.after_status(0, _error(status), None) is not None
    assert policy.after_status(1, _error(status), None) is not None
    assert policy.after_status(2, _error(status), None) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 418])
def test_other_statuses_are_never_retried(status):
    assert RetryPolicy(max_retries=5).after_status(0, _error(status), None) is None


def test_backoff_is_jittered_exponential_and_capped():
    policy = RetryPolicy(max_retries=10, retry_backoff=1.0, max_backoff=5.0)
    for index, ceiling in enumerate([1.0, 2.0, 4.0, 5.0, 5.0]):
        delay = policy.after_failure(index, permanent=False)
        assert delay is not None and ceiling / 2 <= delay <= ceiling


def test_retry_after_is_obeyed_up_to_its_bound():
    policy = RetryPolicy(max_retries=2, max_retry_after=10.0)
    assert policy.after_status(0, _error(429, retry_after=7.5), None) == 7.5
    assert policy.after_status(0, _error(503, retry_after=0.0), None) == 0.0
    assert policy.after_status(0, _error(429, retry_after=11.0), None) is None


def test_a_maximum_request_answered_no_tpm_is_not_retried_and_says_why():
    policy = RetryPolicy(max_retries=3)
    error = _error(503, detail="tier maximum requires a TPM; none available")
    assert policy.after_status(0, error, "maximum") is None
    assert "not retried" in str(error) and "high" in str(error)
    # The same answer to a lower tier, or one the server calls temporary, stays retryable.
    assert policy.after_status(0, _error(503, detail="no TPM"), "high") is not None
    assert policy.after_status(0, _error(503, detail="TPM busy, retry"), "maximum") is not None
    assert policy.after_status(0, _error(503, 2.0, detail="no TPM"), "maximum") == 2.0


def test_network_failures_retry_unless_permanent_or_last():
    policy = RetryPolicy(max_retries=1)
    assert policy.after_failure(0, permanent=False) is not None
    assert policy.after_failure(1, permanent=False) is None
    assert policy.after_failure(0, permanent=True) is None
    assert RetryPolicy(max_retries=0).after_failure(0, permanent=False) is None


# ---- the layer's boundary --------------------------------------------------------------------

NO_IO_MODULES = (
    "_protocol",
    "_retry",
    "_trust",
    "_keys",
    "_client_base",
    "_client_attributes",
    "_attempt_decisions",
)
IO_PACKAGES = {"httpx", "httpx2", "httpcore", "httpcore2", "asyncio", "socket", "anyio"}


@pytest.mark.parametrize("name", NO_IO_MODULES)
def test_the_protocol_layer_imports_no_network_or_event_loop(name):
    import ast
    import importlib

    source = importlib.import_module(f"nomyo_native.{name}").__file__
    with open(source, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.update({node.module, node.module.split(".")[0]})
            if node.module == "nomyo_native":
                imported.update(f"nomyo_native.{alias.name}" for alias in node.names)
    assert not imported & IO_PACKAGES, sorted(imported & IO_PACKAGES)
    assert not imported & {"nomyo_native._async_driver", "nomyo_native._sync_driver"}


# Loaded without the package's __init__ (which imports the clients and their drivers): a
# stand-in parent package, then the module, then what it pulled in.
_IMPORT_ALONE = """
import importlib, json, sys, types
package = types.ModuleType("nomyo_native")
package.__path__ = [sys.argv[1]]
sys.modules["nomyo_native"] = package
importlib.import_module("nomyo_native." + sys.argv[2])
print(json.dumps(sorted(sys.modules)))
"""
# The decisions, with what they need of keys and retries: nothing of the network or an event
# loop may be loaded with them, however indirectly.
NO_IO_TRANSITIVELY = (*NO_IO_MODULES, "_keyring", "_config")
NETWORK_OR_LOOP = IO_PACKAGES | {"ssl", "h11", "h2", "certifi", "truststore"}


@pytest.mark.parametrize("name", NO_IO_TRANSITIVELY)
def test_the_protocol_layer_loads_no_network_or_event_loop_transitively(name):
    import os
    import subprocess
    import sys

    package_dir = os.path.dirname(nomyo.__file__)
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALONE, package_dir, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = {module.split(".")[0] for module in json.loads(done.stdout)}
    assert f"nomyo_native.{name}" in json.loads(done.stdout)
    assert not loaded & NETWORK_OR_LOOP, sorted(loaded & NETWORK_OR_LOOP)


def test_the_transitive_import_check_sees_what_a_driver_loads():
    """The check above can fail: a driver module, loaded the same way, brings the network."""
    import os
    import subprocess
    import sys

    package_dir = os.path.dirname(nomyo.__file__)
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALONE, package_dir, "_sync_driver"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = {module.split(".")[0] for module in json.loads(done.stdout)}
    assert {"httpx2", "ssl", "socket"} <= loaded
