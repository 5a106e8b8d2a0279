"""``nomyo_native.types`` declares what the client really returns: every response, verdict and
memory status below is checked against its TypedDict (required keys present, every declared
key of the declared type), against the local endpoint, so that the declarations cannot drift.
Dicts the client or the core builds entirely are also checked for keys the TypedDict lacks."""

from __future__ import annotations

import shutil
import typing
from collections.abc import Callable
from typing import Any

import pytest

import nomyo_native as nomyo
from nomyo_native import _core
from nomyo_native._sync_client import SyncCompletionClient
from nomyo_native.attestation import AttestationResult
from nomyo_native.client import SecureCompletionClient
from nomyo_native.server import RunningServer
from nomyo_native.types import (
    AttestationVerification,
    ChatCompletion,
    CheckOutcome,
    CoreMemoryStatus,
    MemoryProtectionInfo,
    ProtectionInfo,
)

from .shapes import mismatches

USER = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def undeclared(value: dict[str, Any], td: Any) -> set[str]:
    return set(value) - td.__required_keys__ - td.__optional_keys__


def client_for(server: RunningServer, **kwargs: Any) -> nomyo.SecureChatCompletion:
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


# ---- the checker can fail ----------------------------------------------------------------


def test_the_checker_refuses_what_does_not_fit() -> None:
    good = {"passed": None, "detail": "not run"}
    assert mismatches(good, ProtectionInfo) != []  # another TypedDict's keys are missing
    assert mismatches({**good}, AttestationVerification.__annotations__["checks"]) != []
    verdict = {
        "verified": False,
        "bound": False,
        "hardware_rooted": False,
        "level": "none",
        "available": None,
        "summary": "s",
    }
    assert mismatches(verdict, AttestationVerification) == []
    assert mismatches({**verdict, "level": "partly"}, AttestationVerification) != []
    assert mismatches({**verdict, "verified": 0}, AttestationVerification) != []
    assert mismatches({**verdict, "reason": None}, AttestationVerification) != []
    del verdict["summary"]
    assert mismatches(verdict, AttestationVerification) == ["$: required key 'summary' missing"]


# ---- chat completions --------------------------------------------------------------------


async def test_a_completion_without_tpm_fits_chat_completion(http_endpoint: RunningServer) -> None:
    async with client_for(http_endpoint) as chat:
        reply = await chat.create(model="m", messages=USER)
    assert mismatches(reply, ChatCompletion) == []
    verdict = reply["_metadata"]["attestation_verification"]
    assert verdict["available"] is False and "checks" in verdict  # is_available: false
    assert undeclared(verdict, AttestationVerification) == set()


async def test_a_tool_call_fits_chat_completion(http_endpoint: RunningServer) -> None:
    async with client_for(http_endpoint) as chat:
        reply = await chat.create(model="m", messages=USER, tools=[WEATHER_TOOL])
    assert reply["choices"][0]["message"]["tool_calls"]  # the shape under test is there
    assert mismatches(reply, ChatCompletion) == []


async def test_attestation_off_fits(http_endpoint: RunningServer) -> None:
    async with client_for(http_endpoint, attestation="off") as chat:
        reply = await chat.create(model="m", messages=USER)
    assert mismatches(reply, ChatCompletion) == []
    verdict = reply["_metadata"]["attestation_verification"]
    assert verdict["available"] is None
    assert undeclared(verdict, AttestationVerification) == set()


async def test_a_checked_quote_fits(swtpm_endpoint: RunningServer) -> None:
    async with client_for(swtpm_endpoint, attestation="auto") as chat:
        reply = await chat.create(model="m", messages=USER, security_tier="high")
    assert mismatches(reply, ChatCompletion) == []
    metadata = reply["_metadata"]
    assert metadata["tpm_attestation"]["is_available"] is True
    verdict = metadata["attestation_verification"]
    assert verdict["level"] == "bound" and "checks" in verdict
    assert undeclared(verdict, AttestationVerification) == set()


async def test_a_rooted_quote_fits(endpoint_factory: Callable[..., RunningServer]) -> None:
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (Debian packages swtpm, swtpm-tools)")
    endpoint = endpoint_factory(tls_self_signed=True, tpm="swtpm")  # a persistent AIK
    async with client_for(endpoint, trusted_aik=endpoint.aik_fingerprint) as chat:
        reply = await chat.create(model="m", messages=USER, security_tier="maximum")
    assert mismatches(reply, ChatCompletion) == []
    verdict = reply["_metadata"]["attestation_verification"]
    assert verdict["level"] == "rooted" and verdict["binding"] == "payload_id+server_key"
    assert reply["_metadata"]["tpm_attestation"]["binding"] == "payload_id+server_key"
    assert undeclared(verdict, AttestationVerification) == set()


def test_the_sync_client_returns_the_same_shape(http_endpoint: RunningServer) -> None:
    with nomyo.SyncSecureChatCompletion(
        base_url=http_endpoint.base_url, allow_http=True, key_size=2048
    ) as chat:
        reply = chat.create(model="m", messages=USER)
    assert mismatches(reply, ChatCompletion) == []


# ---- memory status -----------------------------------------------------------------------


def test_memory_status_fits() -> None:
    status = _core.memory_status()
    assert mismatches(status, CoreMemoryStatus) == []
    assert undeclared(status, CoreMemoryStatus) == set()
    assert (
        undeclared(status["aws_lc_heap"], CoreMemoryStatus.__annotations__["aws_lc_heap"]) == set()
    )

    info = nomyo.get_memory_protection_info()
    assert mismatches(info, MemoryProtectionInfo) == []
    assert undeclared(info, MemoryProtectionInfo) == set()

    legacy = nomyo.SecureMemory._get_secure_memory().get_protection_info()
    assert mismatches(legacy, ProtectionInfo) == []
    assert undeclared(legacy, ProtectionInfo) == set()


# ---- the public signatures name them -----------------------------------------------------


@pytest.mark.parametrize(
    ("function", "declared"),
    [
        (nomyo.SecureChatCompletion.create, ChatCompletion),
        (nomyo.SecureChatCompletion.acreate, ChatCompletion),
        (nomyo.SyncSecureChatCompletion.create, ChatCompletion),
        (SecureCompletionClient.send_secure_request, ChatCompletion),
        (SecureCompletionClient.decrypt_response, ChatCompletion),
        (SyncCompletionClient.send_secure_request, ChatCompletion),
        (SyncCompletionClient.decrypt_response, ChatCompletion),
        (SecureCompletionClient.send_sealed_request, ChatCompletion),
        (SyncCompletionClient.send_sealed_request, ChatCompletion),
        (AttestationResult.to_dict, AttestationVerification),
        (nomyo.get_memory_protection_info, MemoryProtectionInfo),
        (nomyo.SecureMemory.SecureMemory.get_protection_info, ProtectionInfo),
    ],
)
def test_public_functions_return_the_typeddicts(function: Any, declared: Any) -> None:
    assert typing.get_type_hints(function)["return"] is declared


def test_check_results_are_check_outcomes() -> None:
    hints = typing.get_type_hints(AttestationResult.to_dict)
    checks = typing.get_type_hints(hints["return"])["checks"]
    assert all(v is CheckOutcome for v in typing.get_type_hints(checks).values())
