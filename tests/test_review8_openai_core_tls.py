"""Review: the openai SDK on our sync transport over the core's TLS, refused by the server's
certificate, fails as it fails over OpenSSL: the same exception and text, one attempt (a
certificate the client cannot verify is never retried)."""

from __future__ import annotations

import ssl
from typing import Any

import certifi
import pytest

from nomyo_native._sync_core_tls import CoreTlsStream


def _refusal(secure_endpoint: Any, **trust: Any) -> BaseException:
    from nomyo_native import openai as nomyo_openai

    client = nomyo_openai.OpenAI(
        base_url=secure_endpoint.base_url, api_key="k", key_size=2048, **trust
    )
    with client, pytest.raises(Exception) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    return caught.value


def test_a_refused_certificate_fails_as_over_openssl_in_one_attempt(
    secure_endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str | None] = []
    connect = CoreTlsStream.connect.__func__  # type: ignore[attr-defined]

    def counting(cls: type[CoreTlsStream], sock: Any, context: Any, name: Any, timeout: Any) -> Any:
        attempts.append(name)
        return connect(cls, sock, context, name, timeout)

    monkeypatch.setattr(CoreTlsStream, "connect", classmethod(counting))
    core = _refusal(secure_endpoint, ca_bundle=certifi.where())
    assert attempts == ["127.0.0.1"]
    openssl = _refusal(secure_endpoint, verify=ssl.create_default_context(cafile=certifi.where()))
    assert attempts == ["127.0.0.1"]  # the second ran on OpenSSL
    assert type(core) is type(openssl)
    assert str(core) == str(openssl)
    assert "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate" in str(core)
