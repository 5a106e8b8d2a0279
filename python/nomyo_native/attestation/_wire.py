"""The block's fields off the wire: base64 with a size cap, then the TPM structure each one
carries, parsed by the core (bounded parsers in rust/src/tpm). A field that cannot be decoded
is a :class:`Malformed` naming it (never anything secret)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nomyo_native import _core

# Wire constants (TPM 2.0 Library, Part 2) the Python checks need; the structures themselves are
# parsed, and signatures verified, by the core (rust/src/tpm).
TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
# Generous cap: a real block is well under 2 KiB per field.
_MAX_B64_CHARS = 16 * 1024


class Malformed(ValueError):
    """A field of the block could not be decoded; the message names it (never secret)."""


def decode_b64(field: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise Malformed(f"{field} must be a base64 string, not {type(value).__name__}")
    if len(value) > _MAX_B64_CHARS:
        raise Malformed(f"{field} is longer than {_MAX_B64_CHARS} characters")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"{field} is not valid base64") from None
    if not raw:
        raise Malformed(f"{field} is empty")
    return raw


# Each wire field, the TPM structure it holds, and the core parser for it (bounded, in Rust).
_STRUCTURES: dict[str, tuple[str, Callable[[bytes], dict[str, Any]]]] = {
    "aik_pubkey_b64": ("TPM2B_PUBLIC", _core.tpm_parse_public),
    "quote_b64": ("TPM2B_ATTEST", _core.tpm_parse_attest),
    "signature_b64": ("TPMT_SIGNATURE", _core.tpm_parse_signature),
}


def parse_structure(field: str, raw: bytes) -> dict[str, Any]:
    """Parse ``raw`` as the structure ``field`` carries: every byte consumed, within bounds."""
    structure, parse = _STRUCTURES[field]
    try:
        return parse(raw)
    except _core.TpmFormatError as exc:
        raise Malformed(f"{field} is not a valid {structure} ({exc})") from None


@dataclass(frozen=True)
class Parsed:
    """One field of the block, decoded or with the reason it could not be."""

    value: Any = None
    error: str | None = None


def parse_field(fn: Callable[[], Any]) -> Parsed:
    try:
        return Parsed(value=fn())
    except Malformed as exc:
        return Parsed(error=str(exc))


@dataclass(frozen=True)
class Structure:
    """A TPM structure from the block: its wire bytes and the core's parse of them."""

    raw: bytes
    fields: dict[str, Any]
