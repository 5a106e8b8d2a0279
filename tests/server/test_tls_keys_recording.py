"""Self-signed TLS, the server key (fingerprint, key file), and TEST-ONLY key recording."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import stat

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nomyo_native.server import ServerKey
from nomyo_native.server.crypto import ServerKeyFileError
from nomyo_native.server.recording import KeyRecorder, read_key_record_file
from nomyo_native.server.tls import make_self_signed

from .conftest import ssl_context_for
from .wire import PATH, WireClient, open_response, seal


def test_self_signed_endpoint_verifies_with_its_ca_only(secure_endpoint):
    assert secure_endpoint.base_url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(secure_endpoint.ca_path))
    response = httpx2.get(secure_endpoint.base_url + "/pki/public_key", verify=context)
    assert response.status_code == 200
    with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx2.get(secure_endpoint.base_url + "/pki/public_key", verify=True)


def test_certificate_names_localhost(tmp_path):
    files = make_self_signed(tmp_path)
    assert stat.S_IMODE(os.stat(files.key_path).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(files.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def test_fingerprint_is_sha256_of_spki_der(http_endpoint):
    pem = httpx2.get(http_endpoint.base_url + "/pki/public_key").text
    der = serialization.load_pem_public_key(pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert http_endpoint.server_key_fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()
    health = httpx2.get(http_endpoint.base_url + "/health").json()
    assert health["server_key_fingerprint"] == http_endpoint.server_key_fingerprint


def test_key_file_is_created_private_and_reloaded(tmp_path, server_key):
    path = tmp_path / "server-key.pem"
    created = ServerKey.load_or_create(path)
    assert created.bits == 4096
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ServerKey.load_or_create(path).fingerprint == created.fingerprint


def test_key_file_with_password_and_bad_files(tmp_path):
    key = ServerKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    path = tmp_path / "k.pem"
    key.save(path, b"correct horse")
    assert ServerKey.load_or_create(path, b"correct horse").fingerprint == key.fingerprint
    with pytest.raises(ServerKeyFileError, match="cannot load"):
        ServerKey.load_or_create(path, b"wrong")
    os.chmod(path, 0o644)
    with pytest.raises(ServerKeyFileError, match="chmod 600"):
        ServerKey.load_or_create(path, b"correct horse")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    os.chmod(garbage, 0o600)
    with pytest.raises(ServerKeyFileError, match="cannot load"):
        ServerKey.load_or_create(garbage)


def test_recording_endpoint_records_the_exchange_keys(recording_endpoint, client_key):
    wire = WireClient(
        base_url=recording_endpoint.base_url,
        server_public_pem=recording_endpoint.public_key_pem,
        client_key=client_key,
        verify=ssl_context_for(recording_endpoint),
    )
    pid = "recorded-payload-1"
    chosen_key = AESGCM.generate_key(bit_length=256)
    envelope, _ = seal(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        recording_endpoint.public_key_pem,
        aes_key=chosen_key,
    )
    response = httpx2.post(
        wire.base_url + PATH,
        headers=wire.headers(pid),
        content=json.dumps(envelope).encode(),
        verify=wire.verify,
    )
    assert response.status_code == 200
    _, response_key = open_response(response.content, client_key)
    records = [r for r in recording_endpoint.recorded_keys if r.payload_id == pid]
    assert len(records) == 1
    assert records[0].request_aes_key == chosen_key
    assert records[0].response_aes_key == response_key
    assert records[0].response_aes_key != chosen_key


def test_recording_is_off_by_default(secure_endpoint):
    with pytest.raises(RuntimeError, match="key recording is off"):
        _ = secure_endpoint.recorded_keys


def test_key_record_file_round_trip(tmp_path):
    path = tmp_path / "keys.jsonl"
    with pytest.warns(RuntimeWarning, match="KEY RECORDING IS ON"):
        recorder = KeyRecorder(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    recorder.record("p1", b"\x01" * 32, b"\x02" * 32)
    recorder.record("p2", b"\x03" * 32, b"\x04" * 32)
    assert read_key_record_file(path) == recorder.records
    assert recorder.for_payload("p2").response_aes_key == b"\x04" * 32


def test_unreadable_certificate_fails_start_clearly(tmp_path, server_key):
    from nomyo_native.server import ServerConfig, start_server

    missing = tmp_path / "missing.pem"
    config = ServerConfig(port=0, server_key=server_key, tls_cert=missing, tls_key=missing)
    with pytest.raises(RuntimeError, match=r"endpoint did not start.*No such file"):
        start_server(config, timeout=30)


def test_self_signed_certificate_covers_a_specific_bind_address():
    from nomyo_native.server.resources import _certificate_hosts

    assert _certificate_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert _certificate_hosts("0.0.0.0") == ("localhost", "127.0.0.1", "::1")
    assert _certificate_hosts("192.0.2.7")[-1] == "192.0.2.7"


def test_config_rejects_inconsistent_options(tmp_path):
    from nomyo_native.server import ServerConfig

    with pytest.raises(ValueError, match="unsupported TPM quote scheme ecdsa/sha512"):
        ServerConfig(tpm_scheme="ecdsa", tpm_hash="sha512")
    with pytest.raises(ValueError, match="either --tls-self-signed or --tls-cert"):
        ServerConfig(tls_self_signed=True, tls_cert=tmp_path / "c", tls_key=tmp_path / "k")
    with pytest.raises(ValueError, match="rate limit"):
        ServerConfig(rate_limit_per_minute=0)
    with pytest.raises(ValueError, match="max_body_bytes"):
        ServerConfig(max_body_bytes=10)
    with pytest.raises(ValueError, match="tcti"):
        ServerConfig(tpm="tcti:")
