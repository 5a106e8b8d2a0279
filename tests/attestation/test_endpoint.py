"""End to end: the client verifies real swtpm quotes sent by the local endpoint over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import nomyo_native as nomyo
from nomyo_native.attestation import capture_baseline
from nomyo_native.errors import SecurityError
from nomyo_native.server.config import ServerConfig
from nomyo_native.server.crypto import ServerKey
from nomyo_native.server.runner import RunningServer, start_server

USER = [{"role": "user", "content": "is this a genuine endpoint?"}]

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP instead of HTTPS")


@pytest.fixture(scope="module")
def server_key() -> ServerKey:
    return ServerKey.generate(2048)


def serve(quoter: Any, key: ServerKey, scheme: str = "ecdsa") -> RunningServer:
    return start_server(ServerConfig(port=0, server_key=key, quoter=quoter, tpm_scheme=scheme))


@pytest.fixture(scope="module")
def endpoint(tpm_quoter: Any, server_key: ServerKey) -> Iterator[RunningServer]:
    with serve(tpm_quoter, server_key) as running:
        yield running


def chat_for(server: RunningServer, **kwargs: Any) -> nomyo.SecureChatCompletion:
    return nomyo.SecureChatCompletion(
        base_url=server.base_url, allow_http=True, key_size=2048, **kwargs
    )


@pytest.mark.parametrize("scheme", ["ecdsa", "rsassa", "rsapss"])
async def test_required_attestation_verifies_for_each_scheme(
    tpm_quoter: Any, server_key: ServerKey, scheme: str
) -> None:
    with serve(tpm_quoter, server_key, scheme) as server:
        async with chat_for(server, attestation="require") as chat:
            reply = await chat.create(model="echo", messages=USER)
    assert reply["choices"][0]["message"]["content"]
    record = reply["_metadata"]["attestation_verification"]
    assert record["verified"] is True
    assert {name for name, c in record["checks"].items() if c["passed"]} == {
        "signature",
        "magic_and_type",
        "qualifying_data",
        "pcr_digest",
    }
    assert "not that the quote came from genuine TPM hardware" in record["summary"]


async def test_maximum_tier_requires_and_verifies(endpoint: RunningServer) -> None:
    async with chat_for(endpoint) as chat:
        reply = await chat.create(model="echo", messages=USER, security_tier="maximum")
    assert reply["_metadata"]["attestation_verification"]["verified"] is True


async def test_baseline_from_a_trusted_response_then_a_pcr_changes(
    endpoint: RunningServer, tpm_quoter: Any
) -> None:
    async with chat_for(endpoint, attestation="auto") as chat:
        trusted = await chat.create(model="echo", messages=USER)
    metadata = trusted["_metadata"]
    baseline = capture_baseline(metadata["tpm_attestation"], metadata["payload_id"])

    async with chat_for(endpoint, attestation="require", pcr_baseline=baseline) as chat:
        reply = await chat.create(model="echo", messages=USER)
        checks = reply["_metadata"]["attestation_verification"]["checks"]
        assert checks["pcr_baseline"]["passed"] is True

        tpm_quoter.pcr_extend(10, b"a binary nobody approved")
        with pytest.raises(SecurityError, match=r"pcr_baseline: PCRs differ .*sha256:10"):
            await chat.create(model="echo", messages=USER)
