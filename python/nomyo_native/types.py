"""The shapes of what the client hands back, as ``TypedDict``s (plain dicts at runtime).

- :class:`ChatCompletion`: what ``chat.completions.create()`` and ``send_secure_request()``
  return (an OpenAI ``chat.completion``, PROTOCOL.md section 3) with its ``_metadata``
  (:class:`ResponseMetadata`).
- :class:`AttestationVerification`: ``_metadata["attestation_verification"]``, the client's
  verdict on the server's TPM quote (``AttestationResult.to_dict()`` or a "not verified" record).
- :class:`MemoryProtectionInfo`: ``get_memory_protection_info()``; :class:`CoreMemoryStatus` is
  the core's live part of it.

Keys the client or the endpoint always writes are required; the rest are ``NotRequired``: a
forwarding endpoint passes on what its backend (Ollama, vLLM, ...) sent, which may omit them.
The test ``tests/declared_types/test_types.py`` checks these declarations against real responses.
"""

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "AttestationChecks",
    "AttestationLevel",
    "AttestationVerification",
    "AwsLcHeapStatus",
    "ChatCompletion",
    "ChatCompletionMessage",
    "CheckOutcome",
    "Choice",
    "CompletionUsage",
    "CoreMemoryStatus",
    "CudaDevice",
    "FunctionCall",
    "MemoryProtectionInfo",
    "ProtectionInfo",
    "ResponseMetadata",
    "ServerMemoryProtection",
    "ToolCall",
    "TpmAttestation",
]

AttestationLevel = Literal["none", "bound", "rooted"]
"""The README's three attestation levels: ``rooted`` is a verified (bound and trusted) quote."""


# ---- the chat completion --------------------------------------------------------------------


class FunctionCall(TypedDict):
    """The function a tool call names; ``arguments`` is a JSON text written by the model."""

    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: str  # "function" for every current OpenAI-compatible backend
    function: FunctionCall


class ChatCompletionMessage(TypedDict):
    """The assistant's message: ``content`` is None when it answers with tool calls only."""

    role: str
    content: str | None
    tool_calls: NotRequired[list[ToolCall]]
    reasoning_content: NotRequired[str | None]
    refusal: NotRequired[str | None]


class Choice(TypedDict):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: NotRequired[dict[str, Any] | None]


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


# ---- _metadata: what the server reported and what the client checked ------------------------


class ServerMemoryProtection(TypedDict):
    """What the server says it does to protect memory (its claim, not verified)."""

    platform: str
    memory_locking: bool
    secure_zeroing: bool
    core_dump_prevention: bool


class CudaDevice(TypedDict):
    available: bool
    device_hash: str | None


class TpmAttestation(TypedDict):
    """The server's TPM quote block (PROTOCOL.md section 5); only ``is_available`` when it has
    no TPM. Untrusted input: ``attestation_verification`` says what of it was proven."""

    is_available: bool
    pcr_banks: NotRequired[str]
    pcr_values: NotRequired[dict[str, dict[str, str]]]
    aik_pubkey_b64: NotRequired[str]
    quote_b64: NotRequired[str]
    signature_b64: NotRequired[str]
    binding: NotRequired[str]


class CheckOutcome(TypedDict):
    """One verification step: ``passed`` is None when the step was not run."""

    passed: bool | None
    detail: str


class AttestationChecks(TypedDict):
    signature: CheckOutcome
    magic_and_type: CheckOutcome
    qualifying_data: CheckOutcome
    pcr_digest: CheckOutcome
    pcr_baseline: CheckOutcome
    aik_trusted: CheckOutcome


class AttestationVerification(TypedDict):
    """The client's verdict on the quote. A quote that was checked has ``checks`` and the
    ``aik_fingerprint``/``pcr_banks``/``binding`` it found; when none was checked (policy
    ``"off"``, or no ``tpm_attestation`` block) ``reason`` says why and ``available`` is None
    (not asked) or False (the server sent no block)."""

    verified: bool
    bound: bool
    hardware_rooted: bool
    level: AttestationLevel
    available: bool | None
    summary: str
    reason: NotRequired[str]
    aik_fingerprint: NotRequired[str | None]
    pcr_banks: NotRequired[str | None]
    binding: NotRequired[Literal["payload_id", "payload_id+server_key"] | None]
    checks: NotRequired[AttestationChecks]


class ResponseMetadata(TypedDict):
    """``_metadata`` of a response. The first six keys are the client's own (whatever the
    server wrote under these names is replaced); the others are the server's claims."""

    payload_id: str
    payload_id_verified: bool  # the server echoed the request's payload id
    processed_at: int | float | None  # from the envelope (Unix time), None when absent
    is_encrypted: bool
    encryption_algorithm: str
    attestation_verification: AttestationVerification
    response_status: NotRequired[str]
    security_tier: NotRequired[str]
    memory_protection: NotRequired[ServerMemoryProtection]
    cuda_device: NotRequired[CudaDevice]
    tpm_attestation: NotRequired[TpmAttestation]


class ChatCompletion(TypedDict):
    """A decrypted, checked ``chat.completion``."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: NotRequired[CompletionUsage]
    system_fingerprint: NotRequired[str | None]
    _metadata: ResponseMetadata


# ---- memory protection ----------------------------------------------------------------------


class AwsLcHeapStatus(TypedDict):
    """aws-lc's heap, where keys, contexts and RNG state live."""

    installed: bool
    bytes_locked: int
    bytes_unlocked: int
    small_blocks_unlocked: int  # of bytes_unlocked: pages of blocks up to 32 KiB
    lock_failures: int


class CoreMemoryStatus(TypedDict):
    """The core's live locked-memory counters (``_core.memory_status()``)."""

    method: Literal["mlock", "zero-only"]
    platform: str
    bytes_locked: int
    bytes_unlocked: int
    buffers_live: int
    bytes_pooled: int
    pool_limit_bytes: int
    lock_failures: int
    dump_exclusion: bool
    guard_pages: bool
    lock_limit_bytes: int | None
    aws_lc_heap: AwsLcHeapStatus


class ProtectionInfo(TypedDict):
    """The keys of nomyo 0.2.9's protection info (``SecureMemory.get_protection_info()``)."""

    enabled: bool
    platform: str
    protection_level: str
    has_memory_locking: bool
    has_secure_zeroing: bool
    supports_full_protection: bool
    page_size: int


class MemoryProtectionInfo(ProtectionInfo):
    """``get_memory_protection_info()``: nomyo's keys plus the core's counters (its
    ``platform`` is nomyo's: ``sys.platform``). ``protection_level`` is ``"full"``,
    ``"partial"``, ``"zeroing_only"`` or ``"none"``."""

    backend: str
    method: Literal["mlock", "zero-only"]
    bytes_locked: int
    bytes_unlocked: int
    buffers_live: int
    bytes_pooled: int
    pool_limit_bytes: int
    lock_failures: int
    dump_exclusion: bool
    guard_pages: bool
    lock_limit_bytes: int | None
    aws_lc_heap: AwsLcHeapStatus
