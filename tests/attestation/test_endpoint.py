"""End to end: the client verifies real swtpm quotes sent by the local endpoint over loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import nomyo_native as nomyo
from nomyo_native.attestation import capture_baseline
from nomyo_native.errors import SecurityError
from nomyo_native.server.runner import RunningServer

USER = [{"role": "user", "content": "is this a genuine endpoint?"}]

pytestmark = pytest.mark.filterwarnings("ignore:WARNING. Using HTTP instead of HTTPS")


def chat_for(server: RunningServer, **kwargs: Any) -> nomyo.SecureChatCompletion:
    """A client that trusts ``server`` the way a careful user would (CA and key pinned)."""
    if server.ca_path is not None:
        kwargs.update(ca_bundle=str(server.ca_path))
    else:
        kwargs.update(allow_http=True)
    return nomyo.SecureChatCompletion(
        base_url=server.base_url,
        server_key_fingerprint=server.server_key_fingerprint,
        key_size=2048,
        **kwargs,
    )


@pytest.mark.parametrize("scheme", ["ecdsa", "rsassa", "rsapss"])
async def test_required_attestation_verifies_for_each_scheme(
    endpoint_factory: Callable[..., RunningServer], tpm_quoter: Any, scheme: str
) -> None:
    server = endpoint_factory(quoter=tpm_quoter, tpm_scheme=scheme)
    # Issue 11: a fresh AIK per request is bound, not verified (this required verified before).
    async with chat_for(server, attestation="bound") as chat:
        reply = await chat.create(model="echo", messages=USER)
    assert reply["choices"][0]["message"]["content"]
    record = reply["_metadata"]["attestation_verification"]
    assert record["bound"] is True
    assert record["verified"] is False and record["hardware_rooted"] is False
    assert {name for name, c in record["checks"].items() if c["passed"]} == {
        "signature",
        "magic_and_type",
        "qualifying_data",
        "pcr_digest",
    }
    assert "not genuine TPM hardware" in record["summary"]


async def test_maximum_tier_without_anchor_requires_bound(swtpm_endpoint: RunningServer) -> None:
    # Issue 11: with no trust anchor, tier maximum defaults to "bound" and records that the quote
    # is not hardware-rooted (this asserted verified before).
    async with chat_for(swtpm_endpoint) as chat:
        reply = await chat.create(model="echo", messages=USER, security_tier="maximum")
    record = reply["_metadata"]["attestation_verification"]
    assert record["bound"] is True and record["hardware_rooted"] is False
    assert record["verified"] is False


async def test_baseline_from_a_trusted_response_then_a_pcr_changes(
    swtpm_endpoint: RunningServer, tpm_quoter: Any
) -> None:
    async with chat_for(swtpm_endpoint, attestation="auto") as chat:
        trusted = await chat.create(model="echo", messages=USER)
    metadata = trusted["_metadata"]
    baseline = capture_baseline(metadata["tpm_attestation"], metadata["payload_id"])

    async with chat_for(swtpm_endpoint, attestation="bound", pcr_baseline=baseline) as chat:
        reply = await chat.create(model="echo", messages=USER)
        checks = reply["_metadata"]["attestation_verification"]["checks"]
        assert checks["pcr_baseline"]["passed"] is True

        tpm_quoter.pcr_extend(10, b"a binary nobody approved")
        with pytest.raises(SecurityError, match=r"pcr_baseline: PCRs differ .*sha256:10"):
            await chat.create(model="echo", messages=USER)
