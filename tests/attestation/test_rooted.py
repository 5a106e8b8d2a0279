"""Issue 11 section 2: a persistent attestation key in the local endpoint, pinned by the client.

Real swtpm TPMs owned by endpoints (``--tpm swtpm``, persistent AIK by default): quotes by the
pinned key are verified end to end and also bind the server key the request was encrypted to;
a quote by another TPM, a quote relayed through a second server, and a replayed quote each fail
their own named check. ``--aik per-request`` keeps the published protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.client.peer import Peer

import nomyo_native as nomyo
from nomyo_native.attestation import verify_attestation
from nomyo_native.errors import SecurityError
from nomyo_native.server.runner import RunningServer
from nomyo_native.server.tpm import SwtpmProcess, TpmQuoter

USER = [{"role": "user", "content": "which TPM made this?"}]


def chat_for(server: RunningServer, **kwargs: Any) -> nomyo.SecureChatCompletion:
    return nomyo.SecureChatCompletion(
        base_url=server.base_url,
        ca_bundle=str(server.ca_path),
        server_key_fingerprint=server.server_key_fingerprint,
        key_size=2048,
        **kwargs,
    )


@pytest.fixture(scope="module")
def genuine(server_key: Any) -> Any:
    """An endpoint that owns its swtpm, with the default persistent AIK (module-wide)."""
    from tests.conftest import _start

    with _start(server_key, tls_self_signed=True, tpm="swtpm") as endpoint:
        yield endpoint


def test_persistent_aik_survives_a_restart_with_tpm_state(tmp_path: Path) -> None:
    state = tmp_path / "tpm-state"
    fingerprints = []
    for _ in range(2):
        with SwtpmProcess(state_dir=state) as swtpm, TpmQuoter(swtpm.tcti, aik="persistent") as q:
            fingerprints.append(q.aik_fingerprint())
            block = q.quote("pid", server_key_fingerprint="sha256:" + "ab" * 32)
            assert verify_attestation(block, "pid", trusted_aik=fingerprints[-1]).hardware_rooted
    assert fingerprints[0] == fingerprints[1]
    # Another TPM (another endorsement seed) has another key.
    with SwtpmProcess() as swtpm, TpmQuoter(swtpm.tcti, aik="persistent") as other:
        assert other.aik_fingerprint() != fingerprints[0]


async def test_pinned_persistent_aik_is_verified_and_key_bound(genuine: RunningServer) -> None:
    assert genuine.aik_fingerprint is not None
    async with chat_for(genuine, trusted_aik=genuine.aik_fingerprint) as chat:
        reply = await chat.create(model="echo", messages=USER, security_tier="maximum")
    record = reply["_metadata"]["attestation_verification"]
    assert record["verified"] is True and record["level"] == "rooted"
    assert record["binding"] == "payload_id+server_key"
    assert "not relayed from another server" in record["summary"]


async def test_a_quote_from_the_other_tpm_is_not_rooted(
    genuine: RunningServer, endpoint_factory: Callable[..., RunningServer]
) -> None:
    other = endpoint_factory(tls_self_signed=True, tpm="swtpm")
    assert other.aik_fingerprint != genuine.aik_fingerprint
    async with chat_for(other, trusted_aik=genuine.aik_fingerprint) as chat:
        with pytest.raises(SecurityError, match="NOT hardware-rooted"):
            await chat.create(model="echo", messages=USER, security_tier="maximum")
        reply = await chat.create(model="echo", messages=USER, attestation="auto")
    record = reply["_metadata"]["attestation_verification"]
    assert record["bound"] is True and record["hardware_rooted"] is False
    assert record["checks"]["aik_trusted"]["passed"] is False


class RelayPeer(Peer):
    """A server with no TPM that forwards each payload id to the genuine endpoint and attaches
    the genuine TPM's quote (bound to the genuine server's key) to its own answer."""

    genuine: Any = None

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            payload_id = request.headers["x-payload-id"]
            self.extra_metadata = {
                "tpm_attestation": self.genuine.quoter.quote(
                    payload_id, server_key_fingerprint=self.genuine.server_key_fingerprint
                )
            }
        return super().handle(request)


async def test_a_quote_relayed_through_another_server_fails_qualifying_data(
    genuine: RunningServer,
) -> None:
    relay = RelayPeer()
    relay.genuine = genuine
    chat = nomyo.SecureChatCompletion(
        base_url="https://relay.test",
        key_size=2048,
        transport=relay.transport(),
        trusted_aik=genuine.aik_fingerprint,
    )
    async with chat:
        with pytest.raises(SecurityError, match="relayed from another server"):
            await chat.create(model="m", messages=USER, security_tier="maximum")
        reply = await chat.create(model="m", messages=USER, attestation="auto")
    record = reply["_metadata"]["attestation_verification"]
    # Genuine TPM, pinned key, right payload id: only the server-key binding catches it.
    assert record["checks"]["signature"]["passed"] is True
    assert record["checks"]["aik_trusted"]["passed"] is True
    assert record["checks"]["qualifying_data"]["passed"] is False
    assert record["verified"] is False and record["bound"] is False


def test_a_replayed_rooted_quote_fails_qualifying_data(genuine: RunningServer) -> None:
    assert genuine.quoter is not None
    block = genuine.quoter.quote(
        "an-earlier-request", server_key_fingerprint=genuine.server_key_fingerprint
    )
    result = verify_attestation(
        block,
        "this-request",
        trusted_aik=genuine.aik_fingerprint,
        server_key_fingerprint=genuine.server_key_fingerprint,
    )
    assert result.aik_trusted.passed is True and result.qualifying_data.passed is False
    assert not result.verified


def test_key_bound_quote_without_the_server_key_says_what_is_missing(
    genuine: RunningServer,
) -> None:
    assert genuine.quoter is not None
    block = genuine.quoter.quote("pid", server_key_fingerprint=genuine.server_key_fingerprint)
    result = verify_attestation(block, "pid", trusted_aik=genuine.aik_fingerprint)
    assert result.qualifying_data.passed is False
    assert "server_key_fingerprint" in result.qualifying_data.detail


async def test_per_request_aik_keeps_the_published_protocol(
    endpoint_factory: Callable[..., RunningServer],
) -> None:
    server = endpoint_factory(tls_self_signed=True, tpm="swtpm", aik="per-request")
    assert server.aik_fingerprint is None
    async with chat_for(server) as chat:
        first = await chat.create(model="echo", messages=USER, security_tier="maximum")
        second = await chat.create(model="echo", messages=USER, security_tier="maximum")
    records = [r["_metadata"]["attestation_verification"] for r in (first, second)]
    assert all(r["bound"] and not r["hardware_rooted"] for r in records)
    assert all(r["binding"] == "payload_id" for r in records)
    assert records[0]["aik_fingerprint"] != records[1]["aik_fingerprint"]  # fresh each time
    assert "binding" not in first["_metadata"]["tpm_attestation"]


def test_serve_banner_prints_the_aik_fingerprint(genuine: RunningServer) -> None:
    from nomyo_native.cli._serve_banner import describe as _describe
    from nomyo_native.server import ServerConfig

    lines = "\n".join(_describe(genuine, ServerConfig(tpm="swtpm", tls_self_signed=True)))
    assert f"AIK (trust)      {genuine.aik_fingerprint}" in lines
    assert "persistent AIK" in lines
