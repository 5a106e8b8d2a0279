"""PCR banks and values: the selection a quote names (``"sha256:0,7,10"``), the claimed
values (``{bank: {index: hex}}``), and the two checks on them, that the claimed values hash to
the signed digest and that the TPM's PCRs equal a known-good baseline."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from nomyo_native.attestation._result import CheckResult
from nomyo_native.attestation._wire import TPM_ST_ATTEST_QUOTE, Malformed, Parsed

_PCR_COUNT = 24  # PC Client platforms implement PCRs 0-23.

# PCR banks we understand: TPM algorithm id -> (name used in pcr_banks/pcr_values, digest size).
_BANKS: dict[int, tuple[str, int]] = {
    0x0004: ("sha1", 20),
    0x000B: ("sha256", 32),
    0x000C: ("sha384", 48),
    0x000D: ("sha512", 64),
}
_BANK_IDS = {name: alg for alg, (name, _) in _BANKS.items()}
# The quote's PCR digest uses the signing scheme's hash; its size tells us which.
_DIGEST_BY_SIZE = {32: "sha256", 48: "sha384", 64: "sha512"}

# PCR values by bank name, then PCR index: {"sha256": {0: digest bytes, ...}}.
PcrValues = dict[str, dict[int, bytes]]


def normalize_values(data: Any) -> PcrValues:
    """``{bank: {index: hex}}`` -> ``{bank: {int index: bytes}}``, strictly validated."""
    if not isinstance(data, Mapping):
        raise ValueError(f"PCR values must be an object of banks, not {type(data).__name__}")
    out: PcrValues = {}
    for bank, entries in data.items():
        if bank not in _BANK_IDS:
            raise ValueError(f"unknown PCR bank {bank!r} (known: {', '.join(_BANK_IDS)})")
        if not isinstance(entries, Mapping):
            raise ValueError(f"PCR bank {bank} must map indices to hex digests")
        size = _BANKS[_BANK_IDS[bank]][1]
        bank_values: dict[int, bytes] = {}
        for key, value in entries.items():
            index = _pcr_index(key)
            if not isinstance(value, str):
                raise ValueError(f"PCR {bank}:{index} must be a hex string")
            try:
                digest = bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"PCR {bank}:{index} is not valid hex") from None
            if len(digest) != size:
                raise ValueError(f"PCR {bank}:{index} must be {size} bytes, not {len(digest)}")
            if index in bank_values:
                raise ValueError(f"PCR {bank}:{index} is listed twice")
            bank_values[index] = digest
        out[bank] = bank_values
    return out


def _pcr_index(key: Any) -> int:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ValueError(f"PCR index {key!r} must be a decimal string")
    text = str(key)
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text.startswith("0")):
        raise ValueError(f"PCR index {key!r} must be a decimal number")
    index = int(text)
    if index >= _PCR_COUNT:
        raise ValueError(f"PCR index {index} is out of range 0-{_PCR_COUNT - 1}")
    return index


def values_to_json(values: PcrValues) -> dict[str, dict[str, str]]:
    return {
        bank: {str(i): entries[i].hex() for i in sorted(entries)}
        for bank, entries in values.items()
    }


def parse_pcr_banks(text: Any) -> list[tuple[str, list[int]]]:
    """``"sha256:0,7,10"`` (banks joined by ``+``, as tpm2-tools writes) -> selection list."""
    if not isinstance(text, str) or not text:
        raise ValueError("pcr_banks must be a non-empty string like 'sha256:0,7,10'")
    selection: list[tuple[str, list[int]]] = []
    for part in text.split("+"):
        bank, sep, indices = part.partition(":")
        if not sep or bank not in _BANK_IDS:
            raise ValueError(f"pcr_banks entry {part!r} is not '<bank>:<i>,<j>,...'")
        parsed = [_pcr_index(i) for i in indices.split(",")]
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"pcr_banks entry {part!r} repeats an index")
        if any(b == bank for b, _ in selection):
            raise ValueError(f"pcr_banks names bank {bank} twice")
        selection.append((bank, sorted(parsed)))
    return selection


def format_selection(selection: list[tuple[str, list[int]]]) -> str:
    return "+".join(f"{bank}:{','.join(map(str, indices))}" for bank, indices in selection)


def _quote_selection(attest: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """The PCR selection the TPM signed, in its order."""
    if attest["type"] != TPM_ST_ATTEST_QUOTE:
        # A certify structure has no PCRs: refuse rather than misinterpret.
        raise Malformed("quote_b64 holds no PCR quote (attest type is not a quote)")
    selection: list[tuple[str, list[int]]] = []
    for alg, bits in attest["pcr_select"]:
        if alg not in _BANKS:
            raise Malformed(f"quote selects PCR bank {alg:#06x}, which is not supported")
        # Bit b of byte n selects PCR 8n + b; the TPM hashes them in ascending order.
        chosen = [pcr for pcr in range(8 * len(bits)) if bits[pcr // 8] >> (pcr % 8) & 1]
        if chosen:
            selection.append((_BANKS[alg][0], chosen))
    return selection


def _signed_digest(attest: dict[str, Any]) -> tuple[str, bytes]:
    digest = attest["pcr_digest"]
    alg = _DIGEST_BY_SIZE.get(len(digest))
    if alg is None:
        raise Malformed(f"quote PCR digest has an unsupported size ({len(digest)} bytes)")
    return alg, digest


def _digest_of(alg: str, selection: list[tuple[str, list[int]]], values: PcrValues) -> bytes:
    h = hashlib.new(alg)
    for bank, indices in selection:
        for index in indices:
            h.update(values[bank][index])
    return h.digest()


def check_pcr_digest(quote: Parsed, selection: Parsed, values: Parsed) -> CheckResult:
    """The claimed pcr_values, hashed in the signed selection's order, give the signed digest."""
    name = "pcr_digest"
    for parsed in (quote, selection, values):
        if parsed.error:
            return CheckResult(name, False, parsed.error)
    try:
        signed = _quote_selection(quote.value.fields)
        alg, digest = _signed_digest(quote.value.fields)
    except Malformed as exc:
        return CheckResult(name, False, str(exc))
    if signed != selection.value:
        return CheckResult(
            name,
            False,
            f"quote selects {format_selection(signed) or 'no PCRs'}, "
            f"pcr_banks says {format_selection(selection.value)}",
        )
    claimed = {bank: sorted(entries) for bank, entries in values.value.items() if entries}
    if claimed != {bank: indices for bank, indices in signed}:
        return CheckResult(name, False, "pcr_values do not list exactly the quoted PCRs")
    if _digest_of(alg, signed, values.value) != digest:
        return CheckResult(
            name, False, f"{alg} of the pcr_values does not match the quote's PCR digest"
        )
    return CheckResult(name, True, f"{alg} of {format_selection(signed)} matches the quote")


def check_baseline(baseline: PcrValues | None, quote: Parsed, values: Parsed) -> CheckResult:
    """The PCRs the TPM signed equal the known-good ``baseline`` (not run without one)."""
    name = "pcr_baseline"
    if baseline is None:
        return CheckResult(name, None, "not run: no baseline given")
    if quote.error:
        return CheckResult(name, False, quote.error)
    try:
        signed = _quote_selection(quote.value.fields)
        alg, digest = _signed_digest(quote.value.fields)
    except Malformed as exc:
        return CheckResult(name, False, str(exc))
    quoted = {(bank, index) for bank, indices in signed for index in indices}
    missing = [
        f"{bank}:{index}"
        for bank, entries in baseline.items()
        for index in sorted(entries)
        if (bank, index) not in quoted
    ]
    if missing:
        return CheckResult(name, False, f"baseline PCRs not in the quote: {', '.join(missing)}")
    # Compare against what the TPM signed, not the claimed values: the baselined PCRs take
    # their baseline values and the rest the claimed ones; a matching digest proves the TPM's
    # PCRs equal the baseline (a tampered claimed value then fails only pcr_digest).
    claimed = values.value or {}
    expected: PcrValues = {}
    unproven: list[str] = []
    for bank, indices in signed:
        expected[bank] = {}
        for index in indices:
            if index in baseline.get(bank, {}):
                expected[bank][index] = baseline[bank][index]
            elif index in claimed.get(bank, {}):
                expected[bank][index] = claimed[bank][index]
            else:
                unproven.append(f"{bank}:{index}")
    if unproven:
        return CheckResult(
            name, False, f"cannot recompute the digest: no value for {', '.join(unproven)}"
        )
    if _digest_of(alg, signed, expected) == digest:
        count = sum(len(entries) for entries in baseline.values())
        return CheckResult(name, True, f"the quote matches the baseline for {count} PCRs")
    differing = [
        f"{bank}:{index}"
        for bank, entries in baseline.items()
        for index in sorted(entries)
        if claimed.get(bank, {}).get(index) not in (None, entries[index])
    ]
    if differing:
        return CheckResult(name, False, f"PCRs differ from the baseline: {', '.join(differing)}")
    return CheckResult(name, False, "the quote's PCR digest does not match the baseline")
