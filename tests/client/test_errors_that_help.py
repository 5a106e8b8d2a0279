"""Issue 13 items 3, 5, 6 and 7 (client side): mistakes get a fast, clear, permanent answer.

* ``stream=True`` is refused before sealing (the protocol has no streaming);
* a certificate or hostname failure is not retried and says how to trust a CA;
* a 503 saying tier ``maximum`` needs a TPM the server lacks is not retried (genuine
  unavailability still is);
* a base URL with a path (``.../v1``) gets a hint on 404.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import nomyo_native as nomyo
from nomyo_native._asyncio_tls_backend import AsyncioTLSTransport

USER = [{"role": "user", "content": "help me"}]
NO_TPM = "security tier 'maximum' requires a TPM and this server has none"


# ---- stream=True ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, 1, "yes", 0, 0.0, "", [], {}, "false"])
async def test_stream_true_is_refused_before_sealing(make_chat, peer, monkeypatch, stream):
    sealed = []
    original = nomyo._core.seal
    monkeypatch.setattr(nomyo._core, "seal", lambda *a: sealed.append(1) or original(*a))
    async with make_chat() as chat:
        with pytest.raises(nomyo.InvalidRequestError, match="no streaming") as refused:
            await chat.create(model="m", messages=USER, stream=stream)
        with pytest.raises(nomyo.InvalidRequestError, match="no streaming"):
            await chat.client.encrypt_payload({"model": "m", "messages": USER, "stream": True})
    assert refused.value.status_code is None, "nothing was sent"
    assert sealed == [] and peer.key_fetches == 0 and peer.posts == 0


async def test_stream_false_still_passes_through(make_chat, peer):
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER, stream=False)
    assert peer.received[0].request["stream"] is False


async def test_stream_null_still_passes_through(make_chat, peer):
    async with make_chat() as chat:
        await chat.create(model="m", messages=USER, stream=None)
    assert peer.received[0].request.get("stream") is None


# ---- TLS verification failures ---------------------------------------------------------------


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@asynccontextmanager
async def tls_server_named(tmp_path: Path, name: str) -> AsyncIterator[tuple[str, Path]]:
    """A TLS listener on 127.0.0.1 whose (trusted) certificate names only ``name``."""
    cert_path, key_path = _self_signed(tmp_path, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    accepted = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}", cert_path
    finally:
        server.close()
        await server.wait_closed()


def _transports(ca: Path) -> dict[str, httpx2.AsyncBaseTransport | None]:
    context = ssl.create_default_context(cafile=str(ca))
    limits = httpx2.Limits()
    return {
        "native": AsyncioTLSTransport(context, limits),
        "httpx2": httpx2.AsyncHTTPTransport(verify=context),
    }


@pytest.mark.parametrize("which", ["native", "httpx2"])
async def test_hostname_mismatch_is_permanent_and_names_ca_bundle(tmp_path, sleeps, which):
    async with tls_server_named(tmp_path, "other.test") as (url, ca):
        chat = nomyo.SecureChatCompletion(
            base_url=url,
            ca_bundle=str(ca),
            transport=_transports(ca)[which],
            sleep=sleeps,
            max_retries=3,
            key_size=2048,
        )
        async with chat:
            with pytest.raises(nomyo.APIConnectionError) as failed:
                await chat.create(model="m", messages=USER)
    message = str(failed.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "ca_bundle=" in message
    assert "SSL_CERT_FILE" in message
    assert sleeps.waits == [], "a certificate failure is not retried"


async def test_untrusted_ca_is_permanent_and_names_ca_bundle(secure_endpoint, sleeps, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url, key_size=2048, max_retries=3, sleep=sleeps
    ) as chat:
        with pytest.raises(nomyo.APIConnectionError) as failed:
            await chat.create(model="m", messages=USER)
    assert "ca_bundle=" in str(failed.value) and "SSL_CERT_FILE" in str(failed.value)
    assert sleeps.waits == []


async def test_a_refused_connection_is_still_retried(sleeps):
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with nomyo.SecureChatCompletion(
        base_url=f"https://127.0.0.1:{port}", key_size=2048, max_retries=2, sleep=sleeps
    ) as chat:
        with pytest.raises(nomyo.APIConnectionError) as failed:
            await chat.create(model="m", messages=USER)
    assert len(sleeps.waits) == 2
    assert "ca_bundle" not in str(failed.value)


# ---- 503 at tier maximum ---------------------------------------------------------------------


def _status(code: int, detail: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(code, json={"detail": detail}, headers=headers)


@pytest.mark.parametrize(
    "detail",
    [NO_TPM, "tier maximum needs a TPM and this server has none", "No TPM available on host"],
)
async def test_503_naming_the_missing_tpm_at_maximum_is_not_retried(make_chat, peer, detail):
    peer.script = [_status(503, detail)] * 3
    async with make_chat(max_retries=2, attestation="off") as chat:
        with pytest.raises(nomyo.ServiceUnavailableError, match="not retried") as failed:
            await chat.create(model="m", messages=USER, security_tier="maximum")
    assert peer.posts == 1
    assert failed.value.status_code == 503
    assert "security_tier='high'" in str(failed.value)


@pytest.mark.parametrize(
    ("tier", "response"),
    [
        ("maximum", _status(503, "TPM attestation is temporarily unavailable")),
        ("maximum", _status(503, "backend down")),
        ("maximum", _status(503, NO_TPM, {"Retry-After": "1"})),
        ("high", _status(503, NO_TPM)),
        (None, _status(503, NO_TPM)),
    ],
)
async def test_genuine_unavailability_is_still_retried(make_chat, peer, sleeps, tier, response):
    peer.script = [response]
    options = {"security_tier": tier} if tier else {}
    async with make_chat(max_retries=2, attestation="off") as chat:
        await chat.create(model="m", messages=USER, **options)
    assert peer.posts == 2 and len(sleeps.waits) == 1


async def test_the_local_endpoint_without_tpm_answers_maximum_once(secure_endpoint, sleeps):
    async with nomyo.SecureChatCompletion(
        base_url=secure_endpoint.base_url,
        ca_bundle=secure_endpoint.ca_path,
        key_size=2048,
        sleep=sleeps,
        attestation="off",
    ) as chat:
        with pytest.raises(nomyo.ServiceUnavailableError, match="TPM"):
            await chat.create(model="m", messages=USER, security_tier="maximum")
    assert sleeps.waits == []


# ---- a base URL with a path ------------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["https://peer.test/v1", "https://peer.test/v1/"])
async def test_404_under_a_base_url_with_v1_says_the_base_url_takes_no_path(
    make_chat, peer, base_url
):
    def not_found(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(404, json={"detail": "Not Found"})

    async with make_chat(base_url=base_url, transport=httpx2.MockTransport(not_found)) as chat:
        with pytest.raises(nomyo.APIError) as failed:
            await chat.create(model="m", messages=USER)
    assert failed.value.status_code == 404
    assert "base_url='https://peer.test'," in str(failed.value)
    assert "without /v1" in str(failed.value)


async def test_404_without_a_path_gets_no_such_hint(make_chat, peer):
    peer.script = [httpx2.Response(404, json={"detail": "Secure inference not enabled"})]
    async with make_chat() as chat:
        with pytest.raises(nomyo.APIError) as failed:
            await chat.create(model="m", messages=USER)
    assert "/v1" not in str(failed.value)
